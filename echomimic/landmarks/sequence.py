"""`LandmarkSequence`: face-mesh landmarks of a clip, as a small plain data object.

Saved as JSON (users edit and share them; never pickled). Layout::

    {"format": "echomimic-landmarks", "version": 1, "width": W, "height": H,
     "detected": [true, false, ...],                  # F entries
     "points": [[[x, y, z], ... 478 ...], ... F ...]}  # pixels of the source frame

Coordinates are written rounded to 1e-4 pixel. A hidden point (a part left out by
`select_parts`) is NaN in memory and `null` in JSON.
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
from .topology import NUM_POINTS

JSON_FORMAT = "echomimic-landmarks"
JSON_VERSION = 1
_DECIMALS = 4
# What a landmark or hand-pose file may hold: frames up to this many pixels a side, and points at most this
# many frame sizes outside the frame (far enough for any real motion; beyond, drawing arithmetic overflows).
MAX_FRAME_SIDE = 65536
COORDINATE_LIMIT = 1e4


def parse_json(text: str, what: str, hint: str) -> Any:
    """``json.loads(text)`` for a user's motion file, every failure one :class:`InputError` line.

    Refuses what JSON allows but no coordinate may be: ``NaN``/``Infinity`` and numbers too large for a
    float (``1e400``), and nesting too deep for the parser. ``what`` names the file ("hand pose file"),
    ``hint`` says what to give instead.
    """

    def finite(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"the number {literal[:24]} is too large")
        return value

    def refuse_constant(name: str) -> float:
        raise ValueError(f"{name} is not a number a {what} may hold (use null for a missing point)")

    try:
        return json.loads(text, parse_float=finite, parse_constant=refuse_constant)
    except RecursionError:
        raise InputError(f"The {what} is nested too deeply to be one. {hint}") from None
    except ValueError as error:  # json.JSONDecodeError included
        raise InputError(f"The {what} is not valid JSON ({str(error).splitlines()[0]}). {hint}") from None


def frame_side(value: Any, name: str) -> int:
    """A frame width or height (a whole number of pixels, 1..MAX_FRAME_SIDE) or one :class:`InputError` line."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    side = int(number) if math.isfinite(number) and not isinstance(value, bool) else 0
    if not 1 <= side <= MAX_FRAME_SIDE or side != number:
        raise InputError(
            f"The frame {name} {value!r} must be a positive whole number of pixels, at most {MAX_FRAME_SIDE}."
        )
    return side


