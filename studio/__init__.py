"""Adapter Studio's Gradio UI. Handlers live in `handlers`, app state in `service`; `ui` wires them."""
