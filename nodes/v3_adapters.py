"""ComfyUI's Wan types -> the tensors the V3 flash library takes (and back, for the project's own loaders).

- CONDITIONING from core *Load CLIP* (type wan) + *CLIP Text Encode*: ``[[cond (1, 512, 4096), {...}]]`` with
  the rows after the prompt's tokens exactly zero (ComfyUI pads the umT5 tokens to 512 and zeroes masked rows).
  The official prompt embedding is the same tensor trimmed to the real tokens: the trailing all-zero rows are
  cut (the transformer pads them back with zeros, so the result is the same either way).
- CLIP_VISION_OUTPUT from core *CLIP Vision Encode* (clip_vision_h): ``penultimate_hidden_states`` (1, 257, 1280)
  is the output of every block but the last, without the post-norm: the official ``use_31_block`` features.
  ComfyUI resizes with antialiasing and rounds to 8 bits before normalising; the official code resizes the
  [-1, 1] reference bicubically without either, so the features differ slightly (README).
- VAE from core *Load VAE* (wan_2.1_vae): ``encode(IMAGE (F, H, W, 3) 0..1)`` returns the raw posterior mean,
  ``decode(raw latents)`` pixels (1, F, H, W, 3) in 0..1. The official latent normalisation is applied here with
  the library's constants (``echomimic.v3.vae``), so the numbers are the official ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .common import EchoMimicNodeError

if TYPE_CHECKING:
    import torch


def prompt_embeds_from_conditioning(conditioning: Any) -> torch.Tensor:
    """CONDITIONING -> (1, n, 4096) float32: the first entry's tensor without its trailing zero rows."""
    import torch

    try:
        cond = torch.as_tensor(conditioning[0][0]).float()
    except (TypeError, IndexError, KeyError):
        raise EchoMimicNodeError(
            "Connect a CONDITIONING from CLIP Text Encode (with Load CLIP, type wan) or from EchoMimic V3 Text Encode."
        ) from None
    if cond.ndim != 3 or cond.shape[0] != 1:
        raise EchoMimicNodeError(
            f"The positive conditioning has shape {tuple(cond.shape)}; V3 needs one umT5 "
            "prompt (Load CLIP with type wan and umt5_xxl)."
        )
    if not bool(torch.isfinite(cond).all()):
        raise EchoMimicNodeError(
            "The positive conditioning holds NaN or infinite values; re-encode the prompt "
            "(an fp16 umT5 can overflow: use the fp8_scaled or bf16 file)."
        )
    rows = cond[0].abs().amax(dim=-1) > 0
    if not bool(rows.any()):
        raise EchoMimicNodeError("The positive conditioning is all zeros; connect CLIP Text Encode with a prompt.")
    count = int(rows.nonzero().max()) + 1
    return cond[:, :count]


def clip_tokens_from_output(clip_vision_output: Any) -> torch.Tensor:
    """CLIP_VISION_OUTPUT -> (1, 257, width) penultimate hidden states (float32)."""
    import torch

    tokens = getattr(clip_vision_output, "penultimate_hidden_states", None)
    if tokens is None and isinstance(clip_vision_output, dict):
        tokens = clip_vision_output.get("penultimate_hidden_states")
    if tokens is None:
        raise EchoMimicNodeError(
            "Connect a CLIP_VISION_OUTPUT from CLIP Vision Encode (Load CLIP Vision with "
            "clip_vision_h) or from EchoMimic V3 CLIP Vision Encode."
        )
    tokens = torch.as_tensor(tokens).float()
    if tokens.ndim != 3 or tokens.shape[1] != 257:
        raise EchoMimicNodeError(
            f"The CLIP vision output has shape {tuple(tokens.shape)}; V3 needs clip_vision_h (ViT-H/14: 257 tokens)."
        )
    return tokens[:1]


class ClipVisionTokens:
    """What the project's own CLIP node sends through a CLIP_VISION_OUTPUT socket (the field core reads)."""

    def __init__(self, penultimate_hidden_states: Any) -> None:
        self.penultimate_hidden_states = penultimate_hidden_states

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class ComfyWanVaeAdapter:
    """``echomimic.v3.pipeline.FlashVae`` over ComfyUI's Wan 2.1 VAE (``comfy.sd.VAE``)."""

    def __init__(self, comfy_vae: Any) -> None:
        if not hasattr(comfy_vae, "encode") or not hasattr(comfy_vae, "decode"):
            raise EchoMimicNodeError("Connect a VAE: Load VAE with wan_2.1_vae.safetensors, or Load EchoMimic V3 VAE.")
        channels = getattr(comfy_vae, "latent_channels", 16)
        if channels != 16:
            raise EchoMimicNodeError(
                f"The VAE makes {channels}-channel latents; V3 flash needs the Wan 2.1 VAE "
                "(wan_2.1_vae.safetensors, 16 channels), not Wan 2.2's."
            )
        self.comfy_vae = comfy_vae
        import torch

        from ..echomimic.v3.vae import LATENT_MEAN, LATENT_STD

        self.mean = torch.tensor(LATENT_MEAN).view(1, -1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(LATENT_STD).view(1, -1, 1, 1, 1)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> normalised latents (official ``(mu - mean) * (1 / std)``)."""
        pixels = ((video[0].float().cpu() + 1.0) / 2.0).permute(1, 2, 3, 0)  # (F, H, W, 3) 0..1
        mu = self.comfy_vae.encode(pixels).float().cpu()
        return (mu - self.mean) * self.inv_std

    def decode_chunks(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Normalised latents of one chunk -> one piece (1, 3, F, H, W) in [-1, 1]."""
        raw = latents.float().cpu() / self.inv_std + self.mean
        pixels = self.comfy_vae.decode(raw).float().cpu()
        if pixels.ndim == 4:  # (F, H, W, 3)
            pixels = pixels[None]
        yield pixels.permute(0, 4, 1, 2, 3) * 2.0 - 1.0


class OwnWanVae:
    """The project's Wan VAE (official file) behind the VAE socket; only the V3 sampler takes it."""

    def __init__(self, vae: Any) -> None:
        self.vae = vae  # echomimic.v3.vae.WanVAE
        self.latent_channels = 16

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """ComfyUI's convention: IMAGE (F, H, W, 3) 0..1 -> raw posterior mean (1, 16, F_lat, h, w)."""
        mu, _ = self.vae.encode_raw(pixels.float().permute(3, 0, 1, 2)[None] * 2.0 - 1.0)
        return mu.float().cpu()

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """ComfyUI's convention: raw latents -> (1, F, H, W, 3) 0..1."""
        import torch

        z = (samples.float() - self.vae.mean.float().cpu()) * self.vae.inv_std.float().cpu()
        pieces = [piece.float().cpu() for piece in self.vae.decode_chunks(z)]
        return ((torch.cat(pieces, dim=2) + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 4, 1)


def flash_vae(vae: Any) -> Any:
    """The FlashVae for a VAE socket value: the project's own VAE directly (exact official numbers), else an
    adapter over ComfyUI's."""
    return vae.vae if isinstance(vae, OwnWanVae) else ComfyWanVaeAdapter(vae)
