"""Hostile or broken hand-pose / landmark JSON files: one line each, nothing drawn from garbage, and only the
frames a video uses are drawn.

Every number read from a motion file is finite and bounded (coordinates, scores, sizes, shoulders); JSON
that the parser cannot take (deep nesting, 1e400) is one InputError line; a sequence that draws nothing is
refused, and one that draws nothing in some frames says how many; a 10^6-frame pose file with ``--length``
7 draws 7 frames, in bounded time and memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from echomimic.errors import InputError
from echomimic.landmarks import LandmarkSequence
from echomimic.poses import HandPoseSequence, draw_hand_poses, hand_pose_images
from tests.parity_cases import PARITY_ROOT, REPO_ROOT, find_case, make_v2_release_folder

HAND = [[0.3 + 0.01 * i, 0.5, 0.9] for i in range(21)]  # one hand inside the frame


def _hand_json(**changes: Any) -> str:
    data: dict[str, Any] = {
        "format": "echomimic-hand-poses",
        "version": 1,
        "width": 64,
        "height": 64,
        "hand_order": ["left", "right"],
        "hands": [[HAND, None], [None, HAND]],
        "shoulders": [[[0.3, 0.3], [0.7, 0.3]], None],
    }
    data.update(changes)
    return json.dumps(data)


def _landmark_json(**changes: Any) -> str:
    points = np.random.default_rng(0).uniform(10, 50, (2, 478, 3)).round(3).tolist()
    data: dict[str, Any] = {
        "format": "echomimic-landmarks",
        "version": 1,
        "width": 64,
        "height": 64,
        "detected": [True, True],
        "points": points,
    }
    data.update(changes)
    return json.dumps(data)


def _hand_with(value: str) -> str:
    """A valid file whose first coordinate is replaced by the literal text ``value`` (1e30, Infinity, ...)."""
    return _hand_json().replace("0.3,", f"{value},", 1)


DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize(
    "text, message",
    [
        (_hand_with("1e30"), "not finite or beyond"),
        (_hand_with("-1e30"), "not finite or beyond"),
        (_hand_with("Infinity"), "not a number"),
        (_hand_with("NaN"), "not a number"),
        (_hand_with("1e400"), "too large"),
        (_hand_with("1" + "0" * 400), "malformed"),  # an integer too large for a float
        (_hand_json(width=1e300), "positive whole number"),
        (_hand_json(width="1e400"), "positive whole number"),
        (_hand_json(width=True), "positive whole number"),
        (_hand_json(height=10**9), "positive whole number"),
        (_hand_json(hands=[[[[0.5, 0.5, 1e300]] * 21, None]]), "score"),
        (_hand_json(hands=[[[[0.5, 0.5, -2]] * 21, None]]), "score"),
        (_hand_json(shoulders=[[[1e30, 0.3], [0.7, 0.3]], None]), "shoulder"),
        (_hand_json().replace("[[0.3,0.3]", "[[1e999,0.3]").replace("[[0.3, 0.3]", "[[1e999, 0.3]"), "too large"),
        (_hand_json(shoulders=[[[0.3, 0.3], [0.7]], None]), "malformed"),
        (DEEP, "nested too deeply"),
        (
            '{"format": "echomimic-hand-poses", "version": 1, "width": 64, "height": 64, "hands": ' + DEEP + "}",
            "nested too deeply",
        ),
    ],
)
def test_hostile_hand_pose_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Catches: an Infinity shoulder turning every aligned point into NaN, coordinates of 1e30 reaching cv2,
    scores of 1e300 overflowing the brightness, a width of 1e400 (OverflowError), deep nesting
    (RecursionError), or any other raw exception from a hand-edited file."""
    path = tmp_path / "poses.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        HandPoseSequence.load(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        (_landmark_json(points=[[[1e30, 1.0, 1.0]] * 478]), "not finite or beyond"),
        (_landmark_json(points=[[[1e39, 1.0, 1.0]] * 478]), "not finite or beyond"),  # inf once float32
        (_landmark_json().replace("[[[", "[[[Infinity,", 1), "not a number"),
        (_landmark_json().replace("[[[", "[[[1e400,", 1), "too large"),
        (_landmark_json().replace('"width": 64', '"width": 1e400'), "too large"),
        (_landmark_json(width="1e400"), "positive whole number"),
        (_landmark_json(width=0.5), "positive whole number"),
        (_landmark_json(height=-64), "positive whole number"),
        (_landmark_json(detected=[[True] * 3]), "entries"),
        (
            '{"format": "echomimic-landmarks", "version": 1, "width": 4, "height": 4, "points": ' + DEEP + "}",
            "nested too deeply",
        ),
    ],
)
def test_hostile_landmark_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    """Catches: coordinates of 1e30 reaching cv2 (cv2.error), a width of 1e400, Infinity, deep nesting, or a
    broken 'detected' list leaking a raw exception instead of one line."""
    path = tmp_path / "landmarks.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        LandmarkSequence.load(path)
    assert "\n" not in str(caught.value)


