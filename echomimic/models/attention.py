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

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states: [N, Lq, C]; context: [N, Lk, Cctx] or None -> [N, Lq, C]."""
        context = hidden_states if context is None else context
        batch, length, width = hidden_states.shape
        head_dim = width // self.heads
        query = self.to_q(hidden_states).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        key = self.to_k(context).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        value = self.to_v(context).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, length, width).to(query.dtype)
        return self.to_out[0](out)


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
