"""The Whisper audio encoder, returning every hidden state EchoMimic uses.

Parameter names follow the OpenAI checkpoint layout (``conv1``, ``blocks.N.attn.query`` ...);
:mod:`echomimic.audio.whisper_weights` maps Hugging Face names onto them. The arithmetic
follows the official encoder (attention scaled by d**-0.25 on both q and k, layer norms in
fp32), so fp32 results match the official features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EncoderDims:
    """Shape of a Whisper audio encoder (whisper-tiny: 80, 1500, 384, 6, 4)."""

    n_mels: int
    n_ctx: int
    width: int
    n_heads: int
    n_layers: int


class _LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the model dtype, like the official one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(
            x.dtype
        )


class _SelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        head_dim = width // self.n_heads
        scale = head_dim**-0.25
        q = self.query(x).view(batch, tokens, self.n_heads, head_dim).transpose(1, 2) * scale
        k = self.key(x).view(batch, tokens, self.n_heads, head_dim).permute(0, 2, 3, 1) * scale
        v = self.value(x).view(batch, tokens, self.n_heads, head_dim).transpose(1, 2)
        weights = torch.softmax((q @ k).float(), dim=-1).to(q.dtype)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, tokens, width))


class _Block(nn.Module):
    def __init__(self, width: int, n_heads: int) -> None:
        super().__init__()
        self.attn = _SelfAttention(width, n_heads)
        self.attn_ln = _LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = _LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper audio encoder that returns the input embedding and every block output.

    ``forward(mel)`` takes a log-mel batch [B, n_mels, 2 * n_ctx] (whisper-tiny: [B, 80, 3000])
    and returns [B, n_ctx, n_layers + 1, width] (whisper-tiny: [B, 1500, 5, 384]): the
    convolution + positional embedding, then the output of each block, without the final
    layer norm (``ln_post`` is kept only so that full checkpoints load strictly).
    """

    def __init__(self, dims: EncoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.conv1 = nn.Conv1d(dims.n_mels, dims.width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dims.width, dims.width, kernel_size=3, stride=2, padding=1)
        self.positional_embedding: torch.Tensor
        self.register_buffer("positional_embedding", torch.zeros(dims.n_ctx, dims.width))
        self.blocks = nn.ModuleList([_Block(dims.width, dims.n_heads) for _ in range(dims.n_layers)])
        self.ln_post = _LayerNorm(dims.width)

    @property
    def segment_frames(self) -> int:
        """Mel frames per encoder call (3000 for every released Whisper)."""
        return 2 * self.dims.n_ctx

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.to(device=self.conv1.weight.device, dtype=self.conv1.weight.dtype)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positional_embedding.to(x.dtype)
        hidden_states = [x]
        for block in self.blocks:
            x = block(x)
            hidden_states.append(x)
        return torch.stack(hidden_states, dim=2)
