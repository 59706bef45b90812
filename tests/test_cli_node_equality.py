"""The command line and the ComfyUI nodes give the same video for the same inputs (issue 11).

Both front-ends only convert types; every rule about inputs (mask and reference handling, landmark
drawing, length, settings) lives in the library. So the CLI's raw frames (``--save-frames``) and the
sampler node's IMAGE output must be bit-identical for the same picture, mask, speech and settings. The
node side runs with ComfyUI's modules stood in (tests/comfy_stubs) and a VAE with comfy.sd.VAE's
conventions over the same tiny diffusers VAE the CLI loads; the models are the tiny parity-case weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from echomimic import cli
from tests.comfy_stubs import StandInComfyVae, extension_submodule, node_instances, read_wav_as_comfy_audio
from tests.helpers import require
from tests.parity_cases import PARITY_ROOT

# Small but real: two context windows with overlap, classifier-free guidance on, two steps.
SETTINGS = {
    "width": 64,
    "height": 64,
    "length": 6,
    "steps": 2,
    "cfg": 2.5,
    "seed": 420,
    "context_frames": 4,
    "context_overlap": 1,
}
FPS = 24.0


def _cli_weights(case: Path, target: Path, release_names: dict[str, str]) -> Path:
    """A weights folder in the release layout (symlinks to the case's .pth files, VAE and Whisper)."""
    target.mkdir(parents=True)
    for weight in sorted((case / "weights").glob("*.pth")):
        (target / f"{release_names.get(weight.stem, weight.stem)}.pth").symlink_to(weight)
    for config in sorted((case / "config").glob("*.json")):
        (target / config.name).symlink_to(config)
    (target / "sd-vae-ft-mse").symlink_to(case / "vae", target_is_directory=True)
    (target / "audio_processor").mkdir()
    (target / "audio_processor" / "whisper_tiny.pt").symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    return target


def _cli_frames(
    tmp_path: Path, weights: Path, mode: str, settings: dict[str, Any], extra: list[str]
) -> tuple[np.ndarray, torch.Tensor]:
    """Run ``generate``; returns its raw frames [F, H, W, 3] float32 (before mp4 encoding) and the speech
    [C, T] it hands to the mp4 writer (trimmed to the frames)."""
    frames_file = tmp_path / f"{mode}_frames.npy"
    argv = [
        "generate",
        "--mode",
        mode,
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / f"{mode}.mp4"),
        "--save-frames",
        str(frames_file),
        "--fps",
        str(FPS),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--quiet",
    ]
    for name, value in settings.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    from echomimic import video_io

    sounds: list[torch.Tensor] = []

    class RecordingMp4Writer(video_io.Mp4Writer):
        def __init__(self, path: Path, fps: float, waveform: torch.Tensor, *args: Any, **kwargs: Any) -> None:
            sounds.append(waveform)
            super().__init__(path, fps, waveform, *args, **kwargs)

    with mock.patch.object(video_io, "Mp4Writer", RecordingMp4Writer):
        assert cli.main(argv + extra) == 0
    (sound,) = sounds
    return np.load(frames_file), sound


def _comfy_image(path: Path) -> torch.Tensor:
    """A picture as ComfyUI's LoadImage gives it: [1, H, W, 3] float32 0..1."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)[None]


def _mask_png(case: Path, target: Path) -> tuple[Path, torch.Tensor]:
    """The case's face mask as an 8-bit PNG (for --mask) and as the MASK ComfyUI's "Load Image (as Mask)"
    gives for that PNG ([1, H, W] = value / 255)."""
    values = np.rint(np.load(case / "inputs" / "face_mask.npy") * 255).astype(np.uint8)
    Image.fromarray(values).save(target)
    return target, torch.from_numpy(values.astype(np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for case in ("v1_audio", "v1_pose_acc"):
        require(PARITY_ROOT / case / "case.json")
    return node_instances(tmp_path_factory.mktemp("comfy_models"))


def _assert_node_gives(
    from_cli: tuple[np.ndarray, torch.Tensor],
    nodes: dict[str, Any],
    model: Any,
    case: Path,
    features: Any,
    settings: dict[str, Any],
    reference: Path | None = None,
    **conditioning: Any,
) -> None:
    """Run the sampler node on the case's reference with ``conditioning`` (face_mask, landmark_images or
    hand_pose_images) and require exactly the CLI's frames and trimmed speech."""
    outputs = nodes["EchoMimicSampler"].sample(
        model,
        StandInComfyVae(case / "vae"),
        _comfy_image(reference or case / "inputs" / "reference.png"),
        features,
        **conditioning,
        **settings,
    )
    _assert_same_run(from_cli, outputs)