def check_coordinates(values: np.ndarray, limit: float, what: str) -> None:
    """Raise :class:`InputError` unless every non-NaN value is finite and within +-``limit``."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > limit  # NaN compares False (absent); +-inf and huge values True
    if bad.any():
        first = np.argwhere(bad)[0]
        raise InputError(
            f"{what} at {tuple(int(i) for i in first)} is {values[tuple(first)]!r}: not finite or "
            f"beyond +-{limit:g}; the file is damaged or not made by EchoMimic."
        )


@dataclass(eq=False, repr=False)  # arrays: no element-wise ==, no huge repr
class LandmarkSequence:
    """Landmarks of F frames.

    points: [F, 478, 3] float32; x, y in pixels of the source frame, z relative depth
        (MediaPipe z * width, smaller is nearer the camera). NaN marks a hidden point.
    width, height: source frame size in pixels.
    detected: [F] bool; False where the frame had no face and was filled from its neighbours.
    """

    points: np.ndarray
    width: int
    height: int
    detected: np.ndarray = field(default=None)  # type: ignore[arg-type]  # filled in by __post_init__

    def __post_init__(self) -> None:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below with the other bounds
            points = np.asarray(self.points, dtype=np.float32)
        if points.ndim == 2:
            points = points[None]
        if points.ndim != 3 or points.shape[1] != NUM_POINTS or points.shape[2] not in (2, 3):
            raise InputError(
                f"Landmarks must have shape [frames, {NUM_POINTS}, 3] (MediaPipe face mesh with iris), "
                f"got {tuple(np.shape(self.points))}. Extract them with extract_landmarks."
            )
        if points.shape[0] == 0:
            raise InputError("The landmark sequence has no frames; give at least one frame.")
        if points.shape[2] == 2:  # 2-D landmarks: depth unknown, use 0
            points = np.concatenate([points, np.zeros_like(points[..., :1])], axis=2)
        self.points = np.ascontiguousarray(points)
        self.width = frame_side(self.width, "width")
        self.height = frame_side(self.height, "height")
        # Pixels of the source frame (x, y) and depth in width units (z): bounded, so drawing cannot overflow.
        sides = np.array([self.width, self.height, self.width], dtype=np.float64)
        check_coordinates(self.points / sides, COORDINATE_LIMIT, "A landmark coordinate (frame, point, axis)")
        if self.detected is None:
            self.detected = np.ones(points.shape[0], dtype=bool)
        detected = np.asarray(self.detected, dtype=bool).reshape(-1)
        if detected.shape[0] != points.shape[0]:
            raise InputError(
                f"'detected' has {detected.shape[0]} entries but there are {points.shape[0]} frames; "
                "give one flag per frame."
            )
        self.detected = detected

    def __repr__(self) -> str:
        return (
            f"LandmarkSequence(frames={self.num_frames}, size={self.width}x{self.height}, filled={self.filled_count})"
        )

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def filled_count(self) -> int:
        """How many frames had no face and were filled from their neighbours."""
        return int((~self.detected).sum())

    def blank_frames(self) -> list[int]:
        """Frames with no point to draw: every point NaN (``null`` in JSON) or outside the source frame."""
        x, y = self.points[..., 0], self.points[..., 1]
        with np.errstate(invalid="ignore"):  # NaN compares False: hidden
            on_canvas = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        return np.flatnonzero(~on_canvas.any(axis=1)).tolist()

    def missing_face_report(self) -> str:
        """One sentence on the frames without a face (filled in from their neighbours), '' if none."""
        missing = np.flatnonzero(~self.detected).tolist()
        if not missing:
            return ""
        return (
            f"no face in {len(missing)} of {self.num_frames} frames (frames {frame_list(missing)}); their "
            "landmarks are filled in from the nearest frames"
        )

    def check_drawable(self, source: str = "The landmarks") -> list[int]:
        """Raise :class:`InputError` if no frame has a point on the canvas (the video would have no pose
        guidance at all); otherwise return the blank frames (see :meth:`blank_frames`) for a report."""
        blank = self.blank_frames()
        if len(blank) == self.num_frames:
            raise InputError(
                f"{source} draw nothing: in all {self.num_frames} frames every point is missing (NaN/null) or "
                f"outside the {self.width}x{self.height} frame they claim to come from; extract them again "
                "from a video of a face."
            )
        return blank

    def frame(self, index: int) -> LandmarkSequence:
        """A one-frame sequence holding frame `index` (negative counts from the end)."""
        if not -self.num_frames <= index < self.num_frames:
            raise InputError(f"Frame {index} does not exist; the sequence has {self.num_frames} frames.")
        index %= self.num_frames
        return LandmarkSequence(
            self.points[index : index + 1].copy(), self.width, self.height, self.detected[index : index + 1].copy()
        )

    def first(self, count: int) -> LandmarkSequence:
        """The first ``count`` frames (itself when it has no more), e.g. the frames a short video uses."""
        if count >= self.num_frames:
            return self
        count = max(1, int(count))
        return LandmarkSequence(self.points[:count], self.width, self.height, self.detected[:count])

    def to_json(self) -> str:
        rounded = np.round(self.points.astype(np.float64), _DECIMALS)
        points = [[[None if math.isnan(v) else v for v in point] for point in frame] for frame in rounded.tolist()]
        return json.dumps(
            {
                "format": JSON_FORMAT,
                "version": JSON_VERSION,
                "width": self.width,
                "height": self.height,
                "detected": self.detected.tolist(),
                "points": points,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> LandmarkSequence:
        data = parse_json(text, "landmark file", "Give a file saved by LandmarkSequence.save or to_json.")
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise InputError(
                f"This JSON is not an EchoMimic landmark sequence (expected "
                f'"format": "{JSON_FORMAT}"). Give a file saved by LandmarkSequence.save.'
            )
        if data.get("version") != JSON_VERSION:
            raise InputError(
                f"Landmark file version {data.get('version')!r} is not supported "
                f"(this version reads {JSON_VERSION}); re-extract the landmarks."
            )
        try:
            points = np.array(data["points"], dtype=np.float64)  # null -> nan
            return cls(
                points, data["width"], data["height"], np.array(data.get("detected", [True] * len(points)), dtype=bool)
            )
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            if isinstance(error, InputError):
                raise
            raise InputError(
                f"The landmark file is malformed ({str(error).splitlines()[0][:200]}); it needs "
                "'width', 'height' and 'points' as [frames][478][3] numbers."
            ) from None

    def save(self, path: str | Path) -> Path:
        """Write the sequence as JSON to `path` (atomically; its folder must exist). Returns the path."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> LandmarkSequence:
        return cls.from_json(read_json_text(path, "Landmark file"))


def read_json_text(path: str | Path, what: str) -> str:
    """The text of a user's JSON file (landmarks, hand poses); a missing, unreadable or binary file is one
    :class:`InputError` line starting with ``what`` (e.g. "Landmark file")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; check the path.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {path} is not a JSON text file; give a file saved by EchoMimic.") from None
    except OSError as error:
        raise InputError(f"{what} {path} cannot be read ({error.strerror or error}).") from None


def frame_list(indices: list[int], shown: int = 12) -> str:
    """'0-3, 7, 9-10' for a report line (0-based frame numbers), the first ``shown`` runs only."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:shown])
    return text + (", ..." if len(runs) > shown else "")
