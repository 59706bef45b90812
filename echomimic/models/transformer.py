"""Spatial transformer of both UNets: reference attention and audio cross-attention.

Every transformer block of the reference UNet publishes ``norm1(hidden_states)`` as its *reference
feature*; the denoising block with the same module path attends to it: its self-attention keys and
values are the frame's own tokens followed by the reference tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import Attention, FeedForward

AUDIO_ATTENTION_SCALE = 3.0  # the official audio_feature_ratio


@dataclass
class BlockInputs:
    """Per-forward inputs that every block of a UNet may need.

    frames: video frames per batch item (rows of the 4D activations are ordered (batch, frame)).
    audio_tokens: [B*F, L, audio_dim] or None (no audio cross-attention run).
    reference_features: block key -> [1, L, C], read by the denoising UNet.
    reference_rows: [B*F] bool, rows that attend to the reference features (the others run plain
        self-attention, as the classifier-free-guidance unconditional branch does).
    captured_features: filled by the reference UNet with block key -> [B, L, C].
    """

    frames: int
    time_embedding: torch.Tensor
    audio_tokens: torch.Tensor | None = None
    reference_features: dict[str, torch.Tensor] | None = None
    reference_rows: torch.Tensor | None = None
    captured_features: dict[str, torch.Tensor] | None = None


class TransformerBlock(nn.Module):
    """Self-attention (+ reference tokens), optional audio cross-attention, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, audio_dim: int | None) -> None:
        super().__init__()
        self.feature_key = ""  # module path, set by the owning UNet; pairs reference and denoising blocks
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        if audio_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, context_dim=audio_dim)
        else:
            self.norm2 = None
            self.attn2 = None
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def _self_attention(self, normed: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        reference = None
        if inputs.reference_features is not None:
            reference = inputs.reference_features.get(self.feature_key)
            if reference is None:
                raise KeyError(f"no reference features for transformer block {self.feature_key!r}")
        if reference is None:
            return self.attn1(normed)
        rows = inputs.reference_rows
        if rows is None or bool(rows.all()):
            return self._reference_attention(normed, reference)
        out = torch.empty_like(normed)
        out[~rows] = self.attn1(normed[~rows])
        if bool(rows.any()):
            out[rows] = self._reference_attention(normed[rows], reference)
        return out

    def _reference_attention(self, normed: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        reference = reference.to(normed.dtype).expand(normed.shape[0], -1, -1)
        return self.attn1(normed, context=torch.cat([normed, reference], dim=1))

    def forward(self, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """hidden_states: [B*F, H*W, C] -> same shape."""
        normed = self.norm1(hidden_states)
        if inputs.captured_features is not None:
            inputs.captured_features[self.feature_key] = normed
        hidden_states = self._self_attention(normed, inputs) + hidden_states
        if self.attn2 is not None and inputs.audio_tokens is not None:
            audio = self.attn2(self.norm2(hidden_states), context=inputs.audio_tokens)
            hidden_states = audio * AUDIO_ATTENTION_SCALE + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states


class SpatialTransformer(nn.Module):
    """GroupNorm, 1x1 projection in, transformer blocks over the H*W tokens of each frame, projection out."""

    def __init__(self, channels: int, heads: int, groups: int, audio_dim: int | None, layers: int = 1) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(TransformerBlock(channels, heads, audio_dim) for _ in range(layers))
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """hidden_states: [B*F, C, H, W] -> same shape."""
        rows, channels, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.proj_in(self.norm(hidden_states))
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(rows, height * width, channels)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, inputs)
        hidden_states = hidden_states.reshape(rows, height, width, channels).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(hidden_states) + residual