def _assert_same_run(from_cli: tuple[np.ndarray, torch.Tensor], outputs: tuple[Any, ...]) -> None:
    """The sampler node's (images, fps, frame_count, audio) equal the CLI's frames and the speech it muxed."""
    cli_frames, cli_sound = from_cli
    images, fps, frame_count, audio = outputs
    np.testing.assert_array_equal(images.numpy(), cli_frames)
    assert frame_count == cli_frames.shape[0] and fps == FPS
    assert cli_sound.shape[-1] == round(frame_count * audio["sample_rate"] / fps)  # exactly the frames' span
    torch.testing.assert_close(audio["waveform"].reshape(cli_sound.shape), cli_sound, rtol=0, atol=0)


def _node_features(nodes: dict[str, Any], wav: Path) -> Any:
    (encoder,) = nodes["EchoMimicAudioEncoderLoader"].load("tiny_audio", "fp32")
    return nodes["EchoMimicAudioFeatures"].compute(read_wav_as_comfy_audio(wav), encoder, FPS)[0]


def test_audio_mode_cli_and_node_frames_are_identical(nodes: dict[str, Any], tmp_path: Path) -> None:
    """Catches a front-end applying its own rule in audio mode: resizing or normalising the mask or the
    reference differently, another cfg/steps default, other audio decoding or features, another VAE path."""
    case = PARITY_ROOT / "v1_audio"
    mask_png, comfy_mask = _mask_png(case, tmp_path / "mask.png")
    from_cli = _cli_frames(
        tmp_path,
        _cli_weights(case, tmp_path / "weights", {}),
        "audio",
        SETTINGS,
        [
            "--image",
            str(case / "inputs" / "reference.png"),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--mask",
            str(mask_png),
            "--no-crop",
        ],
    )

    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
    _assert_node_gives(
        from_cli,
        nodes,
        model,
        case,
        _node_features(nodes, case / "inputs" / "audio.wav"),
        SETTINGS,
        face_mask=comfy_mask,
    )


def test_inputs_of_another_size_are_resized_by_the_library_alone(nodes: dict[str, Any], tmp_path: Path) -> None:
    """A 96x96 picture and mask for a 64x64 video: whichever front-end resizes them itself (cv2 area or
    linear, bilinear, nearest) instead of handing them to the library makes other frames. Catches exactly
    that: a resize rule living in the CLI or the node."""
    case = PARITY_ROOT / "v1_audio"
    big_reference = tmp_path / "reference_96.png"
    Image.open(case / "inputs" / "reference.png").convert("RGB").resize((96, 96), Image.BICUBIC).save(big_reference)
    values = np.rint(np.load(case / "inputs" / "face_mask.npy") * 255).astype(np.uint8)
    big_mask = tmp_path / "mask_96.png"
    Image.fromarray(values).resize((96, 96), Image.NEAREST).save(big_mask)
    comfy_mask = torch.from_numpy(np.asarray(Image.open(big_mask), dtype=np.float32) / 255.0)[None]
    from_cli = _cli_frames(
        tmp_path,
        _cli_weights(case, tmp_path / "weights", {}),
        "audio",
        SETTINGS,
        [
            "--image",
            str(big_reference),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--mask",
            str(big_mask),
            "--no-crop",
        ],
    )

    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
    outputs = nodes["EchoMimicSampler"].sample(
        model,
        StandInComfyVae(case / "vae"),
        _comfy_image(big_reference),
        _node_features(nodes, case / "inputs" / "audio.wav"),
        face_mask=comfy_mask,
        **SETTINGS,
    )
    _assert_same_run(from_cli, outputs)


