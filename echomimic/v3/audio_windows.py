"""Which audio windows each latent frame of the flash transformer sees (the official ``get_ai2v_audio``).

The Wan VAE packs video frame 0 alone into latent frame 0 and video frames 4j-3 .. 4j into latent frame j.
The audio features come as one 5-frame window per video frame (centred, ±2). Latent frame 0 keeps its frame's
whole window; every later latent frame gathers 8 windows of its 4 frames: the first frame's windows 0, 1, 2,
the centre window of the two middle frames, and the last frame's windows 2, 3, 4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

VIDEO_FRAMES_PER_LATENT = 4
WINDOW = 5
LATTER_WINDOWS = WINDOW + VIDEO_FRAMES_PER_LATENT - 1  # 8


def split_for_latent_frames(audio_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, 5, L, C) per-video-frame windows -> first (B, 1, 5, L, C), latter (B, F_lat - 1, 8, L, C).

    F must be 1 + 4k (the frame counts the pipeline makes).
    """
    import torch

    frames = audio_embeds.shape[1]
    if audio_embeds.shape[2] != WINDOW or (frames - 1) % VIDEO_FRAMES_PER_LATENT:
        raise ValueError(f"audio windows of shape {tuple(audio_embeds.shape)}: need (B, 1 + 4k, 5, L, C)")
    first = audio_embeds[:, :1]
    groups = audio_embeds[:, 1:].unflatten(1, (-1, VIDEO_FRAMES_PER_LATENT))  # (B, n, 4, 5, L, C)
    centre = WINDOW // 2
    latter = torch.cat(
        [
            groups[:, :, 0, : centre + 1],  # first frame: windows 0..2
            groups[:, :, 1:-1, centre],  # middle frames: the centre window each
            groups[:, :, -1, centre:],  # last frame: windows 2..4
        ],
        dim=2,
    )
    return first, latter
