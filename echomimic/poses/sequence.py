"""`HandPoseSequence`: two hands x 21 points per frame (the DWPose hand topology EchoMimic V2 draws).

Saved as JSON (users edit and share them; never pickled). Layout::

    {"format": "echomimic-hand-poses", "version": 1, "width": W, "height": H,
     "hand_order": ["left", "right"],                       # the person's left hand first, as DWPose
     "hands": [[hand0, hand1], ... F ...],                  # hand = null (not found) or 21 points
                                                            # point = [x, y, score] or null (not found)
     "shoulders": [[[x, y], [x, y]] or null, ... F ...]}    # optional: person's left, right shoulder

x and y are normalised to the frame (0..1, x / W and y / H; values outside the frame are allowed);
W x H is the size of the frame the poses were taken in: they are drawn at that aspect ratio.
Scores are the detector's confidence (the official demo poses go slightly above 1); they set how
bright each edge and point is drawn. Numbers are written at full float precision, so saving and
loading gives exactly the same drawing. The shoulders are what `align_hand_poses` moves onto the
reference person.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from ..errors import InputError
from ..landmarks.sequence import COORDINATE_LIMIT, check_coordinates, frame_side, parse_json, read_json_text

JSON_FORMAT = "echomimic-hand-poses"
JSON_VERSION = 1
NUM_HANDS = 2
NUM_HAND_POINTS = 21
HAND_ORDER = ("left", "right")  # the person's own left / right (DWPose order)
# Scores set brightness (255 * score, saturated); the official demo poses go slightly above 1.
SCORE_LIMIT = 100.0


def _nan_array(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float64)


@dataclass(eq=False, repr=False)  # arrays: no element-wise ==, no huge repr
class HandPoseSequence:
    """Hand poses of F frames.

    points: [F, 2, 21, 2] float64 (x, y) normalised to the frame; NaN marks a point (or a whole hand)
        that was not found. Hand 0 is the person's left hand, hand 1 the right one.
    scores: [F, 2, 21] float64 confidence per point (NaN where the point is NaN); None = 1 everywhere.
    width, height: size in pixels of the frames the poses belong to (sets the aspect ratio).
    shoulders: optional [F, 2, 2] float64 normalised (x, y) of the person's left and right shoulder,
        NaN where no body was found; used to align the poses to a reference person.
    """

    points: np.ndarray
    width: int
    height: int
    scores: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None: 1 everywhere (__post_init__)
    shoulders: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        points = np.array(self.points, dtype=np.float64)
        if points.ndim == 3:
            points = points[None]
        expected = (NUM_HANDS, NUM_HAND_POINTS, 2)
        if points.ndim != 4 or points.shape[1:] != expected:
            raise InputError(
                f"Hand poses must have shape [frames, {NUM_HANDS}, {NUM_HAND_POINTS}, 2], got "
                f"{tuple(np.shape(self.points))}. Extract them with extract_hand_poses."
            )
        if points.shape[0] == 0:
            raise InputError("The hand pose sequence has no frames; give at least one frame.")
        num_frames = points.shape[0]
        scores: np.ndarray | None
        if self.scores is None:
            scores = np.ones(points.shape[:3], dtype=np.float64)
        else:
            scores = (
                np.array(self.scores, dtype=np.float64).reshape(-1, NUM_HANDS, NUM_HAND_POINTS)
                if np.size(self.scores) == num_frames * NUM_HANDS * NUM_HAND_POINTS
                else None
            )
            if scores is None:
                raise InputError(
                    f"Hand pose scores must have shape [{num_frames}, {NUM_HANDS}, "
                    f"{NUM_HAND_POINTS}] (one per point), got {tuple(np.shape(self.scores))}."
                )
        # Finite and bounded (NaN = absent): an Infinity or 1e30 would make drawing and alignment overflow.
        check_coordinates(points, COORDINATE_LIMIT, "A hand point coordinate (frame, hand, point, axis)")
        with np.errstate(invalid="ignore"):
            bad_score = ~np.isnan(scores) & ~((scores >= 0) & (scores <= SCORE_LIMIT))
        if bad_score.any():
            first = tuple(int(i) for i in np.argwhere(bad_score)[0])
            raise InputError(
                f"The hand point score at {first} (frame, hand, point) is {scores[first]!r}; scores "
                f"are confidences in 0..{SCORE_LIMIT:g}. The file is damaged or not made by EchoMimic."
            )
        missing = np.isnan(points).any(axis=-1) | np.isnan(scores)
        points[missing] = np.nan
        scores[missing] = np.nan
        self.points, self.scores = points, scores
        if self.shoulders is not None:
            shoulders = np.array(self.shoulders, dtype=np.float64)
            if shoulders.shape != (num_frames, 2, 2):
                raise InputError(
                    f"Shoulders must have shape [{num_frames}, 2, 2] (left, right x/y per frame), "
                    f"got {tuple(shoulders.shape)}."
                )
            check_coordinates(shoulders, COORDINATE_LIMIT, "A shoulder coordinate (frame, shoulder, axis)")
            shoulders[np.isnan(shoulders).any(axis=(1, 2))] = np.nan  # a body has both shoulders or none
            self.shoulders = shoulders
        self.width, self.height = frame_side(self.width, "width"), frame_side(self.height, "height")

    def __repr__(self) -> str:
        return (
            f"HandPoseSequence(frames={self.num_frames}, size={self.width}x{self.height}, "
            f"frames_without_hands={len(self.frames_without_hands)})"
        )

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def aspect(self) -> float:
        """Width / height of the frames the poses belong to."""
        return self.width / self.height

    @property
    def hands_found(self) -> np.ndarray:
        """[F, 2] bool: the hand has at least one point."""
        return ~np.isnan(self.points).all(axis=(2, 3))

    @property
    def frames_without_hands(self) -> list[int]:
        """Indices of the frames where neither hand was found (nothing is drawn there)."""
        return [int(i) for i in np.flatnonzero(~self.hands_found.any(axis=1))]

    def check_has_hands(self) -> None:
        """Raise InputError when no frame has a hand (the video would get no hand motion at all)."""
        if not self.hands_found.any():
            raise InputError(
                f"The hand pose sequence ({self.num_frames} frames) has no hand in any frame. "
                "Use a driving video where the hands are visible, or import an official pose folder."
            )

    def blank_frames(self) -> list[int]:
        """Frames that draw nothing: no point both present and inside the frame (the official drawing skips
        points at or left of / above the edge; cv2 clips those past it) with a visible score."""
        x, y = self.points[..., 0], self.points[..., 1]
        with np.errstate(invalid="ignore"):  # NaN compares False: absent
            visible = (x > 0) & (x < 1) & (y > 0) & (y < 1) & (self.scores * 255 >= 1)
        return np.flatnonzero(~visible.any(axis=(1, 2))).tolist()

    def check_drawable(self, source: str = "The hand poses") -> list[int]:
        """Raise :class:`InputError` when no frame draws anything (the video would get no hand motion at all);
        otherwise return the blank frames (:meth:`blank_frames`) for a report."""
        blank = self.blank_frames()
        if len(blank) == self.num_frames:
            raise InputError(
                f"{source} draw nothing: in all {self.num_frames} frames every hand point is missing, has a zero "
                "score, or lies outside the frame. Use poses extracted from a video where the hands are visible "
                "(or, for aligned poses, a portrait whose shoulders are in the picture)."
            )
        return blank

    def check_aspect(self, width: int, height: int, *, tolerance: float = 0.01) -> None:
        """Raise InputError when the poses were taken at another aspect ratio than width x height."""
        wanted = width / height
        if abs(self.aspect - wanted) > tolerance * wanted:
            suggested_height = max(8, round(width / self.aspect / 8) * 8)
            raise InputError(
                f"The hand poses belong to {self.width}x{self.height} frames (aspect {self.aspect:.3f}; after "
                f"alignment, the portrait's) but are drawn at {width}x{height} (aspect {wanted:.3f}), which would "
                f"stretch the hands. Make the video the poses' shape (e.g. {width}x{suggested_height}), or crop the "
                "portrait (or the driving video) to the video's shape first."
            )

    def frames(self, indices: list[int] | np.ndarray) -> HandPoseSequence:
        """A new sequence made of the given frame indices (repeats allowed: loops, ping-pong)."""
        index = np.asarray(indices, dtype=np.int64)
        if index.size == 0 or index.min() < 0 or index.max() >= self.num_frames:
            raise InputError(f"Frame indices must be within 0..{self.num_frames - 1}.")
        shoulders = None if self.shoulders is None else self.shoulders[index]
        return HandPoseSequence(self.points[index], self.width, self.height, self.scores[index], shoulders)

    def to_json(self) -> str:
        hands = []
        for frame_points, frame_scores in zip(self.points.tolist(), self.scores.tolist(), strict=True):
            frame = []
            for hand_points, hand_scores in zip(frame_points, frame_scores, strict=True):
                hand = [
                    None if math.isnan(s) else [p[0], p[1], s] for p, s in zip(hand_points, hand_scores, strict=True)
                ]
                frame.append(None if all(point is None for point in hand) else hand)
            hands.append(frame)
        data: dict[str, Any] = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "width": self.width,
            "height": self.height,
            "hand_order": list(HAND_ORDER),
            "hands": hands,
        }
        if self.shoulders is not None:
            data["shoulders"] = [None if math.isnan(frame[0][0]) else frame for frame in self.shoulders.tolist()]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HandPoseSequence:
        data = parse_json(text, "hand pose file", "Give a file saved by HandPoseSequence.save.")
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise InputError(
                f'This JSON is not an EchoMimic hand pose sequence (expected "format": '
                f'"{JSON_FORMAT}"). Give a file saved by HandPoseSequence.save, or import an '
                "official pose folder."
            )
        if data.get("version") != JSON_VERSION:
            raise InputError(
                f"Hand pose file version {data.get('version')!r} is not supported (this version "
                f"reads {JSON_VERSION}); extract the poses again."
            )
        try:
            frames = data["hands"]
            if not isinstance(frames, list):
                raise TypeError("'hands' is not a list")
            points = _nan_array((len(frames), NUM_HANDS, NUM_HAND_POINTS, 2))
            scores = _nan_array((len(frames), NUM_HANDS, NUM_HAND_POINTS))
            for f, frame in enumerate(frames):
                if not isinstance(frame, list) or len(frame) != NUM_HANDS:
                    raise ValueError(f"frame {f} does not hold {NUM_HANDS} hands")
                for h, hand in enumerate(frame):
                    if hand is None:
                        continue
                    if not isinstance(hand, list) or len(hand) != NUM_HAND_POINTS:
                        raise ValueError(f"frame {f} hand {h} does not hold {NUM_HAND_POINTS} points")
                    for p, point in enumerate(hand):
                        if point is not None:
                            x, y, s = (float(v) for v in point)  # ValueError when not 3 numbers
                            points[f, h, p] = (x, y)
                            scores[f, h, p] = s
            shoulders = None
            if data.get("shoulders") is not None:
                raw = data["shoulders"]
                if not isinstance(raw, list) or len(raw) != len(frames):
                    raise ValueError("'shoulders' needs one entry per frame")
                shoulders = np.array(
                    [[[math.nan] * 2] * 2 if entry is None else entry for entry in raw], dtype=np.float64
                )
            return cls(points, data["width"], data["height"], scores, shoulders)  # checks every number
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise InputError(
                f"The hand pose file is malformed ({str(error).splitlines()[0][:200]}); it needs "
                f"'width', 'height' and 'hands' as [frames][{NUM_HANDS}][{NUM_HAND_POINTS}] of "
                "[x, y, score] or null."
            ) from None

    def save(self, path: str | Path) -> Path:
        """Write the sequence as JSON to `path` (atomically; its folder must exist). Returns the path."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> HandPoseSequence:
        return cls.from_json(read_json_text(path, "Hand pose file"))
