"""The EchoMimic V3 nodes executed in-process as ComfyUI calls them (stand-ins for ComfyUI's modules only), on
the tiny models of the first V3 flash case: the graph of loaders, audio features, text / CLIP / VAE nodes and
the sampler, its agreement with the command line, the adapters of ComfyUI's types, progress and Cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy_stubs import extension_submodule, node_instances, read_wav_as_comfy_audio
from tests.v3_cases import make_v3_weights_folder, v3_cases

CASE = v3_cases("flash")[0]
PARAMS = json.loads((CASE / "case.json").read_text())["parameters"]
IMAGE = CASE / "inputs" / PARAMS["image"]
SPEECH = CASE / "inputs" / PARAMS["audio"]
FOLDER = "EchoMimicV3"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("comfy_models_v3")


@pytest.fixture(scope="module")
def nodes(models_dir: Path) -> dict[str, Any]:
    instances = node_instances(models_dir)
    built = make_v3_weights_folder(CASE, models_dir / "scratch")
    built.rename(models_dir / "echomimic" / FOLDER)
    return instances


def _image() -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255.0)[None]


def _graph(nodes: dict[str, Any], length: int = 13, **sampler: Any) -> tuple[Any, ...]:
    model = nodes["EchoMimicV3ModelLoader"].load(FOLDER, "fp32", False)[0]
    encoder = nodes["EchoMimicV3AudioEncoderLoader"].load(FOLDER, False)[0]
    features = nodes["EchoMimicV3AudioFeatures"].prepare(read_wav_as_comfy_audio(SPEECH), encoder, 25.0)[0]
    positive = nodes["EchoMimicV3TextEncode"].encode("a talk", FOLDER, False)[0]
    clip = nodes["EchoMimicV3ClipVisionEncode"].encode(_image(), FOLDER, 0, 0, False)[0]
    vae = nodes["EchoMimicV3VAELoader"].load(FOLDER, False)[0]
    options = dict(
        width=0,
        height=0,
        length=length,
        steps=2,
        audio_cfg=3.0,
        seed=43,
        teacache=True,
        teacache_threshold=0.1,
        chunk_frames=81,
        chunk_overlap=9,
    )
    options.update(sampler)
    return nodes["EchoMimicV3Sampler"].sample(model, _image(), features, positive, clip, vae, **options)


def test_v3_graph_matches_the_command_line(nodes: dict[str, Any], models_dir: Path, tmp_path: Path) -> None:
    """Catches the nodes and the CLI drifting apart: the same inputs give the same frames (the node's 8-bit
    frames are the CLI's --save-frames truncated, as both post-process officially), and the audio output is
    the speech trimmed to the frames."""
    from echomimic.cli import main

    images, fps, audio = _graph(nodes, color_match=False)
    assert images.shape == (13, 80, 112, 3) and fps == 25.0
    assert audio["waveform"].shape[-1] == round(13 * audio["sample_rate"] / 25.0)
    saved = tmp_path / "frames.npy"
    assert (
        main(
            [
                "generate",
                "--mode",
                "v3_flash",
                "--weights",
                str(models_dir / "echomimic" / FOLDER),
                "--image",
                str(IMAGE),
                "--audio",
                str(SPEECH),
                "--prompt",
                "a talk",
                "--length",
                "13",
                "--steps",
                "2",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "v.mp4"),
                "--save-frames",
                str(saved),
                "--quiet",
            ]
        )
        == 0
    )
    cli = (np.load(saved) * 255).astype(np.uint8).astype(np.float32) / 255.0
    assert np.array_equal(images.numpy(), cli)


def test_long_speech_makes_chunks_with_progress_to_the_end(nodes: dict[str, Any]) -> None:
    """Catches a sampler node limited to one chunk, or a progress bar that finishes early: 29 frames in
    chunks of 13 are made, and the last progress update is the total (every step and decode counted)."""
    import comfy.utils

    updates: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        images, _, _ = _graph(nodes, length=29, chunk_frames=13, chunk_overlap=5)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert images.shape[0] == 29
    assert updates and updates[-1][0] == updates[-1][1] == 3 * (2 + 1)
    assert [value for value, _ in updates] == sorted(value for value, _ in updates)


def test_cancel_stops_the_sampler(nodes: dict[str, Any]) -> None:
    """Catches a V3 sampler that ignores Cancel: with ComfyUI's interrupt flag set it stops with ComfyUI's
    interrupt exception instead of finishing."""
    import comfy.model_management as model_management

    model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(model_management.InterruptProcessingException):
            _graph(nodes)
    finally:
        model_management.interrupt_current_processing(False)


def test_conditioning_adapter_trims_comfy_padding() -> None:
    """Catches a CONDITIONING adapter that keeps ComfyUI's 512 zero-padded rows as prompt tokens or cuts a
    real one: the official embedding is the rows up to the last non-zero one."""
    adapters = extension_submodule("nodes.v3_adapters")
    rows = torch.randn(1, 7, 32)
    padded = torch.cat([rows, torch.zeros(1, 505, 32)], dim=1)
    assert torch.equal(adapters.prompt_embeds_from_conditioning([[padded, {}]]), rows)
    error = extension_submodule("nodes.common").EchoMimicNodeError
    with pytest.raises(error):
        adapters.prompt_embeds_from_conditioning([[torch.zeros(1, 512, 32), {}]])
    with pytest.raises(error):
        adapters.prompt_embeds_from_conditioning(None)


def test_vae_adapter_over_comfy_conventions_gives_the_official_latents(nodes: dict[str, Any]) -> None:
    """Catches a wrong convention in the ComfyUI VAE adapter (pixel range, channel order, latent
    normalisation): through a VAE that speaks ComfyUI's encode/decode conventions, the latents and frames
    equal the library's own official VAE path."""
    adapters = extension_submodule("nodes.v3_adapters")
    own = nodes["EchoMimicV3VAELoader"].load(FOLDER, False)[0]  # ComfyUI's conventions over the official VAE
    adapter = adapters.ComfyWanVaeAdapter(own)
    video = torch.rand(1, 3, 5, 48, 64) * 2 - 1
    latents = own.vae.encode(video)
    assert torch.allclose(adapter.encode(video), latents, atol=1e-5)
    direct = torch.cat(list(own.vae.decode_chunks(latents)), dim=2)
    assert torch.allclose(torch.cat(list(adapter.decode_chunks(latents)), dim=2), direct, atol=1e-5)
    with pytest.raises(extension_submodule("nodes.common").EchoMimicNodeError):
        adapters.ComfyWanVaeAdapter(type("Wan22", (), {"encode": 0, "decode": 0, "latent_channels": 48})())


def test_wan_files_are_fetched_into_comfyuis_own_folders(
    nodes: dict[str, Any], models_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Catches a first use that cannot work without ComfyUI's Wan files: the Comfy-Org file missing from
    models/vae is downloaded into ComfyUI's own vae folder (so other Wan workflows find it), one already there
    is used as is, and another missing name is one line naming the folder, without a request."""
    import folder_paths

    from tests.loopback_http import hub_server

    v3 = extension_submodule("nodes.v3_nodes")
    error = extension_submodule("nodes.common").EchoMimicNodeError
    release = extension_submodule("echomimic.release")
    for kind in release.COMFY_WAN_FILES:
        monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, ([str(tmp_path / kind)], set()))
    from safetensors.torch import save_file

    vae_file = tmp_path / "served_vae.safetensors"
    save_file({"decoder.conv1.weight": torch.zeros(64, 64)}, str(vae_file))
    name = release.COMFY_WAN_FILES["vae"]
    with hub_server({release.COMFY_WAN_REPO: {f"split_files/vae/{name}": vae_file}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        path = v3.ensure_wan_file("vae", name, True)
        assert Path(path) == tmp_path / "vae" / name and Path(path).read_bytes() == vae_file.read_bytes()
        assert hub.requests
        hub.requests.clear()
        assert v3.ensure_wan_file("vae", name, True) == path and hub.requests == []
        with pytest.raises(error) as failure:
            v3.ensure_wan_file("clip_vision", "other.safetensors", True)
        assert str(tmp_path / "clip_vision") in str(failure.value) and hub.requests == []
    assert v3.wan_file_choices("vae")[0] == name
