"""Loading the official EchoMimic releases (V1 face, V2 semi-body) into the model classes.

The weights folder is the Hugging Face repository of the variant (``release.VARIANTS``) as downloaded.
Each role may be a ``.pth`` (official) or a ``.safetensors`` file of the same name; ``.safetensors`` wins
when both exist. V1 and V2 share every network class: V2's pose encoder is the face locator with 3 input
channels, and its UNets have exactly the V1 layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import release
from ..errors import WeightsError
from ..weights import SAFETENSORS_SUFFIX, check_state_dict, read_state_dict
from ..weights_download import refuse_other_release
from .config import EchoMimicConfig, load_config
from .face_locator import FaceLocator
from .motion_module import sinusoidal_positions
from .unet import DenoisingUNet, ReferenceUNet

ROLES = release.ROLES
MOTION_PREFIX = "motion_modules."
_POSITION_SUFFIX = ".pos_encoder.pe"


def is_motion_key(key: str) -> bool:
    """True for keys stored in ``motion_module.pth`` rather than ``denoising_unet.pth``."""
    return f".{MOTION_PREFIX}" in f".{key}"


def release_file_stems(variant: str) -> dict[str, str]:
    """Role -> file name without suffix, for ``variant`` (from ``release.VARIANTS``)."""
    return dict(release.variant(variant).stems)


def conditioning_channels(variant: str) -> int:
    """Input channels of the conditioning net: 1 (face mask, V1 audio) or 3 (drawn landmarks / hands)."""
    return 1 if release.variant(variant).conditioning == "face_mask" else 3


def variant_weight_files(weights_dir: str | Path, variant: str) -> dict[str, Path]:
    """Role -> existing weight file for ``variant`` (``.safetensors`` preferred over ``.pth``).

    Raises a :class:`WeightsError` that lists every missing file and where to download it.
    """
    spec = release.variant(variant)
    weights_dir = Path(weights_dir)
    refuse_other_release(weights_dir, variant)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, stem in spec.stems.items():
        for suffix in (SAFETENSORS_SUFFIX, ".pth"):
            candidate = weights_dir / f"{stem}{suffix}"
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{stem}.pth")
    if missing:
        raise WeightsError(
            f"EchoMimic {spec.version.upper()} '{variant}' weights are missing from {weights_dir}: "
            f"{', '.join(missing)}. Download them from {spec.repo_url} (the files sit at the top of that "
            f"repository) into {weights_dir}."
        )
    return found


@dataclass
class EchoMimicModels:
    """The three networks of one variant (V1 or V2); ``face_locator`` is V2's pose encoder."""

    reference_unet: ReferenceUNet
    denoising_unet: DenoisingUNet
    face_locator: FaceLocator
    variant: str
    config: EchoMimicConfig

    @property
    def spec(self) -> release.Variant:
        return release.variant(self.variant)

    @property
    def conditioning(self) -> release.ConditioningKind:
        """'face_mask' (V1 audio), 'landmarks' (V1, drawn face landmarks) or 'hand_poses' (V2, drawn hands)."""
        return self.spec.conditioning

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def accelerated(self) -> bool:
        return self.spec.accelerated

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


def build_models(
    config: EchoMimicConfig, device: torch.device | str = "cpu"
) -> tuple[ReferenceUNet, DenoisingUNet, FaceLocator]:
    """Build the three networks from ``config`` (``device="meta"`` builds them without memory)."""
    with torch.device(device):
        return ReferenceUNet(config.unet), DenoisingUNet(config), FaceLocator(config.face_locator)


def _materialize(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], device: torch.device | str, dtype: torch.dtype
) -> None:
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


def _conditioning_hint(state: Mapping[str, torch.Tensor], spec: release.Variant, expected_channels: int) -> str:
    """Name the file's kind when its input channels say it belongs to another variant or release."""
    weight = state.get("conv_in.weight")
    if weight is None or weight.ndim != 4 or int(weight.shape[1]) == expected_channels:
        return ""
    kinds = {
        1: "a V1 audio face_locator.pth (1 input channel: the face mask)",
        3: "a 3-channel pose file (V1 face_locator_pose.pth or V2 pose_encoder.pth)",
    }
    found = kinds.get(int(weight.shape[1]), f"a {int(weight.shape[1])}-channel conditioning net")
    wanted = f"{spec.stems['face_locator']}.pth of {spec.repo_id}"
    return f"This file is {found}, but the {spec.version.upper()} '{spec.name}' variant needs {wanted}. "


def load_echomimic(
    weights_dir: str | Path,
    variant: str = "audio",
    *,
    config_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> EchoMimicModels:
    """Load one variant (any of ``release.VARIANTS``: V1 and V2) from the official release files.

    ``config_dir`` holds ``unet_config.json``/``inference.json`` and the conditioning net's config
    (``<its file stem>.json``, e.g. ``pose_encoder.json``, or ``face_locator.json``) overriding the shipped
    full-size configs; by default such files found in ``weights_dir`` are used.
    """
    spec = release.variant(variant)
    files = variant_weight_files(weights_dir, variant)
    channels = conditioning_channels(variant)
    config = load_config(
        config_dir if config_dir is not None else weights_dir,
        conditioning_channels=channels,
        conditioning_config=f"{spec.stems['face_locator']}.json",
    )
    reference_unet, denoising_unet, face_locator = build_models(config, "meta")
    other = "V1" if spec.version == "v2" else "V2"
    hint = (
        f"Use the '{variant}' release files of {spec.repo_url} (an {other}, pose or accelerated file in the "
        "wrong slot gives this error), and a config that matches them."
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
    check_state_dict(
        face_locator,
        locator_state,
        str(files["face_locator"]),
        hint=_conditioning_hint(locator_state, spec, channels) + hint,
    )
    _materialize(face_locator, locator_state, device, dtype)

    return EchoMimicModels(reference_unet, denoising_unet, face_locator, variant, config)
