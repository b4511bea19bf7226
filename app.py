"""attnviz web app: `python app.py` serves it on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT
(default 127.0.0.1:7860). The UI lives in attnviz/app/, one module per tab.

Your own models join the shipped ones with ``--model`` (see attnviz/models/external.py):
    python app.py --model my_net.py [--weights my_net.safetensors] [--labels classes.txt]
"""
import os
import sys
import tempfile

# Gradio's cache of this server alone (not the /tmp/gradio every Gradio app shares): a request
# may name only files inside it (attnviz/app/uploads.py). Set before any component exists.
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(
    tempfile.gettempdir(), f"attnviz_gradio_{os.environ.get('GRADIO_SERVER_PORT', '7860')}"))

from attnviz.models.external import ExternalModelError, register_args  # noqa: E402

try:  # before the UI is built: a model that cannot be served stops here, saying why
    register_args(sys.argv[1:] if __name__ == "__main__" else [])
except ExternalModelError as e:
    sys.exit(f"attnviz: {e}")

from attnviz.app import build_demo, launch_kwargs, stop_on_sigterm  # noqa: E402

demo = build_demo()

if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM cleans up as an exit does (export folders)
    demo.launch(**launch_kwargs())
