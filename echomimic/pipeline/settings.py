"""Sampling settings: the one place where every sampling setting is defined, defaulted and validated.

The command line and the nodes build a :class:`SamplingSettings` and call :meth:`validated` before any
model loads, so both accept and refuse exactly the same values with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class SamplingSettings:
    width: int = 512
    height: int = 512
    length: int = 0  # 0: as many frames as the audio (or the landmarks) provide
    steps: int = 30
    cfg: float = 2.5
    seed: int = 420
    fps: float = 24.0
    context_frames: int = 12
    context_overlap: int = 3
    decode_batch: int = 4

    @classmethod
    def defaults_for(cls, variant: str) -> SamplingSettings:
        """The official defaults: 30 steps / cfg 2.5, accelerated 6 steps / cfg 1."""
        if variant.endswith("_acc"):
            return cls(steps=6, cfg=1.0)
        return cls()

    def validated(self) -> SamplingSettings:
        if self.width < 8 or self.height < 8 or self.width % 8 or self.height % 8:
            raise InputError(
                f"Width and height must be multiples of 8 (got {self.width}x{self.height}); "
                "for example 512x512 or 512x768."
            )
        if self.length < 0:
            raise InputError("Video length must be at least 1 frame (or 0 to follow the audio).")
        if self.steps < 1:
            raise InputError("Steps must be at least 1.")
        if self.cfg < 0:
            raise InputError("cfg must not be negative.")
        if self.fps <= 0:
            raise InputError("fps must be positive.")
        if self.context_frames < 1:
            raise InputError("context_frames must be at least 1.")
        if not 0 <= self.context_overlap < self.context_frames:
            raise InputError(
                f"context_overlap ({self.context_overlap}) must be smaller than context_frames "
                f"({self.context_frames}) and not negative."
            )
        if self.decode_batch < 1:
            raise InputError("decode_batch must be at least 1.")
        return self
