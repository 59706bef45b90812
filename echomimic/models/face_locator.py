"""Face locator / landmark encoder / V2 pose encoder: one small conv net from a mask (1 channel) or drawn
landmarks / hand poses (3 channels) to UNet features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import FaceLocatorConfig


class FaceLocator(nn.Module):
    """Four stages (channels e.g. 16, 32, 96, 256), three stride-2 convs (1/8 resolution), and a
    zero-initialised output conv to the UNet's first width; SiLU after every conv but the last."""

    def __init__(self, config: FaceLocatorConfig) -> None:
        super().__init__()
        widths = config.block_out_channels
        self.conv_in = nn.Conv2d(config.conditioning_channels, widths[0], kernel_size=3, padding=1)
        blocks = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            blocks.append(nn.Conv2d(width_in, width_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(width_in, width_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(widths[-1], config.conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]  # Conv2d has a bias here
        self.conditioning_channels = config.conditioning_channels

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        """conditioning: [B, C_in, F, H, W] in 0..1 -> [B, C0, F, H/8, W/8]."""
        batch, channels, frames, height, width = conditioning.shape
        if channels != self.conditioning_channels:
            raise ValueError(f"face locator expects {self.conditioning_channels} channels, got {channels}")
        dtype = self.conv_in.weight.dtype
        hidden = conditioning.to(dtype).permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
        hidden = F.silu(self.conv_in(hidden))
        for block in self.blocks:
            hidden = F.silu(block(hidden))
        hidden = self.conv_out(hidden)
        return hidden.reshape(batch, frames, *hidden.shape[1:]).permute(0, 2, 1, 3, 4)
