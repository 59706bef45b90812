"""One MediaPipe model on single RGB uint8 frames, through the legacy ``solutions`` API or the Tasks API.

The face mesh, face detector, hand and pose extractors differ only in which model they build and how they read
its result; building it, running a frame (``process`` vs ``detect`` on an ``mp.Image``), closing it and keeping
MediaPipe's C++ logs quiet (:mod:`echomimic.native_logs`) are here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .native_logs import quiet_native_logs

if TYPE_CHECKING:
    from .landmarks.backends import Backend


class MediaPipeRunner:
    """A MediaPipe model for ``backend``. Use as a context manager.

    legacy: builds the ``mediapipe.solutions`` object (has ``process(frame)``).
    tasks: builds the Tasks object from ``BaseOptions`` pointing at ``backend.model_path`` (has ``detect``).
    """

    def __init__(self, backend: Backend, *, legacy: Callable[[], Any], tasks: Callable[[Any], Any]) -> None:
        self.backend = backend
        with quiet_native_logs():
            if backend.name == "legacy":
                self._model = legacy()
            else:
                from mediapipe.tasks.python.core.base_options import BaseOptions

                self._model = tasks(BaseOptions(model_asset_path=str(backend.model_path)))

    @property
    def legacy(self) -> bool:
        return self.backend.name == "legacy"

    def run(self, frame: np.ndarray) -> Any:
        """frame: [H, W, 3] uint8 RGB. The API's own result object (legacy or Tasks)."""
        with quiet_native_logs():
            if self.legacy:
                return self._model.process(frame)
            import mediapipe as mp

            return self._model.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame))

    def close(self) -> None:
        with quiet_native_logs():
            self._model.close()

    def __enter__(self) -> MediaPipeRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
