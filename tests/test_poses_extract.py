"""Hand extraction and alignment with the real MediaPipe models on the two official half-body photos.

The model files come through the real first-use download (tests/conftest.py mirrors ../shared/mediapipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echomimic.errors import InputError
from echomimic.landmarks.backends import legacy_solutions_available
from echomimic.poses import BodyAnchor, align_hand_poses, draw_hand_poses, extract_hand_poses, reference_anchor
from echomimic.poses.extract import order_hands
from tests.parity_cases import MEDIAPIPE_ROOT

PHOTOS = ("echomimic_v2_halfbody_0048.jpg", "echomimic_v2_halfbody_0057.jpg")
# Both MediaPipe APIs where the installed mediapipe has both (the legacy CI venv), else the Tasks API.
BACKENDS = ("tasks", "legacy") if legacy_solutions_available() else ("tasks",)


def load_photo(name: str, size: int | None = None) -> np.ndarray:
    path = MEDIAPIPE_ROOT / "test_images" / name
    assert path.is_file(), f"{path} is missing (see ../shared/mediapipe/README.md)"
    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return np.stack([load_photo(name, 512) for name in PHOTOS])


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def extracted(photos: np.ndarray, backend: str):
    return extract_hand_poses(photos, backend=backend)


def test_both_hands_found_on_the_official_photos(extracted) -> None:
    """Catches a hand landmarker that misses hands, or hands put in the wrong (DWPose) order: hand 0 is the
    person's left hand, which is at the image's right on these photos."""
    assert extracted.hands_found.all()
    assert extracted.frames_without_hands == []
    wrists = extracted.points[:, :, 0]
    assert (wrists[:, 0, 0] > 0.6).all() and (wrists[:, 1, 0] < 0.4).all()
    assert (extracted.shoulders[:, 0, 0] > extracted.shoulders[:, 1, 0]).all()  # left shoulder right in image
    drawn = draw_hand_poses(extracted, 256, 256)
    assert drawn[:, :, 128:].any() and drawn[:, :, :128].any()  # both hands drawn


def test_frame_without_hands_is_reported(photos: np.ndarray, backend: str) -> None:
    """Catches a blank frame getting a made-up hand, or an all-blank clip being accepted."""
    frames = np.concatenate([photos[:1], np.zeros_like(photos[:1])])
    poses = extract_hand_poses(frames, backend=backend, with_body=False)
    assert poses.frames_without_hands == [1] and poses.shoulders is None
    assert draw_hand_poses(poses, 64, 64)[1].max() == 0
    with pytest.raises(InputError, match="No hand was found"):
        extract_hand_poses(np.zeros((1, 64, 64, 3), np.float32), backend=backend, with_body=False)


def test_alignment_on_the_photos(extracted, photos: np.ndarray, backend: str) -> None:
    """Catches alignment that does not land the driving shoulders on the reference shoulders: the poses of
    photo 0048 moved onto a shrunk, shifted copy of it follow the shrink and shift."""
    reference = np.zeros((1, 512, 512, 3), np.float32)
    small = np.asarray(Image.fromarray((photos[0] * 255).astype(np.uint8)).resize((256, 256)), np.float32) / 255
    reference[0, 200:456, 100:356] = small  # half size, offset (100, 200)
    anchor = reference_anchor(reference, backend=backend)
    aligned = align_hand_poses(extracted.frames([0]), anchor)
    expected = (extracted.points[0] * 512 * 0.5 + np.array([100, 200])) / 512
    assert np.abs(aligned.points[0] - expected).max() < 0.02  # detection noise only
    with pytest.raises(InputError, match="No person was found in the reference image"):
        reference_anchor(np.zeros((64, 64, 3), np.float32), backend=backend)


def test_order_hands_rules() -> None:
    """Catches MediaPipe handedness mapped to the wrong DWPose slot, or a duplicated label losing a hand."""
    left, right = np.full((21, 2), 0.8), np.full((21, 2), 0.2)
    hands = order_hands([("Right", 0.9, right), ("Left", 0.9, left)])
    np.testing.assert_array_equal(hands, [left, right])
    hands = order_hands([("Left", 0.9, right), ("Left", 0.8, left)])  # same label twice: by image position
    np.testing.assert_array_equal(hands, [left, right])
    hands = order_hands([("Right", 0.9, right)])
    assert np.isnan(hands[0]).all()


def test_synthetic_alignment_known_answer() -> None:
    """Catches a wrong transform (scale about the wrong centre, pixel vs normalised mix-up, aspect change):
    a body moved by (+40, -20) px and scaled x1.5 into a frame of another size gives a known answer."""
    from echomimic.poses import HandPoseSequence

    width, height = 400, 300
    shoulders = np.array([[[250.0, 150.0], [150.0, 150.0]]] * 2) / [width, height]  # centre (200, 150), width 100
    points = np.full((2, 2, 21, 2), np.nan)
    points[:, 0] = np.array([260.0, 220.0]) / [width, height]
    points[1, 1] = np.array([120.0, 230.0]) / [width, height]
    poses = HandPoseSequence(points, width, height, shoulders=shoulders)
    reference = BodyAnchor.from_shoulders(np.array([[315.0, 130.0], [165.0, 130.0]]) / [600, 600], 600, 600)
    assert reference is not None and reference.shoulder_width == pytest.approx(150.0)
    aligned = align_hand_poses(poses, reference)
    assert (aligned.width, aligned.height) == (600, 600)
    np.testing.assert_allclose(aligned.points[0, 0, 0] * 600, [240 + 60 * 1.5, 130 + 70 * 1.5])
    np.testing.assert_allclose(aligned.points[1, 1, 0] * 600, [240 - 80 * 1.5, 130 + 80 * 1.5])
    assert np.isnan(aligned.points[0, 1]).all()
    np.testing.assert_allclose(aligned.shoulders[0] * 600, [[315, 130], [165, 130]])
    with pytest.raises(InputError, match="carry no body"):
        align_hand_poses(HandPoseSequence(points, width, height), reference)
    no_body = HandPoseSequence(points, width, height, shoulders=np.full((2, 2, 2), np.nan))
    with pytest.raises(InputError, match="No person"):
        align_hand_poses(no_body, reference)


def test_photo_file_paths_exist() -> None:
    """Catches the shared photos going missing (the tests above would then test nothing real)."""
    for name in PHOTOS:
        assert (MEDIAPIPE_ROOT / "test_images" / name).is_file()
    assert Path(MEDIAPIPE_ROOT / "hand_landmarker.task").is_file()
