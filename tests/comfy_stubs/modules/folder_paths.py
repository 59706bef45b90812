"""Stand-in for ComfyUI's `folder_paths` (only what the EchoMimic nodes touch).

Same semantics as the real module for these functions; `models_dir` comes from
ECHOMIMIC_TEST_MODELS_DIR so a test can point it at tiny weights.
"""

from __future__ import annotations

import os
import tempfile

base_path = os.environ.get("ECHOMIMIC_TEST_COMFY_BASE", os.path.join(tempfile.gettempdir(), "echomimic-comfy-stub"))
models_dir = os.environ.get("ECHOMIMIC_TEST_MODELS_DIR", os.path.join(base_path, "models"))
supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {
    kind: ([os.path.join(models_dir, kind)], supported_pt_extensions)
    for kind in ("vae", "text_encoders", "clip_vision", "embeddings")
}


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    if folder_name in folder_names_and_paths:
        paths, _extensions = folder_names_and_paths[folder_name]
        if full_folder_path in paths:
            if is_default and paths[0] != full_folder_path:
                paths.remove(full_folder_path)
                paths.insert(0, full_folder_path)
        elif is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[folder_name][0][:]


def get_input_directory() -> str:
    return os.path.join(base_path, "input")


def get_output_directory() -> str:
    return os.path.join(base_path, "output")
