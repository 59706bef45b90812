"""Landmark condition images in the look of the official EchoMimic FaceMeshVisualizer.

What the official does, and so what is done here:
- a black 512x512 uint8 canvas, whatever the output size;
- a point's normalised position is x / width, y / height of the frame the landmarks belong to
  (float32, as MediaPipe's landmark protos store them); its pixel is floor(n * 512), clipped to 511;
  a point outside [0, 1] is not drawn, nor any line touching it;
- eye, eyebrow (and lip) edges as 2-pixel anti-alias-free cv2 lines in the official per-part colours,
  in the official order;
- pupils (468, 473) and the nose tip (4) as 6x6 squares at int(n * 512) - 3 ... + 3 (a square whose
  start falls below 0 is dropped, as numpy slicing does in the official code);
- the canvas resized with cv2.resize (bilinear) to the output size, then /255.

Decisions: parts not selected are not drawn. The default parts are the official default for the
pose weights (draw_mouse=False, draw_iris=False): eyebrows, eyes, pupils and nose. The mouth is drawn
when "mouth" is among `parts` or `draw_mouth` is True. Iris rings are never drawn (the released
weights were trained with draw_iris=False). Hidden (NaN) points are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..errors import InputError
from . import topology as topo
from .parts import check_part_names
from .sequence import LandmarkSequence

DEFAULT_DRAWN_PARTS: tuple[str, ...] = ("eyebrows", "eyes", "pupils", "nose")


def _line_specs(parts: tuple[str, ...]) -> list[tuple[topo.Edge, topo.Colour]]:
    """(edge, colour) pairs in the official drawing order for the chosen parts."""
    specs: list[tuple[topo.Edge, topo.Colour]] = []
    if "eyes" in parts:
        specs += [(edge, topo.LEFT_EYE_COLOUR) for edge in topo.LEFT_EYE]
        specs += [(edge, topo.RIGHT_EYE_COLOUR) for edge in topo.RIGHT_EYE]
    if "eyebrows" in parts:
        specs += [(edge, topo.LEFT_EYEBROW_COLOUR) for edge in topo.LEFT_EYEBROW]
        specs += [(edge, topo.RIGHT_EYEBROW_COLOUR) for edge in topo.RIGHT_EYEBROW]
    if "mouth" in parts:
        for chain, colour in topo.LIPS_COLOURS:
            specs += [(edge, colour) for edge in chain]
    return specs


def _square_specs(parts: tuple[str, ...]) -> list[tuple[int, topo.Colour]]:
    specs: list[tuple[int, topo.Colour]] = []
    if "pupils" in parts:
        specs += [(topo.RIGHT_PUPIL, topo.RIGHT_PUPIL_COLOUR), (topo.LEFT_PUPIL, topo.LEFT_PUPIL_COLOUR)]
    if "nose" in parts:
        specs.append((topo.NOSE_TIP, topo.NOSE_COLOUR))
    return specs


def draw_frame_on_canvas(normalised: np.ndarray, parts: tuple[str, ...], canvas_size: int) -> np.ndarray:
    """Draw one frame on a black square canvas.

    normalised: [478, 2] float32 positions in frame units (0..1), NaN for hidden points.
    Returns [canvas_size, canvas_size, 3] uint8.
    """
    import cv2

    canvas = np.zeros((canvas_size, canvas_size, 3), dtype=np.uint8)
    norm64 = normalised.astype(np.float64)
    inside = np.all((norm64 >= 0.0) & (norm64 <= 1.0), axis=1)  # NaN compares False: hidden
    pixels = np.minimum(np.floor(np.where(inside[:, None], norm64, 0.0) * canvas_size), canvas_size - 1)
    pixels = pixels.astype(np.int64)
    for (start, end), colour in _line_specs(parts):
        if inside[start] and inside[end]:
            cv2.line(
                canvas,
                (int(pixels[start, 0]), int(pixels[start, 1])),
                (int(pixels[end, 0]), int(pixels[end, 1])),
                colour,
                topo.LINE_THICKNESS,
            )
    half = topo.SQUARE_HALF_WIDTH
    for index, colour in _square_specs(parts):
        x, y = norm64[index]
        if not (0.0 <= x < 1.0 and 0.0 <= y < 1.0):
            continue
        col, row = int(canvas_size * x), int(canvas_size * y)
        # Plain slicing like the official: a negative start gives an empty (undrawn) square.
        canvas[row - half : row + half, col - half : col + half] = colour
    return canvas


def draw_landmarks(
    sequence: LandmarkSequence,
    width: int,
    height: int,
    *,
    parts: Iterable[str] = DEFAULT_DRAWN_PARTS,
    draw_mouth: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Condition images for the face locator, one per landmark frame.

    The landmarks are placed relative to their own frame size (sequence.width x sequence.height), so
    `width` x `height` should have the same aspect ratio as the frame they were extracted from or
    aligned to. Returns [F, height, width, 3] float32 in 0..1.
    """
    if not isinstance(sequence, LandmarkSequence):
        raise InputError("draw_landmarks needs a LandmarkSequence (from extract_landmarks or load).")
    if int(width) <= 0 or int(height) <= 0:
        raise InputError(f"The image size must be positive, got {width}x{height}.")
    sequence.check_drawable()  # all frames blank: the video would silently get no pose guidance
    chosen = check_part_names(parts)
    if draw_mouth and "mouth" not in chosen:
        chosen = check_part_names((*chosen, "mouth"))
    import cv2

    size = np.array([sequence.width, sequence.height], dtype=np.float64)
    # float32 like the official landmark protos; hidden points stay NaN.
    normalised = (sequence.points[..., :2].astype(np.float64) / size).astype(np.float32)
    frames = np.empty((sequence.num_frames, int(height), int(width), 3), dtype=np.float32)
    for index in range(sequence.num_frames):
        canvas = draw_frame_on_canvas(normalised[index], chosen, topo.OFFICIAL_CANVAS_SIZE)
        if canvas.shape[:2] != (int(height), int(width)):
            canvas = cv2.resize(canvas, (int(width), int(height)))
        frames[index] = canvas.astype(np.float32) / 255.0
        if progress is not None:
            progress(index + 1, sequence.num_frames)
    return frames
