"""The EchoMimic V3 flash transformer: Wan2.1-Fun-1.3B-InP with audio in every block's cross-attention.

Module and parameter names are the official ones (``WanTransformerAudioMask3DModel``), so the released
``transformer/diffusion_pytorch_model.safetensors`` loads with the identity key map, strictly. We do not build
on diffusers' ``WanTransformer3DModel``: its keys differ (a map would be needed for every tensor), it embeds the
timestep in float32 where the official code uses float64 (at t = 999 its sinusoid differs by 3e-5, three
times the parity tolerance of the time embedding), and its forward has neither the frame-local audio attention
nor a hook for TeaCache between the patch embedding and the head. What the official code computes is written up
in ``../shared/parity_v3/README.md``;
the conventions that matter are repeated where they are implemented.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError
from .audio_windows import LATTER_WINDOWS, WINDOW, split_for_latent_frames

IMAGE_TOKENS = 257  # CLIP ViT-H/14 at 224: cls + 16 x 16 patches
AUDIO_TOKENS_DEFAULT = 32
ROPE_THETA = 10000.0
_HINT = "Use transformer/diffusion_pytorch_model.safetensors of BadToBest/EchoMimicV3 (echomimicv3-flash-pro)."


@dataclass(frozen=True)
class FlashConfig:
    """The transformer's shape: the Wan2.1-Fun ``config.json`` (WanModel format) plus what only the weights say."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 36
    out_dim: int = 16
    freq_dim: int = 256
    text_len: int = 512
    text_dim: int = 4096
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = (1, 2, 2)
    image_dim: int = 1280  # CLIP width (img_emb input); hard-coded officially, read from the weights here
    audio_features: int = 12 * 768  # wav2vec2 layers x hidden (flattened per window)
    audio_intermediate: int = 512
    audio_tokens: int = AUDIO_TOKENS_DEFAULT

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def read_wan_config(path: str | Path) -> dict:
    """The base model's ``config.json`` as a dict, with a one-line error for a missing or broken file."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(
            f"{path} is missing: it is the config.json of alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path} is not a readable config.json ({error}).") from None
    if not isinstance(config, dict) or config.get("model_type", "i2v") != "i2v":
        raise WeightsError(f"{path}: not the config of an image-to-video (i2v) Wan model.")
    return config


def flash_config(wan_config: dict, state_dict_shapes: dict[str, Sequence[int]]) -> FlashConfig:
    """Combine the Wan config with the widths the official code hard-codes (CLIP width, audio projection),
    which are read from the weights' shapes so that any consistent file (tiny or full size) loads."""
    try:
        dim = int(wan_config["dim"])
        proj1 = state_dict_shapes["audio_injection.proj1.weight"]
        proj3 = state_dict_shapes["audio_injection.proj3.weight"]
        img_in = state_dict_shapes["img_emb.proj.1.weight"]
        return FlashConfig(
            dim=dim,
            ffn_dim=int(wan_config["ffn_dim"]),
            num_heads=int(wan_config["num_heads"]),
            num_layers=int(wan_config["num_layers"]),
            in_dim=int(wan_config.get("in_dim", 36)),
            out_dim=int(wan_config.get("out_dim", 16)),
            freq_dim=int(wan_config.get("freq_dim", 256)),
            text_len=int(wan_config.get("text_len", 512)),
            text_dim=int(wan_config.get("text_dim", 4096)),
            eps=float(wan_config.get("eps", 1e-6)),
            patch_size=tuple(wan_config.get("patch_size", (1, 2, 2))),
            image_dim=int(img_in[1]),
            audio_features=int(proj1[1]) // WINDOW,
            audio_intermediate=int(proj1[0]),
            audio_tokens=int(proj3[0]) // dim,
        )
    except KeyError as error:
        raise WeightsError(f"missing {error.args[0]!r}. {_HINT}") from None


# ----------------------------------------------------------------------------------------------- building blocks


