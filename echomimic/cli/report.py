"""Status and progress lines of the CLI on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def count(number: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def duration(seconds: float) -> str:
    """A rough, readable duration: ``42s``, ``7m 05s``, ``3h 12m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


NO_GPU_WARNING = (
    "warning: no GPU found: running on the CPU, which takes hours for a few seconds of video. "
    "To use an NVIDIA GPU, install a CUDA build of torch (https://pytorch.org) and pass "
    "--device cuda."
)


def _first_unit_text(info: Any, elapsed: float, total: int) -> str:
    if getattr(info, "unit", "window") == "chunk":  # V3: steps of every chunk, and each chunk's decode
        return f"the first step took {elapsed:.1f} s; {total} steps and decodes in all"
    return f"the first window took {elapsed:.1f} s; {total} windows over all steps"


class _Reporter:
    """Status lines on stderr; a single rewritten progress line on a terminal.

    ``clock`` (seconds, monotonic) is a parameter so that tests can drive the estimates.
    """

    def __init__(self, quiet: bool, clock: Callable[[], float] = time.perf_counter) -> None:
        self.quiet = quiet
        self.interactive = sys.stderr.isatty()
        self.clock = clock
        self._last_step = -1
        self._sampling_started: float | None = None
        self._estimate_whole_run = False

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A warning: shown even with ``--quiet``."""
        print(message, file=sys.stderr, flush=True)

    def warn_no_gpu(self) -> None:
        """The run fell back to the CPU: say so now, and estimate the whole run after the first window."""
        self.warn(NO_GPU_WARNING)
        self._estimate_whole_run = True

    def start_sampling(self) -> None:
        """Denoising starts now: elapsed and remaining times count from here."""
        self._sampling_started = self.clock()

    def progress(self, info: Any) -> None:
        """Receives echomimic.pipeline.sampler.ProgressInfo after each (step, window)."""
        now = self.clock()
        if self._sampling_started is None:
            self._sampling_started = now
        elapsed = now - self._sampling_started
        done, total = max(info.done, 1), max(info.total, 1)
        remaining = elapsed / done * (total - done)
        if self._estimate_whole_run:
            self._estimate_whole_run = False
            self.warn(
                f"estimate on the CPU: about {duration(elapsed * total / done)} for the whole run "
                f"({_first_unit_text(info, elapsed, total)})"
            )
        if self.quiet:
            return
        line = (
            f"denoising {100 * info.done / total:5.1f}%  step {info.step + 1}/{info.steps}  "
            f"{getattr(info, 'unit', 'window')} {info.window + 1}/{info.windows}  elapsed {duration(elapsed)}  "
            f"remaining ~{duration(remaining)}"
        )
        if self.interactive:
            end = "\n" if info.done >= info.total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        elif info.step != self._last_step or info.done >= info.total:
            print(line, file=sys.stderr, flush=True)
        self._last_step = info.step
