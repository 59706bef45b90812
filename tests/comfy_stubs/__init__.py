"""Helpers for the in-process node tests: small stand-ins for ComfyUI's modules, the extension loaded the
way ComfyUI loads a custom node, a tiny weights folder built from the shared parity fixtures, and a VAE
with comfy.sd.VAE's call conventions around the tiny diffusers VAE.

Only ComfyUI's own modules are stood in (they are not installable); the EchoMimic library runs for real.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.parity_cases import PARITY_ROOT

STUB_MODULES_DIR = Path(__file__).resolve().parent / "modules"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION_MODULE_NAME = "comfyui_echomimic_under_test"

# Release file names (BadToBest/EchoMimic layout) per tiny parity case, each pointing at the case's
# files: enough to load every variant at a tiny size.
_AUDIO_FILES = {
    "reference_unet": "reference_unet",
    "denoising_unet": "denoising_unet",
    "motion_module": "motion_module",
    "face_locator": "face_locator",
    "denoising_unet_acc": "denoising_unet",
    "motion_module_acc": "motion_module",
}
_POSE_FILES = {
    "reference_unet_pose": "reference_unet",
    "denoising_unet_pose": "denoising_unet",
    "motion_module_pose": "motion_module",
    "face_locator_pose": "face_locator",
    "denoising_unet_pose_acc": "denoising_unet",
    "motion_module_pose_acc": "motion_module",
}
TINY_WEIGHT_FOLDERS = {"tiny_audio": ("v1_audio", _AUDIO_FILES), "tiny_pose": ("v1_pose_acc", _POSE_FILES)}


def install_stub_modules(models_dir: Path) -> None:
    """Put the ComfyUI stand-ins first on sys.path, with `models_dir` as ComfyUI's models folder."""
    os.environ["ECHOMIMIC_TEST_MODELS_DIR"] = str(models_dir)
    if str(STUB_MODULES_DIR) not in sys.path:
        sys.path.insert(0, str(STUB_MODULES_DIR))
    import folder_paths

    # The stub may already be imported by an earlier test module: point it at this folder, and register
    # the echomimic folder there as the extension does when ComfyUI imports it.
    folder_paths.models_dir = str(models_dir)
    folder_paths.folder_names_and_paths.pop("echomimic", None)
    folder_paths.add_model_folder_path("echomimic", str(models_dir / "echomimic"))


def load_extension(module_name: str = EXTENSION_MODULE_NAME) -> ModuleType:
    """Import the repository as ComfyUI imports a custom node folder (spec from its __init__.py)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def extension_submodule(name: str) -> ModuleType:
    """A module of the loaded extension, e.g. "nodes.common" (the same objects the nodes use)."""
    return importlib.import_module(f"{load_extension().__name__}.{name}")


def build_tiny_weights(models_dir: Path) -> Path:
    """models_dir/echomimic/<tiny folder>/ with release-named links to the parity weights and configs."""
    root = PARITY_ROOT
    echomimic_dir = models_dir / "echomimic"
    for folder, (case, names) in TINY_WEIGHT_FOLDERS.items():
        target = echomimic_dir / folder
        (target / "audio_processor").mkdir(parents=True, exist_ok=True)
        for release_stem, case_stem in names.items():
            link = target / f"{release_stem}.safetensors"
            if not link.exists():
                link.symlink_to(root / case / "weights" / f"{case_stem}.safetensors")
        for config in ("unet_config.json", "inference.json", "face_locator.json"):
            link = target / config
            if not link.exists():
                link.symlink_to(root / case / "config" / config)
        whisper = target / "audio_processor" / "whisper_tiny.pt"
        if not whisper.exists():
            whisper.symlink_to(root / "common" / "whisper_tiny_random.pt")
    return echomimic_dir


def node_instances(models_dir: Path) -> dict[str, Any]:
    """Every node of the extension, instantiated as ComfyUI does, over tiny weights in ``models_dir``."""
    build_tiny_weights(models_dir)
    install_stub_modules(models_dir)
    return {node_id: cls() for node_id, cls in load_extension().NODE_CLASS_MAPPINGS.items()}


class StandInComfyVae:
    """comfy.sd.VAE's call conventions over a diffusers AutoencoderKL.

    encode: pixels [B, H, W, 3] 0..1 -> UNSCALED latents [B, 4, H/8, W/8] (the posterior mode = mean, as
    comfy's DiagonalGaussianRegularizer(sample=False)); decode: unscaled latents -> [B, H, W, 3] clamped 0..1.
    """

    def __init__(self, vae_dir: Path) -> None:
        from diffusers import AutoencoderKL

        self.model = AutoencoderKL.from_pretrained(str(vae_dir)).eval()
        self.encode_calls = 0
        self.decode_calls = 0

    def encode(self, pixel_samples: Any) -> Any:
        import torch

        self.encode_calls += 1
        with torch.no_grad():
            pixels = pixel_samples.movedim(-1, 1) * 2.0 - 1.0
            return self.model.encode(pixels).latent_dist.mean.float()

    def decode(self, samples_in: Any) -> Any:
        import torch

        self.decode_calls += 1
        with torch.no_grad():
            out = self.model.decode(samples_in.float()).sample
        return torch.clamp((out + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1)


def read_wav_as_comfy_audio(path: Path) -> dict[str, Any]:
    """A 16-bit PCM wav as ComfyUI's AUDIO dict ({"waveform": [1, C, T] float, "sample_rate": int})."""
    import wave

    import numpy as np
    import torch

    with wave.open(str(path), "rb") as wav:
        channels, rate, frames = wav.getnchannels(), wav.getframerate(), wav.getnframes()
        data = np.frombuffer(wav.readframes(frames), dtype="<i2").astype(np.float32) / 32768.0
    waveform = torch.from_numpy(data.reshape(-1, channels).T.copy()).unsqueeze(0)
    return {"waveform": waveform, "sample_rate": rate}
