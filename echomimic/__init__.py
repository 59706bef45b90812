"""EchoMimic as a plain PyTorch library (no ComfyUI imports).

Submodules are imported on demand so that importing this package stays cheap.
"""

__version__ = "0.1.0"
