"""EchoMimic V3 flash (Wan2.1-Fun-1.3B-InP + wav2vec2 audio): library code; no ComfyUI imports."""
