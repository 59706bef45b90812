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

POSE_NODE_IDS = ("EchoMimicExtractHandPoses", "EchoMimicAlignHandPoses", "EchoMimicDrawHandPoses",
                 "EchoMimicImportOfficialPoses")


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


def test_bad_inputs_are_readable_errors(nodes: dict[str, Any], node_error: type, photos: torch.Tensor,
                                        tmp_path: Path) -> None:
    """Catches tracebacks instead of messages for: no hands at all, another aspect ratio, a portrait without a
    person, a malicious pose file, an empty folder path."""
    from comfyui_echomimic_under_test.echomimic.poses import HandPoseSequence

    empty = HandPoseSequence(np.full((3, 2, 21, 2), np.nan), 256, 256)
    with pytest.raises(node_error, match="no hand in any frame"):
        nodes["EchoMimicDrawHandPoses"].draw(empty, 128, 128, 800)
    poses, _, _ = nodes["EchoMimicExtractHandPoses"].extract(photos[:1], True)
    with pytest.raises(node_error, match="aspect"):
        nodes["EchoMimicDrawHandPoses"].draw(poses, 256, 128, 800)
    with pytest.raises(node_error, match="No person was found in the reference image"):
        nodes["EchoMimicAlignHandPoses"].align(poses, torch.zeros(1, 128, 128, 3), True)
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
