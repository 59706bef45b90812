"""The ComfyUI socket values our nodes read and return, for the type checker (IMAGE and MASK are plain tensors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import torch


class ComfyAudio(TypedDict):
    """ComfyUI's AUDIO: ``waveform`` [B, C, N] float32 at ``sample_rate`` Hz."""

    waveform: torch.Tensor
    sample_rate: int
