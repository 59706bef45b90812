"""Live previews: the latent->RGB map, the PNG writer, and that previews never change the sampler's output."""

from __future__ import annotations

import ast
import json
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from echomimic.errors import InputError
from echomimic.models import load_echomimic
from echomimic.pipeline import SamplingSettings, generate_video, load_diffusers_vae
from echomimic.preview import (
    SD15_LATENT_RGB_FACTORS,
    PreviewWriter,
    latents_to_rgb,
    preview_frame_indices,
    preview_image,
)
from tests.comfy_stubs import StandInComfyVae, node_instances, read_wav_as_comfy_audio
from tests.parity_cases import COMFYUI_SNAPSHOTS, PARITY_ROOT, find_case, make_weights_folder

POSE_CASE = find_case(lambda case: case.get("mode") == "pose_acc")


def _comfyui_sd15_factors() -> list[list[float]]:
    """SD15.latent_rgb_factors read from the newest ComfyUI snapshot's comfy/latent_formats.py."""
    snapshots = sorted(Path(COMFYUI_SNAPSHOTS).glob("ComfyUI-*.tar.gz"))
    assert snapshots, f"no ComfyUI snapshot in {COMFYUI_SNAPSHOTS}"
    with tarfile.open(snapshots[-1]) as archive:
        source = archive.extractfile("comfy/latent_formats.py").read().decode()  # type: ignore[union-attr]
    sd15 = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "SD15")
    for node in ast.walk(sd15):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "attr", "") == "latent_rgb_factors":
            return ast.literal_eval(node.value)
    raise AssertionError("SD15.latent_rgb_factors not found")


def test_factors_are_comfyuis_sd15_factors() -> None:
    """Catches a typo in the factor table: previews would show wrong colours (ComfyUI's numbers, no bias)."""
    assert [list(row) for row in SD15_LATENT_RGB_FACTORS] == _comfyui_sd15_factors()


def test_latents_to_rgb_is_the_linear_map_rescaled() -> None:
    """Catches a transposed factor matrix, a missing -1..1 -> 0..1 rescale, or in-place changes to latents."""
    latents = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    before = latents.clone()
    rgb = latents_to_rgb(latents)
    assert rgb.shape == (2, 3, 5, 3)
    factors = torch.tensor(SD15_LATENT_RGB_FACTORS)
    expected = ((latents.permute(0, 2, 3, 1) @ factors + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(rgb, expected)
    assert torch.equal(latents, before)
    with pytest.raises(InputError, match="4, h, w"):
        latents_to_rgb(torch.zeros(3, 8, 8))


def test_preview_picks_the_middle_frame_or_a_strip() -> None:
    """Catches previews of the wrong frame (e.g. the first, which moves least) or a mis-stitched strip."""
    assert preview_frame_indices(7) == [3]
    assert preview_frame_indices(12, 4) == [0, 4, 7, 11]
    assert preview_frame_indices(2, 5) == [0, 1]
    latents = torch.zeros(1, 4, 5, 6, 8)
    latents[0, 0, 2] = 3.0  # only the middle frame is bright
    single = preview_image(latents)
    assert single.shape == (6, 8, 3) and single.dtype == np.uint8 and single.min() > 200
    strip = preview_image(latents, frames=3)  # frames 0, 2, 4
    assert strip.shape == (6, 24, 3)
    assert strip[:, 8:16].min() > 200 and strip[:, :8].max() == 128


def test_preview_writer_writes_every_nth_step_and_the_last(tmp_path: Path) -> None:
    """Catches --preview-every writing the wrong steps, skipping the final picture, or leaving temp files."""
    from PIL import Image

    writer = PreviewWriter(tmp_path / "previews", every=2, steps=5)
    latents = torch.randn(1, 4, 3, 8, 8)
    for step in range(5):
        writer(step, latents)
    names = sorted(path.name for path in (tmp_path / "previews").iterdir())
    assert names == ["preview_step_002.png", "preview_step_004.png", "preview_step_005.png"]
    assert Image.open(writer.written[0]).size == (8, 8)
    with pytest.raises(InputError, match="N >= 1"):
        PreviewWriter(tmp_path, every=0)


@pytest.fixture(scope="module")
def pose_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, torch.Tensor]:
    assert POSE_CASE is not None, "the v1_pose_acc parity case is missing"
    case = json.loads((POSE_CASE / "case.json").read_text())
    folder = make_weights_folder(POSE_CASE, case, tmp_path_factory.mktemp("pose"))
    models = load_echomimic(folder, "pose_acc")
    vae = load_diffusers_vae(POSE_CASE / "vae")
    frames = torch.from_numpy(np.load(POSE_CASE / "inputs" / "pose_frames.npy"))
    return models, vae, frames


def test_sampler_output_is_bit_identical_with_previews(
    pose_models: tuple[Any, Any, torch.Tensor], tmp_path: Path
) -> None:
    """Catches a preview that touches the latents (in-place ops, dtype changes): the video must not change.
    Also measures the preview cost per step against the step itself (printed; see the README)."""
    models, vae, landmark_frames = pose_models
    settings = SamplingSettings(
        width=64, height=64, steps=3, cfg=1.0, seed=5, context_frames=4, context_overlap=1, length=6
    )
    reference = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1))
    run = dict(landmark_images=landmark_frames, settings=settings)
    plain = generate_video(models, vae, reference, **run).frames
    writer = PreviewWriter(tmp_path, every=1)
    start = time.perf_counter()
    with_previews = generate_video(models, vae, reference, on_step=writer, **run).frames
    elapsed = time.perf_counter() - start
    assert torch.equal(plain, with_previews)
    assert len(writer.written) == 3
    latents = torch.randn(1, 4, 12, 64, 64)  # a 512x512, 12-frame window
    start = time.perf_counter()
    for _ in range(20):
        preview_image(latents)
    per_preview = (time.perf_counter() - start) / 20
    print(f"\npreview of a 512x512 latent: {per_preview * 1e3:.2f} ms; tiny 3-step run with previews {elapsed:.2f} s")
    assert per_preview < 0.05


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return node_instances(tmp_path_factory.mktemp("comfy_models"))


