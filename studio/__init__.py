"""Adapter Studio's Gradio UI: views (plain functions) in the `*_view` modules, app state in `service`, and
`ui` and `tabs/` wiring them to components. It imports adapter_core through its faces only."""
