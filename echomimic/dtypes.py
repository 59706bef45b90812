"""Precision names (``fp32``, ``fp16``, ``bf16``; release.PRECISIONS) to torch dtypes: the one map."""

from __future__ import annotations

from typing import Any

from .errors import InputError
from .release import PRECISIONS


def torch_dtype(precision: str) -> Any:
    """The torch dtype of ``precision`` (``"fp32"``, ``"fp16"`` or ``"bf16"``); InputError otherwise."""
    import torch

    try:
        return getattr(torch, PRECISIONS[precision])
    except KeyError:
        raise InputError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.") from None


def v3_dtype(precision: str, device: Any) -> Any:
    """V3 flash's precision for ``precision`` ("auto" or a name) on ``device``. auto: bf16 on a CUDA GPU that
    has it (the release's precision), else fp16 on a GPU; fp32 on the CPU."""
    import torch

    if precision != "auto":
        return torch_dtype(precision)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32 if device.type == "cpu" else torch.float16


def umt5_dtype(dtype: Any) -> Any:
    """The umT5 text encoder's dtype beside a model in ``dtype``: bf16 as released, else fp32 (T5 overflows in
    fp16)."""
    import torch

    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
