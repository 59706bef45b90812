"""Hand-pose images with the official EchoMimic V2 look (`draw_pose_select_v2` + the scripts' framing).

What the official drawing does, step by step (the pose encoder was trained on exactly these pixels):
1. canvas: sz = min(H, W), sr = ref_w / sz (1 when equal), zeros (int(H * sr), int(W * sr), 3) uint8;
2. per hand (hand 0 then hand 1): the 20 edges, then the 21 points, at int(x * canvas_w), int(y * canvas_h)
   (truncation); an edge is drawn only when its four coordinates are > 0.01, a point when its two are;
   edge ie: cv2.line thickness 2 in colour hsv(ie / 20, 1, 1) * int(s1 * s2 * 255) (OpenCV rounds half
   to even and saturates); point: a filled circle of radius 4 in colour (0, 0, int(s * 255));
3. cv2.resize to (W, H) (bilinear), then BGR -> RGB: the points end up red, the edge colours reversed.
The official scripts then paste the drawing into a (W, H, 3) frame, which only works for square video;
here the frame is (H, W, 3), so non-square video works.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ..release import POSE_REF_W
from .sequence import HandPoseSequence

HAND_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (0, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (0, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (0, 17),
    (17, 18),
    (18, 19),
    (19, 20),
)
DEFAULT_REF_W = POSE_REF_W  # the official scripts' ref_w at 768x768 (release.py)
_EPS = 0.01  # the official visibility threshold on pixel coordinates
_MAX_SIDE = 8192


def _hsv_to_rgb_full(hue: float) -> tuple[float, float, float]:
    """hsv (hue, 1, 1) -> rgb floats, with the same arithmetic as matplotlib.colors.hsv_to_rgb."""
    sector = int(hue * 6.0)
    fraction = hue * 6.0 - sector
    p, q, t = 0.0, 1.0 * (1.0 - 1.0 * fraction), 1.0 * (1.0 - 1.0 * (1.0 - fraction))
    return [(1.0, t, p), (q, 1.0, p), (p, 1.0, t), (p, q, 1.0), (t, p, 1.0), (1.0, p, q)][sector % 6]


EDGE_COLOURS = tuple(_hsv_to_rgb_full(index / float(len(HAND_EDGES))) for index in range(len(HAND_EDGES)))


def _draw_hand(canvas: np.ndarray, points: np.ndarray, scores: np.ndarray) -> None:
    """Draw one hand onto a BGR canvas in place. points [21, 2] normalised (NaN = absent), scores [21]."""
    import cv2

    canvas_h, canvas_w = canvas.shape[:2]
    absent = np.isnan(points).any(axis=1)
    safe = np.where(absent[:, None], -1.0, points)  # the official data marks absent points with -1
    pixels = [(int(x * canvas_w), int(y * canvas_h)) for x, y in safe.tolist()]
    weights = np.where(absent, 0.0, scores).tolist()
    for index, (start, end) in enumerate(HAND_EDGES):
        (x1, y1), (x2, y2) = pixels[start], pixels[end]
        if x1 > _EPS and y1 > _EPS and x2 > _EPS and y2 > _EPS:
            brightness = int(weights[start] * weights[end] * 255)
            colour = tuple(channel * brightness for channel in EDGE_COLOURS[index])
            cv2.line(canvas, (x1, y1), (x2, y2), colour, thickness=2)
    for (x, y), weight in zip(pixels, weights, strict=True):
        if x > _EPS and y > _EPS:
            cv2.circle(canvas, (x, y), 4, (0, 0, int(weight * 255)), thickness=-1)


def draw_hand_frame(
    points: np.ndarray, scores: np.ndarray, width: int, height: int, ref_w: int = DEFAULT_REF_W
) -> np.ndarray:
    """One frame: points [2, 21, 2] normalised (NaN = absent), scores [2, 21] -> [height, width, 3] uint8 RGB."""
    import cv2

    size = min(height, width)
    scale = (ref_w / size) if size != ref_w else 1
    canvas = np.zeros((int(height * scale), int(width * scale), 3), dtype=np.uint8)
    for hand in range(points.shape[0]):
        _draw_hand(canvas, points[hand], scores[hand])
    return cv2.cvtColor(cv2.resize(canvas, (width, height)), cv2.COLOR_BGR2RGB)


def draw_hand_poses(
    sequence: HandPoseSequence,
    width: int,
    height: int,
    *,
    ref_w: int = DEFAULT_REF_W,
    check_aspect: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The pose-encoder input frames, exactly as the official V2 scripts draw them.

    sequence: the hand poses (normalised coordinates). width, height: the video size.
    ref_w: the official drawing resolution (800 in the official scripts at 768x768); lines and points
        are drawn on a canvas whose short side is ref_w and then resized to width x height.
    check_aspect: refuse poses taken at another aspect ratio than width x height (they would be stretched).
    A sequence where no frame draws anything (HandPoseSequence.check_drawable) is refused.
    progress: called with (frames done, total) after each frame.
    Returns [F, height, width, 3] uint8 RGB.
    """
    if not isinstance(sequence, HandPoseSequence):
        raise InputError(f"Expected a HandPoseSequence, got {type(sequence).__name__}.")
    width, height, ref_w = int(width), int(height), int(ref_w)
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
        raise InputError(f"Drawing size {width}x{height} is out of range; use 1..{_MAX_SIDE} pixels per side.")
    if not 1 <= ref_w <= _MAX_SIDE:
        raise InputError(f"ref_w {ref_w} is out of range; use 1..{_MAX_SIDE} (the official scripts use 800).")
    if check_aspect:
        sequence.check_aspect(width, height)
    sequence.check_drawable()  # all frames blank: the video would silently get no hand motion
    frames = np.empty((sequence.num_frames, height, width, 3), dtype=np.uint8)
    for index in range(sequence.num_frames):
        frames[index] = draw_hand_frame(sequence.points[index], sequence.scores[index], width, height, ref_w)
        if progress is not None:
            progress(index + 1, sequence.num_frames)
    return frames
