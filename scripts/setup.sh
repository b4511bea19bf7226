#!/usr/bin/env bash
# Create .venv and install attnviz's dependencies. `scripts/setup.sh dev` adds the test tools and
# Debian's chromium for the browser tests (never `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.attnviz-installed-${1:-run}
req=requirements.txt
[ "${1:-}" = dev ] && req=requirements-dev.txt
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0
  python -m pip install -q -r "$req"
  python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
if [ "${1:-}" = dev ] && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
