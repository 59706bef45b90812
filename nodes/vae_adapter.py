"""The library's VaeAdapter protocol over ComfyUI's VAE (the VAE socket type, `comfy.sd.VAE`).

ComfyUI's conventions (comfy/sd.py, comfy/ldm/models/autoencoder.py):
- `VAE.encode(pixels [B, H, W, 3] in 0..1)` maps pixels to -1..1 itself and returns UNSCALED latents
  [B, 4, H/8, W/8]; the SD VAE's DiagonalGaussianRegularizer has sample=False, i.e. it returns the
  posterior MODE, which for a Gaussian is its MEAN. The official EchoMimic uses `latent_dist.mean * 0.18215`.
- `VAE.decode(latents [B, 4, h, w] unscaled)` returns pixels [B, H, W, 3] clamped to 0..1.
The library's protocol also speaks 0..1 pixels, so only the layout (channels last) and the latent scale
(ComfyUI applies it in the model's latent format, not in the VAE) are converted here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..echomimic.release import LATENT_SCALE

if TYPE_CHECKING:
    import torch


class ComfyVaeAdapter:
    """Wraps a ComfyUI VAE so echomimic.pipeline can encode the reference and decode the frames."""

    def __init__(self, comfy_vae: Any) -> None:
        if comfy_vae is None or not hasattr(comfy_vae, "encode") or not hasattr(comfy_vae, "decode"):
            raise TypeError("Connect a VAE (Load VAE with vae-ft-mse-840000-ema-pruned.safetensors).")
        self.comfy_vae = comfy_vae

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in 0..1 -> [B, 4, H/8, W/8] latent means * LATENT_SCALE (float32, on the input's device)."""
        latents = self.comfy_vae.encode(images.float().movedim(1, -1).cpu())
        return (latents.float() * LATENT_SCALE).to(images.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4, h, w] scaled latents -> [B, 3, H, W] in 0..1 (float32, on the input's device)."""
        pixels = self.comfy_vae.decode(latents.float() / LATENT_SCALE)
        if pixels.ndim == 5:  # video VAEs return [B, T, H, W, C]; an image VAE never should
            pixels = pixels.reshape(-1, *pixels.shape[-3:])
        return pixels.float().movedim(-1, 1).to(latents.device)
