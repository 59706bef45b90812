"""Down, mid and up blocks shared by the reference and the denoising UNet.

All activations are 4D, [B*F, C, H, W] with rows ordered (batch, frame); the motion modules are the
only layers that mix frames.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import MotionModuleConfig, UNetConfig
from .motion_module import MotionModule
from .resnet import Downsample, ResnetBlock, Upsample
from .transformer import BlockInputs, SpatialTransformer


def _motion_module(channels: int, motion: MotionModuleConfig) -> MotionModule:
    return MotionModule(
        channels,
        heads=motion.num_attention_heads,
        layers=motion.num_transformer_block,
        attention_blocks=motion.num_attention_blocks,
        max_frames=motion.max_frames,
        position_encoding=motion.temporal_position_encoding,
        groups=motion.norm_num_groups,
    )


class _Block(nn.Module):
    """Runs resnet -> attention -> motion module for each layer."""

    resnets: nn.ModuleList
    attentions: nn.ModuleList | None
    motion_modules: nn.ModuleList | None

    def _add_layers(
        self,
        config: UNetConfig,
        channels: int,
        layers: int,
        with_attention: bool,
        audio_dim: int | None,
        motion: MotionModuleConfig | None,
    ) -> None:
        """The optional per-layer spatial transformers and motion modules."""
        self.attentions = (
            nn.ModuleList(
                SpatialTransformer(channels, config.attention_head_dim, config.norm_num_groups, audio_dim)
                for _ in range(layers)
            )
            if with_attention
            else None
        )
        self.motion_modules = nn.ModuleList(_motion_module(channels, motion) for _ in range(layers)) if motion else None

    def _layer(self, index: int, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        hidden_states = self.resnets[index](hidden_states, inputs.time_embedding)
        if self.attentions is not None:
            hidden_states = self.attentions[index](hidden_states, inputs)
        if self.motion_modules is not None:
            hidden_states = self.motion_modules[index](hidden_states, inputs.frames)
        return hidden_states


class DownBlock(_Block):
    def __init__(
        self,
        config: UNetConfig,
        in_channels: int,
        out_channels: int,
        with_attention: bool,
        add_downsample: bool,
        audio_dim: int | None,
        motion: MotionModuleConfig | None,
    ) -> None:
        super().__init__()
        layers = config.layers_per_block
        groups, eps = config.norm_num_groups, config.norm_eps
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, config.time_embed_dim, groups, eps)
            for i in range(layers)
        )
        self._add_layers(config, out_channels, layers, with_attention, audio_dim, motion)
        self.downsamplers = (
            nn.ModuleList([Downsample(out_channels, config.downsample_padding)]) if add_downsample else None
        )

    def forward(
        self, hidden_states: torch.Tensor, inputs: BlockInputs, limit: int | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (output, the skip connections it makes: one per layer, then the downsampled output).

        ``limit``: stop once that many skip connections are made (the deep-feature cache's shallow pass).
        """
        skips = []
        for index in range(len(self.resnets)):
            hidden_states = self._layer(index, hidden_states, inputs)
            skips.append(hidden_states)
            if limit is not None and len(skips) >= limit:
                return hidden_states, skips
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
            skips.append(hidden_states)
        return hidden_states, skips


class MidBlock(nn.Module):
    """resnet -> attention -> motion module -> resnet."""

    def __init__(
        self, config: UNetConfig, channels: int, audio_dim: int | None, motion: MotionModuleConfig | None
    ) -> None:
        super().__init__()
        groups, eps, temb = config.norm_num_groups, config.norm_eps, config.time_embed_dim
        scale = config.mid_block_scale_factor
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, temb, groups, eps, scale) for _ in range(2))
        self.attentions = nn.ModuleList([SpatialTransformer(channels, config.attention_head_dim, groups, audio_dim)])
        self.motion_modules = nn.ModuleList([_motion_module(channels, motion)]) if motion else None

    def forward(self, hidden_states: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, inputs.time_embedding)
        hidden_states = self.attentions[0](hidden_states, inputs)
        if self.motion_modules is not None:
            hidden_states = self.motion_modules[0](hidden_states, inputs.frames)
        return self.resnets[1](hidden_states, inputs.time_embedding)


class UpBlock(_Block):
    def __init__(
        self,
        config: UNetConfig,
        in_channels: int,
        prev_channels: int,
        out_channels: int,
        with_attention: bool,
        add_upsample: bool,
        audio_dim: int | None,
        motion: MotionModuleConfig | None,
    ) -> None:
        super().__init__()
        layers = config.layers_per_block + 1
        groups, eps = config.norm_num_groups, config.norm_eps
        resnets = []
        for i in range(layers):
            skip_channels = in_channels if i == layers - 1 else out_channels
            resnet_in = prev_channels if i == 0 else out_channels
            resnets.append(ResnetBlock(resnet_in + skip_channels, out_channels, config.time_embed_dim, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        self._add_layers(config, out_channels, layers, with_attention, audio_dim, motion)
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if add_upsample else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        skips: list[torch.Tensor],
        inputs: BlockInputs,
        upsample_size: tuple[int, int] | None,
        start: int = 0,
        stop: int | None = None,
    ) -> torch.Tensor:
        """Layers ``start`` .. ``stop - 1`` (default all), each taking ``skips.pop()``; the upsampler only when
        the last layer ran. The deep-feature cache splits a block there (``start``/``stop``); the plain call is
        the whole block."""
        stop = len(self.resnets) if stop is None else stop
        for index in range(start, stop):
            hidden_states = torch.cat([hidden_states, skips.pop()], dim=1)
            hidden_states = self._layer(index, hidden_states, inputs)
        if stop < len(self.resnets):
            return hidden_states
        if self.upsamplers is not None:
            hidden_states = self.upsamplers[0](hidden_states, upsample_size)
        return hidden_states
