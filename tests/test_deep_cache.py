"""The opt-in deep-feature cache (echomimic.pipeline.deep_cache): off it is the exact path bit for bit, on it is a
bounded approximation kept per frame, and the node option and the CLI flag reach the sampler's settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from echomimic.errors import InputError
from echomimic.models import load_echomimic
from echomimic.models.unet import DeepCacheCall
from echomimic.pipeline import SamplingSettings, generate_video, load_diffusers_vae
from echomimic.pipeline.deep_cache import FrameFeatureCache
from tests.helpers import ZeroAudio, require
from tests.parity_cases import PARITY_ROOT, make_weights_folder

AUDIO_CASE = PARITY_ROOT / "v1_audio"
V2_CASE = PARITY_ROOT / "v2_hands"
UNET_CASE = PARITY_ROOT / "unet_forward"
# The documented bound (README, docs/performance.md) on the tiny random-weight parity models at interval 3: the
# mean absolute deviation of the frames (0..1) from exact, and the largest. Random weights lack the step-to-step
# redundancy of trained ones, so single pixels move a lot; these bounds catch a broken cache, not quality.
TINY_MEAN_DEVIATION = 0.05
TINY_MAX_DEVIATION = 0.75


def _load(case_dir: Path, variant: str, target: Path):
    case = json.loads((require(case_dir / "case.json")).read_text())
    return load_echomimic(make_weights_folder(case_dir, case, target), variant), load_diffusers_vae(case_dir / "vae")


@pytest.fixture(scope="module")
def audio_setup(tmp_path_factory):
    models, vae = _load(AUDIO_CASE, "audio", tmp_path_factory.mktemp("audio"))
    reference = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.from_numpy(np.load(AUDIO_CASE / "inputs" / "face_mask.npy"))
    return models, vae, reference, mask


@pytest.fixture(scope="module")
def speech_features():
    from echomimic.audio import compute_audio_features, load_whisper_encoder
    from tests.test_parity import _read_wav

    encoder = load_whisper_encoder(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    waveform, rate = _read_wav(AUDIO_CASE / "inputs" / "audio.wav")
    with torch.no_grad():
        return compute_audio_features(waveform, rate, encoder, 24.0)


def _settings(**overrides: Any) -> SamplingSettings:
    values: dict[str, Any] = dict(
        width=64, height=64, steps=12, cfg=2.5, seed=7, context_frames=4, context_overlap=1, length=7, window_batch=2
    )
    values.update(overrides)
    return SamplingSettings(**values)


def _kind(call: DeepCacheCall | None) -> str | None:
    """A UNet call's kind when it starts: None (no cache), "full" or "cached" (the full call fills it in later)."""
    return None if call is None else ("full" if call.features is None else "cached")


def _audio_video(setup, features, settings: SamplingSettings, calls: list | None = None) -> torch.Tensor:
    models, vae, reference, mask = setup
    handle = None
    if calls is not None:
        handle = models.denoising_unet.register_forward_pre_hook(
            lambda _m, _args, kwargs: calls.append(_kind(kwargs.get("deep_cache"))), with_kwargs=True
        )
    try:
        video = generate_video(models, vae, reference, audio_features=features, face_mask=mask, settings=settings)
    finally:
        if handle is not None:
            handle.remove()
    assert video.frames is not None
    return video.frames


# (1) Off: the exact path ---------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0, 1])
def test_cache_off_is_bit_identical_to_the_exact_path(audio_setup, speech_features, interval) -> None:
    """Catches the cache leaking into the default path: interval 0 or 1 (any depth) must give the frames of a run
    whose settings never name the option, bit for bit, and no UNet call may get a deep-cache request."""
    exact = _audio_video(audio_setup, speech_features, _settings(steps=3))
    calls: list = []
    off = _audio_video(
        audio_setup, speech_features, _settings(steps=3, deep_cache_interval=interval, deep_cache_depth=5), calls
    )
    assert torch.equal(off, exact)
    assert calls and all(call is None for call in calls)
    assert SamplingSettings().deep_cache_interval == 0  # off by default
    assert SamplingSettings.defaults_for("v2").deep_cache_interval == 0


