"""The hand-pose nodes executed in-process as ComfyUI calls them (ComfyUI's modules are stand-ins; the
library and MediaPipe run for real on the shared half-body photos)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.comfy_stubs import extension_submodule, install_stub_modules, load_extension
from tests.test_poses_extract import PHOTOS, load_photo
from tests.test_poses_official import _Payload, official_frame, write_demo_folder

POSE_NODE_IDS = (
    "EchoMimicExtractHandPoses",
    "EchoMimicAlignHandPoses",
    "EchoMimicDrawHandPoses",
    "EchoMimicImportOfficialPoses",
)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    install_stub_modules(tmp_path_factory.mktemp("comfy_models"))
    return {node_id: cls() for node_id, cls in load_extension().NODE_CLASS_MAPPINGS.items()}


@pytest.fixture(scope="module")
def node_error(nodes: dict[str, Any]) -> type[Exception]:
    return extension_submodule("nodes.common").EchoMimicNodeError


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    return torch.from_numpy(np.stack([load_photo(name, 256) for name in PHOTOS]))


def test_nodes_are_registered_with_tooltips(nodes: dict[str, Any]) -> None:
    """Catches a pose node missing from the extension, or an input without a tooltip."""
    for node_id in POSE_NODE_IDS:
        assert node_id in nodes
        for section in type(nodes[node_id]).INPUT_TYPES().values():
            for name, spec in section.items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_extract_align_draw(nodes: dict[str, Any], photos: torch.Tensor) -> None:
    """Catches broken wiring between the nodes: extract (with preview and report) -> align to a portrait ->
    draw at the sampler size gives hand images with both hands."""
    poses, preview, report = nodes["EchoMimicExtractHandPoses"].extract(photos, True)
    assert preview.shape == photos.shape and preview.dtype == torch.float32
    assert report.startswith("2 frames, 2 with hands")
    (aligned,) = nodes["EchoMimicAlignHandPoses"].align(poses, photos[1:], True)
    assert (aligned.width, aligned.height) == (256, 256)
    (images,) = nodes["EchoMimicDrawHandPoses"].draw(aligned, 128, 128, 800)
    assert images.shape == (2, 128, 128, 3) and 0 < float(images.max()) <= 1.0
    assert images[:, :, 64:].amax() > 0 and images[:, :, :64].amax() > 0
    (unchanged,) = nodes["EchoMimicAlignHandPoses"].align(poses, photos[1:], False)
    assert unchanged is poses


def test_bad_inputs_are_readable_errors(
    nodes: dict[str, Any], node_error: type, photos: torch.Tensor, tmp_path: Path
) -> None:
    """Catches tracebacks instead of messages for: no hands at all, another aspect ratio, a portrait without a
    person, a malicious pose file, an empty folder path."""
    empty = extension_submodule("echomimic.poses").HandPoseSequence(np.full((3, 2, 21, 2), np.nan), 256, 256)
    with pytest.raises(node_error, match="no hand in any frame"):
        nodes["EchoMimicDrawHandPoses"].draw(empty, 128, 128, 800)
    poses, _, _ = nodes["EchoMimicExtractHandPoses"].extract(photos[:1], True)
    with pytest.raises(node_error, match="aspect"):
        nodes["EchoMimicDrawHandPoses"].draw(poses, 256, 128, 800)
    with pytest.raises(node_error, match="No person was found in the reference image") as caught:
        nodes["EchoMimicAlignHandPoses"].align(poses, torch.zeros(1, 128, 128, 3), True)
    # What happened (the run stopped, nothing was skipped) and what to do, in node words.
    assert "run stopped" in str(caught.value) and "skipped" not in str(caught.value)
    assert "alignment off" in str(caught.value) and "--" not in str(caught.value)
    folder = tmp_path / "evil"
    write_demo_folder(folder, frames=1)
    pose = official_frame(0)
    pose["num"] = _Payload(tmp_path / "marker")
    np.save(folder / "0.npy", np.array(pose, dtype=object), allow_pickle=True)
    with pytest.raises(node_error, match="refused import"):
        nodes["EchoMimicImportOfficialPoses"].import_folder(str(folder))
    assert not (tmp_path / "marker").exists()
    with pytest.raises(node_error, match="Give the path"):
        nodes["EchoMimicImportOfficialPoses"].import_folder("  ")


def test_import_official_folder_node(nodes: dict[str, Any], tmp_path: Path) -> None:
    """Catches the import node losing frames or the report."""
    write_demo_folder(tmp_path / "01", frames=4)
    poses, report = nodes["EchoMimicImportOfficialPoses"].import_folder(str(tmp_path / "01") + os.sep)
    assert poses.num_frames == 4 and report == "4 frames, 4 with hands."


def test_v2_sampler_from_drawn_poses_reproduces_the_official_video(nodes: dict[str, Any], tmp_path: Path) -> None:
    """The node path of a V2 workflow on the tiny v2_hands case: Draw Hand Poses -> (speech trimmed to the
    pose frames) -> Sampler must give the official video. Catches drawing, framing or size mistakes between
    the pose nodes and the sampler's hand_pose_images input (any pixel change moves the video)."""
    import json

    import folder_paths
    from PIL import Image

    from tests.comfy_stubs import StandInComfyVae, read_wav_as_comfy_audio
    from tests.parity_cases import PARITY_ROOT, make_weights_folder

    poses_module = extension_submodule("echomimic.poses")

    case_dir = PARITY_ROOT / "v2_hands"
    case = json.loads((case_dir / "case.json").read_text())
    weights = make_weights_folder(case_dir, case, tmp_path)
    (weights / "audio_processor").mkdir()
    (weights / "audio_processor" / "tiny.pt").symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    (Path(folder_paths.models_dir) / "echomimic").mkdir(exist_ok=True)
    (Path(folder_paths.models_dir) / "echomimic" / "tiny_v2").symlink_to(weights)

    width, height = case["width"], case["height"]
    records = json.loads((case_dir / "inputs" / "pose_keypoints.json").read_text())
    poses = poses_module.hand_poses_from_keypoint_records(records, width, height)
    (pose_images,) = nodes["EchoMimicDrawHandPoses"].draw(poses, width, height, case["pose_drawing"]["ref_w"])
    (model,) = nodes["EchoMimicModelLoader"].load("V2 semi-body", "fp32", "tiny_v2", False)
    (encoder,) = nodes["EchoMimicAudioEncoderLoader"].load("tiny_v2", "fp32", False)
    audio = read_wav_as_comfy_audio(case_dir / "inputs" / "audio.wav")
    features, frame_count, _ = nodes["EchoMimicAudioFeatures"].compute(
        audio, encoder, float(case["fps"]), driving_images=pose_images
    )
    reference = torch.from_numpy(
        np.asarray(Image.open(case_dir / "inputs" / "reference.png").convert("RGB"), dtype=np.float32) / 255.0
    )[None]
    frames, fps, _, _ = nodes["EchoMimicSampler"].sample(
        model,
        StandInComfyVae(case_dir / "vae"),
        reference,
        features,
        width=width,
        height=height,
        length=case["video_length"],
        steps=case["steps"],
        cfg=case["guidance_scale"],
        seed=case["seed"],
        context_frames=case["context_frames"],
        context_overlap=case["context_overlap"],
        hand_pose_images=pose_images,
    )
    expected = np.load(case_dir / "expected" / "video.npy")
    assert frames.shape == expected.shape and fps == float(case["fps"])
    np.testing.assert_allclose(frames.numpy(), expected, atol=case["suggested_tolerance"]["video_atol"])
