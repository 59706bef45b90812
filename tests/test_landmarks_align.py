"""Part-aware alignment on synthetic faces and on real landmarks of a real photo."""

from __future__ import annotations

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.landmarks import LandmarkSequence, align_landmarks, extract_landmarks, select_parts
from echomimic.landmarks import topology as topo
from echomimic.landmarks.align import fit_similarity
from echomimic.landmarks.parts import PART_POINTS

MOUTH = np.asarray(PART_POINTS["mouth"])
# Lower-lip points that move when the mouth opens (the corners 61, 291, 78, 308 stay).
LOWER_LIP = np.asarray(
    topo.edge_points(
        topo.LIPS_OUTER_BOTTOM_LEFT
        + topo.LIPS_OUTER_BOTTOM_RIGHT
        + topo.LIPS_INNER_BOTTOM_LEFT
        + topo.LIPS_INNER_BOTTOM_RIGHT
    )
)
LOWER_LIP = np.setdiff1d(LOWER_LIP, [61, 291, 78, 308])


def synthetic_face(seed: int = 0) -> np.ndarray:
    """[478, 3] points scattered over a 200x260 face-sized area centred at (256, 256)."""
    rng = np.random.default_rng(seed)
    points = np.empty((478, 3))
    points[:, 0] = rng.uniform(156, 356, 478)
    points[:, 1] = rng.uniform(126, 386, 478)
    points[:, 2] = rng.normal(0, 10, 478)
    return points


def similarity(
    points: np.ndarray,
    degrees: float,
    scale: float,
    shift: tuple[float, float],
    centre: tuple[float, float] = (256.0, 256.0),
) -> np.ndarray:
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points.copy()
    moved[:, :2] = scale * (points[:, :2] - centre) @ rotation.T + centre + np.asarray(shift)
    moved[:, 2] = scale * points[:, 2]
    return moved


def sequence(*frames: np.ndarray, size: int = 512) -> LandmarkSequence:
    return LandmarkSequence(np.stack(frames).astype(np.float32), size, size)


def rotation_degrees(rotation: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0])))


@pytest.fixture(scope="module")
def astronaut_face() -> np.ndarray:
    import skimage.data as skimage_data  # requirements-dev.txt: missing, the test fails (never skips)

    return extract_landmarks(skimage_data.astronaut().astype(np.float32) / 255.0).points[0].astype(np.float64)


@pytest.fixture(params=["synthetic", "astronaut"])
def face(request: pytest.FixtureRequest) -> np.ndarray:
    if request.param == "synthetic":
        return synthetic_face()
    return request.getfixturevalue("astronaut_face")


def test_aligning_to_own_first_frame_changes_nothing(face: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    frames = [face] + [
        similarity(face, 3 * k, 1 + 0.02 * k, (4 * k, -2 * k)) + rng.normal(0, 1.5, face.shape) for k in range(1, 4)
    ]
    driver = sequence(*frames)
    aligned = align_landmarks(driver, driver.frame(0))
    np.testing.assert_allclose(aligned.points, driver.points, atol=1e-3)
    assert aligned.detected.tolist() == driver.detected.tolist()


def test_transformed_copy_of_reference_yields_reference(face: np.ndarray) -> None:
    reference = sequence(face)
    driver = LandmarkSequence(np.stack([similarity(face, 25, 0.6, (40, -30))] * 3).astype(np.float32), 400, 300)
    aligned = align_landmarks(driver, reference)
    assert (aligned.width, aligned.height, aligned.num_frames) == (512, 512, 3)
    np.testing.assert_allclose(aligned.points, np.stack([face] * 3), atol=1e-2)


def test_head_motion_is_transferred_or_not(face: np.ndarray) -> None:
    reference = sequence(face)
    other = similarity(face, -15, 0.7, (30, 20))  # the driver's own placement of the face
    driver = sequence(*[similarity(other, 4 * k, 1 + 0.05 * k, (6 * k, 3 * k), centre=(240, 270)) for k in range(3)])
    moved = align_landmarks(driver, reference, head_pose=True)
    for k in range(3):
        scale, rotation, _ = fit_similarity(face[:, :2], moved.points[k, :, :2].astype(np.float64))
        assert rotation_degrees(rotation) == pytest.approx(4 * k, abs=1e-3)
        assert scale == pytest.approx(1 + 0.05 * k, rel=1e-4)
    still = align_landmarks(driver, reference, head_pose=False)
    np.testing.assert_allclose(still.points, np.stack([face] * 3), atol=1e-2)


def open_mouth(face: np.ndarray, fraction: float) -> np.ndarray:
    """The lower lip moved down (along the face's own vertical) by `fraction` of the mouth width."""
    corners = face[[61, 291], :2]
    across = corners[1] - corners[0]
    width = np.linalg.norm(across)
    down = np.array([-across[1], across[0]]) / width  # perpendicular to the mouth line
    if down[1] < 0:
        down = -down
    opened = face.copy()
    opened[LOWER_LIP, :2] += fraction * width * down
    return opened


def lower_lip_drop(points: np.ndarray, neutral: np.ndarray) -> float:
    """Mean distance the lower lip moved from `neutral`, in pixels."""
    return float(np.linalg.norm(points[LOWER_LIP, :2] - neutral[LOWER_LIP, :2], axis=1).mean())


def mouth_width(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[291, :2] - points[61, :2]))


