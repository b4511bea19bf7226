#!/usr/bin/env bash
# Set up (first time only) and start the attnviz app on its shipped models: http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
echo "[attnviz] starting the app on http://${GRADIO_SERVER_NAME:-127.0.0.1}:${GRADIO_SERVER_PORT:-7860} (loading the models takes a few seconds; Ctrl+C stops it)"
exec .venv/bin/python app.py "$@"
