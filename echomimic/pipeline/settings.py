"""Sampling settings: the one place where every sampling setting is defined, defaulted and validated.

The command line and the nodes build a :class:`SamplingSettings` and call :meth:`validated` before any
model loads, so both accept and refuse exactly the same values with the same message.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .. import release
from ..errors import InputError
from .length import DEFAULT_LENGTH_POLICY, LENGTH_POLICIES

_V1_AUDIO = release.VARIANTS["audio"]  # the plain constructor's defaults: V1 audio (defaults_for: any variant)


@dataclass(frozen=True)
class SamplingSettings:
    width: int = release.DEFAULT_SIZE["v1"][0]
    height: int = release.DEFAULT_SIZE["v1"][1]
    length: int = 0  # 0: as many frames as the audio (or the landmarks) provide
    steps: int = _V1_AUDIO.default_steps
    cfg: float = _V1_AUDIO.default_cfg
    seed: int = release.DEFAULT_SEED["v1"]
    fps: float = 0.0  # 0: the audio features' fps (release.DEFAULT_FPS without audio); else it must match them
    context_frames: int = release.DEFAULT_CONTEXT_FRAMES
    context_overlap: int = release.DEFAULT_CONTEXT_OVERLAP
    decode_batch: int = 0  # frames per VAE decode call; 0: auto, per device (pipeline.vae.auto_decode_batch)
    window_batch: int = 0  # context windows per UNet call; 0: auto (1 on CPU, as many as fit on a GPU)
    length_policy: str = DEFAULT_LENGTH_POLICY  # landmarks / poses shorter than the video: see pipeline.length
    # Deep-feature cache (pipeline.deep_cache), opt-in: every deep_cache_interval-th step runs the whole UNet, the
    # steps between reuse its deep features; 0 or 1: off (exact). deep_cache_depth: the outermost skip
    # connections recomputed on the cached steps (1..12 in the full-size UNet).
    deep_cache_interval: int = 0
    deep_cache_depth: int = release.DEEP_CACHE_DEFAULT_DEPTH

    @classmethod
    def defaults_for(cls, variant: str) -> SamplingSettings:
        """The official defaults of ``variant`` (release.py): 30 steps / cfg 2.5, accelerated 6 steps / cfg 1;
        V1 512x512 seed 420, V2 768x768 seed 3407."""
        spec = release.variant(variant)
        width, height = release.DEFAULT_SIZE[spec.version]
        return cls(
            width=width,
            height=height,
            steps=spec.default_steps,
            cfg=spec.default_cfg,
            seed=release.DEFAULT_SEED[spec.version],
            context_frames=release.DEFAULT_CONTEXT_FRAMES,
            context_overlap=release.DEFAULT_CONTEXT_OVERLAP,
        )

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> SamplingSettings:
        """The official defaults of ``variant`` with each override that is not None applied (None: official)."""
        return dataclasses.replace(
            cls.defaults_for(variant), **{name: value for name, value in overrides.items() if value is not None}
        )

    def validated(
        self, max_context_frames: int = release.MOTION_MODULE_SPAN, variant: str | None = None
    ) -> SamplingSettings:
        """``self`` if every setting is usable, else :class:`InputError` saying what to change.

        Called before any model loads. ``max_context_frames``: the motion modules' span
        (``temporal_position_encoding_max_len`` of the config; 32 in every shipped config). ``variant``: also
        the rules that depend on it (the deep-feature cache is refused for the accelerated variants).
        """
        if not (math.isfinite(self.cfg) and math.isfinite(self.fps)):
            raise InputError(
                f"cfg ({self.cfg}) and fps ({self.fps}) must be ordinary numbers, not nan or inf; "
                "for example cfg 2.5 and fps 24."
            )
        if not 0 <= self.seed <= release.SEED_MAX:
            raise InputError(f"The seed must be between 0 and {release.SEED_MAX} (2**64 - 1), got {self.seed}.")
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
        if not self.fps >= 0:
            raise InputError("fps must be positive (or 0 to take the audio features' frame rate).")
        if not 1 <= self.context_frames <= max_context_frames:
            raise InputError(
                f"context_frames must be between 1 and {max_context_frames} (the motion modules' "
                f"span), got {self.context_frames}; the official value is 12."
            )
        if not 0 <= self.context_overlap < self.context_frames:
            raise InputError(
                f"context_overlap ({self.context_overlap}) must be smaller than context_frames "
                f"({self.context_frames}) and not negative."
            )
        if self.decode_batch < 0:
            raise InputError("decode_batch must be at least 1 (or 0: automatic, per device).")
        if self.window_batch < 0:
            raise InputError("window_batch must be at least 1 (or 0: automatic, per device).")
        if self.length_policy not in LENGTH_POLICIES:
            raise InputError(
                f"Unknown length policy {self.length_policy!r}; choose one of {', '.join(LENGTH_POLICIES)}."
            )
        if self.deep_cache_interval < 0:
            raise InputError("deep_cache_interval must be at least 2 to cache (0 or 1: off).")
        if self.deep_cache_interval > 1 and not 1 <= self.deep_cache_depth <= release.DEEP_CACHE_MAX_DEPTH:
            raise InputError(
                f"deep_cache_depth must be between 1 and {release.DEEP_CACHE_MAX_DEPTH}, got {self.deep_cache_depth}; "
                f"the default is {release.DEEP_CACHE_DEFAULT_DEPTH}."
            )
        if variant is not None and self.deep_cache_interval > 1 and release.variant(variant).accelerated:
            raise InputError(
                f"deep_cache_interval {self.deep_cache_interval}: the deep-feature cache is for the 30-step "
                "variants; the accelerated variants take 6 steps already: set it to 0."
            )
        return self
