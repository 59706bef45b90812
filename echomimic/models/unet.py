"""The reference UNet and the denoising UNet of EchoMimic V1."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import EchoMimicConfig, MotionModuleConfig, UNetConfig
from .transformer import BlockInputs, ReferenceFeatures, TransformerBlock
from .unet_blocks import DownBlock, MidBlock, UpBlock


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """[N] timesteps -> [N, dim] sinusoidal embedding (the SD1.5 convention)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(exponent / (half - freq_shift))
    angles = timesteps[:, None].float() * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if flip_sin_to_cos:
        embedding = torch.cat([embedding[:, half:], embedding[:, :half]], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


@dataclass
class DeepCacheCall:
    """One denoising-UNet call of the deep-feature cache (DeepCache): which layers run and what is reused.

    The UNet's skip connections are numbered from the outside: 0 is ``conv_in``'s output, then one per down
    layer (downsamplers included), 12 in the full-size UNet; the up layers take them back in reverse order,
    so the last up layer takes skip 0. ``depth`` d splits the UNet there: the *shallow* part is ``conv_in``,
    the down layers making skips 1 .. d-1 and the last d up layers; the *deep* part is everything between.
    The deep features are the hidden states entering up layer ``12 - d`` (counted from 0).

    features: None for a full call, which runs every layer and sets ``features`` to the deep features
        ([B*F, C, h, w], rows (batch, frame) as the input); a tensor of that shape for a cached call, which
        runs only the shallow part and takes these as the deep part's output.
    """

    depth: int
    features: torch.Tensor | None = None


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(embedding)))


