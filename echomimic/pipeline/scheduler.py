"""The DDIM scheduler of the official inference config, and the accelerated models' velocity rounding."""

from __future__ import annotations

import json
from typing import Any

import torch


def official_scheduler_kwargs() -> dict[str, Any]:
    """The official ``noise_scheduler_kwargs``, read from the shipped ``configs/inference.json`` (their one copy)."""
    from ..models.config import INFERENCE_CONFIG_NAME, SHIPPED_CONFIG_DIR

    data = json.loads((SHIPPED_CONFIG_DIR / INFERENCE_CONFIG_NAME).read_text())
    return dict(data["noise_scheduler_kwargs"])


def make_scheduler(kwargs: dict[str, Any] | None = None):
    """diffusers' DDIMScheduler: v-prediction, zero-terminal-SNR, trailing spacing, eta 0 at step time.

    ``kwargs``: a config's ``noise_scheduler_kwargs``; None or empty = the official ones."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**(kwargs or official_scheduler_kwargs()))


def _alpha(alphas_cumprod: torch.Tensor, timestep: int) -> torch.Tensor:
    return alphas_cumprod[timestep] if timestep >= 0 else torch.ones((), dtype=alphas_cumprod.dtype)


def reround_velocity(
    velocity: torch.Tensor, sample: torch.Tensor, alphas_cumprod: torch.Tensor, timestep: int
) -> torch.Tensor:
    """The accelerated pipelines' round trip v -> x0 -> "pseudo velocity" toward t = -1.

    Algebraically the identity; kept because the official accelerated weights were sampled with its
    fp32 rounding, and parity is bit-for-bit. velocity, sample: [B, C, F, h, w].
    """
    dtype = sample.dtype
    alpha_t = _alpha(alphas_cumprod, timestep)
    a_t = (alpha_t**0.5).to(dtype)
    b_t = ((1 - alpha_t) ** 0.5).to(dtype)
    alpha_s = _alpha(alphas_cumprod, -1)
    a_s = (alpha_s**0.5).to(dtype)
    b_s = ((1 - alpha_s) ** 0.5).to(dtype)
    original = a_t * sample - b_t * velocity
    return (original - (a_s * a_t + b_s * b_t) * sample) / (b_s * a_t - a_s * b_t)
