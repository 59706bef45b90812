"""Facial parts: which landmarks belong to which part, part selection and merging.

Public part names (stable; used as ComfyUI combo/toggle values): ``PART_NAMES``.

- eyebrows: both eyebrow outlines.
- eyes: both eye outlines (lids).
- pupils: both irises (pupil centres 468/473 and their four ring points); drawn as the pupil squares.
- nose: bridge, tip and wings (the tip, point 4, is drawn as a square).
- mouth: inner and outer lip outlines.

Decisions:
- `select_parts` hides the points of unselected parts by setting them to NaN; drawing skips every
  line or square that touches a hidden point. So a selected sequence draws only its parts, and
  the selection survives saving to JSON.
- `merge_parts` takes the points of the given parts from the donor and every other point from the
  base ("audio + selected landmarks": eyes from a driving video, the rest from the reference's
  still landmarks, and the mouth left out so that the audio drives it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from . import topology as topo
from .sequence import LandmarkSequence

PART_NAMES: tuple[str, ...] = ("eyebrows", "eyes", "pupils", "nose", "mouth")

PART_POINTS: dict[str, tuple[int, ...]] = {
    "eyebrows": topo.edge_points(topo.LEFT_EYEBROW + topo.RIGHT_EYEBROW),
    "eyes": topo.edge_points(topo.LEFT_EYE + topo.RIGHT_EYE),
    "pupils": topo.LEFT_IRIS_POINTS + topo.RIGHT_IRIS_POINTS,
    "nose": topo.NOSE_POINTS,
    "mouth": topo.edge_points(topo.LIPS_EDGES),
}


def check_part_names(parts: Iterable[str] | str) -> tuple[str, ...]:
    """The distinct part names of `parts`, in PART_NAMES order; an unknown name is an InputError."""
    if isinstance(parts, str):  # a single name, not its letters
        parts = (parts,)
    names = tuple(parts)
    unknown = [name for name in names if name not in PART_NAMES]
    if unknown:
        raise InputError(f"Unknown face part(s) {unknown}; choose from {list(PART_NAMES)}.")
    return tuple(name for name in PART_NAMES if name in names)


def part_point_indices(parts: Iterable[str] | str) -> np.ndarray:
    """Sorted landmark indices [K] int64 of the given parts."""
    names = check_part_names(parts)
    indices = sorted({i for name in names for i in PART_POINTS[name]})
    return np.asarray(indices, dtype=np.int64)


def select_parts(sequence: LandmarkSequence, parts: Iterable[str] | str) -> LandmarkSequence:
    """A copy of `sequence` where only the landmarks of `parts` are kept; every other point is NaN.

    points: [F, 478, 3] in, [F, 478, 3] out.
    """
    keep = np.zeros(topo.NUM_POINTS, dtype=bool)
    keep[part_point_indices(parts)] = True
    points = sequence.points.copy()
    points[:, ~keep] = np.nan
    return LandmarkSequence(points, sequence.width, sequence.height, sequence.detected.copy())


def merge_parts(base: LandmarkSequence, donor: LandmarkSequence, parts: Iterable[str] | str) -> LandmarkSequence:
    """The landmarks of `parts` from `donor`, every other landmark from `base`.

    A one-frame base is repeated to the donor's length; otherwise both need the same number of frames.
    Both must be in the same pixel space (align the donor to the base first with `align_landmarks`).
    Result: [F_donor, 478, 3]; a frame counts as detected when it was detected in both.
    """
    indices = part_point_indices(parts)
    if (base.width, base.height) != (donor.width, donor.height):
        raise InputError(
            f"The base landmarks are for a {base.width}x{base.height} frame and the donor's for "
            f"{donor.width}x{donor.height}; align the donor to the base (align_landmarks) before merging."
        )
    if base.num_frames == 1:
        points = np.repeat(base.points, donor.num_frames, axis=0)
        base_detected = np.repeat(base.detected, donor.num_frames)
    elif base.num_frames == donor.num_frames:
        points = base.points.copy()
        base_detected = base.detected
    else:
        raise InputError(
            f"The base has {base.num_frames} frames and the donor {donor.num_frames}; give a base of one "
            "frame (it is repeated) or of the donor's length."
        )
    points[:, indices] = donor.points[:, indices]
    return LandmarkSequence(points, base.width, base.height, base_detected & donor.detected)
