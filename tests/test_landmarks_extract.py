"""Extraction with the real MediaPipe on a real face photo, gap filling, backend choice, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data as skimage_data  # requirements-dev.txt: missing, the tests fail (never skip)
import torch

from echomimic.errors import InputError, WeightsError
from echomimic.landmarks import LandmarkSequence, extract_landmarks
from echomimic.landmarks.backends import FACE_LANDMARKER_FILE, choose_backend
from echomimic.landmarks.extract import fill_missing_frames
from tests.parity_cases import MEDIAPIPE_ROOT


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut().astype(np.float32) / 255.0  # [512, 512, 3], face near (225, 130)


def test_real_photo_gives_478_plausible_points(astronaut: np.ndarray) -> None:
    sequence = extract_landmarks(torch.from_numpy(astronaut)[None])  # ComfyUI IMAGE as a torch tensor
    assert isinstance(sequence, LandmarkSequence)
    assert sequence.points.shape == (1, 478, 3) and sequence.points.dtype == np.float32
    assert (sequence.width, sequence.height) == (512, 512)
    assert sequence.detected.tolist() == [True] and sequence.filled_count == 0
    points = sequence.points[0]
    right_pupil, left_pupil, nose_tip = points[468], points[473], points[4]
    # The face of the astronaut is in the upper middle of the photo (box about x 178-273, y 83-178).
    assert 170 < right_pupil[0] < left_pupil[0] < 285  # the person's left eye is on the image's right
    assert 80 < right_pupil[1] < 140 and 80 < left_pupil[1] < 140
    assert right_pupil[0] < nose_tip[0] < left_pupil[0] and nose_tip[1] > max(right_pupil[1], left_pupil[1])
    assert 20 < left_pupil[0] - right_pupil[0] < 80
    assert np.isfinite(points).all() and np.abs(points[:, 2]).max() < 512  # z in pixels, relative depth


def test_frames_without_face_are_filled_from_neighbours(astronaut: np.ndarray) -> None:
    moved = np.roll(astronaut, (12, 20), axis=(0, 1))  # the same face 20 px right, 12 px down
    blank = np.zeros_like(astronaut)
    calls: list[tuple[int, int]] = []
    sequence = extract_landmarks(
        np.stack([blank, astronaut, blank, moved]), progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert sequence.detected.tolist() == [False, True, False, True]
    assert sequence.filled_count == 2
    points = sequence.points
    np.testing.assert_array_equal(points[0], points[1])  # before the first face: copied
    np.testing.assert_allclose(points[2], (points[1] + points[3]) / 2, atol=1e-3)  # between: interpolated
    shift = (points[3] - points[1])[:, :2].mean(axis=0)
    np.testing.assert_allclose(shift, [20, 12], atol=1.5)


def test_fill_missing_frames_interpolates_linearly() -> None:
    points = np.zeros((5, 2, 1))
    points[1], points[4] = 1.0, 4.0
    filled = fill_missing_frames(points, np.array([False, True, False, False, True]))
    np.testing.assert_allclose(filled[:, 0, 0], [1, 1, 2, 3, 4])


def test_no_face_at_all_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="No face"):
        extract_landmarks(np.zeros((2, 64, 64, 3), dtype=np.float32))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((0, 64, 64, 3), dtype=np.float32), "empty"),
        (np.zeros((1, 64, 64, 4), dtype=np.float32), "RGB"),
        (np.zeros((1, 64, 64, 1), dtype=np.float32), "RGB"),
        (np.zeros((64, 64), dtype=np.float32), "frames, height, width, 3"),
        (np.zeros((1, 64, 64, 3), dtype=np.uint8), "0..1"),
    ],
)
def test_bad_images_are_clear_errors(images: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        extract_landmarks(images)


def test_missing_task_file_names_the_file_and_folder(
    tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulates a mediapipe without the legacy API (0.10.30+), where only the Tasks API exists, offline.
    monkeypatch.setenv("ECHOMIMIC_MEDIAPIPE_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(WeightsError) as caught:
        extract_landmarks(astronaut, models_dir=tmp_path, legacy_available=False)
    message = str(caught.value)
    assert "face_landmarker.task" in message and str(tmp_path / "mediapipe") in message
    assert "http://127.0.0.1:9/face_landmarker/face_landmarker/float16/1/face_landmarker.task" in message
    monkeypatch.setenv("ECHOMIMIC_MODELS_DIR", str(tmp_path / "default"))  # no folder given: the default one
    with pytest.raises(WeightsError, match="face_landmarker.task"):
        choose_backend(FACE_LANDMARKER_FILE, None, legacy_available=False, download=False)


def test_backend_choice(tmp_path: Path) -> None:
    assert choose_backend(FACE_LANDMARKER_FILE, None, legacy_available=True).name == "legacy"
    (tmp_path / "mediapipe").mkdir()
    task = tmp_path / "mediapipe" / "face_landmarker.task"
    task.symlink_to(MEDIAPIPE_ROOT / "face_landmarker.task")  # an existing (checked) file is used, never fetched
    chosen = choose_backend(FACE_LANDMARKER_FILE, tmp_path, legacy_available=False)
    assert (chosen.name, chosen.model_path) == ("tasks", task)
    chosen = choose_backend(FACE_LANDMARKER_FILE, tmp_path, backend="tasks", legacy_available=True)
    assert chosen.name == "tasks"
    with pytest.raises(InputError, match="0.10.21"):
        choose_backend(FACE_LANDMARKER_FILE, tmp_path, backend="legacy", legacy_available=False)
    with pytest.raises(InputError, match="auto"):
        choose_backend(FACE_LANDMARKER_FILE, tmp_path, backend="fast")


def test_tasks_api_finds_the_published_landmarks(astronaut: np.ndarray, tmp_path: Path) -> None:
    """Catches a broken Tasks-API path (model file fetched through the download code, image format,
    normalisation) and, where the legacy API is installed too, a disagreement between the two APIs.

    The reference numbers are those published with the shared MediaPipe files (../shared/mediapipe/README.md:
    nose tip 1 at (0.437, 0.256), points 33 and 263 at (0.381, 0.196) and (0.499, 0.203)).
    """
    from echomimic.landmarks.backends import legacy_solutions_available

    tasks = extract_landmarks(astronaut, backend="tasks", models_dir=tmp_path)
    assert (tmp_path / "mediapipe" / "face_landmarker.task").is_file()  # arrived through the download code
    assert tasks.points.shape == (1, 478, 3)
    height, width = astronaut.shape[:2]
    published = {1: (0.437, 0.256), 33: (0.381, 0.196), 263: (0.499, 0.203)}
    for index, (x, y) in published.items():
        got = tasks.points[0, index, :2] / np.array([width, height])  # pixels -> fractions
        assert np.abs(got - np.array([x, y])).max() < 0.01, (index, got, (x, y))
    if legacy_solutions_available():
        legacy = extract_landmarks(astronaut, backend="legacy")
        assert np.abs(tasks.points[0, :, :2] - legacy.points[0, :, :2]).mean() < 2.0
