"""The command line's v2 hand-pose path: option checks, and the hand-pose images from --poses / a driving
video, aligned to the portrait (real MediaPipe on the shared half-body photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from echomimic.cli import build_parser, resolve_mode_defaults, validate_generate_args
from echomimic.cli.inputs import _hand_pose_images
from echomimic.cli.report import _Reporter
from echomimic.errors import InputError
from echomimic.poses import HandPoseSequence, extract_hand_poses
from tests.parity_cases import MEDIAPIPE_ROOT
from tests.test_poses_extract import PHOTOS, load_photo

PHOTO_PATH = MEDIAPIPE_ROOT / "test_images" / PHOTOS[0]


def parse(*options: str):
    return resolve_mode_defaults(build_parser().parse_args(["generate", *options]))


def test_v2_option_checks(tmp_path: Path) -> None:
    """Catches a v2 run without hand poses, with both sources, with V1-only options, or v2 options in V1 modes."""
    poses = tmp_path / "poses.json"
    poses.write_text("{}")
    with pytest.raises(InputError, match="driven by hand poses"):
        validate_generate_args(parse("--mode", "v2"))
    with pytest.raises(InputError, match="driven by hand poses"):
        validate_generate_args(parse("--mode", "v2_acc", "--poses", str(poses), "--driving-video", str(poses)))
    with pytest.raises(InputError, match="for the V1 modes"):
        validate_generate_args(parse("--mode", "v2", "--poses", str(poses), "--landmarks", str(poses)))
    with pytest.raises(InputError, match="file not found"):
        validate_generate_args(parse("--mode", "v2", "--poses", str(tmp_path / "missing.json")))
    with pytest.raises(InputError, match="for the v2 modes"):
        validate_generate_args(parse("--mode", "audio", "--poses", str(poses)))
    validate_generate_args(parse("--mode", "v2", "--poses", str(poses), "--image", str(PHOTO_PATH)))


def test_hand_pose_images_from_saved_poses_aligned_to_the_portrait(tmp_path: Path) -> None:
    """Catches the CLI drawing unaligned or wrongly sized pose images, or not saving the aligned poses: poses
    taken from the photo, shrunk into the top-left quarter, come back onto the photo's person."""
    photo = load_photo(PHOTOS[0], 512)
    poses = extract_hand_poses(photo[None])
    moved = HandPoseSequence(poses.points * 0.5, 512, 512, poses.scores, poses.shoulders * 0.5)
    moved.save(tmp_path / "moved.json")
    args = parse(
        "--mode",
        "v2",
        "--image",
        str(PHOTO_PATH),
        "--poses",
        str(tmp_path / "moved.json"),
        "--width",
        "128",
        "--height",
        "128",
        "--save-poses",
        str(tmp_path / "aligned.json"),
        "--weights",
        str(tmp_path / "weights"),
    )
    frames = _hand_pose_images(args, _Reporter(quiet=True))
    assert frames.shape == (1, 128, 128, 3) and frames.dtype == np.float32 and frames.max() <= 1.0
    aligned = HandPoseSequence.load(tmp_path / "aligned.json")
    assert np.nanmax(np.abs(aligned.points - poses.points)) < 0.03  # back where the photo's hands are
    args.no_align_poses = True
    unaligned = _hand_pose_images(args, _Reporter(quiet=True))
    assert unaligned[0, 64:, 64:].max() == 0  # the shrunk hands stay in the top-left quarter


def test_hand_pose_images_from_a_driving_video(tmp_path: Path) -> None:
    """Catches the --driving-video path of the v2 modes failing on a real mp4 (decode -> hands -> align ->
    draw), or a frame without hands not being reported."""
    from echomimic.video_io import write_mp4

    photos = np.stack([load_photo(name, 256) for name in PHOTOS] + [np.zeros((256, 256, 3), np.float32)])
    write_mp4(tmp_path / "clip.mp4", photos, 24.0)
    args = parse(
        "--mode",
        "v2_acc",
        "--image",
        str(PHOTO_PATH),
        "--driving-video",
        str(tmp_path / "clip.mp4"),
        "--width",
        "96",
        "--height",
        "96",
        "--weights",
        str(tmp_path / "weights"),
    )
    notes: list[str] = []
    report = _Reporter(quiet=True)
    report.info = notes.append  # type: ignore[method-assign]
    frames = _hand_pose_images(args, report)
    assert frames.shape == (3, 96, 96, 3)
    assert frames[0, :, 48:].max() > 0 and frames[0, :, :48].max() > 0 and frames[2].max() == 0
    assert any("no hand found in 1 of 3 frames (2)" in note for note in notes), notes


def test_generate_v2_from_saved_poses_reproduces_the_official_video(tmp_path: Path) -> None:
    """`generate --mode v2 --poses` on the tiny v2_hands case (its weights in the release layout) writes the
    official video: catches the CLI drawing poses differently from the pipeline's expectations, framing them
    (W, H), or not passing them to the pose encoder."""
    import json

    from echomimic.cli import main
    from tests.parity_cases import PARITY_ROOT, make_v2_release_folder

    case_dir = PARITY_ROOT / "v2_hands"
    case = json.loads((case_dir / "case.json").read_text())
    weights = make_v2_release_folder(case_dir, case, tmp_path)
    records = json.loads((case_dir / "inputs" / "pose_keypoints.json").read_text())
    from echomimic.poses import hand_poses_from_keypoint_records

    hand_poses_from_keypoint_records(records, case["width"], case["height"]).save(tmp_path / "poses.json")
    code = main(
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
            "--pose-ref-w",
            str(case["pose_drawing"]["ref_w"]),
            "--width",
            str(case["width"]),
            "--height",
            str(case["height"]),
            "--fps",
            str(case["fps"]),
            "--steps",
            str(case["steps"]),
            "--cfg",
            str(case["guidance_scale"]),
            "--seed",
            str(case["seed"]),
            "--context-frames",
            str(case["context_frames"]),
            "--context-overlap",
            str(case["context_overlap"]),
            "--length",
            str(case["video_length"]),
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--quiet",
            "--out",
            str(tmp_path / "out.mp4"),
            "--save-frames",
            str(tmp_path / "frames.npy"),
        ]
    )
    assert code == 0 and (tmp_path / "out.mp4").is_file()
    expected = np.load(case_dir / "expected" / "video.npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "frames.npy"), expected, atol=case["suggested_tolerance"]["video_atol"]
    )
