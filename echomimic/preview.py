"""Fast previews while sampling: SD1.5 latents -> rough RGB with one linear map, no VAE decode.

Each latent channel contributes a fixed RGB colour (the factors ComfyUI uses for SD1.5 latents, fitted
on the latent space scaled by 0.18215, which is what the sampler holds). The result is 1/8 of the video
size and close enough to judge pose, framing and colour after a few steps.

:class:`PreviewWriter` is an ``on_step`` callback for :func:`echomimic.pipeline.sampler.generate_video`
that writes PNG files; the ComfyUI sampler node sends the same picture to the progress bar. Neither
touches the latents (the sampler's output is the same with and without previews).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path, check_output_folder
from .errors import InputError

if TYPE_CHECKING:
    import torch

# RGB contribution of each of the 4 SD1.5 latent channels (rows), no bias: ComfyUI's latent_formats.SD15.
SD15_LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


def preview_frame_indices(num_frames: int, count: int = 1) -> list[int]:
    """Which frames a preview shows: the middle one (count 1), or ``count`` evenly spread frames."""
    if num_frames < 1:
        raise InputError("There are no frames to preview.")
    count = max(1, min(int(count), num_frames))
    if count == 1:
        return [num_frames // 2]
    return [round(i * (num_frames - 1) / (count - 1)) for i in range(count)]


def latents_to_rgb(latents: torch.Tensor) -> torch.Tensor:
    """Scaled SD1.5 latents [..., 4, h, w] -> approximate RGB [..., h, w, 3] float32 in 0..1 (a new tensor)."""
    import torch

    if latents.ndim < 3 or latents.shape[-3] != 4:
        raise InputError(f"Expected SD1.5 latents [..., 4, h, w], got shape {tuple(latents.shape)}.")
    factors = torch.tensor(SD15_LATENT_RGB_FACTORS, dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("...chw,cr->...hwr", latents.detach().float(), factors)
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)


def preview_image(latents: torch.Tensor, frames: int = 1) -> np.ndarray:
    """Video latents [1, 4, F, h, w] -> preview [h, frames * w, 3] uint8: the chosen frames side by side."""
    import torch

    if latents.ndim != 5 or latents.shape[0] != 1:
        raise InputError(f"Expected video latents [1, 4, F, h, w], got shape {tuple(latents.shape)}.")
    indices = preview_frame_indices(int(latents.shape[2]), frames)
    picked = latents[0, :, indices].transpose(0, 1)  # [k, 4, h, w]
    rgb = latents_to_rgb(picked)  # [k, h, w, 3]
    strip = rgb.permute(1, 0, 2, 3).reshape(rgb.shape[1], -1, 3)  # frames left to right
    return (strip * 255.0).round().to(dtype=torch.uint8, device="cpu").numpy()


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an [H, W, 3] uint8 image as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(np.ascontiguousarray(image)).save(temporary, format="PNG")
    return Path(path)


class PreviewWriter:
    """An ``on_step(step, latents)`` callback writing ``<folder>/<prefix>_step_NNN.png`` every ``every`` steps
    (and after the last step when ``steps`` is given)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        every: int = 1,
        *,
        prefix: str = "preview",
        frames: int = 1,
        steps: int | None = None,
    ) -> None:
        if int(every) < 1:
            raise InputError(f"Preview every N steps needs N >= 1, got {every}.")
        self.folder = check_output_folder(folder)
        self.every = int(every)
        self.prefix = prefix
        self.frames = int(frames)
        self.steps = steps
        self.written: list[Path] = []

    def __call__(self, step: int, latents: torch.Tensor) -> None:
        last = self.steps is not None and step + 1 == self.steps
        if (step + 1) % self.every and not last:
            return
        path = self.folder / f"{self.prefix}_step_{step + 1:03d}.png"
        self.written.append(write_png(preview_image(latents, self.frames), path))


__all__ = [
    "SD15_LATENT_RGB_FACTORS",
    "PreviewWriter",
    "latents_to_rgb",
    "preview_frame_indices",
    "preview_image",
    "write_png",
]