@pytest.mark.parametrize("depth", range(1, 9))
def test_a_cached_call_on_its_own_features_is_the_full_call(tmp_path, depth) -> None:
    """Catches wrong wiring of the shallow pass (a skip connection taken from the wrong layer, a block split at the
    wrong layer, a missing upsampler): a cached UNet call given the deep features its own full call handed back
    must reproduce that call exactly, at every depth of the tiny UNet (8 skips), with CFG rows and on a latent
    size that needs explicit upsampling sizes (8 x 12)."""
    from safetensors.torch import load_file

    case = json.loads(require(UNET_CASE / "case.json").read_text())
    models = load_echomimic(make_weights_folder(UNET_CASE, case, tmp_path), "audio")
    unet = models.denoising_unet
    assert unet.skip_count == 8
    inputs = load_file(str(UNET_CASE / "inputs.safetensors"))
    with torch.no_grad():
        features = models.reference_unet(inputs["ref_latents"], inputs["ref_timestep"])
        audio = inputs["audio_cond"]
        for sample in (inputs["noisy_latents"], torch.randn(1, 4, audio.shape[1], 8, 12)):
            noisy = torch.cat([sample, sample])
            kwargs = dict(
                audio_tokens=torch.cat([torch.zeros_like(audio), audio]),
                reference_features=features if sample is inputs["noisy_latents"] else None,
                unconditional_items=1,
            )
            exact = unet(noisy, inputs["timestep"], **kwargs)
            call = DeepCacheCall(depth)
            full = unet(noisy, inputs["timestep"], deep_cache=call, **kwargs)
            assert torch.equal(full, exact) and call.features is not None
            assert call.features.shape[0] == noisy.shape[0] * noisy.shape[2]
            cached = unet(noisy, inputs["timestep"], deep_cache=DeepCacheCall(depth, call.features), **kwargs)
            assert torch.equal(cached, exact)
            other = unet(noisy, inputs["timestep"], deep_cache=DeepCacheCall(depth, call.features * 0.5), **kwargs)
            assert not torch.equal(other, exact)  # the cached features are really used


# (2) On: per frame, bounded -------------------------------------------------------------------------------


