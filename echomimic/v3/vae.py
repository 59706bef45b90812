"""The Wan2.1 video VAE: diffusers' AutoencoderKLWan loaded from the original ``Wan2.1_VAE.pth``.

The official code normalises latents with 16 fixed means/stds as ``(mu - mean) * (1 / std)`` and undoes it as
``z / (1 / std) + mean`` (division by the reciprocal, kept bit for bit here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WeightsError

if TYPE_CHECKING:
    import torch

# The 16 per-channel latent statistics of Wan2.1's VAE (the same numbers as diffusers' AutoencoderKLWan config).
LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
# Fixed by the Wan2.1 architecture (not readable from the weights' shapes).
DIM_MULT = (1, 2, 4, 4)
TEMPORAL_DOWNSAMPLE = (False, True, True)
NUM_RES_BLOCKS = 2


def vae_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
    """AutoencoderKLWan kwargs for an original-layout state dict: base width and z_dim from the shapes."""
    try:
        base_dim = int(state_dict["encoder.conv1.weight"].shape[0])
        z_dim = int(state_dict["conv2.weight"].shape[0])
    except KeyError as error:
        raise WeightsError(f"not a Wan VAE state dict (no {error.args[0]})") from None
    return {
        "base_dim": base_dim,
        "z_dim": z_dim,
        "dim_mult": list(DIM_MULT),
        "num_res_blocks": NUM_RES_BLOCKS,
        "attn_scales": [],
        "temperal_downsample": list(TEMPORAL_DOWNSAMPLE),
        "dropout": 0.0,
        "latents_mean": list(LATENT_MEAN),
        "latents_std": list(LATENT_STD),
    }


def build_wan_vae(config: dict):
    """An AutoencoderKLWan with ``config`` (no weights: build under ``torch.device('meta')`` to size it)."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(**config)


def convert_vae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan key names -> diffusers' AutoencoderKLWan names (diffusers' own single-file converter)."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    return convert_wan_vae_to_diffusers(dict(state_dict))


class WanVAE:
    """Encode videos to normalised latents and decode them back (official normalisation)."""

    def __init__(self, model) -> None:
        import torch

        self.model = model.eval().requires_grad_(False)
        param = next(model.parameters())
        self.mean = torch.tensor(LATENT_MEAN, dtype=param.dtype, device=param.device).view(1, -1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(LATENT_STD, dtype=param.dtype, device=param.device).view(1, -1, 1, 1, 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encode_raw(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, F, H, W) in [-1, 1] -> (mu, logvar), each (B, 16, 1 + (F-1)//4, H/8, W/8), unnormalised."""
        import torch

        with torch.no_grad():
            posterior = self.model.encode(video.to(device=self.mean.device, dtype=self.dtype)).latent_dist
        return posterior.mean, posterior.logvar

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> (B, 16, F_lat, H/8, W/8): posterior mode, ``(mu - mean) * (1 / std)``."""
        mu, _ = self.encode_raw(video)
        return (mu - self.mean) * self.inv_std

    def _decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latents).sample

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 16, F_lat, h, w) normalised -> (B, 3, 1 + 4 (F_lat - 1), 8h, 8w) in [-1, 1] (clamped)."""
        import torch

        z = latents.to(device=self.mean.device, dtype=self.dtype) / self.inv_std + self.mean
        with torch.no_grad():
            return self._decode_frames(z)

    def decode_chunks(self, latents: torch.Tensor, latent_frames_per_chunk: int = 4) -> Iterator[torch.Tensor]:
        """Yield the decoded video in pieces whose concatenation over dim 2 equals :meth:`decode`.

        The Wan decoder is causal: it already runs one latent frame at a time, carrying a feature cache (the
        last two input frames of every causal conv). Keeping that cache between pieces gives exactly the
        frames of one whole decode, while only ``latent_frames_per_chunk`` latent frames' activations (and the
        cache, whose size does not grow with the length) are alive at once.
        Yields (B, 3, n, 8h, 8w): 1 + 4 (k - 1) frames for the first piece, 4 k for each later one.
        """
        import torch

        if latent_frames_per_chunk < 1:
            raise ValueError("latent_frames_per_chunk must be >= 1")
        decoder = self.model
        z = latents.to(device=self.mean.device, dtype=self.dtype) / self.inv_std + self.mean
        with torch.no_grad():
            decoder.clear_cache()
            x = decoder.post_quant_conv(z)
            for start in range(0, x.shape[2], latent_frames_per_chunk):
                pieces = []
                for i in range(start, min(start + latent_frames_per_chunk, x.shape[2])):
                    decoder._conv_idx = [0]
                    pieces.append(
                        decoder.decoder(
                            x[:, :, i : i + 1],
                            feat_cache=decoder._feat_map,
                            feat_idx=decoder._conv_idx,
                            first_chunk=(i == 0),
                        )
                    )
                yield torch.clamp(torch.cat(pieces, 2), min=-1.0, max=1.0)
            decoder.clear_cache()


def load_wan_vae(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> WanVAE:
    """The Wan2.1 VAE from the original ``Wan2.1_VAE.pth`` (or a .safetensors of the same keys), strict.

    ``dtype`` None keeps the file's dtype.
    """
    import torch

    from ..weights import check_state_dict, read_state_dict

    path = Path(path)
    original = read_state_dict(path)
    try:
        config = vae_config_from_state_dict(original)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}. Use Wan2.1_VAE.pth of the Wan2.1-Fun release.") from None
    file_dtype = original["encoder.conv1.weight"].dtype
    with torch.device("meta"):
        model = build_wan_vae(config)
    try:
        converted = convert_vae_state_dict(original)
    except (KeyError, IndexError, ValueError, RuntimeError) as error:
        raise WeightsError(f"{path}: not a Wan VAE state dict ({error}).") from None
    check_state_dict(model, converted, str(path), hint="Use Wan2.1_VAE.pth of the Wan2.1-Fun release.")
    model.load_state_dict(converted, strict=True, assign=True)
    # diffusers' .to(dtype) prints a warning even when nothing changes: cast only when asked for another dtype.
    model = model.to(device=device) if dtype in (None, file_dtype) else model.to(device=device, dtype=dtype)
    return WanVAE(model)
