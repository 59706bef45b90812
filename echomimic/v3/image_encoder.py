"""The CLIP ViT-H/14 visual tower of Wan's XLMRobertaCLIP file, as transformers' CLIPVisionModel.

The release file holds the WHOLE XLMRobertaCLIP state dict. Only ``visual.*`` runs (every block but the last,
no post-norm, no head), so ``textual.*``, ``log_scale`` and ``visual.head`` (the contrastive projection) are
ignored on purpose; any other unexpected key, or a missing visual key, is an error.

Key map (official -> HF names; ``vision_model.`` in front where the transformers version has it)::

    visual.cls_embedding (1, 1, w)      -> embeddings.class_embedding (w,)
    visual.pos_embedding (1, 257, w)    -> embeddings.position_embedding.weight (257, w)
    visual.patch_embedding.weight       -> embeddings.patch_embedding.weight
    visual.pre_norm / post_norm         -> pre_layrnorm / post_layernorm
    visual.transformer.{i}.norm1/norm2  -> encoder.layers.{i}.layer_norm1/layer_norm2
    visual.transformer.{i}.attn.to_qkv  -> encoder.layers.{i}.self_attn.{q,k,v}_proj  (fused rows q | k | v)
    visual.transformer.{i}.attn.proj    -> encoder.layers.{i}.self_attn.out_proj
    visual.transformer.{i}.mlp.0 / .2   -> encoder.layers.{i}.mlp.fc1 / fc2
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, WeightsError

if TYPE_CHECKING:
    import torch

# Official preprocessing (wan_image_encoder.CLIPModel.visual): bicubic resize of the [-1, 1] image, then CLIP's
# mean/std normalisation.
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-H/14 constants that the shapes do not show: head width 80 (1280 / 16 heads), exact GELU, LayerNorm 1e-5.
HEAD_DIM = 80
ACTIVATION = "gelu"
LAYER_NORM_EPS = 1e-5
IGNORED_PREFIXES = ("textual.",)
IGNORED_KEYS = ("log_scale", "visual.head")
_HINT = "Use models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth of the Wan2.1-Fun release."

_LAYER_RULES = (
    (r"norm1\.(weight|bias)", r"layer_norm1.\1"),
    (r"norm2\.(weight|bias)", r"layer_norm2.\1"),
    (r"attn\.proj\.(weight|bias)", r"self_attn.out_proj.\1"),
    (r"mlp\.0\.(weight|bias)", r"mlp.fc1.\1"),
    (r"mlp\.2\.(weight|bias)", r"mlp.fc2.\1"),
)
_DIRECT = {
    "visual.patch_embedding.weight": "embeddings.patch_embedding.weight",
    "visual.pre_norm.weight": "pre_layrnorm.weight",
    "visual.pre_norm.bias": "pre_layrnorm.bias",
    "visual.post_norm.weight": "post_layernorm.weight",
    "visual.post_norm.bias": "post_layernorm.bias",
}


def is_ignored_clip_key(key: str) -> bool:
    """Keys of the whole-CLIP file that the visual tower deliberately does not use."""
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def convert_clip_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole XLMRobertaCLIP state dict -> CLIPVisionModel state dict (ignored keys dropped, unknown keys kept
    under their own names so that the strict check names them)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if is_ignored_clip_key(key):
            continue
        if key == "visual.cls_embedding":
            out["embeddings.class_embedding"] = tensor.reshape(-1)
        elif key == "visual.pos_embedding":
            out["embeddings.position_embedding.weight"] = tensor.reshape(tensor.shape[-2], tensor.shape[-1])
        elif key in _DIRECT:
            out[_DIRECT[key]] = tensor
        elif match := re.fullmatch(r"visual\.transformer\.(\d+)\.(.+)", key):
            layer, rest = f"encoder.layers.{match.group(1)}.", match.group(2)
            fused = re.fullmatch(r"attn\.to_qkv\.(weight|bias)", rest)
            if fused:
                for name, part in zip(("q", "k", "v"), tensor.chunk(3, dim=0), strict=True):
                    out[f"{layer}self_attn.{name}_proj.{fused.group(1)}"] = part
                continue
            for pattern, replacement in _LAYER_RULES:
                if re.fullmatch(pattern, rest):
                    out[layer + re.sub(pattern, replacement, rest)] = tensor
                    break
            else:
                out[key] = tensor
        else:
            out[key] = tensor
    return out


def clip_vision_config_from_state_dict(state_dict: dict[str, torch.Tensor], num_heads: int | None = None):
    """CLIPVisionConfig from the visual shapes; heads = width / 80 (ViT-H) unless ``num_heads`` is given."""
    from transformers import CLIPVisionConfig

    try:
        width, _, patch, _ = state_dict["visual.patch_embedding.weight"].shape
        tokens = state_dict["visual.pos_embedding"].shape[-2]
        mlp = state_dict["visual.transformer.0.mlp.0.weight"].shape[0]
    except KeyError as error:
        raise WeightsError(f"not an XLMRobertaCLIP state dict (no {error.args[0]})") from None
    layers = len({k.split(".")[2] for k in state_dict if k.startswith("visual.transformer.")})
    if num_heads is None:
        if width % HEAD_DIM:
            raise WeightsError(f"CLIP width {width} is not a multiple of {HEAD_DIM}: pass num_heads")
        num_heads = width // HEAD_DIM
    image_size = int(round((tokens - 1) ** 0.5)) * int(patch)
    return CLIPVisionConfig(
        hidden_size=int(width),
        intermediate_size=int(mlp),
        num_hidden_layers=layers,
        num_attention_heads=int(num_heads),
        image_size=image_size,
        patch_size=int(patch),
        num_channels=3,
        hidden_act=ACTIVATION,
        layer_norm_eps=LAYER_NORM_EPS,
        attention_dropout=0.0,
    )


def build_clip_vision(config):
    """A CLIPVisionModel of ``config`` (build under ``torch.device('meta')`` to size it)."""
    from transformers import CLIPVisionModel

    return CLIPVisionModel(config)


class ClipVisionEncoder:
    """Reference image -> CLIP features as the official ``clip_image_encoder([x[:, None]])``."""

    def __init__(self, model) -> None:
        import torch

        self.model = model.eval().requires_grad_(False)
        param = next(model.parameters())
        self.mean = torch.tensor(CLIP_MEAN, dtype=param.dtype, device=param.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, dtype=param.dtype, device=param.device).view(1, 3, 1, 1)

    def preprocess(self, reference: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> (1, 3, 224, 224): bicubic (align_corners False), to [0, 1], CLIP Normalize."""
        import torch.nn.functional as F

        if reference.ndim != 4 or reference.shape[1] != 3:
            raise InputError(f"The CLIP reference must be (B, 3, H, W), got {tuple(reference.shape)}.")
        size = self.model.config.image_size
        x = F.interpolate(reference.to(self.mean.dtype), size=(size, size), mode="bicubic", align_corners=False)
        return (x * 0.5 + 0.5 - self.mean) / self.std

    def hidden_states(self, reference: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(pre-norm output, block 0 output, ..., last block output), each (1, 257, width)."""
        import torch

        with torch.no_grad():
            out = self.model(pixel_values=self.preprocess(reference).to(self.mean.device), output_hidden_states=True)
        return tuple(out.hidden_states)

    def encode(self, reference: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> (1, 257, width): output of every block but the last, no post-norm."""
        return self.hidden_states(reference)[-2]


def _materialise_position_ids(model) -> None:
    """Recreate the non-persistent ``position_ids`` buffers (arange) that a meta-device build leaves empty."""
    import torch

    for module in model.modules():
        buffer = getattr(module, "position_ids", None)
        if isinstance(buffer, torch.Tensor) and buffer.is_meta:
            ids = torch.arange(buffer.shape[-1]).expand(buffer.shape)
            module.register_buffer("position_ids", ids, persistent=False)


def load_clip_vision(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, num_heads: int | None = None
) -> ClipVisionEncoder:
    """The visual tower of the whole XLMRobertaCLIP ``.pth``, strict on the visual keys (see the module doc).

    ``num_heads`` None: the ViT-H head width of 80 decides it (16 heads for the release).
    """
    import torch

    from ..weights import check_state_dict, read_state_dict

    path = Path(path)
    original = read_state_dict(path)
    try:
        config = clip_vision_config_from_state_dict(original, num_heads)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}. {_HINT}") from None
    file_dtype = original["visual.patch_embedding.weight"].dtype
    with torch.device("meta"):
        model = build_clip_vision(config)
    converted = convert_clip_state_dict(original)
    if any(key.startswith("vision_model.") for key in model.state_dict()):  # transformers < 5 nests the tower
        converted = {f"vision_model.{key}": tensor for key, tensor in converted.items()}
    check_state_dict(model, converted, str(path), hint=_HINT)
    model.load_state_dict(converted, strict=True, assign=True)
    _materialise_position_ids(model)
    return ClipVisionEncoder(model.to(device=device, dtype=dtype or file_dtype))
