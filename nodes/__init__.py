"""ComfyUI node definitions of the EchoMimic extension, one module per node group.

The extension's top-level `__init__.py` imports each group separately, so a group that fails to import
(a missing optional package, a library problem) never hides the others.
"""

NODE_GROUPS: tuple[str, ...] = (
    "model_nodes",
    "audio_nodes",
    "face_nodes",
    "landmark_nodes",
    "sampler_nodes",
    "pose_nodes",
    "compose_nodes",
    "file_nodes",
    "v3_nodes",
)
