"""Status and progress lines of the CLI on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any


class _Reporter:
    """Status lines on stderr; a single rewritten progress line on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.interactive = sys.stderr.isatty()
        self._last_step = -1
        self._start = time.perf_counter()

    def info(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(self, info: Any) -> None:
        """Receives echomimic.pipeline.sampler.ProgressInfo after each (step, window)."""
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._start
        line = (f"denoising {100 * info.done / max(info.total, 1):5.1f}%  step {info.step + 1}/{info.steps}  "
                f"window {info.window + 1}/{info.windows}  {elapsed:7.1f}s")
        if self.interactive:
            end = "\n" if info.done >= info.total else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        elif info.step != self._last_step or info.done >= info.total:
            print(line, file=sys.stderr, flush=True)
        self._last_step = info.step

