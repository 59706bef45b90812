"""Hand-pose drawing: uint8 equality with the official `draw_pose_select_v2` drawings of the parity cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.poses import HandPoseSequence, draw_hand_poses, hand_poses_from_keypoint_records
from tests.parity_cases import PARITY_ROOT, discover_cases


def v2_cases() -> list[Path]:
    return [
        case
        for case in discover_cases()
        if json.loads((case / "case.json").read_text()).get("echomimic_version") == "v2"
    ]


def case_poses(case: Path) -> tuple[dict, HandPoseSequence]:
    info = json.loads((case / "case.json").read_text())
    records = json.loads((case / "inputs" / "pose_keypoints.json").read_text())
    return info, hand_poses_from_keypoint_records(records, info["width"], info["height"])


def test_v2_cases_exist() -> None:
    """Catches a missing or moved parity folder: the drawing checks below would silently run on nothing."""
    assert len(v2_cases()) >= 2, f"no V2 parity cases under {PARITY_ROOT}"


@pytest.mark.parametrize("case", v2_cases(), ids=lambda case: case.name)
def test_drawing_equals_the_pipeline_input_of_every_v2_case(case: Path) -> None:
    """Catches any pixel difference (colour order, line width, truncation, zoom canvas, resize) between our
    drawing and the pose frames the official pipeline was given."""
    info, poses = case_poses(case)
    ref_w = int(info["pose_drawing"]["ref_w"])
    drawn = draw_hand_poses(poses, info["width"], info["height"], ref_w=ref_w)
    expected = np.load(case / "inputs" / "pose_frames.npy")
    assert drawn.dtype == np.uint8 and drawn.shape == expected.shape
    np.testing.assert_array_equal(drawn, np.rint(expected * 255).astype(np.uint8))


@pytest.mark.parametrize(
    "case",
    [case for case in v2_cases() if any((case / "expected").glob("pose_frames_uint8_*"))],
    ids=lambda case: case.name,
)
def test_drawing_equals_official_drawings_at_other_sizes(case: Path) -> None:
    """Catches size-dependent mistakes (canvas (H, W) vs (W, H), sr from min(H, W), resize) at every size the
    official drawing was stored at."""
    info, poses = case_poses(case)
    drawings = info["pose_drawing"].get("drawings", [])
    for drawing in drawings:
        expected = np.load(case / drawing["file"])
        scaled = HandPoseSequence(poses.points, drawing["W"], drawing["H"], poses.scores)
        drawn = draw_hand_poses(scaled, drawing["W"], drawing["H"], ref_w=drawing["ref_w"])
        np.testing.assert_array_equal(drawn, expected, err_msg=drawing["file"])


def test_json_round_trip_draws_the_same_pixels(tmp_path: Path) -> None:
    """Catches precision loss in the JSON (a rounded coordinate can move a truncated pixel)."""
    case = v2_cases()[0]
    info, poses = case_poses(case)
    path = poses.save(tmp_path / "poses.json")
    loaded = HandPoseSequence.load(path)
    np.testing.assert_array_equal(
        draw_hand_poses(loaded, info["width"], info["height"], ref_w=128),
        draw_hand_poses(poses, info["width"], info["height"], ref_w=128),
    )


def test_missing_hand_draws_nothing_and_non_square_canvas() -> None:
    """Catches a NaN (not found) hand being drawn at the corner, and the official (W, H) framing bug."""
    points = np.full((1, 2, 21, 2), np.nan)
    points[0, 0] = np.column_stack([np.linspace(0.3, 0.7, 21), np.linspace(0.2, 0.4, 21)])
    poses = HandPoseSequence(points, 160, 90)
    frames = draw_hand_poses(poses, 320, 180)
    assert frames.shape == (1, 180, 320, 3)
    assert frames[0, 160:].max() == 0 and frames[0, :, :80].max() == 0  # nothing outside the one hand
    assert frames[0, :, :, 0].max() == 255  # the points are red (BGR -> RGB quirk)
    two = np.concatenate([points, np.full((1, 2, 21, 2), np.nan)])  # frame 1: no hand at all
    assert draw_hand_poses(HandPoseSequence(two, 160, 90), 320, 180)[1].max() == 0
    with pytest.raises(InputError, match="draw nothing"):  # no frame draws anything: refused, not black
        draw_hand_poses(HandPoseSequence(np.full((2, 2, 21, 2), np.nan), 16, 9), 64, 36)


def test_other_aspect_ratio_is_refused() -> None:
    """Catches poses silently stretched onto a video of another shape."""
    poses = HandPoseSequence(np.full((1, 2, 21, 2), 0.5), 768, 768)
    with pytest.raises(InputError, match="aspect"):
        draw_hand_poses(poses, 768, 432)
    assert draw_hand_poses(poses, 432, 768, check_aspect=False).shape == (1, 768, 432, 3)