def test_mouth_opening_keeps_its_fraction_on_a_smaller_mouth(face: np.ndarray) -> None:
    # Reference: the same face with a mouth 0.6 times as large; driver: the big-mouthed face,
    # elsewhere in its frame, opening its mouth by 0, 10 and 25 % of its mouth width.
    reference = face.copy()
    centre = face[MOUTH, :2].mean(axis=0)
    reference[MOUTH, :2] = centre + 0.6 * (face[MOUTH, :2] - centre)
    placed = similarity(face, 12, 0.8, (-25, 15))
    fractions = [0.0, 0.10, 0.25]
    driver = sequence(*[open_mouth(placed, f) for f in fractions])
    aligned = align_landmarks(driver, sequence(reference), head_pose=True).points.astype(np.float64)
    np.testing.assert_allclose(aligned[0], reference, atol=1e-2)  # neutral frame: the reference itself
    width = mouth_width(reference)
    for k, fraction in enumerate(fractions):
        assert lower_lip_drop(aligned[k], reference) / width == pytest.approx(fraction, abs=2e-3)
        np.testing.assert_allclose(aligned[k][[13, 61, 291]], reference[[13, 61, 291]], atol=1e-2)  # upper lip stays
        assert mouth_width(aligned[k]) == pytest.approx(width, rel=1e-3)  # the small mouth stays small
    # Without part-aware residuals the opening would be 1/0.6 times too large: make sure it is not.
    assert lower_lip_drop(aligned[2], reference) / width < 0.25 / 0.8


def test_real_driver_photos_move_the_reference(astronaut_face: np.ndarray) -> None:
    """Driver: landmarks extracted from two rotated/scaled copies of the photo (real detections)."""
    import cv2
    import skimage.data as skimage_data  # requirements-dev.txt: missing, the test fails (never skips)

    photo = skimage_data.astronaut().astype(np.float32) / 255.0
    views = []
    for degrees, scale in ((0.0, 0.8), (8.0, 0.9)):
        matrix = cv2.getRotationMatrix2D((225.0, 140.0), degrees, scale)
        views.append(cv2.warpAffine(photo, matrix, (512, 512)))
    driver = extract_landmarks(np.stack(views))
    assert driver.detected.all()
    reference = sequence(astronaut_face)
    moved = align_landmarks(driver, reference)
    np.testing.assert_allclose(moved.points[0], astronaut_face, atol=1e-2)
    rigid = np.asarray(topo.RIGID_POINTS)
    scale, rotation, _ = fit_similarity(astronaut_face[rigid, :2], moved.points[1, rigid, :2].astype(np.float64))
    # cv2 angles are counter-clockwise with y down: -8 degrees in image coordinates.
    assert rotation_degrees(rotation) == pytest.approx(-8.0, abs=1.5)
    assert scale == pytest.approx(0.9 / 0.8, rel=0.03)
    still = align_landmarks(driver, reference, head_pose=False)
    assert np.abs(still.points[1, :, :2] - astronaut_face[:, :2]).mean() < 2.0


def test_smoothing_reduces_jitter_without_drift(face: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    frames = [face + rng.normal(0, 2.0, face.shape) * (k > 0) for k in range(12)]
    driver = sequence(*frames)
    raw = align_landmarks(driver, driver.frame(0), head_pose=False).points
    smooth = align_landmarks(driver, driver.frame(0), head_pose=False, smoothing=2.0).points
    assert np.diff(smooth, axis=0).std() < 0.5 * np.diff(raw, axis=0).std()
    assert np.abs(smooth.mean(axis=0) - raw.mean(axis=0)).max() < 2.0


def test_bad_alignment_input(face: np.ndarray) -> None:
    driver = sequence(face, face)
    with pytest.raises(InputError, match="neutral_frame"):
        align_landmarks(driver, driver, neutral_frame=2)
    with pytest.raises(InputError, match="smoothing"):
        align_landmarks(driver, driver, smoothing=-1)
    with pytest.raises(InputError, match="rigid"):
        align_landmarks(select_parts(driver, ["eyes"]), driver)
    with pytest.raises(InputError, match="LandmarkSequence"):
        align_landmarks(face, driver)  # type: ignore[arg-type]
