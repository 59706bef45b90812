"""Hand poses (and shoulders) of an image batch with MediaPipe's hand and pose landmarkers.

Each frame is processed on its own (image mode). MediaPipe's hand landmarks have the same 21-point
topology as the DWPose hands the official V2 data holds. Hand order: MediaPipe's "Left" label is the
person's left hand on an unmirrored photo (the shared reference photos show it at the image's right),
which is DWPose's hand 0; the legacy API's labels are those of a mirrored image and are swapped.
Frames where a hand is not found keep it empty (NaN): nothing is drawn for it,
as in the official data, and `HandPoseSequence.frames_without_hands` reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..landmarks.backends import Backend, choose_backend
from ..landmarks.images import as_image_batch, to_uint8_rgb
from ..mediapipe_runner import MediaPipeRunner
from ..release import HAND_LANDMARKER, POSE_LANDMARKER, MediaPipeModel
from .sequence import NUM_HAND_POINTS, NUM_HANDS, HandPoseSequence

POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER = 11, 12  # MediaPipe pose landmark indices (person's left/right)
DETECTED_POINT_SCORE = 1.0  # MediaPipe gives no per-point score; the official demo scores are ~1


def resolve_backend(
    model: MediaPipeModel, models_dir: str | Path | None, backend: str, legacy_available: bool | None
) -> Backend:
    """The MediaPipe API for `model`; with the Tasks API its file is found in models_dir or downloaded
    there on first use (landmarks.backends.choose_backend)."""
    return choose_backend(model, models_dir, backend=backend, legacy_available=legacy_available)


class HandDetector:
    """MediaPipe hands on single RGB uint8 frames (up to two hands). Use as a context manager."""

    def __init__(self, backend: Backend, min_confidence: float = 0.5) -> None:
        def legacy() -> Any:
            from mediapipe.python.solutions import hands

            return hands.Hands(static_image_mode=True, max_num_hands=NUM_HANDS, min_detection_confidence=min_confidence)

        def tasks(base_options: Any) -> Any:
            from mediapipe.tasks.python.vision import HandLandmarker, HandLandmarkerOptions

            return HandLandmarker.create_from_options(
                HandLandmarkerOptions(
                    base_options=base_options,
                    num_hands=NUM_HANDS,
                    min_hand_detection_confidence=min_confidence,
                    min_hand_presence_confidence=min_confidence,
                )
            )

        self.backend = backend
        self._runner = MediaPipeRunner(backend, legacy=legacy, tasks=tasks)

    def __enter__(self) -> HandDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.close()

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """frame: [H, W, 3] uint8 RGB. Returns [2, 21, 2] normalised (x, y) in DWPose hand order, NaN = not found."""
        found: list[tuple[str, float, np.ndarray]] = []  # (label, score, [21, 2])
        result = self._runner.run(frame)
        if self._runner.legacy:
            for landmarks, handedness in zip(
                result.multi_hand_landmarks or [], result.multi_handedness or [], strict=False
            ):
                best = handedness.classification[0]
                # The legacy solution labels hands as seen in a mirrored (selfie) image; the Tasks API
                # labels them as the person's own hands. Swap, so both give the person's hands.
                label = {"Left": "Right", "Right": "Left"}.get(best.label, best.label)
                found.append((label, best.score, np.array([(p.x, p.y) for p in landmarks.landmark])))
        else:
            for landmarks, handedness in zip(result.hand_landmarks, result.handedness, strict=False):
                best = handedness[0]
                found.append((best.category_name, best.score, np.array([(p.x, p.y) for p in landmarks])))
        return order_hands(found)


def order_hands(found: list[tuple[str, float, np.ndarray]]) -> np.ndarray:
    """Place detected hands in DWPose order: [person's left, person's right].

    found: (MediaPipe label "Left"/"Right", label score, [21, 2] points) per detected hand. When both
    hands get the same label, the one further right in the image is the person's left (a person facing
    the camera). Returns [2, 21, 2] with NaN for a hand not found.
    """
    hands = np.full((NUM_HANDS, NUM_HAND_POINTS, 2), np.nan)
    usable = [(label, score, points) for label, score, points in found if points.shape == (NUM_HAND_POINTS, 2)]
    labels = [label for label, _, _ in usable]
    if len(usable) == 2 and labels[0] == labels[1]:
        usable.sort(key=lambda hand: -float(hand[2][0, 0]))  # wrist x, rightmost first
        for slot, (_, _, points) in enumerate(usable):
            hands[slot] = points
        return hands
    for label, _score, points in sorted(usable, key=lambda hand: -hand[1]):
        slot = 0 if label == "Left" else 1
        if np.isnan(hands[slot]).all():
            hands[slot] = points
    return hands


class BodyDetector:
    """MediaPipe pose landmarker on single RGB uint8 frames: the shoulders. Use as a context manager."""

    def __init__(self, backend: Backend, min_confidence: float = 0.5) -> None:
        def legacy() -> Any:
            from mediapipe.python.solutions import pose

            return pose.Pose(static_image_mode=True, min_detection_confidence=min_confidence)

        def tasks(base_options: Any) -> Any:
            from mediapipe.tasks.python.vision import PoseLandmarker, PoseLandmarkerOptions

            return PoseLandmarker.create_from_options(
                PoseLandmarkerOptions(
                    base_options=base_options,
                    num_poses=1,
                    min_pose_detection_confidence=min_confidence,
                    min_pose_presence_confidence=min_confidence,
                )
            )

        self.backend = backend
        self._runner = MediaPipeRunner(backend, legacy=legacy, tasks=tasks)

    def __enter__(self) -> BodyDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.close()

    def shoulders(self, frame: np.ndarray) -> np.ndarray:
        """frame: [H, W, 3] uint8 RGB. Returns [2, 2] normalised (person's left, right shoulder), NaN if no body."""
        result = self._runner.run(frame)
        if self._runner.legacy:
            landmarks = result.pose_landmarks.landmark if result.pose_landmarks else None
        else:
            landmarks = result.pose_landmarks[0] if result.pose_landmarks else None
        if landmarks is None:
            return np.full((2, 2), np.nan)
        return np.array([(landmarks[i].x, landmarks[i].y) for i in (POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER)])


def find_shoulders(
    images: np.ndarray | Any,
    *,
    models_dir: str | Path | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Shoulders of the person in each frame. images: [F, H, W, 3] float 0..1 RGB.

    Returns [F, 2, 2] normalised (x, y) of the person's left and right shoulder, NaN where no body was found.
    """
    batch = as_image_batch(images)
    chosen = resolve_backend(POSE_LANDMARKER, models_dir, backend, legacy_available)
    return _detect_shoulders(chosen, batch, progress)


def _detect_shoulders(
    chosen: Backend,
    batch: np.ndarray,
    progress: Callable[[int, int], None] | None,
    done_before: int = 0,
    total: int = 0,
) -> np.ndarray:
    """[F, 2, 2] shoulders of every frame of ``batch``; progress counts on from ``done_before`` of ``total``."""
    total = total or done_before + batch.shape[0]
    shoulders = np.full((batch.shape[0], 2, 2), np.nan)
    with BodyDetector(chosen) as detector:
        for index in range(batch.shape[0]):
            shoulders[index] = detector.shoulders(to_uint8_rgb(batch[index]))
            if progress is not None:
                progress(done_before + index + 1, total)
    return shoulders


def extract_hand_poses(
    images: np.ndarray | Any,
    *,
    models_dir: str | Path | None = None,
    with_body: bool = True,
    backend: str = "auto",
    legacy_available: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HandPoseSequence:
    """Hand poses (2 hands x 21 points) of every frame, plus the shoulders for alignment.

    images: [F, H, W, 3] float 0..1 RGB (numpy or torch, ComfyUI IMAGE); [H, W, 3] is one frame.
    models_dir: folder with 'hand_landmarker.task' (and 'pose_landmarker_full.task' with with_body),
        needed when the installed mediapipe has no legacy API.
    with_body: also find the shoulders (MediaPipe pose landmarker), which `align_hand_poses` needs.
    progress: called with (steps done, total) (one step per frame and model).
    Returns the sequence at the frames' size; frames without a hand are listed by
    `frames_without_hands`. Raises InputError when no frame has any hand.
    """
    batch = as_image_batch(images)
    num_frames, height, width = batch.shape[:3]
    hand_backend = resolve_backend(HAND_LANDMARKER, models_dir, backend, legacy_available)
    body_backend = resolve_backend(POSE_LANDMARKER, models_dir, backend, legacy_available) if with_body else None
    total = num_frames * (2 if with_body else 1)
    points = np.full((num_frames, NUM_HANDS, NUM_HAND_POINTS, 2), np.nan)
    with HandDetector(hand_backend) as detector:
        for index in range(num_frames):
            points[index] = detector.detect(to_uint8_rgb(batch[index]))
            if progress is not None:
                progress(index + 1, total)
    shoulders = None if body_backend is None else _detect_shoulders(body_backend, batch, progress, num_frames, total)
    scores = np.where(np.isnan(points[..., 0]), np.nan, DETECTED_POINT_SCORE)
    sequence = HandPoseSequence(points, width, height, scores, shoulders)
    if not sequence.hands_found.any():
        raise InputError(
            f"No hand was found in any of the {num_frames} frame(s). Use a driving video where the "
            "hands are clearly visible (half-body framing), or import an official pose folder."
        )
    return sequence
