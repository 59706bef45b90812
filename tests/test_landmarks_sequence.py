"""LandmarkSequence: JSON round trip (never pickle), hidden points, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.landmarks import LandmarkSequence, select_parts


def random_sequence(frames: int = 3, seed: int = 0) -> LandmarkSequence:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 300, (frames, 478, 3)).astype(np.float32)
    return LandmarkSequence(points, 320, 240, np.array([True, False, True][:frames]))


def test_json_round_trip(tmp_path: Path) -> None:
    sequence = random_sequence()
    path = tmp_path / "face.json"
    sequence.save(path)
    loaded = LandmarkSequence.load(path)
    np.testing.assert_allclose(loaded.points, sequence.points, atol=1e-4)
    assert (loaded.width, loaded.height) == (320, 240)
    assert loaded.detected.tolist() == [True, False, True]
    assert loaded.num_frames == 3 and loaded.filled_count == 1
    data = json.loads(path.read_text())
    assert data["format"] == "echomimic-landmarks" and len(data["points"][0]) == 478


def test_hidden_points_survive_json() -> None:
    eyes = select_parts(random_sequence(), ["eyes"])
    loaded = LandmarkSequence.from_json(eyes.to_json())
    np.testing.assert_array_equal(np.isnan(loaded.points), np.isnan(eyes.points))
    assert "null" in eyes.to_json() and "NaN" not in eyes.to_json()


def test_two_dimensional_points_get_zero_depth_and_frame_picks_one() -> None:
    sequence = LandmarkSequence(np.ones((2, 478, 2)), 10, 10)
    assert sequence.points.shape == (2, 478, 3) and (sequence.points[..., 2] == 0).all()
    assert sequence.frame(-1).num_frames == 1
    with pytest.raises(InputError, match="does not exist"):
        sequence.frame(2)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not an EchoMimic landmark"),
        ('{"format": "echomimic-landmarks", "version": 99}', "version"),
        ('{"format": "echomimic-landmarks", "version": 1, "width": 5}', "malformed"),
        ('{"format": "echomimic-landmarks", "version": 1, "width": 5, "height": 5, "points": [[[1, 2, 3]]]}', "478"),
    ],
)
def test_bad_json_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        LandmarkSequence.from_json(text)


def test_bad_construction_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="478"):
        LandmarkSequence(np.zeros((2, 468, 3)), 10, 10)
    with pytest.raises(InputError, match="no frames"):
        LandmarkSequence(np.zeros((0, 478, 3)), 10, 10)
    with pytest.raises(InputError, match="one flag per frame"):
        LandmarkSequence(np.zeros((2, 478, 3)), 10, 10, np.array([True]))
    with pytest.raises(InputError, match="does not exist"):
        LandmarkSequence.load(tmp_path / "missing.json")
