"""Loading the official EchoMimic V1 release into the model classes.

The weights folder is the Hugging Face ``BadToBest/EchoMimic`` repository as downloaded. Each role may be
a ``.pth`` (official) or a ``.safetensors`` file of the same name; ``.safetensors`` wins when both exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError
from ..weights import SAFETENSORS_SUFFIX, check_state_dict, read_state_dict
from .config import EchoMimicConfig, load_config
from .face_locator import FaceLocator
from .motion_module import sinusoidal_positions
from .unet import DenoisingUNet, ReferenceUNet

HF_REPO = "BadToBest/EchoMimic"
HF_URL = f"https://huggingface.co/{HF_REPO}"
V1_VARIANTS = ("audio", "audio_acc", "pose", "pose_acc")
ROLES = ("reference_unet", "denoising_unet", "motion_module", "face_locator")
MOTION_PREFIX = "motion_modules."
_POSITION_SUFFIX = ".pos_encoder.pe"

# Release file stem per (variant, role), as in the official configs/prompts/animation*.yaml.
_RELEASE_STEMS: dict[str, dict[str, str]] = {
    "audio": {"reference_unet": "reference_unet", "denoising_unet": "denoising_unet",
              "motion_module": "motion_module", "face_locator": "face_locator"},
    "audio_acc": {"reference_unet": "reference_unet", "denoising_unet": "denoising_unet_acc",
                  "motion_module": "motion_module_acc", "face_locator": "face_locator"},
    "pose": {"reference_unet": "reference_unet_pose", "denoising_unet": "denoising_unet_pose",
             "motion_module": "motion_module_pose", "face_locator": "face_locator_pose"},
    "pose_acc": {"reference_unet": "reference_unet_pose", "denoising_unet": "denoising_unet_pose_acc",
                 "motion_module": "motion_module_pose_acc", "face_locator": "face_locator_pose"},
}


def is_motion_key(key: str) -> bool:
    """True for keys stored in ``motion_module.pth`` rather than ``denoising_unet.pth``."""
    return f".{MOTION_PREFIX}" in f".{key}"


def check_variant(variant: str) -> str:
    if variant not in V1_VARIANTS:
        raise WeightsError(f"Unknown EchoMimic V1 variant {variant!r}; choose one of {', '.join(V1_VARIANTS)}.")
    return variant


def release_file_stems(variant: str) -> dict[str, str]:
    """Role -> file name without suffix, for ``variant``."""
    return dict(_RELEASE_STEMS[check_variant(variant)])


def variant_weight_files(weights_dir: str | Path, variant: str) -> dict[str, Path]:
    """Role -> existing weight file for ``variant`` (``.safetensors`` preferred over ``.pth``).

    Raises a :class:`WeightsError` that lists every missing file and where to download it.
    """
    weights_dir = Path(weights_dir)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, stem in release_file_stems(variant).items():
        for suffix in (SAFETENSORS_SUFFIX, ".pth"):
            candidate = weights_dir / f"{stem}{suffix}"
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{stem}.pth")
    if missing:
        raise WeightsError(
            f"EchoMimic V1 '{variant}' weights are missing from {weights_dir}: {', '.join(missing)}. "
            f"Download them from {HF_URL} (the files sit at the top of that repository) into {weights_dir}."
        )
    return found


@dataclass
class EchoMimicModels:
    """The three networks of one V1 variant."""

    reference_unet: ReferenceUNet
    denoising_unet: DenoisingUNet
    face_locator: FaceLocator
    variant: str
    config: EchoMimicConfig

    @property
    def mode(self) -> str:
        """'audio' (face mask) or 'pose' (landmark images)."""
        return "pose" if self.variant.startswith("pose") else "audio"

    @property
    def accelerated(self) -> bool:
        return self.variant.endswith("_acc")

    @property
    def device(self) -> torch.device:
        return self.denoising_unet.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.denoising_unet.conv_in.weight.dtype

    def modules(self) -> list[nn.Module]:
        return [self.reference_unet, self.denoising_unet, self.face_locator]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> EchoMimicModels:
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self


def build_models(config: EchoMimicConfig, device: torch.device | str = "cpu") -> tuple[ReferenceUNet, DenoisingUNet, FaceLocator]:
    """Build the three networks from ``config`` (``device="meta"`` builds them without memory)."""
    with torch.device(device):
        return ReferenceUNet(config.unet), DenoisingUNet(config), FaceLocator(config.face_locator)


def _materialize(module: nn.Module, state_dict: Mapping[str, torch.Tensor], device: torch.device | str,
                 dtype: torch.dtype) -> None:
    tensors = {
        key: value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
        for key, value in state_dict.items()
    }
    module.load_state_dict(tensors, strict=True, assign=True)
    module.eval().requires_grad_(False)


def _fill_position_tables(denoising_unet: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Add the sinusoid buffers a motion-module file may leave out (they are not learned)."""
    for key, buffer in denoising_unet.state_dict(keep_vars=True).items():
        if key.endswith(_POSITION_SUFFIX) and key not in state:
            state[key] = sinusoidal_positions(buffer.shape[1], buffer.shape[2])


def load_echomimic_v1(
    weights_dir: str | Path,
    variant: str = "audio",
    *,
    config_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> EchoMimicModels:
    """Load one V1 variant from the official release files.

    ``config_dir`` holds ``unet_config.json``/``inference.json``/``face_locator.json`` overriding the
    shipped full-size configs; by default such files found in ``weights_dir`` are used.
    """
    files = variant_weight_files(weights_dir, variant)
    conditioning_channels = 3 if variant.startswith("pose") else 1
    config = load_config(config_dir if config_dir is not None else weights_dir,
                         conditioning_channels=conditioning_channels)
    reference_unet, denoising_unet, face_locator = build_models(config, "meta")
    hint = (
        f"Use the '{variant}' release files of {HF_URL} (a V2, pose or accelerated file in the wrong slot "
        "gives this error), and a config that matches them."
    )

    reference_state = read_state_dict(files["reference_unet"])
    check_state_dict(reference_unet, reference_state, str(files["reference_unet"]), hint=hint)
    _materialize(reference_unet, reference_state, device, dtype)
    del reference_state

    all_keys = list(denoising_unet.state_dict())
    motion_keys = [key for key in all_keys if is_motion_key(key)]
    denoising_keys = [key for key in all_keys if not is_motion_key(key)]
    state = read_state_dict(files["denoising_unet"])
    check_state_dict(denoising_unet, state, str(files["denoising_unet"]), expected_keys=denoising_keys, hint=hint)
    motion_state = read_state_dict(files["motion_module"])
    _fill_position_tables(denoising_unet, motion_state)
    check_state_dict(denoising_unet, motion_state, str(files["motion_module"]), expected_keys=motion_keys, hint=hint)
    state.update(motion_state)
    del motion_state
    _materialize(denoising_unet, state, device, dtype)
    del state

    locator_state = read_state_dict(files["face_locator"])
    check_state_dict(face_locator, locator_state, str(files["face_locator"]), hint=hint)
    _materialize(face_locator, locator_state, device, dtype)

    return EchoMimicModels(reference_unet, denoising_unet, face_locator, variant, config)