def test_frame_cache_is_per_frame_and_per_cfg_half() -> None:
    """Catches a cache kept per window (rotated windows would read another window's features) or mixing the CFG
    halves: features stored by the windows of a full step are gathered by frame index for the rotated windows of
    a cached step, each frame the mean over the windows that held it, each half its own."""
    cache = FrameFeatureCache(interval=3, depth=2, num_frames=6, halves=2)
    full_windows = [[0, 1, 2, 3], [3, 4, 5, 0]]
    # value = 100 * half + 10 * window + frame, rows (half, window, frame) as the sampler batches them
    values = torch.tensor(
        [[[100.0 * half + 10.0 * w + f for f in window] for w, window in enumerate(full_windows)] for half in range(2)]
    )
    call = cache.call(0, full_windows)
    assert call.features is None  # step 0 is a full step
    call.features = values.reshape(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    cache.start_full_step()
    cache.store(full_windows, call)
    cache.finish_full_step()
    rotated = [[2, 3, 4, 5], [5, 0, 1, 2]]
    gathered = cache.call(1, rotated).features
    assert gathered is not None and gathered.shape == (16, 3, 2, 2)

    def entry(half: int, frame: int) -> float:
        held = [10.0 * w + frame for w, window in enumerate(full_windows) if frame in window]
        return 100.0 * half + sum(held) / len(held)

    expected = torch.tensor([[entry(half, f) for window in rotated for f in window] for half in range(2)])
    assert torch.equal(gathered[:, 0, 0, 0], expected.reshape(-1))
    assert cache.is_full_step(3) and not cache.is_full_step(2)
    assert cache.nbytes == 2 * 6 * 3 * 2 * 2 * 4


def test_cache_on_is_finite_close_and_runs_whole_steps(audio_setup, speech_features) -> None:
    """Catches a cache that changes nothing (never used), blows up (NaN/inf, far from exact: features of another
    frame, half or step) or mixes full and cached windows within a step: interval 3 over 12 steps with two window
    batches per step differs from exact but stays within the documented bound, and every call of a step is of
    one kind (full on steps 0, 3, 6, 9)."""
    exact = _audio_video(audio_setup, speech_features, _settings())
    calls: list = []
    cached = _audio_video(audio_setup, speech_features, _settings(deep_cache_interval=3), calls)
    assert torch.isfinite(cached).all()
    deviation, mean = float((cached - exact).abs().max()), float((cached - exact).abs().mean())
    print(f"tiny v1_audio, 12 steps, interval 3, depth 2: max {deviation:.4f}, mean {mean:.5f}")
    assert 0.0 < deviation <= TINY_MAX_DEVIATION and mean <= TINY_MEAN_DEVIATION
    windows = 3  # 7 frames, context 4 / overlap 1: windows at 0, 3, 6 -> two UNet calls per step (2 + 1)
    assert len(calls) == 12 * 2 and windows == 3
    for step in range(12):
        assert calls[2 * step] == calls[2 * step + 1] == ("full" if step % 3 == 0 else "cached"), step
    deeper = _audio_video(audio_setup, speech_features, _settings(deep_cache_interval=3, deep_cache_depth=6))
    deeper_mean = float((deeper - exact).abs().mean())
    print(f"  depth 6: max {float((deeper - exact).abs().max()):.4f}, mean {deeper_mean:.5f}")
    assert deeper_mean < mean  # recomputing more layers is closer to exact


def test_cache_on_v2_non_square_is_bounded(tmp_path, speech_features) -> None:
    """Catches a cache that only works for square V1 latents: V2 (pose features per window, 64 x 96 pixels, explicit
    upsampling sizes) with interval 3 differs from exact within the documented bound and stays finite."""
    models, vae = _load(V2_CASE, "v2", tmp_path)
    poses = torch.from_numpy(np.load(V2_CASE / "inputs" / "pose_frames.npy"))
    reference = torch.rand(96, 64, 3, generator=torch.Generator().manual_seed(5))
    base = _settings(width=64, height=96, steps=6, length=7)

    def video(settings: SamplingSettings) -> torch.Tensor:
        frames = generate_video(
            models, vae, reference, audio_features=speech_features, hand_pose_images=poses, settings=settings
        ).frames
        assert frames is not None
        return frames

    exact = video(base)
    cached = video(dataclasses.replace(base, deep_cache_interval=3))
    deviation, mean = float((cached - exact).abs().max()), float((cached - exact).abs().mean())
    print(f"tiny v2_hands, 6 steps, interval 3, depth 2: max {deviation:.4f}, mean {mean:.5f}")
    assert torch.isfinite(cached).all() and 0.0 < deviation <= TINY_MAX_DEVIATION and mean <= TINY_MEAN_DEVIATION


def test_cache_is_refused_for_accelerated_variants_and_bad_values(audio_setup, speech_features) -> None:
    """Catches the cache running on the 6-step accelerated variants (refused by design) or odd values passing:
    each is a one-line InputError saying what to set."""
    with pytest.raises(InputError, match="accelerated.*set it to 0"):
        SamplingSettings.for_variant("audio_acc", deep_cache_interval=3).validated(variant="audio_acc")
    SamplingSettings.for_variant("audio_acc", deep_cache_interval=1).validated(variant="audio_acc")  # off: fine
    with pytest.raises(InputError, match="deep_cache_interval"):
        SamplingSettings(deep_cache_interval=-1).validated()
    with pytest.raises(InputError, match="deep_cache_depth"):
        SamplingSettings(deep_cache_interval=3, deep_cache_depth=0).validated()
    with pytest.raises(InputError, match="between 1 and 8 for this UNet"):  # the tiny UNet has 8 skips, not 12
        _audio_video(audio_setup, speech_features, _settings(steps=2, deep_cache_interval=2, deep_cache_depth=10))


# (3) The node option and the CLI flag reach the sampler -----------------------------------------------------


def test_cli_flags_reach_the_sampling_settings() -> None:
    """Catches --deep-cache / --deep-cache-depth parsed but dropped before the sampler, or accepted for the
    accelerated modes: they land in SamplingSettings, absent they are off, and --mode audio_acc refuses them."""
    from echomimic.cli.generate import sampling_settings
    from echomimic.cli.parser import build_parser, resolve_mode_defaults

    def settings(*argv: str) -> SamplingSettings:
        return sampling_settings(resolve_mode_defaults(build_parser().parse_args(["generate", *argv])))

    on = settings("--deep-cache", "3", "--deep-cache-depth", "4")
    assert (on.deep_cache_interval, on.deep_cache_depth) == (3, 4)
    off = settings()
    assert off == dataclasses.replace(SamplingSettings.defaults_for("audio"), fps=off.fps)  # off, the defaults
    assert settings("--mode", "v2", "--deep-cache", "3").deep_cache_interval == 3
    with pytest.raises(InputError, match="accelerated"):
        settings("--mode", "audio_acc", "--deep-cache", "3")


def test_node_option_reaches_the_sampler(tmp_path) -> None:
    """Catches the sampler node's deep_cache_interval / deep_cache_depth inputs not reaching the sampler (or not
    being the last optional inputs, which would shift old workflows' widget values), and the accelerated variant
    accepting them."""
    from tests.comfy_stubs import StandInComfyVae, extension_submodule, node_instances

    nodes = node_instances(tmp_path / "models")
    optional = list(nodes["EchoMimicSampler"].INPUT_TYPES()["optional"])
    assert optional[-2:] == ["deep_cache_interval", "deep_cache_depth"]
    assert nodes["EchoMimicSampler"].INPUT_TYPES()["optional"]["deep_cache_interval"][1]["default"] == 0
    sampler_module = extension_submodule("echomimic.pipeline.sampler")
    captured: list[SamplingSettings] = []

    def fake_generate_prepared(_models: Any, _vae: Any, prepared: Any, **_kwargs: Any) -> Any:
        captured.append(prepared.settings)
        return sampler_module.GeneratedVideo(frames=torch.zeros(2, 64, 64, 3), fps=24.0)

    original = sampler_module.generate_prepared
    sampler_module.generate_prepared = fake_generate_prepared
    try:
        vae = StandInComfyVae(AUDIO_CASE / "vae")
        node_error = extension_submodule("nodes.common").EchoMimicNodeError
        inputs = dict(
            reference_image=torch.rand(1, 64, 64, 3),
            audio_features=ZeroAudio(2),
            width=64,
            height=64,
            length=0,
            steps=0,
            cfg=0.0,
            seed=1,
            context_frames=4,
            context_overlap=1,
            face_mask=torch.ones(64, 64),
        )
        sample = nodes["EchoMimicSampler"].sample
        (model,) = nodes["EchoMimicModelLoader"].load("V1 audio", "fp32", "tiny_audio")
        sample(model, vae, **inputs)
        sample(model, vae, **inputs, deep_cache_interval=3, deep_cache_depth=5)
        assert [(s.deep_cache_interval, s.deep_cache_depth) for s in captured] == [(0, 2), (3, 5)]
        (accelerated,) = nodes["EchoMimicModelLoader"].load("V1 audio accelerated", "fp32", "tiny_audio")
        with pytest.raises(node_error, match="accelerated"):
            sample(accelerated, vae, **inputs, deep_cache_interval=3)
    finally:
        sampler_module.generate_prepared = original
    assert len(captured) == 2
