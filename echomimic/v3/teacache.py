"""TeaCache for the flash transformer: skip the blocks when the timestep modulation barely changed.

Two behaviours, both implementing the transformer's ``BlockCache``:

- ``official`` (the parity mode, what infer_flash.py does): one counter of transformer CALLS (two per step
  with audio guidance), one stored residual and one previous modulation shared by the audio and the
  zeroed-audio call, a reset after ``num_steps`` calls (half the steps with guidance) that reopens the
  forced-compute window. Its consequence: after the window every zeroed-audio call sees a distance of 0,
  is skipped and returns the audio call's result, so the audio guidance is silently off at those steps.
- ``per-step`` (our fix): the decision is made once per step on the audio call and both calls follow it;
  each call keeps its own residual, so a skipped step still applies the audio guidance; the forced-compute
  window covers the first ``skip_start`` steps, and nothing resets mid-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# get_teacache_coefficients("Wan2.1-Fun-V1.1-1.3B-InP"): the polynomial that rescales the modulation distance.
WAN21_FUN_13B_COEFFICIENTS = (-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02)
DEFAULT_THRESHOLD = 0.1
DEFAULT_SKIP_START = 5
MODES = ("official", "per-step")


def relative_l1(previous: torch.Tensor, current: torch.Tensor) -> float:
    """mean |current - previous| / mean |previous| (in the tensors' dtype, as the official code)."""
    return float(((current - previous).abs().mean() / previous.abs().mean()).item())


class OfficialTeaCache:
    """The official TeaCache, call by call (see the module doc). ``computed`` records each call's decision."""

    def __init__(
        self,
        num_steps: int,
        threshold: float = DEFAULT_THRESHOLD,
        skip_start: int = DEFAULT_SKIP_START,
        coefficients: tuple[float, ...] = WAN21_FUN_13B_COEFFICIENTS,
    ) -> None:
        self.num_steps, self.threshold, self.skip_start = num_steps, threshold, skip_start
        self.rescale = np.poly1d(coefficients)
        self.count = 0
        self.accumulated = 0.0
        self.previous: torch.Tensor | None = None
        self.residual: torch.Tensor | None = None
        self.computed: list[bool] = []

    def should_compute(self, e0: torch.Tensor) -> bool:
        if self.count < self.skip_start or self.previous is None:
            compute, self.accumulated = True, 0.0
        else:
            self.accumulated += float(self.rescale(relative_l1(self.previous, e0)))
            compute = self.accumulated >= self.threshold
            if compute:
                self.accumulated = 0.0
        self.previous = e0
        self.computed.append(compute)
        self.count += 1
        if self.count == self.num_steps:  # the official reset after num_steps CALLS; the residual is kept for
            self.count, self.accumulated, self.previous = 0, 0.0, None  # this call (the next one computes)
        return compute

    def store(self, residual: torch.Tensor) -> None:
        self.residual = residual

    def for_call(self, audio: bool) -> OfficialTeaCache:
        """The same cache for both calls of a step (the official sharing)."""
        return self


class _CallResidual:
    """One call's view of a :class:`PerStepTeaCache`: the step's decision, this call's own residual."""

    def __init__(self, owner: PerStepTeaCache, audio: bool) -> None:
        self.owner, self.audio = owner, audio
        self.residual: torch.Tensor | None = None

    def should_compute(self, e0: torch.Tensor) -> bool:
        if self.audio:
            self.owner.decide(e0)
        return self.owner.compute_now or self.residual is None

    def store(self, residual: torch.Tensor) -> None:
        self.residual = residual


class PerStepTeaCache:
    """TeaCache decided once per step, with separate residuals for the audio and zeroed-audio calls."""

    def __init__(
        self,
        num_steps: int,
        threshold: float = DEFAULT_THRESHOLD,
        skip_start: int = DEFAULT_SKIP_START,
        coefficients: tuple[float, ...] = WAN21_FUN_13B_COEFFICIENTS,
    ) -> None:
        self.num_steps, self.threshold, self.skip_start = num_steps, threshold, skip_start
        self.rescale = np.poly1d(coefficients)
        self.step = 0
        self.accumulated = 0.0
        self.previous: torch.Tensor | None = None
        self.compute_now = True
        self.computed: list[bool] = []
        self._calls = {True: _CallResidual(self, True), False: _CallResidual(self, False)}

    def decide(self, e0: torch.Tensor) -> None:
        if self.step < self.skip_start or self.previous is None:
            self.compute_now, self.accumulated = True, 0.0
        else:
            self.accumulated += float(self.rescale(relative_l1(self.previous, e0)))
            self.compute_now = self.accumulated >= self.threshold
            if self.compute_now:
                self.accumulated = 0.0
        self.previous = e0
        self.computed.append(self.compute_now)
        self.step += 1

    def for_call(self, audio: bool) -> _CallResidual:
        return self._calls[audio]


def make_teacache(
    mode: str, num_steps: int, threshold: float = DEFAULT_THRESHOLD, skip_start: int = DEFAULT_SKIP_START
) -> OfficialTeaCache | PerStepTeaCache:
    """A fresh cache for one sampling run (one chunk)."""
    if mode == "official":
        return OfficialTeaCache(num_steps, threshold, skip_start)
    if mode == "per-step":
        return PerStepTeaCache(num_steps, threshold, skip_start)
    raise ValueError(f"unknown TeaCache mode {mode!r}; use one of {', '.join(MODES)}")
