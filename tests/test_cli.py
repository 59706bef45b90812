"""``python -m echomimic``: end to end on a parity case's tiny weights, and its error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echomimic import cli
from echomimic.errors import InputError
from tests.helpers import probe_mp4
from tests.parity_cases import PARITY_ROOT, REPO_ROOT

AAC_FRAME = 1024


def parity_case(name: str) -> Path:
    """A shared parity case; the test fails (never skips) without it."""
    case = PARITY_ROOT / name
    if not (case / "case.json").is_file():
        pytest.fail(f"parity case {name} not found under {PARITY_ROOT} (set ECHOMIMIC_PARITY_CASES)")
    return case


def make_weights_dir(case: Path, target: Path, release_names: dict[str, str] | None = None) -> Path:
    """A weights folder in the BadToBest/EchoMimic layout made of symlinks to a parity case's files.

    release_names maps a case file stem (e.g. "denoising_unet") to its release stem for the variant
    (e.g. "denoising_unet_pose_acc").
    """
    release_names = release_names or {}
    target.mkdir(parents=True, exist_ok=True)
    for weight in sorted((case / "weights").glob("*.pth")):  # .pth only: the official release format
        stem = release_names.get(weight.stem, weight.stem)
        (target / f"{stem}.pth").symlink_to(weight)
    for config in sorted((case / "config").glob("*.json")):
        (target / config.name).symlink_to(config)
    (target / "sd-vae-ft-mse").symlink_to(case / "vae", target_is_directory=True)
    (target / "audio_processor").mkdir()
    (target / "audio_processor" / "whisper_tiny.pt").symlink_to(case.parent / "common" / "whisper_tiny_random.pt")
    return target


@pytest.fixture(scope="module")
def audio_case_weights(tmp_path_factory) -> tuple[Path, Path]:
    case = parity_case("v1_audio")
    return case, make_weights_dir(case, tmp_path_factory.mktemp("weights_audio"))


def test_generate_audio_mode_end_to_end(audio_case_weights, tmp_path):
    case, weights = audio_case_weights
    settings = json.loads((case / "case.json").read_text())
    mask_png = tmp_path / "mask.png"
    Image.fromarray(np.rint(np.load(case / "inputs" / "face_mask.npy") * 255).astype(np.uint8)).save(mask_png)
    out = tmp_path / "video" / "out.mp4"
    raw_frames = tmp_path / "frames.npy"

    status = cli.main(
        [
            "generate",
            "--image",
            str(case / "inputs" / "reference.png"),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--mask",
            str(mask_png),
            "--no-crop",
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            str(settings["steps"]),
            "--cfg",
            str(settings["guidance_scale"]),
            "--seed",
            str(settings["seed"]),
            "--fps",
            str(settings["fps"]),
            "--length",
            str(settings["video_length"]),
            "--context-frames",
            str(settings["context_frames"]),
            "--context-overlap",
            str(settings["context_overlap"]),
            "--device",
            "cpu",
            "--quiet",
            "--save-frames",
            str(raw_frames),
        ]
    )

    assert status == 0
    info = probe_mp4(out)
    frames = info["frames"]
    num_frames = settings["video_length"]
    assert frames.shape == (num_frames, 64, 64, 3)
    assert info["video_seconds"] == pytest.approx(num_frames / settings["fps"], abs=1e-6)
    assert info["audio"] is not None, "the mp4 has no audio track"
    assert info["audio"]["sample_rate"] == 16000
    assert abs(info["audio"]["seconds"] - info["video_seconds"]) <= AAC_FRAME / 16000
    # Same settings as the official run of this case: the frames before encoding are the official
    # video (a mis-wired mask, reference or audio moves it by 0.01-0.25; thread noise is < 1e-5),
    # and the mp4 shows them up to h264 compression.
    expected = np.load(case / "expected" / "video.npy")
    np.testing.assert_allclose(np.load(raw_frames), expected, atol=1e-3)
    assert np.abs(frames - expected).mean() < 0.03


def test_generate_pose_acc_mode_from_a_driving_video(tmp_path):
    from echomimic.landmarks import LandmarkSequence
    from echomimic.video_io import write_mp4

    case = parity_case("v1_pose_acc")
    release = {
        "reference_unet": "reference_unet_pose",
        "denoising_unet": "denoising_unet_pose_acc",
        "motion_module": "motion_module_pose_acc",
        "face_locator": "face_locator_pose",
    }
    weights = make_weights_dir(case, tmp_path / "weights", release)
    # A driving video: the example portrait, moving a little to the right and down.
    portrait = cli.load_rgb_image(cli.EXAMPLE_IMAGE)
    num_frames = 6
    driving = np.stack([np.roll(portrait, (2 * i, 3 * i), axis=(0, 1)) for i in range(num_frames)])
    driving_video = write_mp4(tmp_path / "driving.mp4", driving, 24)
    landmarks_json = tmp_path / "landmarks.json"
    out = tmp_path / "pose.mp4"

    status = cli.main(
        [
            "generate",
            "--mode",
            "pose_acc",
            "--image",
            str(cli.EXAMPLE_IMAGE),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--driving-video",
            str(driving_video),
            "--save-landmarks",
            str(landmarks_json),
            "--out",
            str(out),
            "--weights",
            str(weights),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "1",
            "--context-frames",
            "4",
            "--context-overlap",
            "1",
            "--device",
            "cpu",
            "--quiet",
            "--length-policy",
            "stop",
        ]
    )

    assert status == 0  # no --length, policy stop: as many frames as the driving video (the speech is longer)
    info = probe_mp4(out)
    assert info["frames"].shape == (num_frames, 64, 64, 3)
    assert abs(info["audio"]["seconds"] - info["video_seconds"]) <= AAC_FRAME / 16000
    landmarks = LandmarkSequence.load(landmarks_json)
    assert landmarks.num_frames == num_frames and landmarks.detected.all()
    # The driver moves right and down, and so do the aligned landmarks (in the reference's pixels).
    centre_shift = np.nanmean(landmarks.points[-1, :, :2] - landmarks.points[0, :, :2], axis=0)
    assert centre_shift[0] > 1 and centre_shift[1] > 1


def test_landmarks_shorter_than_length_follow_the_length_policy(tmp_path, capsys):
    """Catches the CLI's own length rule (it used to refuse or shorten silently) instead of the library's
    plan: with --length-policy stop the video ends with the landmarks, and the plan is printed first."""
    from echomimic.landmarks import LandmarkSequence

    case = parity_case("v1_pose_acc")
    points = np.load(case / "inputs" / "pose_landmarks.npy")
    landmarks_json = tmp_path / "landmarks.json"
    LandmarkSequence(points, 64, 64).save(landmarks_json)
    weights = make_weights_dir(
        case,
        tmp_path / "weights",
        {
            "reference_unet": "reference_unet_pose",
            "denoising_unet": "denoising_unet_pose_acc",
            "motion_module": "motion_module_pose_acc",
            "face_locator": "face_locator_pose",
        },
    )
    out = tmp_path / "stopped.mp4"
    status = cli.main(
        [
            "generate",
            "--mode",
            "pose_acc",
            "--image",
            str(case / "inputs" / "reference.png"),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--landmarks",
            str(landmarks_json),
            "--no-crop",
            "--weights",
            str(weights),
            "--width",
            "64",
            "--height",
            "64",
            "--length",
            str(points.shape[0] + 2),
            "--length-policy",
            "stop",
            "--steps",
            "1",
            "--context-frames",
            "4",
            "--context-overlap",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    message = capsys.readouterr().err
    assert status == 0, message
    assert f"generating {points.shape[0]} frames" in message and "'stop'" in message
    assert probe_mp4(out)["frames"].shape[0] == points.shape[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--width", "60"], "multiples of 8"),
        (["--height", "100"], "multiples of 8"),
        (["--length", "0"], "at least 1 frame"),
        (["--steps", "0"], "Steps must be at least 1"),
        (["--context-frames", "4", "--context-overlap", "4"], "must be smaller than context_frames"),
        (["--mode", "pose"], "--driving-video"),
        (["--mode", "audio", "--landmarks", "x.json"], "--mode pose"),
        (["--image", "does/not/exist.png"], "file not found"),
    ],
)
def test_bad_settings_fail_before_loading_anything(tmp_path, capsys, extra, expected):
    out = tmp_path / "out.mp4"
    status = cli.main(["generate", "--weights", str(tmp_path / "no_weights"), "--out", str(out), *extra])
    assert status == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_missing_weights_message_names_each_file_folder_and_source(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "reference_unet.pth").write_bytes(b"present")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "echomimic",
            "generate",
            "--weights",
            str(weights),
            "--mode",
            "audio_acc",
            "--out",
            str(tmp_path / "out.mp4"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr
    for missing in (
        "denoising_unet_acc.pth",
        "motion_module_acc.pth",
        "face_locator.pth",
        "audio_processor/whisper_tiny.pt",
        "sd-vae-ft-mse/config.json",
        "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
    ):
        assert missing in message
    assert "- reference_unet.pth" not in message  # present, so not listed
    assert str(weights.resolve()) in message
    assert "BadToBest/EchoMimic" in message and "stabilityai/sd-vae-ft-mse" in message
    assert "whisper" in message.lower() and "--download" in message
    assert not (tmp_path / "out.mp4").exists()


def test_download_reports_unreachable_hub_clearly(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no network use: huggingface_hub refuses at once
    result = subprocess.run(
        [sys.executable, "-m", "echomimic", "download", "--weights", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    assert "could not download reference_unet.pth" in result.stderr.lower()
    assert "https://huggingface.co/BadToBest/EchoMimic" in result.stderr


def test_check_lists_found_files(audio_case_weights, capsys):
    _, weights = audio_case_weights
    assert cli.main(["check", "--weights", str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "denoising_unet" in printed and "whisper_tiny.pt" in printed


@pytest.mark.parametrize("command", ["check", "download", "generate"])
def test_a_v1_folder_is_refused_for_v2_before_anything_is_fetched_or_loaded(
    audio_case_weights, tmp_path, capsys, command
):
    """Catches V2 silently loading V1's same-named, same-shaped UNet weights (or downloading V2 files into a
    V1 folder): the two releases share file names, so a folder of the other release is refused by name."""
    _, weights = audio_case_weights
    before = sorted(path.name for path in weights.iterdir())
    argv = [command, "--mode", "v2", "--weights", str(weights)]
    if command == "generate":
        from echomimic.poses import HandPoseSequence

        poses = tmp_path / "poses.json"
        HandPoseSequence(np.full((2, 2, 21, 2), 0.5), width=64, height=64).save(poses)
        argv += [
            "--out",
            str(tmp_path / "out.mp4"),
            "--poses",
            str(poses),
            "--image",
            str(REPO_ROOT / "example_inputs" / "portrait.png"),
            "--audio",
            str(REPO_ROOT / "example_inputs" / "speech.wav"),
        ]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert "holds EchoMimic V1 files" in error and "face_locator.pth" in error and "folder of its own" in error
    assert sorted(path.name for path in weights.iterdir()) == before  # nothing downloaded into it
    assert not (tmp_path / "out.mp4").exists()


def test_default_weights_folder_depends_on_the_release(monkeypatch):
    """Catches V1 and V2 runs defaulting to one folder (their file names clash)."""
    monkeypatch.delenv("ECHOMIMIC_WEIGHTS", raising=False)
    from echomimic.cli.parser import build_parser, resolve_mode_defaults

    parse = lambda *argv: resolve_mode_defaults(build_parser().parse_args(list(argv))).weights  # noqa: E731
    assert parse("check") == "pretrained_weights"
    assert parse("check", "--mode", "v2_acc") == "pretrained_weights_v2"
    assert parse("check", "--mode", "v2", "--weights", "mine") == "mine"
    monkeypatch.setenv("ECHOMIMIC_WEIGHTS", "/somewhere")
    assert parse("download", "--mode", "v2") == "/somewhere"


def test_example_inputs_are_shipped_and_small():
    assert cli.EXAMPLE_IMAGE.is_file() and cli.EXAMPLE_AUDIO.is_file()
    assert cli.EXAMPLE_IMAGE.stat().st_size + cli.EXAMPLE_AUDIO.stat().st_size < 300_000
    image = cli.load_rgb_image(cli.EXAMPLE_IMAGE)
    assert image.shape == (256, 256, 3) and image.dtype == np.float32
    from echomimic.video_io import read_audio

    waveform, rate = read_audio(cli.EXAMPLE_AUDIO)
    assert rate == 16000 and 2.0 < waveform.shape[1] / rate < 6.0
    assert waveform.abs().max() > 0.1  # speech, not silence


def test_non_rgb_reference_images_are_converted(tmp_path):
    """Catches RGBA/gray references decoded differently from ComfyUI's Load Image (alpha dropped, not
    composited) or unreadable files ending in a traceback."""
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, ..., 3] = 255  # top half opaque red, bottom half transparent: still red, as ComfyUI shows it
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8), "L").save(tmp_path / "gray.png")

    converted = cli.load_rgb_image(tmp_path / "rgba.png")
    assert converted.shape == (8, 8, 3)
    np.testing.assert_allclose(converted[0, 0], [200 / 255, 0, 0])
    np.testing.assert_allclose(converted[7, 7], [200 / 255, 0, 0])
    gray = cli.load_rgb_image(tmp_path / "gray.png")
    assert gray.shape == (8, 8, 3) and np.allclose(gray, 128 / 255)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot read the image"):
        cli.load_rgb_image(tmp_path / "text.png")


def test_generate_without_image_and_audio_uses_the_examples(audio_case_weights, tmp_path, capsys):
    _, weights = audio_case_weights
    out = tmp_path / "example.mp4"
    status = cli.main(
        [
            "generate",
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "1",
            "--length",
            "8",
            "--context-frames",
            "4",
            "--context-overlap",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert status == 0
    messages = capsys.readouterr().err
    assert "example portrait" in messages and "example speech" in messages
    info = probe_mp4(out)
    assert info["frames"].shape == (8, 64, 64, 3)
    assert abs(info["audio"]["seconds"] - info["video_seconds"]) <= AAC_FRAME / 16000


def test_download_table_matches_the_loader():
    from echomimic.models.loading import release_file_stems
    from echomimic.release import VARIANT_NAMES
    from echomimic.release import VARIANTS as RELEASE
    from echomimic.weights_download import VARIANTS, model_files

    assert VARIANTS == VARIANT_NAMES  # V1 and V2
    for variant in VARIANTS:
        assert dict(RELEASE[variant].stems) == release_file_stems(variant)
        assert {item.relative_path for item in model_files(variant)} >= {
            f"{stem}.pth" for stem in release_file_stems(variant).values()
        }
