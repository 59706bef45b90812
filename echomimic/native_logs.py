"""Silencing the C++ log lines MediaPipe (absl, glog, TFLite/LiteRT) writes straight to the process's stderr.

Those lines ("W0000 ...", "INFO: Created TensorFlow Lite XNNPACK delegate", "Sparsity tensors may not yet be
fully supported", ...) bypass Python, so ``sys.stderr`` cannot filter them. While a native call runs, file
descriptor 2 points at a scratch file; afterwards every captured line that is not such a log line is written
back to stderr, so nothing of anyone else's (another ComfyUI thread, a Python warning) is lost.

``ECHOMIMIC_VERBOSE=1`` (the CLI's ``--verbose``) shows the native logs as they are.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "ECHOMIMIC_VERBOSE"

# absl/glog ("W0000 00:00:1700000000.123456  123 file.cc:12] ..."), TFLite ("INFO: ...", "WARNING: ..."),
# and the absl pre-initialisation notice.
NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} [\d:. ]+\s*\d+ \S+:\d+\]"
    r"|(?:INFO|WARNING|ERROR|VERBOSE): "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|.*(?:TensorFlow Lite|XNNPACK|LiteRT|Sparsity tensors|inference_feedback_manager|gl_context))"
)

_lock = threading.RLock()
_depth = 0


def native_logs_shown() -> bool:
    """Whether the user asked to see MediaPipe's own log lines."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def kept_lines(captured: str) -> str:
    """``captured`` without MediaPipe's native log lines."""
    return "".join(line for line in captured.splitlines(keepends=True) if not NATIVE_LOG_LINE.match(line))


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Run the block with MediaPipe's native stderr logging hidden (unless :func:`native_logs_shown`)."""
    global _depth
    if native_logs_shown():
        yield
        return
    with _lock:
        if _depth:  # already redirected by an enclosing block
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (a GUI host): nothing to silence
            yield
            return
        scratch = tempfile.TemporaryFile(mode="w+b")
        _depth = 1
        try:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
        finally:
            _depth = 0
            os.close(saved)
            scratch.seek(0)
            rest = kept_lines(scratch.read().decode("utf-8", errors="replace"))
            scratch.close()
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
