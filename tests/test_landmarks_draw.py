"""Drawing: parity with the official FaceMeshVisualizer drawings stored in the shared parity cases,
and the official look (colours, squares, parts) on landmarks of a real photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.landmarks import LandmarkSequence, draw_landmarks, extract_landmarks, select_parts
from echomimic.landmarks import topology as topo
from tests.parity_cases import PARITY_ROOT

REPO_ROOT = Path(__file__).resolve().parents[1]


def drawing_cases() -> list[Path]:
    root = PARITY_ROOT
    if not root.is_dir():
        return []
    return sorted(
        case
        for case in root.iterdir()
        if (case / "inputs" / "pose_landmarks.npy").is_file()
        and (case / "inputs" / "pose_frames.npy").is_file()
        and (case / "case.json").is_file()
    )


def test_parity_cases_are_found() -> None:
    """Catches the parametrised parity checks below silently running on no case (missing or moved fixtures)."""
    assert drawing_cases(), (
        f"no parity case with official landmark drawings under {PARITY_ROOT} (set ECHOMIMIC_PARITY_CASES)"
    )


@pytest.mark.parametrize("case", drawing_cases(), ids=lambda case: case.name)
def test_drawing_matches_official_drawing_of_parity_case(case: Path) -> None:
    info = json.loads((case / "case.json").read_text())
    width, height = int(info["width"]), int(info["height"])
    landmarks = np.load(case / "inputs" / "pose_landmarks.npy")  # keypoints in W x H pixels
    expected = np.load(case / "inputs" / "pose_frames.npy")
    # Drawn with FaceMeshVisualizer(draw_iris=False, draw_mouse=False): our default parts.
    drawn = draw_landmarks(LandmarkSequence(landmarks, width, height), width, height)
    assert drawn.shape == expected.shape and drawn.dtype == np.float32
    same = np.all(np.abs(drawn - expected) <= 0.5 / 255, axis=-1)  # [F, H, W] per pixel
    assert same.mean() >= 0.99
    # Most pixels are black, so also count only the pixels either drawing coloured.
    coloured = (drawn.max(axis=-1) > 0) | (expected.max(axis=-1) > 0)
    assert coloured.any()
    assert same[coloured].mean() >= 0.99


@pytest.fixture(scope="module")
def astronaut_landmarks() -> LandmarkSequence:
    import skimage.data as skimage_data  # requirements-dev.txt: missing, the test fails (never skips)

    return extract_landmarks(skimage_data.astronaut().astype(np.float32) / 255.0)


def colours_in(image: np.ndarray) -> set[tuple[int, int, int]]:
    pixels = np.rint(image.reshape(-1, 3) * 255).astype(int)
    return {tuple(int(v) for v in pixel) for pixel in np.unique(pixels, axis=0)}


MOUTH_COLOURS = {colour for _, colour in topo.LIPS_COLOURS}


def test_official_colours_and_squares_at_canvas_size(astronaut_landmarks: LandmarkSequence) -> None:
    # At 512x512 nothing is resized, so only the exact official colours appear.
    image = draw_landmarks(astronaut_landmarks, 512, 512)[0]
    expected_colours = {
        (0, 0, 0),
        topo.LEFT_EYE_COLOUR,
        topo.RIGHT_EYE_COLOUR,
        topo.LEFT_EYEBROW_COLOUR,
        topo.RIGHT_EYEBROW_COLOUR,
        topo.LEFT_PUPIL_COLOUR,
        topo.RIGHT_PUPIL_COLOUR,
        topo.NOSE_COLOUR,
    }
    assert colours_in(image) == expected_colours
    for index, colour in ((topo.RIGHT_PUPIL, topo.RIGHT_PUPIL_COLOUR), (topo.NOSE_TIP, topo.NOSE_COLOUR)):
        x, y = (int(v) for v in astronaut_landmarks.points[0, index, :2])
        square = np.rint(image[y - 3 : y + 3, x - 3 : x + 3] * 255)
        assert square.shape == (6, 6, 3)
        assert (square == np.array(colour)).all()


def test_mouth_drawn_only_when_asked(astronaut_landmarks: LandmarkSequence) -> None:
    assert not colours_in(draw_landmarks(astronaut_landmarks, 512, 512)[0]) & MOUTH_COLOURS
    with_flag = colours_in(draw_landmarks(astronaut_landmarks, 512, 512, draw_mouth=True)[0])
    with_part = colours_in(draw_landmarks(astronaut_landmarks, 512, 512, parts=["mouth"])[0])
    assert MOUTH_COLOURS <= with_flag
    assert with_part == MOUTH_COLOURS | {(0, 0, 0)}


def test_only_selected_parts_are_drawn(astronaut_landmarks: LandmarkSequence) -> None:
    pupils = draw_landmarks(astronaut_landmarks, 512, 512, parts=["pupils"])[0]
    assert colours_in(pupils) == {(0, 0, 0), topo.LEFT_PUPIL_COLOUR, topo.RIGHT_PUPIL_COLOUR}
    assert int((pupils.sum(axis=2) > 0).sum()) == 2 * 36  # two 6x6 squares
    # Parts hidden by select_parts are not drawn even when asked for.
    eyes_only = select_parts(astronaut_landmarks, ["eyes"])
    assert colours_in(draw_landmarks(eyes_only, 512, 512, draw_mouth=True)[0]) == {
        (0, 0, 0),
        topo.LEFT_EYE_COLOUR,
        topo.RIGHT_EYE_COLOUR,
    }


def test_output_size_and_resize(astronaut_landmarks: LandmarkSequence) -> None:
    frames = draw_landmarks(astronaut_landmarks, 96, 64)
    assert frames.shape == (1, 64, 96, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.max() > 0.5
    # The same landmarks in a frame twice as big land at the same relative place.
    scaled = LandmarkSequence(astronaut_landmarks.points * 2, 1024, 1024)
    np.testing.assert_allclose(draw_landmarks(scaled, 96, 64), frames, atol=1.5 / 255)


def test_points_outside_the_frame_are_not_drawn(astronaut_landmarks: LandmarkSequence) -> None:
    shifted = astronaut_landmarks.points.copy()
    shifted[..., 0] += 600
    both = LandmarkSequence(np.concatenate([astronaut_landmarks.points, shifted]), 512, 512)
    drawn = draw_landmarks(both, 64, 64)
    assert drawn[0].max() > 0.0 and drawn[1].max() == 0.0
    assert both.blank_frames() == [1]
    # Every frame off the canvas: the video would get no pose guidance at all, so it is refused.
    with pytest.raises(InputError, match="draw nothing"):
        draw_landmarks(LandmarkSequence(shifted, 512, 512), 64, 64)


def test_progress_and_bad_parts(astronaut_landmarks: LandmarkSequence) -> None:
    calls: list[tuple[int, int]] = []
    two = LandmarkSequence(np.repeat(astronaut_landmarks.points, 2, axis=0), 512, 512)
    draw_landmarks(two, 32, 32, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(InputError, match="ears"):
        draw_landmarks(astronaut_landmarks, 64, 64, parts=["eyes", "ears"])
    with pytest.raises(InputError, match="positive"):
        draw_landmarks(astronaut_landmarks, 0, 64)
