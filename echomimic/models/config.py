"""Model configuration as plain data.

The architecture is described by three JSON files, in the layout of the official release:

- ``unet_config.json``: a diffusers ``UNet2DConditionModel`` config (the fields of
  ``sd-image-variations-diffusers/unet/config.json``); both UNets are built from it.
- ``inference.json``: ``{"unet_additional_kwargs": ..., "noise_scheduler_kwargs": ...}``, the official
  ``configs/inference/inference_v2.yaml`` (audio width, motion modules, scheduler).
- ``face_locator.json``: the face-locator / landmark-encoder widths (``face_locator_pose.json`` for the V1
  landmark variants, ``pose_encoder.json`` for V2's pose encoder: the same network, 3 input channels).

The full-size files ship in ``echomimic/configs``; a folder holding files of the same names overrides them.
V2 has exactly the V1 UNet layout and inference config (see ``manifests/echomimic_v2.json``), so both
releases share ``unet_config.json`` and ``inference.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WeightsError

SHIPPED_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
UNET_CONFIG_NAME = "unet_config.json"
INFERENCE_CONFIG_NAME = "inference.json"
FACE_LOCATOR_CONFIG_NAME = "face_locator.json"

_DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock3D", "DownBlock3D")
_UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock3D", "UpBlock3D")


@dataclass(frozen=True)
class UNetConfig:
    """The SD1.5-style 2D UNet layout shared by the reference and the denoising UNet.

    ``attention_head_dim`` keeps the legacy diffusers meaning: it is the number of attention heads.
    """

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    down_with_attention: tuple[bool, ...] = (True, True, True, False)
    up_with_attention: tuple[bool, ...] = (False, True, True, True)
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        act_fn = data.get("act_fn", "silu")
        if act_fn not in ("silu", "swish"):
            raise WeightsError(f"unet config: act_fn {act_fn!r} is not supported (EchoMimic uses 'silu').")
        if data.get("use_linear_projection", False):
            raise WeightsError("unet config: use_linear_projection=true is not an EchoMimic V1 layout.")
        down_types = tuple(data.get("down_block_types", cls.down_with_attention))
        up_types = tuple(data.get("up_block_types", cls.up_with_attention))
        for name in down_types:
            if name not in _DOWN_BLOCKS:
                raise WeightsError(f"unet config: unknown down block type {name!r}.")
        for name in up_types:
            if name not in _UP_BLOCKS:
                raise WeightsError(f"unet config: unknown up block type {name!r}.")
        heads = data.get("attention_head_dim", 8)
        if isinstance(heads, (list, tuple)):
            if len(set(heads)) != 1:
                raise WeightsError("unet config: per-block attention_head_dim values are not supported.")
            heads = heads[0]
        channels = tuple(int(c) for c in data.get("block_out_channels", cls.block_out_channels))
        if not (len(channels) == len(down_types) == len(up_types)):
            raise WeightsError("unet config: block_out_channels, down_block_types and up_block_types differ in length.")
        return cls(
            in_channels=int(data.get("in_channels", 4)),
            out_channels=int(data.get("out_channels", 4)),
            block_out_channels=channels,
            layers_per_block=int(data.get("layers_per_block", 2)),
            attention_head_dim=int(heads),
            norm_num_groups=int(data.get("norm_num_groups", 32)),
            norm_eps=float(data.get("norm_eps", 1e-5)),
            down_with_attention=tuple(name.startswith("CrossAttn") for name in down_types),
            up_with_attention=tuple(name.startswith("CrossAttn") for name in up_types),
            flip_sin_to_cos=bool(data.get("flip_sin_to_cos", True)),
            freq_shift=int(data.get("freq_shift", 0)),
            downsample_padding=int(data.get("downsample_padding", 1)),
            mid_block_scale_factor=float(data.get("mid_block_scale_factor", 1.0)),
        )


@dataclass(frozen=True)
class MotionModuleConfig:
    """AnimateDiff-style temporal modules of the denoising UNet (``unet_additional_kwargs``)."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    num_attention_blocks: int = 2
    max_frames: int = 32
    temporal_position_encoding: bool = True
    resolutions: tuple[int, ...] = (1, 2, 4, 8)
    mid_block: bool = True
    decoder_only: bool = False
    norm_num_groups: int = 32

    @classmethod
    def from_unet_kwargs(cls, kwargs: dict[str, Any]) -> MotionModuleConfig:
        if not kwargs.get("use_motion_module", True):
            raise WeightsError("inference config: use_motion_module=false is not an EchoMimic V1 layout.")
        if kwargs.get("motion_module_type", "Vanilla") != "Vanilla":
            raise WeightsError("inference config: only the 'Vanilla' motion module type is supported.")
        if kwargs.get("unet_use_temporal_attention") or kwargs.get("unet_use_cross_frame_attention"):
            raise WeightsError(
                "inference config: temporal/cross-frame attention inside the UNet blocks is not supported."
            )
        mm = kwargs.get("motion_module_kwargs", {})
        block_types = tuple(mm.get("attention_block_types", ("Temporal_Self", "Temporal_Self")))
        if any(kind != "Temporal_Self" for kind in block_types):
            raise WeightsError("inference config: only 'Temporal_Self' motion-module attention is supported.")
        if int(mm.get("temporal_attention_dim_div", 1)) != 1:
            raise WeightsError("inference config: temporal_attention_dim_div must be 1.")
        return cls(
            num_attention_heads=int(mm.get("num_attention_heads", 8)),
            num_transformer_block=int(mm.get("num_transformer_block", 1)),
            num_attention_blocks=len(block_types),
            max_frames=int(mm.get("temporal_position_encoding_max_len", 32)),
            temporal_position_encoding=bool(mm.get("temporal_position_encoding", True)),
            resolutions=tuple(int(r) for r in kwargs.get("motion_module_resolutions", (1, 2, 4, 8))),
            mid_block=bool(kwargs.get("motion_module_mid_block", True)),
            decoder_only=bool(kwargs.get("motion_module_decoder_only", False)),
        )


