"""attnviz web app (placeholder until the app issue lands)."""
import gradio as gr

with gr.Blocks(title="attnviz") as demo:
    gr.Markdown("# attnviz\nThe app is being built.")

if __name__ == "__main__":
    demo.launch()