def test_valid_files_still_load_and_round_trip(tmp_path: Path) -> None:
    """Catches the new checks refusing what EchoMimic itself writes (points slightly outside the frame,
    scores slightly above 1, a frame without hands, hidden landmark points)."""
    poses = HandPoseSequence.from_json(_hand_json(hands=[[[[1.2, -0.1, 1.05]] * 10 + HAND[:11], None], [None, HAND]]))
    again = HandPoseSequence.load(poses.save(tmp_path / "p.json"))
    np.testing.assert_array_equal(again.points, poses.points)
    points = np.random.default_rng(1).uniform(-5, 70, (2, 478, 3)).astype(np.float32)
    points[0, :10] = np.nan
    landmarks = LandmarkSequence(points, 64, 64)
    loaded = LandmarkSequence.load(landmarks.save(tmp_path / "l.json"))
    assert np.isnan(loaded.points[0, :10]).all() and loaded.num_frames == 2


def _outside(points: list[list[float]], dx: float) -> list[list[float]]:
    return [[x + dx, y, s] for x, y, s in points]


def test_poses_that_draw_nothing_are_refused_and_partial_ones_counted() -> None:
    """Catches: poses far outside the frame giving a video without hands at exit 0 (no counterpart of the
    landmarks' drawability check), or frames that draw nothing going unreported."""
    far = HandPoseSequence.from_json(_hand_json(hands=[[_outside(HAND, 5.0), None], [None, _outside(HAND, -3.0)]]))
    assert far.blank_frames() == [0, 1] and far.frames_without_hands == []
    with pytest.raises(InputError, match="draw nothing") as caught:
        draw_hand_poses(far, 64, 64)
    assert "\n" not in str(caught.value)
    portrait = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(InputError, match="draw nothing"):
        hand_pose_images(portrait, 64, 64, poses=far, align=False)
    zero_scores = HandPoseSequence.from_json(_hand_json(hands=[[[[0.5, 0.5, 0.0]] * 21, None]], shoulders=None))
    with pytest.raises(InputError, match="draw nothing"):
        hand_pose_images(portrait, 64, 64, poses=zero_scores, align=False)
    half = HandPoseSequence.from_json(
        _hand_json(hands=[[HAND, None], [_outside(HAND, 5.0), None], [None, None]], shoulders=None)
    )
    notes: list[str] = []
    frames, _ = hand_pose_images(portrait, 64, 64, poses=half, align=False, note=notes.append, ref_w=64)
    assert frames[0].max() > 0 and frames[1].max() == 0 and frames[2].max() == 0
    assert any("no hand found in 1 of 3 frames (2)" in note for note in notes), notes
    assert any("hands of 1 of 3 frames lie outside the picture (1)" in note for note in notes), notes


def test_landmarks_that_draw_nothing_are_refused() -> None:
    """Catches landmarks entirely outside their frame drawing black frames silently."""
    from echomimic.landmarks import draw_landmarks

    far = LandmarkSequence(np.full((3, 478, 3), 500.0, np.float32), 64, 64)
    with pytest.raises(InputError, match="draw nothing"):
        draw_landmarks(far, 64, 64)


# Only the frames the video uses are drawn ---------------------------------------------------------------


def test_driving_frames_needed_covers_every_frame_the_audio_can_make() -> None:
    """Catches a bound below the frames the audio features give (frames past it would be drawn from the
    wrong pose), over a sweep of clip lengths and frame rates, with the official frame-count rule."""
    from echomimic.audio.features import chunk_indices, feature_rows
    from echomimic.audio.mel import num_mel_frames
    from echomimic.pipeline.length import driving_frames_needed

    for fps in (12.0, 24.0, 25.0, 29.97, 30.0, 60.0):
        for seconds in (0.05, 0.5, 1.0, 2.37, 10.0, 61.3):
            samples = int(seconds * 16_000)
            frames = chunk_indices(feature_rows(num_mel_frames(samples)), fps).shape[0]
            bound = driving_frames_needed(audio_seconds=samples / 16_000, fps=fps)
            assert bound is not None and frames <= bound <= frames + 2 * fps + 3, (fps, seconds, frames, bound)
    assert driving_frames_needed(audio_seconds=100.0, fps=25.0, requested=4) == 4
    assert driving_frames_needed(audio_seconds=None, fps=25.0) is None


