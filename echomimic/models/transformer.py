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


class ReferenceFeatures(dict):
    """Transformer-block module path -> [1, tokens, channels] normalized reference hidden states.

    A plain ``dict`` also works everywhere; this one also carries ``projections``, the denoising
    blocks' key/value projections of these tokens, filled on first use and reused for every window
    and step of the video (they depend on the reference image only).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.projections: dict[nn.Module, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


@dataclass
class BlockInputs:
    """Per-forward inputs that every block of a UNet may need.

    Rows of the 4D activations are ordered (batch, frame). Classifier-free guidance puts the
    unconditional items first, so every "leading rows" count below is a plain slice: no boolean
    masks, no host-device synchronisation.

    frames: video frames per batch item.
    audio_tokens: [R - zero_audio_rows, L, audio_dim] tokens of the rows after the zero-audio ones, or
        None (no such rows).
    zero_audio_rows: leading rows whose audio tokens are all zero: their audio cross-attention is a
        constant (:meth:`Attention.zero_context_output`). Audio cross-attention runs when this is > 0
        or ``audio_tokens`` is given.
    reference_features: block key -> [1, L, C], read by the denoising UNet.
    plain_rows: leading rows that run plain self-attention (the classifier-free-guidance unconditional
        branch); the others also attend to the reference features.
    captured_features: filled by the reference UNet with block key -> [B, L, C].
    """

    frames: int
    time_embedding: torch.Tensor
    audio_tokens: torch.Tensor | None = None
    reference_features: dict[str, torch.Tensor] | None = None
    plain_rows: int = 0
    captured_features: dict[str, torch.Tensor] | None = None
    zero_audio_rows: int = 0


class TransformerBlock(nn.Module):
    """Self-attention (+ reference tokens), optional audio cross-attention, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, audio_dim: int | None) -> None:
        super().__init__()
        self.feature_key = ""  # module path, set by the owning UNet; pairs reference and denoising blocks
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads)
        self.norm2: nn.LayerNorm | None
        self.attn2: Attention | None
        if audio_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(dim, heads, context_dim=audio_dim)
        else:
            self.norm2 = None
            self.attn2 = None
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def _reference_key_value(
        self, features: dict[str, torch.Tensor], dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This block's keys/values of the reference tokens, [1, heads, L, d]; cached per video when
        ``features`` is a :class:`ReferenceFeatures` (and no autograd graph is being built)."""
        reference = features.get(self.feature_key)
        if reference is None:
            raise KeyError(f"no reference features for transformer block {self.feature_key!r}")
        cache = getattr(features, "projections", None)
        if cache is None or torch.is_grad_enabled():
            return self.attn1.key_value(reference.to(dtype))
        cached = cache.get(self.attn1)
        # The source tensor is kept in the entry: a replaced feature, dtype or device recomputes.
        if cached is None or cached[0] is not reference or cached[1].dtype != dtype:
            key, value = self.attn1.key_value(reference.to(dtype))
            cached = (reference, key, value)
            cache[self.attn1] = cached
        return cached[1], cached[2]

    def _self_attention_residual(
        self, normed: torch.Tensor, hidden_states: torch.Tensor, inputs: BlockInputs
    ) -> torch.Tensor:
        """Self-attention (with the reference tokens appended to the keys for all but the plain rows)
        plus the residual ``hidden_states``; both [R, L, C]."""
        if inputs.reference_features is None:
            return self.attn1(normed) + hidden_states
        reference = self._reference_key_value(inputs.reference_features, normed.dtype)
        plain = inputs.plain_rows
        if plain == 0:
            return self.attn1(normed, extra_key_value=reference) + hidden_states
        if plain >= normed.shape[0]:
            return self.attn1(normed) + hidden_states
        out = torch.empty_like(hidden_states)
        # The residual add writes each half straight into its slice of the output (no extra copy).
        torch.add(self.attn1(normed[:plain]), hidden_states[:plain], out=out[:plain])
        torch.add(self.attn1(normed[plain:], extra_key_value=reference), hidden_states[plain:], out=out[plain:])
        return out

    def _audio_attention_residual(self, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """hidden_states + audio cross-attention x audio_feature_ratio; [R, L, C]."""
        assert self.attn2 is not None and self.norm2 is not None  # built with audio_dim
        zero_rows = min(inputs.zero_audio_rows, hidden_states.shape[0])
        tokens = inputs.audio_tokens
        if zero_rows == 0:
            return self.attn2(self.norm2(hidden_states), context=tokens) * AUDIO_ATTENTION_SCALE + hidden_states
        constant = self.attn2.zero_context_output(hidden_states.dtype, hidden_states.device) * AUDIO_ATTENTION_SCALE
        if zero_rows == hidden_states.shape[0]:
            return constant + hidden_states
        out = torch.empty_like(hidden_states)
        torch.add(constant, hidden_states[:zero_rows], out=out[:zero_rows])
        conditional = hidden_states[zero_rows:]
        audio = self.attn2(self.norm2(conditional), context=tokens)
        torch.add(audio * AUDIO_ATTENTION_SCALE, conditional, out=out[zero_rows:])
        return out

    def forward(self, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """hidden_states: [B*F, H*W, C] -> same shape."""
        normed = self.norm1(hidden_states)
        if inputs.captured_features is not None:
            inputs.captured_features[self.feature_key] = normed
        hidden_states = self._self_attention_residual(normed, hidden_states, inputs)
        if self.attn2 is not None and (inputs.audio_tokens is not None or inputs.zero_audio_rows > 0):
            hidden_states = self._audio_attention_residual(hidden_states, inputs)
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
