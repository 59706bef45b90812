"""V3 flash parity: every case folder of ../shared/parity_v3, dispatched by its case.json "kind".

- "flash": the whole pipeline from the case's files (reference png, speech wav, prompt token ids, tiny release
  folder) through our loaders, sizing, frame count, audio path, noise, inpainting input, UniPC, audio
  guidance, TeaCache and VAE decode; every expected file is compared within its suggested_tolerance, the
  TeaCache decisions call by call, the saved uint8 frames by the fixture's own advice.
- "audio", "vae", "text_clip", "forward": checked by their own modules (named below), which must exist.
- any other kind fails: a new kind of case needs a check before it can pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echomimic.v3 import pipeline as flash
from echomimic.v3.audio import SAMPLE_RATE, load_audio_encoder, load_speech_16k, loudness_normalize, windows
from echomimic.v3.color import OfficialFrameWriter
from echomimic.v3.image_encoder import load_clip_vision
from echomimic.v3.text_encoder import load_umt5_encoder
from echomimic.v3.transformer import load_flash_transformer
from echomimic.v3.vae import load_wan_vae
from tests.parity_cases import PARITY_V3_ROOT, REPO_ROOT, discover_cases
from tests.v3_cases import BASE, tiny_clip_heads

CHECKED_ELSEWHERE = {
    "audio": "tests/test_v3_audio.py",
    "vae": "tests/test_v3_encoders.py",
    "text_clip": "tests/test_v3_encoders.py",
    "forward": "tests/test_v3_transformer.py",
}
CASES = discover_cases(PARITY_V3_ROOT)


def _kind(case_dir: Path) -> str:
    return json.loads((case_dir / "case.json").read_text())["kind"]


def test_v3_cases_are_discovered() -> None:
    """Catches a moved or empty ../shared/parity_v3 (the tests below would run on nothing)."""
    assert any(_kind(c) == "flash" for c in CASES), f"no flash case under {PARITY_V3_ROOT}"


@pytest.mark.parametrize("case_dir", CASES, ids=lambda p: p.name)
def test_every_case_kind_has_a_check(case_dir: Path) -> None:
    """Catches a case of a kind no test checks: it must fail, not pass unnoticed."""
    kind = _kind(case_dir)
    assert kind == "flash" or kind in CHECKED_ELSEWHERE, f"{case_dir.name}: no parity check for kind {kind!r}"
    if kind in CHECKED_ELSEWHERE:
        assert (REPO_ROOT / CHECKED_ELSEWHERE[kind]).is_file()


def _atol(case: dict, name: str) -> float:
    value = case["suggested_tolerance"]["per_file_atol"][name]
    return 0.0 if value == "exact" else float(value)


def _compare(case_dir: Path, case: dict, name: str, actual) -> None:
    expected = np.load(case_dir / "expected" / name)
    actual = np.asarray(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} vs {expected.shape}"
    diff = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert diff <= _atol(case, name), f"{case_dir.name}/{name}: max abs diff {diff:.3g} > {_atol(case, name)}"


def run_flash_case(case_dir: Path):
    """Everything the official run computes, from the case's own files; returns (case, checks dict)."""
    case = json.loads((case_dir / "case.json").read_text())
    params = case["parameters"]
    models, base = case_dir / "models", case_dir / BASE
    transformer = load_flash_transformer(
        models / "transformer/diffusion_pytorch_model.safetensors", base / "config.json", dtype=torch.float32
    )
    vae = load_wan_vae(base / "Wan2.1_VAE.pth", dtype=torch.float32)
    clip = load_clip_vision(
        base / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
        dtype=torch.float32,
        num_heads=tiny_clip_heads(case_dir),
    )
    ids = json.loads((case_dir / "inputs" / "prompt_token_ids.json").read_text())[params["prompt"]]
    prompt_embeds = load_umt5_encoder(base / "models_t5_umt5-xxl-enc-bf16.pth", dtype=torch.float32).encode_ids(ids)

    image = np.asarray(Image.open(case_dir / "inputs" / params["image"]).convert("RGB"))
    height, width = flash.official_size(image.shape[1], image.shape[0], tuple(params["sample_size"]))
    reference = flash.resize_reference(image, width, height)
    speech = load_speech_16k(case_dir / "inputs" / params["audio"])
    duration = flash.speech_duration(speech.shape[0], SAMPLE_RATE)
    frames = flash.official_frame_count(duration, params["fps"], params["video_length"])
    audio_features = load_audio_encoder(models / "chinese-wav2vec2-base").frame_features(
        loudness_normalize(speech, SAMPLE_RATE), frames
    )
    settings = flash.FlashSettings(
        steps=params["steps"],
        shift=params["shift"],
        audio_cfg=params["audio_guidance_scale"],
        seed=params["seed"],
        fps=params["fps"],
        teacache=params["teacache"],
        teacache_threshold=params["teacache_threshold"],
        teacache_skip_start=params["num_skip_start_steps"],
        teacache_mode="official",
        audio_timing="official",
    )
    trace = flash.StepTrace([], [], [], [])
    chunks: list[torch.Tensor] = []
    clip_fea = flash.FlashModels(transformer, vae, clip).clip_features(reference)
    flash.generate_flash(
        transformer,
        vae,
        reference,
        clip_fea,
        prompt_embeds,
        audio_features,
        frames,
        settings,
        on_frames=chunks.append,
        trace=trace,
    )
    video = torch.cat(chunks).numpy()
    checks = {
        "ref_resized.npy": reference,
        "prompt_embeds.npy": prompt_embeds,
        "audio_embeds.npy": windows(audio_features, 0, frames),
        "init_latents.npy": flash.initial_noise(settings.seed, frames, height, width),
        "y.npy": flash.inpainting_condition(vae, flash.video_input(reference), frames),
        "clip_context.npy": clip_fea,
        "call_outputs.npy": torch.stack(trace.call_outputs),
        "step_model_output.npy": torch.stack(trace.step_model_outputs),
        "step_latents.npy": torch.stack(trace.step_latents),
        "video.npy": video,
    }
    checks["masked_video_latents.npy"] = checks["y.npy"][:, 4:]
    checks["center_indices.npy"] = flash_center_indices(frames)
    return case, checks, trace, video


