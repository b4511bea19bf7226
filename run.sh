#!/usr/bin/env bash
# Set up (first time only) and start the attnviz app on its shipped models: http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
exec .venv/bin/python app.py "$@"