class RMSNormFull(nn.Module):
    """RMSNorm over the whole width (all heads together), computed in float32 (official ``WanRMSNorm``)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (official ``WanLayerNorm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, dim) -> (B, heads, L, head_dim)"""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, head_dim) -> (B, L, dim)"""
    return x.transpose(1, 2).flatten(2)


def rope_pairs(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (frame, row, column): the frame axis takes the remainder (128 -> 22/21/21)."""
    pairs = head_dim // 2
    return pairs - 2 * (pairs // 3), pairs // 3, pairs // 3


def rope_tables(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each (L, head_dim // 2), for tokens in (f, h, w) row-major order.

    Pair k of an axis with 2p channels turns by ``position * theta^(-2k / 2p)``; angles in float64 as in the
    official code, the tables in float32.
    """
    angles = []
    for axis, (size, pairs) in enumerate(zip(grid, rope_pairs(head_dim), strict=True)):
        inv_freq = ROPE_THETA ** (-torch.arange(0, 2 * pairs, 2, dtype=torch.float64) / (2 * pairs))
        axis_angles = torch.outer(torch.arange(size, dtype=torch.float64), inv_freq)  # (size, pairs)
        shape = [1, 1, 1, pairs]
        shape[axis] = size
        angles.append(axis_angles.view(shape).expand(*grid, pairs))
    table = torch.cat(angles, dim=-1).reshape(-1, head_dim // 2)
    return table.cos().float().to(device), table.sin().float().to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs (2i, 2i+1) of (B, heads, L, head_dim), in float32."""
    pairs = x.float().unflatten(-1, (-1, 2))
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(-2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNormFull(dim, eps)
        self.norm_k = RMSNormFull(dim, eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        n = self.num_heads
        q = apply_rope(_heads(self.norm_q(self.q(x)), n), *rope).to(x.dtype)
        k = apply_rope(_heads(self.norm_k(self.k(x)), n), *rope).to(x.dtype)
        v = _heads(self.v(x), n)
        return self.o(_merge(F.scaled_dot_product_attention(q, k, v)))


class AudioCrossAttention(nn.Module):
    """Text, image and frame-local audio cross-attention, summed before ``o`` (``WanI2VCrossAttentionAudio``).

    ``q_audio`` exists in the release file but the official forward never uses it; it is kept so the file
    loads strictly.
    """

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNormFull(dim, eps)
        self.norm_k = RMSNormFull(dim, eps)
        self.k_img, self.v_img = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm_k_img = RMSNormFull(dim, eps)
        self.q_audio, self.k_audio, self.v_audio = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_k_audio = RMSNormFull(dim, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x (B, L, dim); context (B, 257 + text_len, dim): image tokens first; audio (B, F_lat, 32, dim)."""
        n = self.num_heads
        batch, tokens, dim = x.shape
        latent_frames = audio.shape[1]
        q = self.norm_q(self.q(x))
        image, text = context[:, :IMAGE_TOKENS], context[:, IMAGE_TOKENS:]
        qh = _heads(q, n)
        out = F.scaled_dot_product_attention(qh, _heads(self.norm_k(self.k(text)), n), _heads(self.v(text), n))
        out = out + F.scaled_dot_product_attention(
            qh, _heads(self.norm_k_img(self.k_img(image)), n), _heads(self.v_img(image), n)
        )
        out = _merge(out)
        # Audio: the tokens of latent frame j attend only to that frame's audio tokens.
        audio_flat = audio.flatten(0, 1)  # (B * F_lat, 32, dim)
        q_frames = _heads(q.reshape(batch * latent_frames, tokens // latent_frames, dim), n)
        k_audio = _heads(self.norm_k_audio(self.k_audio(audio_flat)), n)
        audio_out = F.scaled_dot_product_attention(q_frames, k_audio, _heads(self.v_audio(audio_flat), n))
        out = out + _merge(audio_out).reshape(batch, tokens, dim)
        return self.o(out)


class FlashBlock(nn.Module):
    def __init__(self, config: FlashConfig) -> None:
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = LayerNorm32(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, config.num_heads, eps)
        self.norm3 = LayerNorm32(dim, eps, elementwise_affine=True)
        self.cross_attn = AudioCrossAttention(dim, config.num_heads, eps)
        self.norm2 = LayerNorm32(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(config.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        context: torch.Tensor,
        audio: torch.Tensor,
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e0).chunk(6, dim=1)
        x = x + self.self_attn((self.norm1(x) * (1 + scale1) + shift1).to(x.dtype), rope) * gate1
        x = x + self.cross_attn(self.norm3(x), context, audio)
        x = x + self.ffn((self.norm2(x) * (1 + scale2) + shift2).to(x.dtype)) * gate2
        return x


class Head(nn.Module):
    def __init__(self, config: FlashConfig) -> None:
        super().__init__()
        self.norm = LayerNorm32(config.dim, config.eps, elementwise_affine=False)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, config.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class ImageProjection(nn.Module):
    """CLIP tokens -> model width (official ``MLPProj``: LayerNorm, Linear, GELU, Linear, LayerNorm)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, dim), nn.LayerNorm(dim)
        )

    def forward(self, clip_tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(clip_tokens)


class AudioProjection(nn.Module):
    """Audio windows -> 32 tokens per latent frame (official ``AudioProjModel``, ``norm_output_audio=True``)."""

    def __init__(self, config: FlashConfig) -> None:
        super().__init__()
        mid = config.audio_intermediate
        self.tokens = config.audio_tokens
        self.proj1 = nn.Linear(WINDOW * config.audio_features, mid)
        self.proj1_vf = nn.Linear(LATTER_WINDOWS * config.audio_features, mid)
        self.proj2 = nn.Linear(mid, mid)
        self.proj3 = nn.Linear(mid, config.audio_tokens * config.dim)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, first: torch.Tensor, latter: torch.Tensor) -> torch.Tensor:
        """first (B, 1, 5, L, C), latter (B, F_lat - 1, 8, L, C) -> (B, F_lat, 32, dim)"""
        hidden = torch.cat(
            [torch.relu(self.proj1(first.flatten(2))), torch.relu(self.proj1_vf(latter.flatten(2)))], dim=1
        )
        tokens = self.proj3(torch.relu(self.proj2(hidden)))
        return self.norm(tokens.unflatten(-1, (self.tokens, -1)))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) ``[cos, sin]`` in float64 (frequencies 10000^(-k / (dim/2)))."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=1)


# --------------------------------------------------------------------------------------------------- the model


class BlockCache(Protocol):
    """Decides per transformer call whether the blocks run (TeaCache; see ``echomimic.v3.teacache``)."""

    residual: torch.Tensor | None

    def should_compute(self, e0: torch.Tensor) -> bool:
        """e0: (B, 6, dim) time projection of this call."""
        ...

    def store(self, residual: torch.Tensor) -> None:
        """residual: tokens after the blocks minus tokens before them (B, L, dim)."""
        ...


class FlashTransformer(nn.Module):
    """``forward(x, t, prompt_embeds, audio_embeds, y, clip_fea)`` -> flow velocity (B, 16, F_lat, h, w)."""

    def __init__(self, config: FlashConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.audio_injection = AudioProjection(config)
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(FlashBlock(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self.img_emb = ImageProjection(config.image_dim, dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    def embed_time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) -> e (B, dim), e0 (B, 6, dim); the MLPs run in float32 (official autocast), then cast."""
        sinusoid = timestep_embedding(t, self.config.freq_dim).float()
        lin1, lin2 = cast(nn.Linear, self.time_embedding[0]), cast(nn.Linear, self.time_embedding[2])
        e = F.linear(
            F.silu(F.linear(sinusoid, lin1.weight.float(), lin1.bias.float())), lin2.weight.float(), lin2.bias.float()
        )
        proj = cast(nn.Linear, self.time_projection[1])
        e0 = F.linear(F.silu(e), proj.weight.float(), proj.bias.float())
        return e.to(self.dtype), e0.unflatten(1, (6, self.config.dim)).to(self.dtype)

    def embed_context(self, prompt_embeds: torch.Tensor, clip_fea: torch.Tensor) -> torch.Tensor:
        """(B, n, text_dim) prompt rows + (B, 257, clip) -> (B, 257 + text_len, dim).

        The prompt is zero-padded to ``text_len`` rows BEFORE the text MLP and every row is attended (no
        length mask), as the official code does: the padding rows carry ``text_embedding(0)``.
        """
        rows = prompt_embeds.shape[1]
        if rows > self.config.text_len:
            raise ValueError(f"prompt of {rows} tokens: at most {self.config.text_len}")
        padded = F.pad(prompt_embeds.to(self.dtype), (0, 0, 0, self.config.text_len - rows))
        return torch.cat([self.img_emb(clip_fea.to(self.dtype)), self.text_embedding(padded)], dim=1)

    def embed_audio(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        """(B, F, 5, L, C) -> (B, F_lat, 32, dim)"""
        first, latter = split_for_latent_frames(audio_embeds.to(self.dtype))
        return self.audio_injection(first, latter)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, L, prod(patch) * out) -> (B, out, F_lat, h, w); token value ``(q * pw + r) * out + c`` is channel
        c of pixel (pt, ph + q, pw + r) of its patch."""
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        x = tokens.reshape(tokens.shape[0], f, h, w, pt, ph, pw, self.config.out_dim)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(tokens.shape[0], self.config.out_dim, f * pt, h * ph, w * pw)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        prompt_embeds: torch.Tensor,
        audio_embeds: torch.Tensor,
        y: torch.Tensor,
        clip_fea: torch.Tensor,
        block_cache: BlockCache | None = None,
    ) -> torch.Tensor:
        """x (B, 16, F_lat, h, w) noisy latents; t (B,) int64; prompt_embeds (B, n, text_dim); audio_embeds
        (B, F, 5, L, C); y (B, 20, F_lat, h, w) mask + masked-video latents; clip_fea (B, 257, clip width).
        Returns the flow velocity (B, 16, F_lat, h, w)."""
        dtype = self.dtype
        patches = self.patch_embedding(torch.cat([x, y], dim=1).to(dtype))
        grid = (patches.shape[2], patches.shape[3], patches.shape[4])
        tokens = patches.flatten(2).transpose(1, 2)
        e, e0 = self.embed_time(t)
        context = self.embed_context(prompt_embeds, clip_fea)
        audio = self.embed_audio(audio_embeds)
        if audio.shape[1] != grid[0]:
            raise ValueError(f"{audio.shape[1]} latent frames of audio for {grid[0]} latent frames of video")
        if block_cache is not None and not block_cache.should_compute(e0):
            assert block_cache.residual is not None
            tokens = tokens + block_cache.residual
        else:
            rope = rope_tables(grid, self.config.head_dim, tokens.device)
            start = tokens
            for block in self.blocks:
                tokens = block(tokens, e0, rope, context, audio)
            if block_cache is not None:
                block_cache.store(tokens - start)
        return self.unpatchify(self.head(tokens, e), grid)


# ----------------------------------------------------------------------------------------------------- loading


def load_flash_transformer(
    weights: str | Path, config: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> FlashTransformer:
    """The flash transformer from the release's safetensors (every key, strict) and the base model's
    ``config.json``. ``dtype`` None keeps the file's dtype (the release is 16-bit)."""
    from ..weights import check_state_dict, read_state_dict

    weights = Path(weights)
    state_dict = read_state_dict(weights)
    try:
        flash = flash_config(read_wan_config(config), {k: tuple(v.shape) for k, v in state_dict.items()})
    except WeightsError as error:
        raise WeightsError(f"{weights}: {error}") from None
    with torch.device("meta"):
        model = FlashTransformer(flash)
    check_state_dict(model, state_dict, str(weights), hint=_HINT)
    model.load_state_dict(state_dict, strict=True, assign=True)
    target = dtype or state_dict["patch_embedding.weight"].dtype
    return model.to(device=device, dtype=target).eval().requires_grad_(False)
