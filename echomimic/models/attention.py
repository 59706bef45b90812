"""Multi-head attention and the GEGLU feed-forward, with diffusers' parameter names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention; keys/values come from ``context`` (defaults to the queries' input).

    Parameter names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) match the official checkpoints.
    """

    def __init__(self, query_dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        if query_dim % heads:
            raise ValueError(f"attention width {query_dim} is not divisible by {heads} heads")
        self.heads = heads
        context_dim = context_dim or query_dim
        self.to_q = nn.Linear(query_dim, query_dim, bias=False)
        self.to_k = nn.Linear(context_dim, query_dim, bias=False)
        self.to_v = nn.Linear(context_dim, query_dim, bias=False)
        # Index 1 was a dropout in the original layout; only index 0 has weights.
        self.to_out = nn.ModuleList([nn.Linear(query_dim, query_dim), nn.Identity()])

    def split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, L, C] -> [N, heads, L, C / heads] (a view)."""
        batch, length, width = tokens.shape
        return tokens.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def key_value(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context: [N, Lk, Cctx] -> (keys, values), each [N, heads, Lk, C / heads]."""
        return self.split_heads(self.to_k(context)), self.split_heads(self.to_v(context))

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None = None,
        extra_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """hidden_states: [N, Lq, C]; context: [N, Lk, Cctx] or None -> [N, Lq, C].

        extra_key_value: precomputed (keys, values) [1 or N, heads, Le, C / heads] appended after the
            context's own, e.g. the reference tokens' projections, computed once per video.
        """
        context = hidden_states if context is None else context
        batch, length, width = hidden_states.shape
        query = self.split_heads(self.to_q(hidden_states))
        key, value = self.key_value(context)
        if extra_key_value is not None:
            extra_key, extra_value = extra_key_value
            key = torch.cat([key, extra_key.expand(batch, -1, -1, -1)], dim=2)
            value = torch.cat([value, extra_value.expand(batch, -1, -1, -1)], dim=2)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, length, width).to(query.dtype)
        return self.to_out[0](out)

    def zero_context_output(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """[1, 1, C]: exactly what :meth:`forward` returns for every query when all context tokens are zero.

        With zero tokens every key is ``to_k(0)`` (the same for all tokens), so the softmax weights are
        uniform and every output token is the common value ``to_v(0)``: zero here (``to_v`` has no bias),
        so the result is ``to_out(0)`` = the output bias, bit for bit. Used for the unconditional
        (zero-audio) rows of classifier-free guidance, saving the whole attention there.
        """
        width = self.to_v.in_features
        value = self.to_v(torch.zeros(1, 1, width, dtype=dtype, device=device))
        return self.to_out[0](value)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with 4x inner width (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            hidden_states = layer(hidden_states)
        return hidden_states
