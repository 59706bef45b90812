"""``--save-frames``: the frames as one ``.npy`` file, written chunk by chunk as they are decoded.

The ``.npy`` header (shape ``[F, H, W, 3]`` float32) is written first and every chunk is appended, so the
frames are never all in memory. Plain writes rather than a memory map: a full disk is then an ``OSError``
(a clear message), where a memory map would die of SIGBUS. The file is written through
:func:`~echomimic.atomic.atomic_path`: it appears only once complete.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from .atomic import atomic_path

if TYPE_CHECKING:
    import torch


class NpyFramesWriter:
    """Writes ``num_frames`` frames of ``height`` x ``width`` RGB as float32 into ``path``; a context manager."""

    def __init__(self, path: str | os.PathLike, num_frames: int, height: int, width: int) -> None:
        self.path = Path(path)
        self.shape = (int(num_frames), int(height), int(width), 3)
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._file: BinaryIO | None = None

    def __enter__(self) -> NpyFramesWriter:
        import numpy as np

        try:
            temporary = self._stack.enter_context(atomic_path(self.path, suffix=".npy"))
            self._file = self._stack.enter_context(open(temporary, "wb"))  # noqa: SIM115 - closed by the stack
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
                "fortran_order": False,
                "shape": self.shape,
            }
            np.lib.format.write_array_header_1_0(self._file, header)
        except BaseException:
            self._stack.close()
            raise
        return self

    def write(self, frames: torch.Tensor) -> None:
        """Append ``[n, H, W, 3]`` float frames (0..1)."""
        import numpy as np

        chunk = np.ascontiguousarray(frames.detach().cpu().float().numpy(), dtype="<f4")
        if chunk.shape[1:] != self.shape[1:] or self.frames_written + chunk.shape[0] > self.shape[0]:
            raise ValueError(
                f"frames {chunk.shape} do not fit the .npy of shape {self.shape} ({self.frames_written} written)"
            )
        assert self._file is not None
        self._file.write(chunk.tobytes())
        self.frames_written += chunk.shape[0]

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None and self.frames_written != self.shape[0]:
            short = ValueError(f"{self.frames_written} of {self.shape[0]} frames were written to {self.path}")
            self._stack.__exit__(ValueError, short, None)  # the temporary file is removed, never renamed
            raise short
        self._stack.__exit__(kind, error, traceback)
