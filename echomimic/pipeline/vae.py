"""The VAE seen through a two-method interface, so diffusers' and ComfyUI's VAEs both fit.

The interface speaks the form both sides already use: pixels in 0..1 (what the sampler prepares and returns,
and what ComfyUI's VAE takes and gives) and latents scaled by LATENT_SCALE (what the UNets use). Each
adapter converts to its VAE's own form once, so no value is converted and converted back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from ..errors import WeightsError
from ..release import LATENT_SCALE, VAE_REPO

DECODE_BATCH_BY_DEVICE = {"cpu": 4}  # device type -> measured best frames per decode call
DEFAULT_DECODE_BATCH = 4  # device types not measured yet


def auto_decode_batch(device: torch.device | str) -> int:
    """Frames per VAE decode call when the settings leave it at 0 (auto), chosen per device by measurement.

    CPU: 4. On the 2-core AVX2 Xeon of issue 13 (fp32, 256x256, sd-vae-ft-mse architecture), 4 frames
    took 22.8-24.4 s as one call and 28.7-28.8 s as four (interleaved, same process), and the full
    comparison gave 62 s (4 per call) against 72-81 s (1 per call) for 12 frames. GPU: 4 (not measured
    here: no GPU was lent). Memory stays bounded either way (one chunk of frames at a time).
    """
    return DECODE_BATCH_BY_DEVICE.get(torch.device(device).type, DEFAULT_DECODE_BATCH)


class VaeAdapter(Protocol):
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] pixels in 0..1 -> [B, 4, H/8, W/8] latent means, already multiplied by LATENT_SCALE."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4, h, w] latents scaled by LATENT_SCALE -> [B, 3, 8h, 8w] pixels clamped to 0..1."""
        ...


class DiffusersVae:
    """Adapter over a diffusers ``AutoencoderKL`` (which works in -1..1 pixels and unscaled latents)."""

    def __init__(self, vae) -> None:
        self.vae = vae

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] 0..1 -> [B, 4, H/8, W/8] ``latent_dist.mean * LATENT_SCALE`` in the VAE's dtype."""
        # -1..1 in fp32 before the cast, as the official pipeline's image processor does
        images = (images.float() * 2.0 - 1.0).to(device=self.device, dtype=self.dtype)
        return self.vae.encode(images).latent_dist.mean * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4, h, w] scaled latents -> [B, 3, 8h, 8w] float32 pixels clamped to 0..1."""
        latents = latents.to(device=self.device, dtype=self.dtype)
        return (self.vae.decode(latents / LATENT_SCALE).sample.float() / 2 + 0.5).clamp(0, 1)


def load_diffusers_vae(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> DiffusersVae:
    """Load a diffusers VAE folder (``config.json`` + weights), e.g. ``sd-vae-ft-mse``."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise WeightsError(
            f"No VAE at {path}: expected a diffusers folder with config.json. Download "
            f"https://huggingface.co/{VAE_REPO} into that folder."
        )
    from diffusers import AutoencoderKL
    from diffusers.utils import is_accelerate_available

    try:
        # Without accelerate diffusers falls back to low_cpu_mem_usage=False anyway, but prints six lines of
        # advice on every run; asking for that fallback directly loads the same weights without them.
        vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, low_cpu_mem_usage=is_accelerate_available())
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"The VAE at {path} could not be loaded ({exc}). Download it again.") from None
    return DiffusersVae(vae.to(device).eval().requires_grad_(False))
