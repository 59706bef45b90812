"""The deep-feature cache (DeepCache-style), opt-in: reuse the UNet's deep features between full steps.

Neighbouring denoising steps change the deep, low-resolution features of the UNet little. With
``deep_cache_interval`` N > 1, step 0, N, 2N, ... are *full* steps: every layer runs and the features
entering the UNet's last ``deep_cache_depth`` up layers (the *deep features*, see
:class:`~echomimic.models.unet.DeepCacheCall`) are stored. The N - 1 steps after each are *cached* steps:
only the shallow layers run (``conv_in``, the first down layers, the last up layers), on the stored deep
features. Off by default (0 or 1): the exact path, bit for bit.

Why per frame, not per window. The sampler denoises overlapping context windows, and rotates them by a few
frames every step (``CONDITIONING_CONVENTIONS``' context shift), so a cached step's windows are not the windows the
full step ran; and the motion modules mix the frames of a window, so a window's features cannot be reused
for another window as a block. The cache is therefore kept per latent frame of the video and per CFG half
(unconditional and conditional rows have their own features): on a full step each window's deep features
are added to its frames' entries (a frame in two overlapping windows gets their mean, as its velocity does),
and on a cached step each window gathers its frames' entries by frame index, whatever window made them.
Full and cached steps are decided per step, never per window: on a full step every window is full, so every
frame's entry is refreshed; all windows of a cached step read entries of the same full step.

Memory: one tensor [2 with CFG else 1, frames, C, h, w] in the UNet's dtype, on its device, for the whole
video (:attr:`FrameFeatureCache.nbytes`), plus one count per frame. C and the resolution follow the depth: at depth
1 and 2 of the full-size UNet, 320 channels at the latent size (1/8 of the picture), at depth 3, 640. At
512x512 in fp16 with CFG, depth 2: 5.2 MB per frame (1.3 GB for 10 s at 24 fps); 768x768: 11.8 MB per frame.
It grows with the video's length, unlike the rest of the sampler: a run that does not fit in memory should
leave the cache off or make shorter videos.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from ..models.unet import DeepCacheCall


class FrameFeatureCache:
    """The deep features of every latent frame (and CFG half) of one video, from the last full step."""

    def __init__(self, interval: int, depth: int, num_frames: int, halves: int) -> None:
        if interval < 2:
            raise ValueError("a deep-feature cache needs an interval of at least 2")
        self.interval, self.depth, self.num_frames, self.halves = interval, depth, num_frames, halves
        self.features: torch.Tensor | None = None  # [halves, num_frames, C, h, w]
        self.counts: torch.Tensor | None = None  # [num_frames]: windows that added to each frame this full step

    def is_full_step(self, step_index: int) -> bool:
        """Steps 0, interval, 2 * interval, ... run the whole UNet."""
        return step_index % self.interval == 0

    def call(self, step_index: int, windows: Sequence[Sequence[int]]) -> DeepCacheCall:
        """The UNet call for ``windows`` (one window batch) at ``step_index``: full, or cached from the frames'
        entries (rows ordered (half, window, frame), as the sampler's batch)."""
        if self.is_full_step(step_index):
            return DeepCacheCall(self.depth)
        assert self.features is not None, "a cached step before any full step"
        index = _frame_index(windows, self.features.device)
        gathered = self.features.index_select(1, index)
        return DeepCacheCall(self.depth, gathered.reshape(-1, *gathered.shape[2:]))

    def store(self, windows: Sequence[Sequence[int]], call: DeepCacheCall) -> None:
        """After a full call: add its deep features to the entries of the windows' frames."""
        if call.features is None:
            raise ValueError("the full UNet call handed back no deep features")
        features = call.features
        features = features.reshape(self.halves, -1, *features.shape[1:])
        index = _frame_index(windows, features.device)
        if self.features is None or self.counts is None:
            self.features = features.new_zeros((self.halves, self.num_frames, *features.shape[2:]))
            self.counts = torch.zeros(self.num_frames, dtype=torch.float32, device=features.device)
        self.features.index_add_(1, index, features)
        self.counts.index_add_(0, index, torch.ones(index.shape[0], device=index.device))

    def start_full_step(self) -> None:
        """Before the first window of a full step: the entries start again from zero."""
        if self.features is not None and self.counts is not None:
            self.features.zero_()
            self.counts.zero_()

    def finish_full_step(self) -> None:
        """After the last window of a full step: each entry becomes the mean over the windows that held it."""
        assert self.features is not None and self.counts is not None
        self.features.div_(self.counts.clamp(min=1.0).to(self.features.dtype).view(1, -1, 1, 1, 1))

    @property
    def nbytes(self) -> int:
        return 0 if self.features is None else self.features.numel() * self.features.element_size()


def _frame_index(windows: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    return torch.tensor([frame for window in windows for frame in window], dtype=torch.long, device=device)


def check_depth(depth: int, skip_count: int) -> None:
    """:class:`InputError` for a depth beyond the UNet's ``skip_count`` skip connections (12 in the full-size
    UNet; the settings allow up to that, a smaller config may have fewer)."""
    if not 1 <= depth <= skip_count:
        raise InputError(f"deep_cache_depth must be between 1 and {skip_count} for this UNet, got {depth}.")