def flash_center_indices(frames: int) -> np.ndarray:
    from echomimic.v3.audio import center_indices

    return center_indices(frames).astype(np.int32)


FLASH_CASES = [c for c in CASES if _kind(c) == "flash"]


@pytest.mark.parametrize("case_dir", FLASH_CASES, ids=lambda p: p.name)
def test_flash_pipeline_parity(case_dir: Path) -> None:
    """Catches any departure from the official flash run: sizing, frame count, the audio cut, noise, y, CLIP,
    the prompt, UniPC orders and sigmas, the audio guidance, TeaCache's call-by-call decisions (and its reset),
    the decode, and the saved (truncated, colour-transferred) frames."""
    case, checks, trace, video = run_flash_case(case_dir)
    derived = case["derived"]
    assert (checks["ref_resized.npy"].shape[0], checks["ref_resized.npy"].shape[1]) == (
        derived["height"],
        derived["width"],
    )
    for name in case["expected"]:
        if name == "video_saved_uint8.npy":
            continue
        _compare(case_dir, case, name, checks[name])
    if case["teacache"]["enabled"]:
        assert trace.computed == [call["blocks_computed"] for call in case["teacache"]["calls"]]
    saved = OfficialFrameWriter()(video).astype(np.int64)
    expected = np.load(case_dir / "expected" / "video_saved_uint8.npy").astype(np.int64)
    diff = np.abs(saved - expected)
    assert diff.mean() < 0.1 and (diff > 2).mean() < 0.01, (diff.mean(), (diff > 2).mean())
