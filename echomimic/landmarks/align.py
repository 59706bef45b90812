"""Part-aware motion synchronisation: move a reference face with a driver's motion.

Driving landmarks come from another face. Drawn as they are, they would impose the driver's face
shape (a big mouth on a small-mouthed portrait). Following the paper, the driver's *motion* is
transferred, not its shape:

1. A global similarity G (rotation, uniform scale, translation; x, y; z scaled along) maps the
   driver's neutral frame onto the reference, fitted on rigid points (forehead, temples, upper
   cheeks, nose bridge, eye corners).
2. Head pose per frame: a similarity H_t from the neutral frame to frame t, on the same rigid points.
3. Expression: frame t with its head pose removed, minus the neutral frame, gives per-point
   displacements. Each part (left/right eyebrow, left/right eye with its iris, nose, mouth) gets a
   residual similarity fitted from the globally aligned neutral part onto the reference part; its
   rotation and scale carry that part's displacements, so a mouth opening by a fraction of the
   driver's mouth width opens the reference mouth by the same fraction of its own width. Points in
   no part use G's rotation and scale.
4. Reference + mapped displacements, then (head_pose=True) the driver's head motion expressed in
   the reference's frame, G H_t G^-1.
5. Optional temporal smoothing: a Gaussian over frames with sigma = `smoothing` frames.

Decisions: the reference's frame 0 is its still face. At the neutral frame the result is exactly the
reference. Motion is in the image plane (rotation about the view axis); depth only scales.
Points hidden by `select_parts` (NaN) stay hidden; rigid points must be present.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import topology as topo
from .sequence import LandmarkSequence

ALIGN_GROUPS: dict[str, tuple[int, ...]] = {
    "left_eyebrow": topo.edge_points(topo.LEFT_EYEBROW),
    "right_eyebrow": topo.edge_points(topo.RIGHT_EYEBROW),
    "left_eye": topo.edge_points(topo.LEFT_EYE) + topo.LEFT_IRIS_POINTS,
    "right_eye": topo.edge_points(topo.RIGHT_EYE) + topo.RIGHT_IRIS_POINTS,
    "nose": topo.NOSE_POINTS,
    "mouth": topo.edge_points(topo.LIPS_EDGES),
}


def fit_similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama, no reflection) with target ~ scale * rotation @ source + shift.

    source, target: [N, 2] with N >= 2. Returns (scale, rotation [2, 2], shift [2]).
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    variance = float((src**2).sum())
    if variance <= 1e-12:
        return 1.0, np.eye(2), target_mean - source_mean
    u, singular, vt = np.linalg.svd(dst.T @ src)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float((singular * np.diag(sign)).sum() / variance)
    return scale, rotation, target_mean - scale * rotation @ source_mean


def gaussian_smooth(points: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth [F, ...] along frames with a Gaussian of `sigma` frames, renormalised at the ends."""
    if sigma <= 0 or points.shape[0] < 2:
        return points
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    smoothed = np.zeros_like(points)
    total = np.zeros((points.shape[0],) + (1,) * (points.ndim - 1))
    for offset, weight in zip(offsets.tolist(), weights):
        lo, hi = max(0, -offset), min(points.shape[0], points.shape[0] - offset)
        smoothed[lo:hi] += weight * points[lo + offset : hi + offset]
        total[lo:hi] += weight
    return smoothed / total


def _rigid_indices(*arrays: np.ndarray) -> np.ndarray:
    rigid = np.asarray(topo.RIGID_POINTS)
    finite = np.all(
        [np.isfinite(a[..., rigid, :2]).reshape(-1, len(rigid), 2).all(axis=(0, 2)) for a in arrays], axis=0
    )
    if finite.sum() < len(rigid) // 2:
        raise InputError(
            "The landmarks lack the rigid face points (forehead, cheeks, nose bridge) needed "
            "for alignment; align full landmarks first, then use select_parts."
        )
    return rigid[finite]


def align_landmarks(
    driver: LandmarkSequence,
    reference: LandmarkSequence,
    *,
    neutral_frame: int = 0,
    head_pose: bool = True,
    smoothing: float = 0.0,
) -> LandmarkSequence:
    """The reference face moved by the driver's motion (see the module docstring).

    driver: [F, 478, 3] landmarks of the driving clip. reference: its frame 0 is used.
    neutral_frame: the driver frame whose expression and pose count as "no motion".
    head_pose: transfer head rotation, scale and shift; False keeps the reference's pose.
    smoothing: Gaussian sigma in frames (0: off).
    Returns [F, 478, 3] in the reference's pixel space (reference.width x reference.height),
    with the driver's `detected` flags.
    """
    if not isinstance(driver, LandmarkSequence) or not isinstance(reference, LandmarkSequence):
        raise InputError("align_landmarks needs two LandmarkSequence objects (driver, reference).")
    if not -driver.num_frames <= neutral_frame < driver.num_frames:
        raise InputError(
            f"neutral_frame {neutral_frame} does not exist; the driver has {driver.num_frames} "
            f"frames (use 0..{driver.num_frames - 1})."
        )
    if not np.isfinite(smoothing) or smoothing < 0:
        raise InputError(f"smoothing must be 0 (off) or a positive number of frames, got {smoothing}.")
    frames = driver.points.astype(np.float64)
    ref = reference.points[0].astype(np.float64)
    neutral = frames[neutral_frame]
    rigid = _rigid_indices(frames, ref)

    g_scale, g_rot, g_shift = fit_similarity(neutral[rigid, :2], ref[rigid, :2])

    # Per-point linear map of displacements: 2x2 for x, y and a scale for z.
    delta_map = np.broadcast_to(g_scale * g_rot, (topo.NUM_POINTS, 2, 2)).copy()
    depth_scale = np.full(topo.NUM_POINTS, g_scale)
    neutral_in_ref = neutral[:, :2] @ (g_scale * g_rot).T + g_shift
    for indices in ALIGN_GROUPS.values():
        idx = np.asarray(indices)
        usable = idx[np.isfinite(neutral_in_ref[idx]).all(axis=1) & np.isfinite(ref[idx, :2]).all(axis=1)]
        if usable.size < 2:
            continue
        p_scale, p_rot, _ = fit_similarity(neutral_in_ref[usable], ref[usable, :2])
        delta_map[idx] = p_scale * p_rot @ (g_scale * g_rot)
        depth_scale[idx] = p_scale * g_scale

    result = np.empty_like(frames)
    for t, frame in enumerate(frames):
        h_scale, h_rot, h_shift = fit_similarity(neutral[rigid, :2], frame[rigid, :2])
        # Frame t with its head pose undone, relative to the neutral frame.
        unposed_xy = (frame[:, :2] - h_shift) @ h_rot / h_scale
        delta_xy = unposed_xy - neutral[:, :2]
        delta_z = frame[:, 2] / h_scale - neutral[:, 2]
        still_xy = ref[:, :2] + np.einsum("nij,nj->ni", delta_map, delta_xy)
        still_z = ref[:, 2] + depth_scale * delta_z
        if head_pose:
            # G H_t G^-1: the driver's head motion in reference space (2-D rotations commute).
            result[t, :, :2] = h_scale * (still_xy - g_shift) @ h_rot.T + g_shift + g_scale * g_rot @ h_shift
            result[t, :, 2] = h_scale * still_z
        else:
            result[t, :, :2] = still_xy
            result[t, :, 2] = still_z
    result = gaussian_smooth(result, float(smoothing))
    return LandmarkSequence(result.astype(np.float32), reference.width, reference.height, driver.detected.copy())
