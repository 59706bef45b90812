"""Save / load landmark and hand-pose JSON nodes: output numbering, atomic writes, input listing, round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.comfy_stubs import extension_submodule, install_stub_modules


@pytest.fixture()
def file_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    install_stub_modules(tmp_path / "models")
    import folder_paths

    monkeypatch.setattr(folder_paths, "base_path", str(tmp_path / "comfy"))
    (tmp_path / "comfy" / "input").mkdir(parents=True)
    return extension_submodule("nodes.file_nodes")


def _landmarks(module: Any, frames: int = 3) -> Any:
    sequence = importlib_sequence(module)
    points = np.random.default_rng(0).random((frames, 478, 3)).astype(np.float32) * 100
    return sequence.LandmarkSequence(points, 320, 240, np.ones(frames, dtype=bool))


def importlib_sequence(module: Any) -> Any:
    """The landmark sequence module of the same library copy the nodes use."""
    import importlib

    return importlib.import_module(module.__name__.rsplit(".", 2)[0] + ".echomimic.landmarks.sequence")


def test_landmarks_save_numbered_files_and_load_them_back(file_nodes: Any, tmp_path: Path) -> None:
    """Catches overwriting an earlier save, files outside the output folder, temp files left behind, the
    loader not listing input JSON files (subfolders too), or a round trip that changes the landmarks."""
    import folder_paths

    saver, loader = file_nodes.EchoMimicSaveLandmarks(), file_nodes.EchoMimicLoadLandmarks()
    sequence = _landmarks(file_nodes)
    first = saver.save(sequence, "echomimic/motion")
    second = saver.save(sequence, "echomimic/motion")
    assert first["result"] == ("echomimic/motion_00001.json",)
    assert second["result"] == ("echomimic/motion_00002.json",) and second["ui"]["text"] == [
        "echomimic/motion_00002.json"
    ]
    output = Path(folder_paths.get_output_directory()) / "echomimic"
    assert sorted(os.listdir(output)) == ["motion_00001.json", "motion_00002.json"]  # no temp files
    assert json.loads((output / "motion_00001.json").read_text())["format"] == "echomimic-landmarks"

    input_dir = Path(folder_paths.get_input_directory())
    (input_dir / "shared").mkdir()
    (input_dir / "shared" / "motion.json").write_text((output / "motion_00001.json").read_text())
    (input_dir / "portrait.png").write_bytes(b"not json")
    choices = loader.INPUT_TYPES()["required"]["file"][0]
    assert choices == ["shared/motion.json"]
    assert loader.VALIDATE_INPUTS("shared/motion.json") is True
    (loaded,) = loader.load("shared/motion.json")
    assert loaded.num_frames == 3 and (loaded.width, loaded.height) == (320, 240)
    np.testing.assert_allclose(loaded.points, sequence.points, atol=1e-3)
    changed = loader.IS_CHANGED("shared/motion.json")
    (input_dir / "shared" / "motion.json").write_text(saver_json(file_nodes, frames=2))
    assert loader.IS_CHANGED("shared/motion.json") != changed  # edited by hand: run again


def saver_json(module: Any, frames: int) -> str:
    return _landmarks(module, frames).to_json()


def test_bad_names_and_files_are_clear_errors(file_nodes: Any, tmp_path: Path) -> None:
    """Catches path escapes from the output/input folders and tracebacks for wrong or missing files."""
    import folder_paths

    error = extension_submodule("nodes.common").EchoMimicNodeError
    saver, loader = file_nodes.EchoMimicSaveLandmarks(), file_nodes.EchoMimicLoadLandmarks()
    with pytest.raises(error, match="inside ComfyUI's output folder"):
        saver.save(_landmarks(file_nodes), "../outside/motion")
    with pytest.raises(error, match="EchoMimic node"):
        saver.save("not a sequence", "motion")
    assert "not a file" in loader.VALIDATE_INPUTS("../secret.json")
    assert "not in ComfyUI's input folder" in loader.VALIDATE_INPUTS("missing.json")
    input_dir = Path(folder_paths.get_input_directory())
    (input_dir / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(error, match="not an EchoMimic landmark sequence"):
        loader.load("other.json")


def test_hand_poses_save_and_load(file_nodes: Any) -> None:
    """Catches the hand-pose nodes writing or reading another format than HandPoseSequence's JSON."""
    import importlib

    import folder_paths

    poses = importlib.import_module(file_nodes.__name__.rsplit(".", 2)[0] + ".echomimic.poses.sequence")
    text = _hand_pose_json(poses)
    sequence = poses.HandPoseSequence.from_json(text)
    (relative,) = file_nodes.EchoMimicSaveHandPoses().save(sequence, "echomimic/hands")["result"]
    assert relative == "echomimic/hands_00001.json"
    saved = Path(folder_paths.get_output_directory()) / relative
    assert json.loads(saved.read_text())["format"] == poses.JSON_FORMAT
    (Path(folder_paths.get_input_directory()) / "hands.json").write_text(saved.read_text())
    (loaded,) = file_nodes.EchoMimicLoadHandPoses().load("hands.json")
    assert loaded.to_json() == sequence.to_json()
    error = extension_submodule("nodes.common").EchoMimicNodeError
    (Path(folder_paths.get_input_directory()) / "face.json").write_text(saver_json(file_nodes, 1))
    with pytest.raises(error, match="hand pose"):
        file_nodes.EchoMimicLoadHandPoses().load("face.json")


def _hand_pose_json(poses: Any) -> str:
    """A two-frame hand pose file in the documented format (left hand found, right hand missing)."""
    hand = [[0.1 + 0.01 * i, 0.2 + 0.01 * i, 0.9] for i in range(poses.NUM_HAND_POINTS)]
    return json.dumps(
        {
            "format": poses.JSON_FORMAT,
            "version": poses.JSON_VERSION,
            "width": 64,
            "height": 48,
            "hands": [[hand, None], [hand, None]],
        }
    )


def test_load_nodes_list_only_files_of_their_format(file_nodes: Any) -> None:
    """Catches Load Landmarks listing hand-pose files (and the reverse), unreadable files listed, or the
    filter's format names drifting from the library's JSON formats."""
    import importlib

    import folder_paths

    base = file_nodes.__name__.rsplit(".", 2)[0]
    poses = importlib.import_module(base + ".echomimic.poses.sequence")
    landmarks = importlib.import_module(base + ".echomimic.landmarks.sequence")
    assert file_nodes.EchoMimicLoadHandPoses.FORMAT == poses.JSON_FORMAT
    assert file_nodes.EchoMimicLoadLandmarks.FORMAT == landmarks.JSON_FORMAT
    input_dir = Path(folder_paths.get_input_directory())
    (input_dir / "hands.json").write_text(_hand_pose_json(poses))
    (input_dir / "face.json").write_text(saver_json(file_nodes, 1))
    (input_dir / "broken.json").write_text("{not json")
    hands = file_nodes.EchoMimicLoadHandPoses.INPUT_TYPES()["required"]["file"]
    faces = file_nodes.EchoMimicLoadLandmarks.INPUT_TYPES()["required"]["file"]
    assert hands[0] == ["hands.json"] and faces[0] == ["face.json"]
    assert "2 other JSON file(s)" in hands[1]["tooltip"] and "2 other JSON file(s)" in faces[1]["tooltip"]
