"""HandPoseSequence: shape checks, JSON round trip, and clear one-line errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.poses import HandPoseSequence


def sample(frames: int = 3) -> HandPoseSequence:
    rng = np.random.default_rng(0)
    points = rng.uniform(0.1, 0.9, (frames, 2, 21, 2))
    points[1, 1] = np.nan  # right hand not found in frame 1
    points[2, 0, 5] = np.nan  # one point not found
    scores = rng.uniform(0.5, 1.1, (frames, 2, 21))
    shoulders = rng.uniform(0.3, 0.7, (frames, 2, 2))
    shoulders[0] = np.nan
    return HandPoseSequence(points, 640, 480, scores, shoulders)


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    """Catches lost values, lost NaN markers or reordered hands between save and load."""
    poses = sample()
    loaded = HandPoseSequence.load(poses.save(tmp_path / "p.json"))
    np.testing.assert_array_equal(loaded.points, poses.points)
    np.testing.assert_array_equal(loaded.scores, poses.scores)
    np.testing.assert_array_equal(loaded.shoulders, poses.shoulders)
    assert (loaded.width, loaded.height) == (640, 480)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["format"] == "echomimic-hand-poses" and data["version"] == 1
    assert data["hands"][1][1] is None and data["hands"][2][0][5] is None and data["shoulders"][0] is None


def test_frames_without_hands_are_reported() -> None:
    """Catches frames with no hand going unreported, and a sequence without any hand being accepted."""
    points = np.full((4, 2, 21, 2), np.nan)
    points[1, 0] = 0.5
    poses = HandPoseSequence(points, 10, 10)
    assert poses.frames_without_hands == [0, 2, 3]
    poses.check_has_hands()
    with pytest.raises(InputError, match="no hand in any frame"):
        HandPoseSequence(np.full((2, 2, 21, 2), np.nan), 10, 10).check_has_hands()


def test_frames_picks_loops() -> None:
    """Catches frame selection (loop / ping-pong) losing the shoulders or scores."""
    poses = sample()
    picked = poses.frames([0, 1, 2, 1, 0])
    assert picked.num_frames == 5
    np.testing.assert_array_equal(picked.scores[3], poses.scores[1])
    np.testing.assert_array_equal(picked.shoulders[4], poses.shoulders[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "echomimic-landmarks", "version": 1}', "not an EchoMimic hand pose sequence"),
        ('{"format": "echomimic-hand-poses", "version": 9}', "version 9 is not supported"),
        ('{"format": "echomimic-hand-poses", "version": 1, "width": 4, "height": 4}', "malformed"),
        ('{"format": "echomimic-hand-poses", "version": 1, "width": 4, "height": 4, "hands": [[null]]}', "malformed"),
        (
            '{"format": "echomimic-hand-poses", "version": 1, "width": 4, "height": 4, "hands": [[[[1, 2]], null]]}',
            "malformed",
        ),
        (
            '{"format": "echomimic-hand-poses", "version": 1, "width": 0, "height": 4, "hands": [[null, null]]}',
            "positive",
        ),
        ('{"format": "echomimic-hand-poses", "version": 1, "width": 4, "height": 4, "hands": []}', "no frames"),
    ],
)
def test_malformed_files_are_one_line_errors(text: str, message: str) -> None:
    """Catches tracebacks (KeyError, IndexError, ...) leaking out of a hand-edited or foreign file."""
    with pytest.raises(InputError, match=message) as caught:
        HandPoseSequence.from_json(text)
    assert "\n" not in str(caught.value)


def test_missing_file_and_bad_shape() -> None:
    """Catches unclear errors for a wrong path or wrongly shaped arrays."""
    with pytest.raises(InputError, match="does not exist"):
        HandPoseSequence.load("/nonexistent/poses.json")
    with pytest.raises(InputError, match=r"\[frames, 2, 21, 2\]"):
        HandPoseSequence(np.zeros((3, 21, 2, 2)), 4, 4)
