#!/usr/bin/env bash
# Set up (first time only) and run the tests.
#   ./test.sh           every test, browser tests and the slow tier included (what CI runs)
#   ./test.sh --fast    the fast tier: -m "not slow" (no servers, browsers or training; < 2 min)
# Further arguments go to pytest (e.g. ./test.sh --fast tests/test_capture.py -x).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh dev
if [[ "${1:-}" == "--fast" ]]; then
  shift
  exec .venv/bin/python -m pytest -q -m "not slow" "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