class _UNetBackbone(nn.Module):
    """conv_in, time embedding, down/mid/up blocks; the parts both UNets share."""

    def __init__(self, config: UNetConfig, audio_dim: int | None, motion: MotionModuleConfig | None) -> None:
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], config.time_embed_dim)

        def block_motion(resolution: int, decoder: bool) -> MotionModuleConfig | None:
            if motion is None or resolution not in motion.resolutions:
                return None
            return motion if (decoder or not motion.decoder_only) else None

        self.down_blocks = nn.ModuleList()
        out_channels = channels[0]
        for i, with_attention in enumerate(config.down_with_attention):
            in_channels, out_channels = out_channels, channels[i]
            self.down_blocks.append(
                DownBlock(
                    config,
                    in_channels,
                    out_channels,
                    with_attention,
                    i < len(channels) - 1,
                    audio_dim,
                    block_motion(2**i, decoder=False),
                )
            )
        mid_motion = motion if (motion is not None and motion.mid_block) else None
        self.mid_block = MidBlock(config, channels[-1], audio_dim, mid_motion)
        reversed_channels = list(reversed(channels))
        self.up_blocks = nn.ModuleList()
        out_channels = reversed_channels[0]
        for i, with_attention in enumerate(config.up_with_attention):
            prev_channels, out_channels = out_channels, reversed_channels[i]
            in_channels = reversed_channels[min(i + 1, len(channels) - 1)]
            self.up_blocks.append(
                UpBlock(
                    config,
                    in_channels,
                    prev_channels,
                    out_channels,
                    with_attention,
                    i < len(channels) - 1,
                    audio_dim,
                    block_motion(2 ** (len(channels) - 1 - i), decoder=True),
                )
            )
        for name, module in self.named_modules():
            if isinstance(module, TransformerBlock):
                module.feature_key = name

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def _time_embedding(self, timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
        timesteps = torch.as_tensor(timestep, device=device)
        if timesteps.ndim == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.expand(batch)
        embedding = timestep_embedding(
            timesteps, self.config.block_out_channels[0], self.config.flip_sin_to_cos, self.config.freq_shift
        )
        return self.time_embedding(embedding.to(self.dtype))

    @property
    def skip_count(self) -> int:
        """How many skip connections the UNet makes (= up layers; 12 in the full-size UNet)."""
        return sum(len(block.resnets) for block in self.up_blocks)  # type: ignore[arg-type, misc]  # ModuleLists

    def _run_blocks(
        self, hidden_states: torch.Tensor, inputs: BlockInputs, deep_cache: DeepCacheCall | None = None
    ) -> torch.Tensor:
        """hidden_states: [B*F, C0, h, w] after conv_in -> [B*F, C0, h, w] after the last up block.

        ``deep_cache``: see :class:`DeepCacheCall`; None runs every layer (the exact path, unchanged).
        """
        upsample_factor = 2 ** (len(self.up_blocks) - 1)
        explicit_sizes = any(size % upsample_factor for size in hidden_states.shape[-2:])
        if deep_cache is not None and deep_cache.features is not None:
            return self._run_shallow_blocks(hidden_states, inputs, deep_cache, explicit_sizes)
        capture_layer = -1 if deep_cache is None else self.skip_count - deep_cache.depth
        skips = [hidden_states]
        for block in self.down_blocks:
            hidden_states, block_skips = block(hidden_states, inputs)
            skips.extend(block_skips)
        hidden_states = self.mid_block(hidden_states, inputs)
        layer = 0  # up layers before this block
        for i, block in enumerate(self.up_blocks):
            count = len(block.resnets)  # type: ignore[arg-type]  # a ModuleList
            block_skips, skips = skips[-count:], skips[:-count]
            is_final = i == len(self.up_blocks) - 1
            size = tuple(skips[-1].shape[-2:]) if (explicit_sizes and not is_final) else None
            if deep_cache is not None and layer <= capture_layer < layer + count:
                split = capture_layer - layer
                hidden_states = block(hidden_states, block_skips, inputs, size, stop=split)
                deep_cache.features = hidden_states
                hidden_states = block(hidden_states, block_skips, inputs, size, start=split)
            else:
                hidden_states = block(hidden_states, block_skips, inputs, size)
            layer += count
        return hidden_states

    def _run_shallow_blocks(
        self, hidden_states: torch.Tensor, inputs: BlockInputs, deep_cache: DeepCacheCall, explicit_sizes: bool
    ) -> torch.Tensor:
        """A cached call: the first ``depth`` skip connections, then the last ``depth`` up layers from the
        cached deep features (the down layers, mid block and up layers in between do not run)."""
        depth, total = deep_cache.depth, self.skip_count
        if not 1 <= depth <= total:
            raise ValueError(f"deep-cache depth must be in 1..{total}, got {depth}")
        skips = [hidden_states]
        for block in self.down_blocks:
            if len(skips) >= depth:
                break
            hidden_states, block_skips = block(hidden_states, inputs, limit=depth - len(skips))
            skips.extend(block_skips)
        assert deep_cache.features is not None
        hidden_states = deep_cache.features
        first_layer = total - depth
        layer = 0  # up layers before this block
        for i, block in enumerate(self.up_blocks):
            count = len(block.resnets)  # type: ignore[arg-type]  # a ModuleList
            if layer + count > first_layer:
                # This block takes skips [total - layer - count, total - layer); the ones it still needs are
                # those below ``depth``, the last of them first.
                low = total - layer - count
                block_skips = skips[low:depth]
                is_final = i == len(self.up_blocks) - 1
                size = tuple(skips[low - 1].shape[-2:]) if (explicit_sizes and not is_final) else None
                hidden_states = block(hidden_states, block_skips, inputs, size, start=max(0, first_layer - layer))
                depth = low
            layer += count
        return hidden_states


class ReferenceUNet(_UNetBackbone):
    """Encodes the reference latents into per-block reference features.

    Same layout as the SD1.5 UNet, but its transformer blocks have no cross-attention and it has no
    output head (``conv_norm_out``/``conv_out``): only the features matter.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config, audio_dim=None, motion=None)

    def forward(self, reference_latents: torch.Tensor, timestep: torch.Tensor | int = 0) -> ReferenceFeatures:
        """reference_latents: [1, 4, h, w] (VAE mean * 0.18215) -> {block path: [1, h_l*w_l, C_l]}."""
        if reference_latents.ndim != 4:
            raise ValueError(f"reference latents must be [B, 4, h, w], got {tuple(reference_latents.shape)}")
        batch = reference_latents.shape[0]
        captured = ReferenceFeatures()
        inputs = BlockInputs(
            frames=1,
            time_embedding=self._time_embedding(timestep, batch, reference_latents.device),
            captured_features=captured,
        )
        self._run_blocks(self.conv_in(reference_latents.to(self.dtype)), inputs)
        return captured

    def features_then_release(
        self,
        reference_latents: torch.Tensor,
        timestep: torch.Tensor | int = 0,
        device: torch.device | str | None = None,
    ) -> ReferenceFeatures:
        """:meth:`forward` on ``device`` (default: the latents'), then, on a GPU, the weights go back to the
        CPU: the reference UNet runs once per video, so it need not hold GPU memory while the denoising
        UNet runs. The features stay on ``device``. Safe to call again: the weights move back first.
        """
        device = torch.device(device) if device is not None else reference_latents.device
        self.to(device)
        features = self(reference_latents.to(device), timestep)
        if device.type != "cpu":
            self.to("cpu")
        return features


class DenoisingUNet(_UNetBackbone):
    """Predicts v for a window of video latents.

    Per frame: reference attention, audio cross-attention and the feed-forward; across frames: the
    motion modules. The face-locator (mask or landmark) features are added after ``conv_in``.
    """

    def __init__(self, config: EchoMimicConfig) -> None:
        super().__init__(config.unet, audio_dim=config.audio_dim, motion=config.motion)
        self.audio_dim = config.audio_dim
        channels = config.unet.block_out_channels[0]
        self.conv_norm_out = nn.GroupNorm(config.unet.norm_num_groups, channels, eps=config.unet.norm_eps)
        self.conv_out = nn.Conv2d(channels, config.unet.out_channels, kernel_size=3, padding=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        *,
        audio_tokens: torch.Tensor | None,
        reference_features: ReferenceFeatures | dict[str, torch.Tensor] | None,
        conditioning: torch.Tensor | None = None,
        unconditional_items: int = 0,
        deep_cache: DeepCacheCall | None = None,
    ) -> torch.Tensor:
        """One denoising prediction.

        sample: [B, 4, F, h, w] noisy latents.
        audio_tokens: [B, F, L, audio_dim] (L = 50 whisper tokens per frame); None means zero tokens,
            the unconditional audio.
        reference_features: from :class:`ReferenceUNet` (batch 1; its per-video key/value cache is then
            used), or a plain dict, or None for plain self-attention.
        conditioning: [B, C0, F or 1, h, w] face-locator features (1 frame broadcasts), or None.
        unconditional_items: the first ``unconditional_items`` batch items are classifier-free guidance's
            unconditional branch: they run plain self-attention (no reference tokens) and their audio
            tokens are taken as zero (their rows of ``audio_tokens`` are not read), so their audio
            cross-attention is the exact constant it gives for zero tokens.
        deep_cache: None (every layer: exact), or a :class:`DeepCacheCall`: a full call that also hands back
            the deep features, or a cached call that runs only the shallow layers on given deep features.
        Returns [B, 4, F, h, w].
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be [B, C, F, h, w], got {tuple(sample.shape)}")
        batch, _, frames, height, width = sample.shape
        dtype = self.dtype
        rows = sample.to(dtype).permute(0, 2, 1, 3, 4).reshape(batch * frames, -1, height, width)
        if not 0 <= unconditional_items <= batch:
            raise ValueError(f"unconditional_items must be in 0..{batch}, got {unconditional_items}")
        plain_items = unconditional_items
        zero_audio_items = batch if audio_tokens is None else unconditional_items
        if audio_tokens is not None:
            if audio_tokens.shape[:2] != (batch, frames):
                raise ValueError(f"audio tokens {tuple(audio_tokens.shape)} do not match {batch} x {frames} frames")
            audio_tokens = audio_tokens[zero_audio_items:] if zero_audio_items < batch else None
            if audio_tokens is not None:
                audio_tokens = audio_tokens.to(dtype).reshape(-1, audio_tokens.shape[2], audio_tokens.shape[3])
        time_embedding = self._time_embedding(timestep, batch, sample.device).repeat_interleave(frames, dim=0)
        inputs = BlockInputs(
            frames=frames,
            time_embedding=time_embedding,
            audio_tokens=audio_tokens,
            zero_audio_rows=zero_audio_items * frames,
            reference_features=reference_features,
            plain_rows=plain_items * frames,
        )
        hidden_states = self.conv_in(rows)
        if conditioning is not None:
            conditioning = conditioning.to(dtype).expand(batch, -1, frames, -1, -1)
            hidden_states = hidden_states + conditioning.permute(0, 2, 1, 3, 4).reshape(hidden_states.shape)
        hidden_states = self._run_blocks(hidden_states, inputs, deep_cache)
        hidden_states = self.conv_out(F.silu(self.conv_norm_out(hidden_states)))
        return hidden_states.reshape(batch, frames, -1, height, width).permute(0, 2, 1, 3, 4)
