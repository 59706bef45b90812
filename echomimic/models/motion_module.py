"""AnimateDiff-style temporal module: attention across the frames of each spatial position."""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import Attention, FeedForward


def sinusoidal_positions(max_len: int, dim: int) -> torch.Tensor:
    """[1, max_len, dim] sin/cos table (even channels sin, odd channels cos)."""
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.pe: torch.Tensor
        self.register_buffer("pe", sinusoidal_positions(max_len, dim))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        frames = hidden_states.shape[1]
        if frames > self.pe.shape[1]:
            raise ValueError(
                f"{frames} frames in one window, but the motion modules handle at most {self.pe.shape[1]}; "
                "lower context_frames."
            )
        return hidden_states + self.pe[:, :frames].to(hidden_states.dtype)


class TemporalAttention(Attention):
    """Self-attention over frames, with the sinusoidal frame position added first."""

    def __init__(self, dim: int, heads: int, max_frames: int, position_encoding: bool) -> None:
        super().__init__(dim, heads)
        self.pos_encoder = PositionalEncoding(dim, max_frames) if position_encoding else None

    def forward(  # type: ignore[override]  # self-attention over frames: no extra keys/values
        self, hidden_states: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden_states: [N, F, C] (one row per spatial position)."""
        if self.pos_encoder is not None:
            hidden_states = self.pos_encoder(hidden_states)
        return super().forward(hidden_states)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, attention_blocks: int, max_frames: int, position_encoding: bool) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(dim, heads, max_frames, position_encoding) for _ in range(attention_blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(attention_blocks))
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: [N, F, C] -> same shape."""
        for attention, norm in zip(self.attention_blocks, self.norms):
            hidden_states = attention(norm(hidden_states)) + hidden_states
        return self.ff(self.ff_norm(hidden_states)) + hidden_states


class TemporalTransformer(nn.Module):
    def __init__(
        self,
        channels: int,
        heads: int,
        layers: int,
        attention_blocks: int,
        max_frames: int,
        position_encoding: bool,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, heads, attention_blocks, max_frames, position_encoding)
            for _ in range(layers)
        )
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        """hidden_states: [B*F, C, H, W] (rows ordered batch, frame) -> same shape."""
        rows, channels, height, width = hidden_states.shape
        batch = rows // frames
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        # (b f) c h w -> (b h w) f c
        hidden_states = hidden_states.view(batch, frames, channels, height * width).permute(0, 3, 1, 2)
        hidden_states = self.proj_in(hidden_states.reshape(batch * height * width, frames, channels))
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        # (b h w) f c -> (b f) c h w inside the residual add: one pass instead of a layout copy plus an add.
        hidden_states = hidden_states.view(batch, height * width, frames, channels).permute(0, 2, 3, 1)
        out = torch.empty_like(residual)
        torch.add(
            hidden_states,
            residual.view(batch, frames, channels, height * width),
            out=out.view(batch, frames, channels, height * width),
        )
        return out


class MotionModule(nn.Module):
    """Wrapper that keeps the official key prefix ``temporal_transformer``."""

    def __init__(
        self,
        channels: int,
        heads: int,
        layers: int,
        attention_blocks: int,
        max_frames: int,
        position_encoding: bool,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(
            channels, heads, layers, attention_blocks, max_frames, position_encoding, groups
        )

    def forward(self, hidden_states: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(hidden_states, frames)
