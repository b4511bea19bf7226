"""attnviz web app: `python app.py` serves it on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT
(default 127.0.0.1:7860). The UI lives in attnviz/app/, one module per tab."""
from attnviz.app import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