def test_landmark_images_draw_only_the_requested_frames(tmp_path: Path) -> None:
    """Catches the pose modes drawing every frame of a long landmark file when --length asks for a few,
    or --save-landmarks then losing the frames that were not drawn."""
    from echomimic.cli import build_parser
    from echomimic.cli.inputs import _landmark_images
    from echomimic.cli.report import _Reporter

    points = np.random.default_rng(2).uniform(10, 50, (3000, 478, 3)).astype(np.float32)
    LandmarkSequence(points, 64, 64).save(tmp_path / "lm.json")
    args = build_parser().parse_args(
        [
            "generate",
            "--mode",
            "pose_acc",
            "--landmarks",
            str(tmp_path / "lm.json"),
            "--no-crop",
            "--width",
            "64",
            "--height",
            "64",
            "--save-landmarks",
            str(tmp_path / "saved.json"),
        ]
    )
    frames = _landmark_images(args, None, _Reporter(quiet=True), None, draw_frames=4)
    assert frames.shape == (4, 64, 64, 3)
    from echomimic.landmarks import draw_landmarks

    np.testing.assert_array_equal(frames, draw_landmarks(LandmarkSequence(points[:4], 64, 64), 64, 64))
    assert LandmarkSequence.load(tmp_path / "saved.json").num_frames == 3000


