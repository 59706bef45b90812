"""Frame-wise residual block, downsampler and upsampler (all on [B*F, C, H, W])."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResnetBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )
        self.output_scale_factor = output_scale_factor

    def forward(self, hidden_states: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        """hidden_states: [N, C, H, W]; time_embedding: [N, T] (already one row per frame)."""
        residual = hidden_states
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states)))
        hidden_states = hidden_states + self.time_emb_proj(F.silu(time_embedding))[:, :, None, None]
        hidden_states = self.conv2(F.silu(self.norm2(hidden_states)))
        if self.conv_shortcut is not None:
            residual = self.conv_shortcut(residual)
        out = residual + hidden_states
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class Downsample(nn.Module):
    def __init__(self, channels: int, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.conv(hidden_states)


class Upsample(nn.Module):
    """Nearest 2x (or to an explicit size when the latent is not a multiple of 8) then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        return self.conv(_nearest_upsample(hidden_states, size))


def _nearest_upsample(hidden_states: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Nearest 2x (or to ``size``) in the input's dtype; nearest is a pure copy, so a backend without a
    bf16/fp16 kernel gets the same values through a float32 round trip."""
    options = {"scale_factor": 2.0} if size is None else {"size": size}
    try:
        return F.interpolate(hidden_states, mode="nearest", **options)
    except RuntimeError:
        if hidden_states.dtype == torch.float32:
            raise
        return F.interpolate(hidden_states.float(), mode="nearest", **options).to(hidden_states.dtype)
