"""Outputs never replace what they should not: a device node is refused before anything runs, and the side
outputs (--save-poses, --save-landmarks, --save-frames) are written with the mp4 at the end, so a failed run
leaves every existing file as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echomimic.cli import main
from tests.parity_cases import PARITY_ROOT, make_v2_release_folder


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_as_output_is_refused_before_anything_runs(tmp_path, capsys, device):
    """Catches `--out /dev/null` ending with os.replace of the temporary mp4 over the device node."""
    status = main(["generate", "--out", device, "--weights", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert status == 2 and "it is a device, not a file" in err and "Traceback" not in err
    assert Path(device).is_char_device()


def test_a_failed_run_keeps_an_existing_save_poses_file(tmp_path, capsys):
    """Catches --save-poses being written before the models load: a run that then fails (a damaged weight
    file) replaced the user's earlier poses file."""
    from echomimic.poses import hand_poses_from_keypoint_records

    case_dir = PARITY_ROOT / "v2_hands"
    case = json.loads((case_dir / "case.json").read_text())
    weights = make_v2_release_folder(case_dir, case, tmp_path)
    (weights / "denoising_unet.pth").unlink()
    (weights / "denoising_unet.pth").write_bytes(b"")  # damaged: found by the loader, after the poses
    records = json.loads((case_dir / "inputs" / "pose_keypoints.json").read_text())
    hand_poses_from_keypoint_records(records, case["width"], case["height"]).save(tmp_path / "poses.json")
    previous = tmp_path / "previous.json"
    previous.write_text("the poses of an earlier run")
    status = main(
        [
            "generate",
            "--mode",
            "v2",
            "--weights",
            str(weights),
            "--image",
            str(case_dir / "inputs" / "reference.png"),
            "--audio",
            str(case_dir / "inputs" / "audio.wav"),
            "--poses",
            str(tmp_path / "poses.json"),
            "--no-align-poses",
            "--width",
            "64",
            "--height",
            "96",
            "--out",
            str(tmp_path / "out.mp4"),
            "--save-poses",
            str(previous),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "is empty" in err, err
    assert previous.read_text() == "the poses of an earlier run"
    assert not (tmp_path / "out.mp4").exists()


def test_saved_hand_poses_without_alignment_run_offline(tmp_path, monkeypatch):
    """Catches a run that detects nothing (--poses, --no-align-poses) still fetching the hand and pose
    landmarkers: with the MediaPipe server unreachable it must still make the video, and fetch nothing."""
    from echomimic.poses import hand_poses_from_keypoint_records
    from echomimic.release import MEDIAPIPE_BASE_URL_ENV

    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, "http://127.0.0.1:9/nothing-here")
    monkeypatch.delenv("ECHOMIMIC_MODELS_DIR", raising=False)
    case_dir = PARITY_ROOT / "v2_hands"
    case = json.loads((case_dir / "case.json").read_text())
    weights = make_v2_release_folder(case_dir, case, tmp_path)
    records = json.loads((case_dir / "inputs" / "pose_keypoints.json").read_text())
    hand_poses_from_keypoint_records(records, case["width"], case["height"]).save(tmp_path / "poses.json")
    status = main(
        [
            "generate",
            "--mode",
            "v2",
            "--weights",
            str(weights),
            "--image",
            str(case_dir / "inputs" / "reference.png"),
            "--audio",
            str(case_dir / "inputs" / "audio.wav"),
            "--poses",
            str(tmp_path / "poses.json"),
            "--no-align-poses",
            "--width",
            "64",
            "--height",
            "96",
            "--steps",
            "1",
            "--length",
            "4",
            "--out",
            str(tmp_path / "out.mp4"),
            "--quiet",
        ]
    )
    assert status == 0 and (tmp_path / "out.mp4").is_file()
    assert not (weights / "mediapipe").exists()


def test_a_truncated_image_is_an_error_even_where_the_host_allows_them(tmp_path, monkeypatch):
    """Catches a PNG cut after its first rows read as a picture padded with black (ComfyUI sets Pillow's
    LOAD_TRUNCATED_IMAGES for itself), instead of one line saying the file is incomplete."""
    import numpy as np
    from PIL import Image, ImageFile

    from echomimic.errors import InputError
    from echomimic.images import read_rgb_image

    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InputError, match="cannot read the image .*complete png"):
        read_rgb_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the host's own setting is left as it was
    assert read_rgb_image(whole).shape == (300, 300, 3)