def test_a_million_pose_frames_with_a_short_length_draw_only_those(tmp_path: Path) -> None:
    """`generate --mode v2 --poses` with a 10^6-frame file and --length 7: catches every frame being drawn
    (17 GiB and hours at 10^6 frames) or a different video for the frames used, within a time and memory
    bound (the file's own arrays are about 1 GB; drawing all would need tens of GB)."""
    from echomimic.poses import hand_poses_from_keypoint_records

    case_dir = find_case(lambda case: case.get("mode") == "v2_pose")  # the V2 (not accelerated) hand-pose case
    assert case_dir is not None, f"no V2 hand-pose case in {PARITY_ROOT}"
    case = json.loads((case_dir / "case.json").read_text())
    weights = make_v2_release_folder(case_dir, case, tmp_path)
    records = json.loads((case_dir / "inputs" / "pose_keypoints.json").read_text())
    poses = json.loads(hand_poses_from_keypoint_records(records, case["width"], case["height"]).to_json())
    poses["hands"] += [[None, None]] * (10**6 - len(poses["hands"]))
    (tmp_path / "poses.json").write_text(json.dumps(poses))
    command = [
        sys.executable,
        "-m",
        "echomimic",
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
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KiB on Linux
    assert peak_gb < 8, f"peak {peak_gb:.1f} GB"
    expected = np.load(case_dir / "expected" / "video.npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "frames.npy"), expected, atol=case["suggested_tolerance"]["video_atol"]
    )


# The draw nodes: the same bound (max_frames or the speech), and a refusal instead of tens of GB --------------


@pytest.fixture(scope="module")
def draw_nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.comfy_stubs import node_instances

    return node_instances(tmp_path_factory.mktemp("draw_models"))


def _node_error() -> type[Exception]:
    from tests.comfy_stubs import extension_submodule

    return extension_submodule("nodes.common").EchoMimicNodeError


def _extension(module: str) -> Any:
    """The extension's own copy of a library module (the nodes check types against its classes)."""
    from tests.comfy_stubs import extension_submodule

    return extension_submodule(module)


def _speech(seconds: float, rate: int = 16000) -> dict[str, Any]:
    import torch

    return {"waveform": torch.zeros(1, 1, int(seconds * rate)), "sample_rate": rate}


def _drawn_within(call: Any, seconds: float, peak_bytes: int) -> Any:
    """``call()``'s result, checked to take under ``seconds`` and to allocate at most ``peak_bytes`` of numpy
    memory at its peak (tracemalloc sees numpy's allocations)."""
    import time
    import tracemalloc

    tracemalloc.start()
    started = time.monotonic()
    try:
        result = call()
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"{elapsed:.1f} s"
    assert peak < peak_bytes, f"peak {peak / 2**20:.0f} MiB"
    return result


def test_draw_landmarks_node_draws_only_the_bound_of_a_long_file(draw_nodes: dict[str, Any]) -> None:
    """Catches Draw Landmarks drawing every frame of a long landmark file (10^4 frames: 29 GiB at 512x512)
    when max_frames or the speech says the video uses a few, drawing other pictures for the frames it does
    draw, or allocating unbounded memory without a bound (it must refuse with one line saying the size). Old
    workflows (no max_frames, no audio) still draw every frame of a short file."""
    landmarks = _extension("echomimic.landmarks")
    LandmarkSequence, draw_landmarks = landmarks.LandmarkSequence, landmarks.draw_landmarks  # noqa: N806
    node = draw_nodes["EchoMimicDrawLandmarks"]
    points = np.random.default_rng(3).uniform(10, 50, (10_000, 478, 3)).astype(np.float32)
    long = LandmarkSequence(points, 64, 64)
    (images,) = node.draw(LandmarkSequence(points[:3], 64, 64), 64, 64, False)  # also warms up the imports
    assert images.shape[0] == 3
    (images,) = _drawn_within(lambda: node.draw(long, 64, 64, False, 5), 20.0, 32 << 20)
    assert tuple(images.shape) == (5, 64, 64, 3)
    np.testing.assert_array_equal(images.numpy(), draw_landmarks(LandmarkSequence(points[:5], 64, 64), 64, 64))
    (images,) = _drawn_within(lambda: node.draw(long, 64, 64, False, 0, _speech(1.0)), 30.0, 64 << 20)
    assert images.shape[0] == 2 * 120 + 2  # (1 s + 1 s margin) at the highest fps, + 2
    with pytest.raises(_node_error()) as caught:
        _drawn_within(lambda: node.draw(long, 512, 512, False), 10.0, 8 << 20)
    message = str(caught.value)
    assert "\n" not in message and "10,000 frames" in message and "29.3 GiB" in message and "max_frames" in message


def test_draw_hand_poses_node_draws_only_the_bound_of_a_long_file(draw_nodes: dict[str, Any]) -> None:
    """Catches Draw Hand Poses drawing every frame of a 10^5-frame pose file (190 GiB at 768x768) when
    max_frames asks for 7, other pictures for those 7 than the library draws, the speech bound ignored, or no
    refusal (one line with the size) when nothing bounds it; a short file still draws all its frames."""
    poses = _extension("echomimic.poses")
    node = draw_nodes["EchoMimicDrawHandPoses"]
    short = poses.HandPoseSequence.from_json(_hand_json())
    long = short.frames(np.arange(100_000) % 2)
    assert node.draw(short, 64, 64, 64)[0].shape[0] == 2  # also warms up the imports
    (images,) = _drawn_within(lambda: node.draw(long, 64, 64, 64, 7), 20.0, 32 << 20)
    assert tuple(images.shape) == (7, 64, 64, 3)
    expected = poses.draw_hand_poses(long.frames(np.arange(7)), 64, 64, ref_w=64)
    np.testing.assert_array_equal((images * 255.0).round().numpy().astype(np.uint8), expected)
    (images,) = node.draw(long, 64, 64, 64, 0, _speech(0.5))
    assert images.shape[0] == 182  # ceil(1.5 s x 120 fps) + 2
    with pytest.raises(_node_error()) as caught:
        _drawn_within(lambda: node.draw(long, 768, 768, 800), 10.0, 8 << 20)
    message = str(caught.value)
    assert "\n" not in message and "100,000 frames" in message and "GiB" in message and "audio" in message


def test_draw_nodes_take_the_bound_as_their_last_optional_inputs(draw_nodes: dict[str, Any]) -> None:
    """Catches the new inputs breaking saved workflows (widgets_values are positional: a new widget must come
    after the old ones, in "optional", with 0 = the old behaviour) or lacking a tooltip that says the bound."""
    for name, required in (
        ("EchoMimicDrawLandmarks", ["landmarks", "width", "height", "draw_mouth"]),
        ("EchoMimicDrawHandPoses", ["hand_poses", "width", "height", "ref_w"]),
    ):
        inputs = type(draw_nodes[name]).INPUT_TYPES()
        assert list(inputs["required"]) == required, name
        assert list(inputs["optional"]) == ["max_frames", "audio"], name
        kind, options = inputs["optional"]["max_frames"]
        assert kind == "INT" and options["default"] == 0 and "sampler's length" in options["tooltip"]
        assert inputs["optional"]["audio"][0] == "AUDIO" and "speech" in inputs["optional"]["audio"][1]["tooltip"]