@dataclass(frozen=True)
class FaceLocatorConfig:
    conditioning_embedding_channels: int = 320
    conditioning_channels: int = 1
    block_out_channels: tuple[int, ...] = (16, 32, 96, 256)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceLocatorConfig:
        return cls(
            conditioning_embedding_channels=int(data.get("conditioning_embedding_channels", 320)),
            conditioning_channels=int(data.get("conditioning_channels", 1)),
            block_out_channels=tuple(int(c) for c in data.get("block_out_channels", (16, 32, 96, 256))),
        )


@dataclass(frozen=True)
class EchoMimicConfig:
    """Everything needed to build the three V1 networks."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    motion: MotionModuleConfig = field(default_factory=MotionModuleConfig)
    face_locator: FaceLocatorConfig = field(default_factory=FaceLocatorConfig)
    audio_dim: int = 384
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"Config file {path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"Config file {path} is not readable JSON ({exc}). Fix or remove it.") from None


def find_config_file(name: str, config_dir: str | Path | None) -> Path:
    """The config file ``name`` from ``config_dir`` when present there, else the shipped one."""
    if config_dir is not None:
        candidate = Path(config_dir) / name
        if candidate.is_file():
            return candidate
    return SHIPPED_CONFIG_DIR / name


def load_config(
    config_dir: str | Path | None = None,
    *,
    conditioning_channels: int | None = None,
    conditioning_config: str = FACE_LOCATOR_CONFIG_NAME,
) -> EchoMimicConfig:
    """Read the three config files (overrides from ``config_dir``, the rest shipped).

    The conditioning net's config is ``conditioning_config`` (``face_locator.json``,
    ``face_locator_pose.json`` or V2's ``pose_encoder.json``), else ``face_locator.json``, from
    ``config_dir``; otherwise the shipped file. ``conditioning_channels`` sets its input (1: face mask,
    3: landmark / hand-pose images) when the shipped defaults are used.
    """
    unet_data = _read_json(find_config_file(UNET_CONFIG_NAME, config_dir))
    inference_data = _read_json(find_config_file(INFERENCE_CONFIG_NAME, config_dir))
    face_locator_path = find_config_file(conditioning_config, config_dir)
    if face_locator_path.parent == SHIPPED_CONFIG_DIR:
        face_locator_path = find_config_file(FACE_LOCATOR_CONFIG_NAME, config_dir)
        if face_locator_path.parent == SHIPPED_CONFIG_DIR and (SHIPPED_CONFIG_DIR / conditioning_config).is_file():
            face_locator_path = SHIPPED_CONFIG_DIR / conditioning_config
    face_locator = FaceLocatorConfig.from_dict(_read_json(face_locator_path))
    if conditioning_channels is not None and face_locator_path.parent == SHIPPED_CONFIG_DIR:
        face_locator = FaceLocatorConfig(
            face_locator.conditioning_embedding_channels, conditioning_channels, face_locator.block_out_channels
        )
    unet_kwargs = inference_data.get("unet_additional_kwargs", {})
    if not unet_kwargs.get("use_inflated_groupnorm", True):
        raise WeightsError("inference config: use_inflated_groupnorm=false is not an EchoMimic V1 layout.")
    return EchoMimicConfig(
        unet=UNetConfig.from_dict(unet_data),
        motion=MotionModuleConfig.from_unet_kwargs(unet_kwargs),
        face_locator=face_locator,
        audio_dim=int(unet_kwargs.get("cross_attention_dim", 384)),
        scheduler_kwargs=dict(inference_data.get("noise_scheduler_kwargs", {})),
    )
