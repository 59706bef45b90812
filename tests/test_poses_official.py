"""Safe import of the official EchoMimic V2 demo pose folders (`<name>/<index>.npy`, numpy pickles of dicts)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.poses import import_official_pose_folder, read_official_pose_file


def official_frame(index: int) -> dict:
    """A frame with the structure of assets/halfbody_demo/pose/<name>/<index>.npy (checked on the real files)."""
    rng = np.random.default_rng(index)
    candidate = rng.uniform(0.2, 0.8, (18, 2))
    candidate[5] = (0.70, 0.49)  # person's left shoulder (OpenPose 5), at the image's right
    candidate[2] = (0.30, 0.51)  # person's right shoulder (OpenPose 2)
    subset = np.arange(18, dtype=np.float64)[None]
    subset[0, [9, 10, 12, 13]] = -1
    hands = rng.uniform(0.1, 0.9, (2, 21, 2))
    hands[1, 20] = -1  # DWPose marks a point it did not find with -1
    return {
        "bodies": {"candidate": candidate, "subset": subset, "score": rng.uniform(0, 1, (1, 18))},
        "hands": hands,
        "hands_score": rng.uniform(0.9, 1.1, (2, 21)),
        "faces": rng.uniform(0.3, 0.6, (1, 68, 2)),
        "faces_score": rng.uniform(0.5, 1.0, (1, 68)),
        "num": 0,
        "draw_pose_params": [768, 768, 0, 768, 0, 768],
    }


def write_demo_folder(folder: Path, frames: int = 3) -> list[dict]:
    folder.mkdir(parents=True)
    poses = [official_frame(index) for index in range(frames)]
    for index, pose in enumerate(poses):
        np.save(folder / f"{index}.npy", np.array(pose, dtype=object), allow_pickle=True)
    return poses


def test_demo_folder_imports_hands_scores_and_shoulders(tmp_path: Path) -> None:
    """Catches wrong hand order, lost scores, -1 points drawn as real points, or swapped shoulders."""
    poses = write_demo_folder(tmp_path / "01")
    (tmp_path / "01" / ".DS_Store").write_bytes(b"junk")  # the official folder has one
    sequence = import_official_pose_folder(tmp_path / "01")
    assert (sequence.num_frames, sequence.width, sequence.height) == (3, 768, 768)
    expected = poses[2]["hands"].copy()
    expected[1, 20] = np.nan
    np.testing.assert_array_equal(sequence.points[2], expected)
    np.testing.assert_array_equal(sequence.scores[0, 0], poses[0]["hands_score"][0])
    np.testing.assert_array_equal(sequence.shoulders[1], [[0.70, 0.49], [0.30, 0.51]])
    assert read_official_pose_file(tmp_path / "01" / "0.npy")["draw_pose_params"] == [768, 768, 0, 768, 0, 768]


class _Payload:
    """Unpickling this would run os.system (creating a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    """Catches a reader that unpickles arbitrary objects (np.load(allow_pickle=True)): the payload must not run,
    and the error must name the refused import."""
    folder = tmp_path / "evil"
    write_demo_folder(folder, frames=2)
    marker = tmp_path / "pwned"
    pose = official_frame(1)
    pose["num"] = _Payload(marker)
    np.save(folder / "1.npy", np.array(pose, dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"refused import of (posix|nt|os)\.system") as caught:
        import_official_pose_folder(folder)
    assert not marker.exists()
    assert "\n" not in str(caught.value) and "1.npy" in str(caught.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b"not numpy"), "not a numpy"),
        (lambda path: np.save(path, np.zeros((2, 21, 2))), "not an official pose"),
        (lambda path: np.save(path, np.array({"hands": "x"}, dtype=object), allow_pickle=True), "hands"),
        (lambda path: np.save(path, np.array([1, 2], dtype=object), allow_pickle=True), "not an official pose"),
    ],
)
def test_foreign_files_are_clear_errors(tmp_path: Path, make, message: str) -> None:
    """Catches tracebacks from files that are not official pose frames."""
    folder = tmp_path / "bad"
    folder.mkdir()
    make(folder / "0.npy")
    with pytest.raises(InputError, match=message):
        import_official_pose_folder(folder)


def test_folder_errors(tmp_path: Path) -> None:
    """Catches unclear errors for a missing folder, an empty one, or a gap in the numbering."""
    with pytest.raises(InputError, match="does not exist"):
        import_official_pose_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no numbered pose files"):
        import_official_pose_folder(tmp_path / "empty")
    write_demo_folder(tmp_path / "gap", frames=3)
    (tmp_path / "gap" / "1.npy").unlink()
    with pytest.raises(InputError, match="without gaps"):
        import_official_pose_folder(tmp_path / "gap")
