"""Stand-in for the parts of ComfyUI's `comfy` package the EchoMimic nodes use (tests only)."""