def test_landmark_mode_cli_and_node_frames_are_identical(nodes: dict[str, Any], tmp_path: Path) -> None:
    """Catches a front-end applying its own rule in landmark mode: drawing the landmarks at another size or
    with other parts, another accelerated cfg default, its own length rule for landmarks vs. speech."""
    from echomimic.landmarks import LandmarkSequence

    case = PARITY_ROOT / "v1_pose_acc"
    landmarks_json = tmp_path / "landmarks.json"
    LandmarkSequence(np.load(case / "inputs" / "pose_landmarks.npy"), 64, 64).save(landmarks_json)
    release_names = {
        "reference_unet": "reference_unet_pose",
        "denoising_unet": "denoising_unet_pose_acc",
        "motion_module": "motion_module_pose_acc",
        "face_locator": "face_locator_pose",
    }
    settings = {**SETTINGS, "cfg": 1.0}  # the accelerated weights' own guidance
    from_cli = _cli_frames(
        tmp_path,
        _cli_weights(case, tmp_path / "weights", release_names),
        "pose_acc",
        settings,
        [
            "--image",
            str(case / "inputs" / "reference.png"),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--landmarks",
            str(landmarks_json),
            "--no-crop",
        ],
    )

    (model,) = nodes["EchoMimicModelLoader"].load("V1 landmarks accelerated", "fp32", "tiny_pose")
    # what the Load Landmarks node hands on (the extension's own copy of the library class)
    landmarks = extension_submodule("echomimic.landmarks").LandmarkSequence.load(landmarks_json)
    (landmark_images,) = nodes["EchoMimicDrawLandmarks"].draw(landmarks, 64, 64, False)
    _assert_node_gives(
        from_cli,
        nodes,
        model,
        case,
        _node_features(nodes, case / "inputs" / "audio.wav"),
        settings,
        landmark_images=landmark_images,
    )


def test_v2_cli_and_node_frames_are_identical(nodes: dict[str, Any], tmp_path: Path) -> None:
    """Catches a front-end applying its own rule in the V2 (hand-pose) mode: drawing the hand poses at another
    size or line width, resizing the half-body picture differently, another V2 default (seed, cfg, steps)."""
    import folder_paths

    from echomimic.poses import hand_poses_from_keypoint_records
    from tests.parity_cases import make_weights_folder

    case = require(PARITY_ROOT / "v2_hands")
    info = json.loads((case / "case.json").read_text())
    width, height, ref_w = info["width"], info["height"], info["pose_drawing"]["ref_w"]
    weights = make_weights_folder(case, info, tmp_path)
    (weights / "audio_processor").mkdir()
    (weights / "audio_processor" / "tiny.pt").symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    (weights / "sd-vae-ft-mse").symlink_to(case / "vae", target_is_directory=True)
    records = json.loads((case / "inputs" / "pose_keypoints.json").read_text())
    poses_json = tmp_path / "poses.json"
    hand_poses_from_keypoint_records(records, width, height).save(poses_json)
    settings = {
        "width": width,
        "height": height,
        "length": info["video_length"],
        "steps": 2,
        "cfg": info["guidance_scale"],
        "seed": info["seed"],
        "context_frames": info["context_frames"],
        "context_overlap": info["context_overlap"],
    }
    from_cli = _cli_frames(
        tmp_path,
        weights,
        "v2",
        settings,
        [
            "--image",
            str(case / "inputs" / "reference.png"),
            "--audio",
            str(case / "inputs" / "audio.wav"),
            "--poses",
            str(poses_json),
            "--no-align-poses",
            "--pose-ref-w",
            str(ref_w),
        ],
    )

    (Path(folder_paths.models_dir) / "echomimic" / "equality_v2").symlink_to(weights)
    (model,) = nodes["EchoMimicModelLoader"].load("V2 semi-body", "fp32", "equality_v2", False)
    (encoder,) = nodes["EchoMimicAudioEncoderLoader"].load("equality_v2", "fp32", False)
    features = nodes["EchoMimicAudioFeatures"].compute(
        read_wav_as_comfy_audio(case / "inputs" / "audio.wav"), encoder, FPS
    )[0]
    poses = extension_submodule("echomimic.poses").HandPoseSequence.load(poses_json)  # Load Hand Poses' output
    (pose_images,) = nodes["EchoMimicDrawHandPoses"].draw(poses, width, height, ref_w)
    _assert_node_gives(from_cli, nodes, model, case, features, settings, hand_pose_images=pose_images)


