#!/usr/bin/env bash
# Create .venv and install attnviz's dependencies, saying what it does. `scripts/setup.sh dev`
# adds the test tools and Debian's chromium for the browser tests (never `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "[attnviz setup] $*"; }
start=$(date +%s)
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.attnviz-installed-${1:-run}
req=requirements.txt
[ "${1:-}" = dev ] && req=requirements-dev.txt
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ]; then
  say "first run: installing about 1.5 GB into .venv (PyTorch is most of it); a few minutes on a"
  say "fast connection. pip's progress follows; later runs skip this step."
  PIP=(python -m pip install --progress-bar on --disable-pip-version-check)
  say "1/4 upgrading pip"
  "${PIP[@]}" -q --upgrade pip
  say "2/4 PyTorch 2.13 (the largest download)"
  "${PIP[@]}" torch==2.13.0
  say "3/4 Gradio, Captum, OpenCV, Plotly and the rest ($req)"
  "${PIP[@]}" -r "$req"
  say "4/4 attnviz itself (editable; installs the \`attnviz\` command)"
  "${PIP[@]}" -q --no-deps -e .
  touch "$stamp"
  say "installed in $(( $(date +%s) - start )) s"
fi
if [ "${1:-}" = dev ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's chromium for the browser tests (apt-get)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
