"""The web UI: `vimi serve` (Gradio)."""
