"""Face-mesh landmarks of an image batch with MediaPipe.

Each frame is processed on its own (image mode, like the official extractor), one face (the first
MediaPipe returns), with iris refinement: 478 points. Frames without a face are filled by linear
interpolation between the nearest frames with a face (copied from the nearest one at the ends)
and flagged in `LandmarkSequence.detected`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..mediapipe_runner import MediaPipeRunner
from .backends import FACE_LANDMARKER_FILE, Backend, choose_backend
from .images import as_image_batch, to_uint8_rgb
from .sequence import LandmarkSequence
from .topology import NUM_POINTS


class FaceMeshDetector:
    """Runs MediaPipe face mesh on single RGB uint8 frames. Use as a context manager."""

    def __init__(self, backend: Backend, min_confidence: float = 0.5) -> None:
        def legacy() -> Any:
            from mediapipe.python.solutions import face_mesh

            return face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=min_confidence
            )

        def tasks(base_options: Any) -> Any:
            from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions

            return FaceLandmarker.create_from_options(
                FaceLandmarkerOptions(
                    base_options=base_options,
                    num_faces=1,
                    min_face_detection_confidence=min_confidence,
                    min_face_presence_confidence=min_confidence,
                )
            )

        self.backend = backend
        self._runner = MediaPipeRunner(backend, legacy=legacy, tasks=tasks)

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.close()

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """frame: [H, W, 3] uint8 RGB. Returns [478, 3] float64 normalised (x/W, y/H, z/W), or None."""
        result = self._runner.run(frame)
        if self._runner.legacy:
            faces = result.multi_face_landmarks
            landmarks = faces[0].landmark if faces else None
        else:
            landmarks = result.face_landmarks[0] if result.face_landmarks else None
        if landmarks is None or len(landmarks) < NUM_POINTS:
            return None
        return np.array([(p.x, p.y, p.z) for p in landmarks[:NUM_POINTS]], dtype=np.float64)


def fill_missing_frames(points: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """Fill frames without a face from their neighbours.

    points: [F, N, C], rows where detected is False are ignored; detected: [F] bool with at least one True.
    Returns [F, N, C]: linear interpolation between the nearest detected frames, nearest copy at the ends.
    """
    frames = np.arange(points.shape[0])
    known = frames[detected]
    flat = points.reshape(points.shape[0], -1)
    filled = np.empty_like(flat)
    for column in range(flat.shape[1]):
        filled[:, column] = np.interp(frames, known, flat[known, column])
    return filled.reshape(points.shape)


def extract_landmarks(
    images: np.ndarray | Any,
    *,
    models_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
) -> LandmarkSequence:
    """Face-mesh landmarks (478 points with iris) of every frame.

    images: [F, H, W, 3] float 0..1 RGB (numpy or torch, ComfyUI IMAGE); [H, W, 3] is one frame.
    models_dir: folder with 'face_landmarker.task', needed only when the legacy API is missing.
    progress: called with (frames done, total) after each frame.
    backend: "auto" (legacy if installed, else Tasks), "legacy" or "tasks".
    legacy_available: override the check for the legacy API (None: ask mediapipe).
    Returns points [F, 478, 3] in pixels (x, y) and z * W; frames without a face are filled from
    their neighbours (detected False). Raises InputError when no frame has a face.
    """
    batch = as_image_batch(images)
    chosen = choose_backend(FACE_LANDMARKER_FILE, models_dir, backend=backend, legacy_available=legacy_available)
    num_frames, height, width = batch.shape[:3]
    points = np.zeros((num_frames, NUM_POINTS, 3), dtype=np.float64)
    detected = np.zeros(num_frames, dtype=bool)
    with FaceMeshDetector(chosen) as detector:
        for index in range(num_frames):
            normalised = detector.detect(to_uint8_rgb(batch[index]))
            if normalised is not None:
                points[index] = normalised * np.array([width, height, width], dtype=np.float64)
                detected[index] = True
            if progress is not None:
                progress(index + 1, num_frames)
    if not detected.any():
        raise InputError(
            f"No face was found in any of the {num_frames} frame(s). Use images with a clearly visible, "
            "roughly frontal face that fills a good part of the frame (crop closer if it is small)."
        )
    if not detected.all():
        points = fill_missing_frames(points, detected)
    return LandmarkSequence(points.astype(np.float32), width, height, detected)
