"""V3 flash beyond the official single run: chunks for any length, the TeaCache fix, the audio-timing fix,
settings that cannot run, and the chunk plan. Tiny models of the first flash case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echomimic.errors import InputError
from echomimic.v3 import pipeline as flash
from echomimic.v3.files import load_flash_models
from tests.v3_cases import make_v3_weights_folder, v3_cases

FLASH_CASE = v3_cases("flash")[0]
HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> flash.FlashModels:
    folder = make_v3_weights_folder(FLASH_CASE, tmp_path_factory.mktemp("v3"))
    return load_flash_models(folder, dtype=torch.float32)


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    reference = (torch.rand((HEIGHT, WIDTH, 3), generator=generator) * 255).to(torch.uint8).numpy()
    prompt = torch.randn((1, 6, 32), generator=generator)
    audio = torch.randn((64, 2, 32), generator=generator)
    return reference, prompt, audio


def _run(models, inputs, frames: int, **changes) -> torch.Tensor:
    reference, prompt, audio = inputs
    settings = flash.with_defaults(steps=2, **changes)
    chunks: list[torch.Tensor] = []
    needed = flash.generated_frames(flash.plan_chunks(frames, settings.chunk_frames, settings.chunk_overlap))
    delivered = flash.generate_flash(
        models.transformer,
        models.vae,
        reference,
        models.clip_features(reference),
        prompt,
        audio[:needed],
        frames,
        settings,
        on_frames=chunks.append,
    )
    video = torch.cat(chunks)
    assert delivered == video.shape[0] == frames
    return video


def test_one_chunk_is_the_official_run_whatever_the_chunk_length(models, inputs) -> None:
    """Catches the chunked path changing a video that fits one chunk: with chunk frames equal to the video's
    length or much longer, the frames are identical (the official single run)."""
    exact = _run(models, inputs, 13, chunk_frames=13, chunk_overlap=5)
    longer = _run(models, inputs, 13, chunk_frames=81)
    assert torch.equal(exact, longer)


def test_chunk_joins_are_cross_faded(models, inputs, monkeypatch) -> None:
    """Catches hard cuts (or dropped/duplicated frames) at chunk joins: with the cross-fade weights forced to 0
    (the first chunk's raw frames) or 1 (the second's), the video outside the join is the same, and at the
    join every frame of the real run differs from both chunks' raw outputs."""
    video = _run(models, inputs, 21, chunk_frames=13, chunk_overlap=5)
    raw = {}
    for weight in (0.0, 1.0):
        monkeypatch.setattr(flash, "_crossfade_weights", lambda n, w=weight: np.full(n, w, np.float32))
        raw[weight] = _run(models, inputs, 21, chunk_frames=13, chunk_overlap=5)
    assert torch.equal(video[:8], raw[0.0][:8]) and torch.equal(video[13:], raw[1.0][13:])
    for i in range(8, 13):
        assert not torch.equal(video[i], raw[0.0][i]), f"frame {i} is the first chunk's raw frame"
        assert not torch.equal(video[i], raw[1.0][i]), f"frame {i} is the second chunk's raw frame"


def test_long_video_is_delivered_chunk_by_chunk(models, inputs) -> None:
    """Catches the whole video being held until the end (memory growing with length): frames arrive in
    several pieces, before generation finishes, and add up to the length asked for."""
    reference, prompt, audio = inputs
    pieces: list[int] = []
    flash.generate_flash(
        models.transformer,
        models.vae,
        reference,
        models.clip_features(reference),
        prompt,
        audio[:29],
        29,
        flash.with_defaults(steps=1, chunk_frames=13, chunk_overlap=5),
        on_frames=lambda chunk: pieces.append(chunk.shape[0]),
    )
    assert len(pieces) == 3 and sum(pieces) == 29


