"""Adapter Studio: `python app.py` (or `make app`) serves the wizard on http://127.0.0.1:7860.

Hugging Face Spaces runs this file too (README front matter: app_file: app.py).
"""

import os

if os.environ.get("SPACES_ZERO_GPU"):  # a ZeroGPU Space: `spaces` patches torch, so it goes first
    import spaces  # noqa: F401

from studio.ui import build_app, launch  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    launch(
        demo,
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
