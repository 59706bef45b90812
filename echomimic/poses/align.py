"""Aligning hand poses to the reference person: the driving body lands on the reference body.

The official pipeline and other node packs draw the driving hands where they were in the driving
video; when the reference person stands elsewhere or at another size, the hands end up detached from
the body and the output distorts. Here one similarity transform (scale + shift, no rotation) maps the
driving person's shoulders onto the reference person's shoulders:

    p_ref = (p_drv - centre_drv) * (shoulder_width_ref / shoulder_width_drv) + centre_ref   (pixels)

The driving anchor is the median over the frames with a body, so the body's own sway stays in the hand
motion and a few bad detections do not move everything. The result is expressed in the reference
image's frame (its width x height), ready to draw at the video size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .sequence import HandPoseSequence


@dataclass(frozen=True)
class BodyAnchor:
    """Where a person is: shoulder midpoint and shoulder width, in pixels of a width x height frame."""

    centre: tuple[float, float]
    shoulder_width: float
    width: int
    height: int

    @classmethod
    def from_shoulders(cls, shoulders: np.ndarray, width: int, height: int) -> BodyAnchor | None:
        """shoulders: [2, 2] or [F, 2, 2] normalised (NaN = no body). The median over frames with a body;
        None when there is none (or the shoulders coincide)."""
        pixels = np.asarray(shoulders, dtype=np.float64).reshape(-1, 2, 2) * np.array([width, height])
        pixels = pixels[~np.isnan(pixels).any(axis=(1, 2))]
        if pixels.shape[0] == 0:
            return None
        centre = np.median(pixels.mean(axis=1), axis=0)
        shoulder_width = float(np.median(np.linalg.norm(pixels[:, 0] - pixels[:, 1], axis=1)))
        if not shoulder_width > 1e-6 * max(width, height):
            return None
        return cls((float(centre[0]), float(centre[1])), shoulder_width, int(width), int(height))


def align_hand_poses(poses: HandPoseSequence, reference: BodyAnchor) -> HandPoseSequence:
    """Move and scale `poses` so the driving person's shoulders land on `reference`.

    Needs the driving shoulders (`extract_hand_poses(with_body=True)` or an imported official folder).
    Returns a sequence in the reference frame (reference.width x reference.height).
    """
    if poses.shoulders is None:
        raise InputError(
            "These hand poses carry no body (shoulders), so they cannot be aligned. Extract them "
            "with the body switched on, or switch alignment off."
        )
    driving = BodyAnchor.from_shoulders(poses.shoulders, poses.width, poses.height)
    if driving is None:
        raise InputError(
            "No person (shoulders) was found in any driving frame, so the hand poses cannot be "
            "aligned. Use a half-body driving video, or switch alignment off."
        )
    scale = reference.shoulder_width / driving.shoulder_width
    source_size = np.array([poses.width, poses.height], dtype=np.float64)
    target_size = np.array([reference.width, reference.height], dtype=np.float64)

    def move(normalised: np.ndarray) -> np.ndarray:
        pixels = normalised * source_size
        return ((pixels - np.array(driving.centre)) * scale + np.array(reference.centre)) / target_size

    return HandPoseSequence(
        move(poses.points), reference.width, reference.height, poses.scores.copy(), move(poses.shoulders)
    )


def reference_anchor(
    reference_image: np.ndarray | Any,
    *,
    models_dir: str | Path | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
) -> BodyAnchor:
    """The body anchor of the person in a reference image ([H, W, 3] or [1, H, W, 3] float 0..1 RGB).

    Raises InputError when the pose landmarker finds no person (the poses cannot be aligned to it).
    """
    from ..landmarks.images import as_image_batch
    from .extract import find_shoulders

    batch = as_image_batch(reference_image, what="reference image")[:1]
    shoulders = find_shoulders(batch, models_dir=models_dir, backend=backend, legacy_available=legacy_available)
    anchor = BodyAnchor.from_shoulders(shoulders, batch.shape[2], batch.shape[1])
    if anchor is None:
        raise InputError(
            "No person was found in the reference image by the pose landmarker, so the hand poses "
            "cannot be aligned to it and the run stopped. Use a half-body photo with both shoulders "
            "visible, or switch alignment off to use the poses as they are."
        )
    return anchor


def find_bodies(images: np.ndarray | Any, **options: Any) -> np.ndarray:
    """[F, 2, 2] normalised shoulders per frame (NaN = no body); see extract.find_shoulders."""
    from .extract import find_shoulders

    return find_shoulders(images, **options)


def align_to_reference(
    poses: HandPoseSequence,
    reference_image: np.ndarray | Any,
    *,
    models_dir: str | Path | None = None,
    backend: str = "auto",
    legacy_available: bool | None = None,
) -> HandPoseSequence:
    """`align_hand_poses` onto the person found in `reference_image` (see `reference_anchor`)."""
    anchor = reference_anchor(
        reference_image, models_dir=models_dir, backend=backend, legacy_available=legacy_available
    )
    return align_hand_poses(poses, anchor)