def _set_preview_method(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """ComfyUI's `--preview-method` as comfy.cli_args exposes it (an enum with .value)."""
    args = SimpleNamespace(preview_method=SimpleNamespace(value=method), preview_size=512)
    monkeypatch.setitem(sys.modules, "comfy.cli_args", SimpleNamespace(args=args))


def test_sampler_node_sends_a_preview_every_step_and_the_same_frames(
    nodes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches the node not sending previews through the progress bar (count >= steps), sending them when
    ComfyUI's previews are off, or previews changing the frames."""
    import comfy.utils
    from PIL import Image

    parity = PARITY_ROOT
    (model,) = nodes["EchoMimicModelLoader"].load("V1 landmarks accelerated", "fp32", "tiny_pose")
    (encoder,) = nodes["EchoMimicAudioEncoderLoader"].load("tiny_audio", "fp32")
    audio = read_wav_as_comfy_audio(parity / "v1_audio" / "inputs" / "audio.wav")
    features = nodes["EchoMimicAudioFeatures"].compute(audio, encoder, 24.0)[0]
    landmark_images = torch.from_numpy(np.load(parity / "v1_pose_acc" / "inputs" / "pose_frames.npy"))
    vae = StandInComfyVae(parity / "v1_pose_acc" / "vae")
    reference = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(2))
    kwargs = dict(
        width=64,
        height=64,
        length=4,
        steps=3,
        cfg=0.0,
        seed=9,
        context_frames=4,
        context_overlap=0,
        landmark_images=landmark_images,
    )

    def run(method: str) -> tuple[torch.Tensor, list[Any]]:
        _set_preview_method(monkeypatch, method)
        previews: list[Any] = []
        comfy.utils.set_progress_bar_global_hook(
            lambda value, total, preview, node_id=None: previews.append(preview) if preview is not None else None
        )
        try:
            frames, *_ = nodes["EchoMimicSampler"].sample(model, vae, reference, features, **kwargs)
        finally:
            comfy.utils.set_progress_bar_global_hook(None)
        return frames, previews

    frames_off, previews_off = run("none")
    frames_on, previews_on = run("latent2rgb")
    assert previews_off == []
    assert len(previews_on) >= 3
    kind, image, max_size = previews_on[0]
    assert kind == "JPEG" and isinstance(image, Image.Image) and image.size == (8, 8) and max_size == 512
    assert torch.equal(frames_off, frames_on)
