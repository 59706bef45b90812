"""The V1 sampler beyond parity: context windows, fixed official quirks, cancellation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from echomimic.errors import CancelledError, InputError
from echomimic.models import load_echomimic_v1
from echomimic.pipeline import SamplingSettings, generate_video, load_diffusers_vae
from echomimic.pipeline.context import uniform_windows, windows_at_step
from tests.parity_cases import find_case, make_weights_folder

AUDIO_CASE = find_case(lambda case: case.get("mode") == "audio")
POSE_CASE = find_case(lambda case: str(case.get("mode", "")).startswith("pose"))


class ZeroAudio:
    """Audio tokens of a given length (silence-like zeros); the sampler only needs these two members."""

    def __init__(self, frames: int) -> None:
        self.num_frames = frames

    def tokens_for_frames(self, frame_indices) -> torch.Tensor:
        return torch.zeros(len(list(frame_indices)), 50, 384)


@pytest.fixture(scope="module")
def audio_setup(tmp_path_factory):
    case = json.loads((AUDIO_CASE / "case.json").read_text())
    folder = make_weights_folder(AUDIO_CASE, case, tmp_path_factory.mktemp("audio"))
    models = load_echomimic_v1(folder, "audio")
    vae = load_diffusers_vae(AUDIO_CASE / "vae")
    reference = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.from_numpy(np.load(AUDIO_CASE / "inputs" / "face_mask.npy"))
    return models, vae, reference, mask


@pytest.fixture(scope="module")
def pose_setup(tmp_path_factory):
    case = json.loads((POSE_CASE / "case.json").read_text())
    folder = make_weights_folder(POSE_CASE, case, tmp_path_factory.mktemp("pose"))
    # The non-accelerated landmark variant: same networks, other file names.
    for path in list(folder.iterdir()):
        if "_acc" in path.name:
            path.rename(folder / path.name.replace("_acc", ""))
    models = load_echomimic_v1(folder, "pose")
    vae = load_diffusers_vae(POSE_CASE / "vae")
    frames = torch.from_numpy(np.load(POSE_CASE / "inputs" / "pose_frames.npy"))
    return models, vae, frames


def small(**overrides) -> SamplingSettings:
    values = dict(width=64, height=64, steps=2, cfg=2.5, seed=7, context_frames=4, context_overlap=1)
    values.update(overrides)
    return SamplingSettings(**values)


def test_uniform_windows_cover_every_frame_and_wrap() -> None:
    windows = uniform_windows(10, 4, 1)
    assert windows == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 0, 1, 2]]
    assert uniform_windows(3, 12, 3) == [[0, 1, 2]]
    assert windows_at_step(windows, 2, 3, 10)[0] == [6, 7, 8, 9]
    for frames, size, overlap in [(1, 1, 0), (7, 4, 1), (30, 12, 3), (13, 12, 11)]:
        covered = {i for w in uniform_windows(frames, size, overlap) for i in w}
        assert covered == set(range(frames))


def test_progress_reports_every_step_and_window(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    seen = []
    video = generate_video(models, vae, reference, audio_features=ZeroAudio(7), face_mask=mask,
                           settings=small(steps=2), progress=seen.append)
    windows = len(uniform_windows(7, 4, 1))
    assert [(p.step, p.window) for p in seen] == [(s, w) for s in range(2) for w in range(windows)]
    assert seen[-1].done == seen[-1].total == 2 * windows
    assert video.frames.shape == (7, 64, 64, 3) and video.frames.dtype == torch.float32
    assert 0.0 <= float(video.frames.min()) and float(video.frames.max()) <= 1.0


def test_length_follows_audio_and_can_be_shorter(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    video = generate_video(models, vae, reference, audio_features=ZeroAudio(5), face_mask=mask,
                           settings=small(length=3, steps=1))
    assert video.frames.shape[0] == 3
    video = generate_video(models, vae, reference, audio_features=ZeroAudio(5), face_mask=mask,
                           settings=small(length=50, steps=1))
    assert video.frames.shape[0] == 5  # never longer than the audio


def test_cancel_stops_within_a_window_and_models_stay_usable(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    calls = []

    def cancel_on_third_check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(CancelledError):
        generate_video(models, vae, reference, audio_features=ZeroAudio(9), face_mask=mask,
                       settings=small(), should_cancel=cancel_on_third_check)
    assert len(calls) == 3
    first = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask, settings=small())
    second = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask, settings=small())
    assert torch.equal(first.frames, second.frames)  # deterministic, nothing left behind by the cancelled run


def test_seed_changes_the_video(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    a = generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(seed=1, steps=1))
    b = generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask,
                       settings=small(seed=2, steps=1))
    assert float((a.frames - b.frames).abs().max()) > 1e-3


def test_overlapping_predictions_are_averaged_without_cfg(audio_setup) -> None:
    """Official bug fixed: with cfg <= 1 the non-accelerated pipeline summed overlapping windows.

    With one window covering every frame nothing overlaps, so splitting the same frames into overlapping
    windows must give a similar video, not one whose overlapped frames got a doubled velocity.
    """
    models, vae, reference, mask = audio_setup
    one_window = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask,
                                settings=small(cfg=1.0, context_frames=6, context_overlap=0, steps=1))
    overlapping = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask,
                                 settings=small(cfg=1.0, context_frames=4, context_overlap=2, steps=1))
    # At t=999 the step returns -v, so summing instead of averaging doubles the overlapped frames' latents.
    # Measured on the tiny case: 0.0014 averaged (only the motion-module context differs), 0.022 summed.
    assert float((one_window.frames - overlapping.frames).abs().mean()) < 0.006


def test_landmark_variant_runs_without_cfg_and_without_audio(pose_setup) -> None:
    """The official landmark pipeline crashes with cfg <= 1; here it runs, with or without audio."""
    models, vae, frames = pose_setup
    reference = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1))
    video = generate_video(models, vae, reference, landmark_images=frames, settings=small(cfg=1.0, steps=1))
    assert video.frames.shape == (frames.shape[0], 64, 64, 3)
    with_audio = generate_video(models, vae, reference, landmark_images=frames, audio_features=ZeroAudio(4),
                                settings=small(cfg=2.0, steps=1))
    assert with_audio.frames.shape[0] == 4  # the shorter of audio and landmarks


def test_landmark_images_are_resized_to_the_output(pose_setup) -> None:
    models, vae, frames = pose_setup
    big = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(128, 128)).permute(0, 2, 3, 1)
    reference = torch.rand(96, 96, 3)
    video = generate_video(models, vae, reference, landmark_images=big, settings=small(steps=1, cfg=1.0))
    assert video.frames.shape == (frames.shape[0], 64, 64, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(width=60), "multiples of 8"),
        (dict(height=100), "multiples of 8"),
        (dict(length=-1), "at least 1 frame"),
        (dict(steps=0), "Steps must be at least 1"),
        (dict(context_overlap=4), "context_overlap"),
        (dict(context_frames=40, context_overlap=3), "at most 32"),
    ],
)
def test_bad_settings_are_clear_errors(audio_setup, overrides, message) -> None:
    models, vae, reference, mask = audio_setup
    with pytest.raises(InputError, match=message):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(**overrides))


def test_bad_inputs_are_clear_errors(audio_setup, pose_setup) -> None:
    models, vae, reference, mask = audio_setup
    with pytest.raises(InputError, match="convert it to RGB"):
        generate_video(models, vae, torch.rand(64, 64, 4), audio_features=ZeroAudio(4), face_mask=mask,
                       settings=small())
    with pytest.raises(InputError, match="face mask"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), settings=small())
    with pytest.raises(InputError, match="audio features"):
        generate_video(models, vae, reference, face_mask=mask, settings=small())
    with pytest.raises(InputError, match="shorter than one video frame"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(0), face_mask=mask, settings=small())
    with pytest.raises(InputError, match="landmark variants"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask,
                       landmark_images=torch.zeros(4, 64, 64, 3), settings=small())
    pose_models, pose_vae, frames = pose_setup
    with pytest.raises(InputError, match="lower the length"):
        generate_video(pose_models, pose_vae, reference, landmark_images=frames,
                       settings=small(length=frames.shape[0] + 5))
    with pytest.raises(InputError, match="landmark images"):
        generate_video(pose_models, pose_vae, reference, audio_features=ZeroAudio(4), settings=small())


def test_defaults_follow_the_official_scripts() -> None:
    assert SamplingSettings.defaults_for("audio") == SamplingSettings(
        width=512, height=512, steps=30, cfg=2.5, context_frames=12, context_overlap=3, fps=24.0)
    acc = SamplingSettings.defaults_for("pose_acc")
    assert (acc.steps, acc.cfg) == (6, 1.0)


def test_face_locator_runs_per_window_not_per_video(pose_setup) -> None:
    """Bounded memory: the landmark encoder sees at most one window of frames at a time."""
    models, vae, frames = pose_setup
    widest = []
    handle = models.face_locator.register_forward_hook(lambda _m, args, _o: widest.append(args[0].shape[2]))
    try:
        generate_video(models, vae, torch.rand(64, 64, 3), landmark_images=frames,
                       settings=small(steps=2, cfg=1.0, context_frames=3, context_overlap=1))
    finally:
        handle.remove()
    assert widest and max(widest) <= 3