def test_per_step_teacache_keeps_the_audio_guidance(models, inputs) -> None:
    """Catches the official TeaCache flaw in our fix: official mode returns the audio call's result for the
    zeroed-audio call at cached steps (guidance silently off); per-step mode keeps the two calls apart."""
    reference, prompt, audio = inputs
    outcomes = {}
    for mode in ("official", "per-step"):
        trace = flash.StepTrace([], [], [], [])
        settings = flash.with_defaults(steps=8, teacache_mode=mode, teacache_skip_start=1, teacache_threshold=0.3)
        flash.generate_flash(
            models.transformer,
            models.vae,
            reference,
            models.clip_features(reference),
            prompt,
            audio[:5],
            5,
            settings,
            trace=trace,
        )
        outcomes[mode] = trace
    official = outcomes["official"]
    skipped_unguided = [i for i in range(1, len(official.computed), 2) if not official.computed[i]]
    assert skipped_unguided, "no zeroed-audio call was cached: the test does not exercise TeaCache"
    for i in skipped_unguided:
        assert torch.allclose(official.call_outputs[i], official.call_outputs[i - 1], atol=1e-5)
    per_step = outcomes["per-step"]
    assert not all(per_step.computed), "per-step TeaCache skipped nothing"
    for step, computed in enumerate(per_step.computed):
        if not computed:
            assert not torch.allclose(per_step.call_outputs[2 * step], per_step.call_outputs[2 * step + 1])


def test_audio_timing_follows_the_fps_unless_official() -> None:
    """Catches the official 25-fps cut leaking into other frame rates (speech too fast or slow at 30 fps)."""
    assert flash.FlashSettings(fps=30).audio_cut_fps == 30
    assert flash.FlashSettings(fps=30, audio_timing="official").audio_cut_fps == 25
    assert flash.FlashSettings(fps=25).audio_cut_fps == 25


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"chunk_frames": 12}, "1 + 4k"),
        ({"chunk_overlap": 4}, "1 + 4k"),
        ({"chunk_overlap": 81}, "fewer"),
        ({"steps": 0}, "steps"),
        ({"audio_cfg": float("nan")}, "finite"),
        ({"teacache_mode": "fast"}, "TeaCache"),
        ({"audio_timing": "x"}, "audio timing"),
        ({"fps": 0.0}, "> 0"),
    ],
)
def test_settings_that_cannot_run_are_one_line(changes, words) -> None:
    """Catches settings that would crash deep inside sampling instead of one line saying what to change."""
    with pytest.raises(InputError) as error:
        flash.with_defaults(**changes)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_chunk_plan_covers_every_frame_with_model_lengths() -> None:
    """Catches a plan that leaves a gap, overlaps by the wrong amount or makes a chunk the VAE cannot (1 + 4k)."""
    for frames in (5, 81, 82, 200, 1000, 1999):
        chunks = flash.plan_chunks(frames, 81, 9)
        assert chunks[0].start == 0 and flash.generated_frames(chunks) >= frames
        for before, after in zip(chunks, chunks[1:], strict=False):
            assert after.start == before.start + before.frames - 9 and after.known == 9
        assert all((c.frames - 1) % 4 == 0 and c.frames <= 81 for c in chunks if frames > 81)


def test_sizes_and_frame_counts_follow_the_official_rules() -> None:
    """Catches a different sizing or frame rounding: the official sample size (area <= 768x768, sides down to
    16), ffmpeg's centisecond duration, 1 + 4k frames up to one chunk; a too-small picture is one line."""
    assert flash.official_size(120, 90, (64, 64)) == (48, 64)
    assert flash.official_size(1920, 1080) == (576, 1024)
    assert flash.official_size(500, 400) == (400, 496)
    assert flash.speech_duration(72765, 22050) == 3.3
    assert flash.official_frame_count(3.3, 25, 81) == 81 and flash.official_frame_count(2.2, 25, 81) == 53
    assert flash.frame_count(10.0, 25, 81) == 250
    with pytest.raises(InputError):
        flash.official_size(10, 200)
