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