def test_cases_describe_the_sizes_used_here() -> None:
    """Catches a parity case changing size, which would make the comparison above resize (and test less)."""
    for name in ("v1_audio", "v1_pose_acc"):
        case = json.loads(require(PARITY_ROOT / name / "case.json").read_text())
        assert (int(case["width"]), int(case["height"])) == (SETTINGS["width"], SETTINGS["height"])


def test_detected_mask_cli_and_node_frames_are_identical(nodes: dict[str, Any], tmp_path: Path) -> None:
    """No mask given: both front-ends detect the face mask in the picture. Catches the CLI and the node
    growing their own fallback again (another detector call, another mask size or dilation, a crop), which
    would give other frames; and a fallback that no longer runs (the run would be refused)."""
    from echomimic.cli.parser import EXAMPLE_IMAGE

    case = PARITY_ROOT / "v1_audio"
    portrait = tmp_path / "portrait.png"
    Image.open(require(EXAMPLE_IMAGE)).convert("RGB").resize((128, 128), Image.BICUBIC).save(portrait)
    from_cli = _cli_frames(
        tmp_path,
        _cli_weights(case, tmp_path / "weights", {}),
        "audio",
        SETTINGS,
        ["--image", str(portrait), "--audio", str(case / "inputs" / "audio.wav"), "--no-crop"],
    )
    (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
    features = _node_features(nodes, case / "inputs" / "audio.wav")
    _assert_node_gives(from_cli, nodes, model, case, features, SETTINGS, reference=portrait)


def test_v2_default_settings_cli_and_node_are_identical(nodes: dict[str, Any], tmp_path: Path) -> None:
    """Nothing but the length given: the CLI (no --width/--height/--steps/--cfg/--seed/--context-*) and the
    node (widgets at 0 = the variant's official value, seed 3407) both render V2's official 768x768 with its
    30 steps and cfg 2.5. Catches a front-end with its own defaults (512x512, seed 420: the old CLI)."""
    import folder_paths

    from echomimic.poses import hand_poses_from_keypoint_records
    from tests.parity_cases import make_weights_folder

    case = require(PARITY_ROOT / "v2_hands")
    info = json.loads((case / "case.json").read_text())
    weights = make_weights_folder(case, info, tmp_path)
    (weights / "audio_processor").mkdir()
    (weights / "audio_processor" / "tiny.pt").symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    (weights / "sd-vae-ft-mse").symlink_to(case / "vae", target_is_directory=True)
    records = json.loads((case / "inputs" / "pose_keypoints.json").read_text())
    poses_json = tmp_path / "poses.json"
    hand_poses_from_keypoint_records(records, 768, 768).save(poses_json)
    audio = case / "inputs" / "audio.wav"
    length = 2
    from_cli = _cli_frames(
        tmp_path,
        weights,
        "v2",
        {"length": length},
        ["--image", str(case / "inputs" / "reference.png"), "--audio", str(audio), "--poses", str(poses_json)]
        + ["--no-align-poses"],
    )
    assert from_cli[0].shape == (length, 768, 768, 3)

    (Path(folder_paths.models_dir) / "echomimic" / "defaults_v2").symlink_to(weights)
    (model,) = nodes["EchoMimicModelLoader"].load("V2 semi-body", "fp32", "defaults_v2", False)
    (encoder,) = nodes["EchoMimicAudioEncoderLoader"].load("defaults_v2", "fp32", False)
    features = nodes["EchoMimicAudioFeatures"].compute(read_wav_as_comfy_audio(audio), encoder, FPS)[0]
    poses = extension_submodule("echomimic.poses").HandPoseSequence.load(poses_json)
    (pose_images,) = nodes["EchoMimicDrawHandPoses"].draw(poses, 768, 768, 800)
    sampler_defaults = {
        name: spec[1]["default"]
        for name, spec in nodes["EchoMimicSampler"].INPUT_TYPES()["required"].items()
        if isinstance(spec[1], dict) and "default" in spec[1]
    }
    widgets = {**sampler_defaults, "width": 0, "height": 0, "steps": 0, "cfg": 0.0, "seed": 3407, "length": length}
    outputs = nodes["EchoMimicSampler"].sample(
        model,
        StandInComfyVae(case / "vae"),
        _comfy_image(case / "inputs" / "reference.png"),
        features,
        hand_pose_images=pose_images,
        **widgets,
    )
    _assert_same_run(from_cli, outputs)
