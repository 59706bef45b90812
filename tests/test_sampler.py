"""The sampler beyond parity (V1 and V2): context windows, fixed official quirks, length policies,
cancellation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from echomimic.errors import CancelledError, InputError
from echomimic.models import load_echomimic
from echomimic.pipeline import SamplingSettings, generate_video, load_diffusers_vae
from echomimic.pipeline.context import uniform_windows, windows_at_step
from echomimic.pipeline.length import LENGTH_POLICIES, driving_index, plan_frame_count
from tests.helpers import ZeroAudio
from tests.parity_cases import PARITY_ROOT, find_case, make_weights_folder

AUDIO_CASE = find_case(lambda case: case.get("mode") == "audio")
POSE_CASE = find_case(lambda case: str(case.get("mode", "")).startswith("pose"))
V2_CASE = find_case(lambda case: case.get("mode") == "v2_pose")


@pytest.fixture(scope="module")
def audio_setup(tmp_path_factory):
    case = json.loads((AUDIO_CASE / "case.json").read_text())
    folder = make_weights_folder(AUDIO_CASE, case, tmp_path_factory.mktemp("audio"))
    models = load_echomimic(folder, "audio")
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
    models = load_echomimic(folder, "pose")
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
    video = generate_video(
        models,
        vae,
        reference,
        audio_features=ZeroAudio(7),
        face_mask=mask,
        settings=small(steps=2),
        progress=seen.append,
    )
    windows = len(uniform_windows(7, 4, 1))
    assert [(p.step, p.window) for p in seen] == [(s, w) for s in range(2) for w in range(windows)]
    assert seen[-1].done == seen[-1].total == 2 * windows
    assert video.frames.shape == (7, 64, 64, 3) and video.frames.dtype == torch.float32
    assert 0.0 <= float(video.frames.min()) and float(video.frames.max()) <= 1.0


def test_run_progress_spans_the_reference_every_window_and_every_decoded_chunk(audio_setup) -> None:
    """Catches a progress total that ends before decoding (the bar at 100 % while the VAE still works), a wrong
    total, or a non-monotonic count; with on_frames and without."""
    models, vae, reference, mask = audio_setup
    windows = len(uniform_windows(7, 4, 1))
    for streamed in (True, False):
        events: list[tuple[str, int, int]] = []
        generate_video(
            models,
            vae,
            reference,
            audio_features=ZeroAudio(7),
            face_mask=mask,
            settings=small(steps=2, decode_batch=3),
            run_progress=lambda p, events=events: events.append((p.stage, p.done, p.total)),
            on_frames=(lambda chunk, events=events: events.append(("frames", int(chunk.shape[0]), 0)))
            if streamed
            else None,
        )
        reported = [event for event in events if event[0] != "frames"]
        total = 1 + 2 * windows + 3  # 7 frames in chunks of 3
        assert [done for _, done, _ in reported] == list(range(1, total + 1))
        assert {count for _, _, count in reported} == {total}
        assert [stage for stage, _, _ in reported] == ["reference"] + ["denoise"] * 2 * windows + ["decode"] * 3
        if streamed:
            assert [event[0] for event in events[-6:]] == ["frames", "decode"] * 3  # each after its chunk


def test_length_follows_audio_and_can_be_shorter(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    video = generate_video(
        models, vae, reference, audio_features=ZeroAudio(5), face_mask=mask, settings=small(length=3, steps=1)
    )
    assert video.frames.shape[0] == 3
    video = generate_video(
        models, vae, reference, audio_features=ZeroAudio(5), face_mask=mask, settings=small(length=50, steps=1)
    )
    assert video.frames.shape[0] == 5  # never longer than the audio


def test_cancel_stops_within_a_window_and_models_stay_usable(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    calls = []

    def cancel_on_third_check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(CancelledError):
        generate_video(
            models,
            vae,
            reference,
            audio_features=ZeroAudio(9),
            face_mask=mask,
            settings=small(),
            should_cancel=cancel_on_third_check,
        )
    assert len(calls) == 3
    first = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask, settings=small())
    second = generate_video(models, vae, reference, audio_features=ZeroAudio(6), face_mask=mask, settings=small())
    assert torch.equal(first.frames, second.frames)  # deterministic, nothing left behind by the cancelled run


def test_seed_changes_the_video(audio_setup) -> None:
    models, vae, reference, mask = audio_setup
    a = generate_video(
        models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(seed=1, steps=1)
    )
    b = generate_video(
        models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(seed=2, steps=1)
    )
    assert float((a.frames - b.frames).abs().max()) > 1e-3


class WindowIdUNet(torch.nn.Module):
    """A stand-in denoising UNet whose answer is known exactly: call k returns the constant k + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = torch.nn.Conv2d(1, 1, 1)  # device / dtype probe of EchoMimicModels
        self.calls = 0

    def forward(self, sample, timestep, **_kwargs):
        self.calls += 1
        return torch.full_like(sample, float(self.calls))


@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_overlapping_predictions_are_averaged_exactly(audio_setup, cfg) -> None:
    """Official bug fixed: with cfg <= 1 the non-accelerated pipelines summed overlapping windows.

    The stub UNet answers call k with the constant k + 1, so the per-frame average over the windows that
    cover it is known exactly; the step must equal DDIM applied to that average (a sum, or an average that
    drops or double-counts a window, fails).
    """
    import dataclasses

    from echomimic.pipeline.sampler import CONDITIONING_CONVENTIONS, initial_latents
    from echomimic.pipeline.scheduler import make_scheduler

    models, vae, reference, mask = audio_setup
    stub_models = dataclasses.replace(models, denoising_unet=WindowIdUNet())
    settings = small(cfg=cfg, context_frames=4, context_overlap=2, steps=1)
    steps = []
    generate_video(
        stub_models,
        vae,
        reference,
        audio_features=ZeroAudio(7),
        face_mask=mask,
        settings=settings,
        on_step=lambda _, latents: steps.append(latents.clone()),
    )
    windows = windows_at_step(uniform_windows(7, 4, 2), 0, CONDITIONING_CONVENTIONS["face_mask"].context_shift, 7)
    total, count = torch.zeros(7), torch.zeros(7)
    for call, window in enumerate(windows):
        total[window] += call + 1
        count[window] += 1
    velocity = (total / count).view(1, 1, 7, 1, 1).expand(1, 4, 7, 8, 8)  # CFG: u == c, so u + g(c - u) == c
    scheduler = make_scheduler()
    scheduler.set_timesteps(1)
    noise = initial_latents(7, (1, 4, 7, 8, 8), clamp=True)
    expected = scheduler.step(velocity, int(scheduler.timesteps[0]), noise, eta=0.0).prev_sample
    assert torch.equal(steps[0], expected)


@pytest.fixture(scope="module")
def speech_features():
    """Real speech (a parity case's espeak sentence) through the whisper encoder: 24 fps features."""
    from echomimic.audio import compute_audio_features, load_whisper_encoder
    from tests.test_parity import _read_wav

    encoder = load_whisper_encoder(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    waveform, rate = _read_wav(V2_CASE / "inputs" / "audio.wav")
    with torch.no_grad():
        return compute_audio_features(waveform, rate, encoder, 24.0)


def test_landmark_variant_runs_without_cfg_and_audio_changes_it(pose_setup, speech_features) -> None:
    """The official landmark pipeline crashes with cfg <= 1; here it runs. Real speech must change the video
    (catches audio tokens that never reach the UNet); all-zero tokens would give the silent video."""
    models, vae, frames = pose_setup
    reference = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1))
    settings = small(cfg=1.0, steps=1, length=4)
    silent = generate_video(models, vae, reference, landmark_images=frames, settings=settings)
    assert silent.frames.shape == (4, 64, 64, 3)
    speaking = generate_video(
        models, vae, reference, landmark_images=frames, audio_features=speech_features, settings=settings
    )
    assert speaking.frames.shape == (4, 64, 64, 3)
    assert float((speaking.frames - silent.frames).abs().max()) > 1e-3


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
        (dict(context_frames=40, context_overlap=3), "between 1 and 32"),
    ],
)
def test_bad_settings_are_clear_errors(audio_setup, overrides, message) -> None:
    models, vae, reference, mask = audio_setup
    with pytest.raises(InputError, match=message):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(**overrides))


def test_bad_inputs_are_clear_errors(audio_setup, pose_setup) -> None:
    models, vae, reference, mask = audio_setup
    with pytest.raises(InputError, match="convert it to RGB"):
        generate_video(
            models, vae, torch.rand(64, 64, 4), audio_features=ZeroAudio(4), face_mask=mask, settings=small()
        )
    with pytest.raises(InputError, match="face mask"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), settings=small())
    with pytest.raises(InputError, match="audio features"):
        generate_video(models, vae, reference, face_mask=mask, settings=small())
    with pytest.raises(InputError, match="shorter than one video frame"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(0), face_mask=mask, settings=small())
    with pytest.raises(InputError, match="landmark and V2 variants"):
        generate_video(
            models,
            vae,
            reference,
            audio_features=ZeroAudio(4),
            face_mask=mask,
            landmark_images=torch.zeros(4, 64, 64, 3),
            settings=small(),
        )
    pose_models, pose_vae, frames = pose_setup
    with pytest.raises(InputError, match="length policy"):
        generate_video(pose_models, pose_vae, reference, landmark_images=frames, settings=small(length_policy="bounce"))
    with pytest.raises(InputError, match="made for 24 fps"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask, settings=small(fps=25))
    with pytest.raises(InputError, match="empty"):
        generate_video(models, vae, reference, audio_features=ZeroAudio(4), face_mask=mask * 0, settings=small())
    with pytest.raises(InputError, match="landmark images"):
        generate_video(pose_models, pose_vae, reference, audio_features=ZeroAudio(4), settings=small())


def test_defaults_follow_the_official_scripts() -> None:
    """Catches defaults that drift from the official scripts (V1 infer_audio2vid, V2 infer.py / infer_acc.py)."""
    assert SamplingSettings.defaults_for("audio") == SamplingSettings(
        width=512, height=512, steps=30, cfg=2.5, seed=420, context_frames=12, context_overlap=3
    )
    acc = SamplingSettings.defaults_for("pose_acc")
    assert (acc.steps, acc.cfg) == (6, 1.0)
    v2, v2_acc = SamplingSettings.defaults_for("v2"), SamplingSettings.defaults_for("v2_acc")
    assert (v2.width, v2.height, v2.steps, v2.cfg, v2.seed) == (768, 768, 30, 2.5, 3407)
    assert (v2_acc.width, v2_acc.height, v2_acc.steps, v2_acc.cfg) == (768, 768, 6, 1.0)
    assert v2.context_frames == 12 and v2.context_overlap == 3 and v2.length_policy == "loop"


def test_face_locator_runs_per_window_not_per_video(pose_setup) -> None:
    """Bounded memory: the landmark encoder sees at most one window of frames at a time."""
    models, vae, frames = pose_setup
    widest = []
    handle = models.face_locator.register_forward_hook(lambda _m, args, _o: widest.append(args[0].shape[2]))
    try:
        generate_video(
            models,
            vae,
            torch.rand(64, 64, 3),
            landmark_images=frames,
            settings=small(steps=2, cfg=1.0, context_frames=3, context_overlap=1),
        )
    finally:
        handle.remove()
    assert widest and max(widest) <= 3


# Length policies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("loop", [0, 1, 2, 0, 1, 2, 0, 1]), ("ping-pong", [0, 1, 2, 1, 0, 1, 2, 1]), ("hold", [0, 1, 2, 2, 2, 2, 2, 2])],
)
def test_length_policies_fill_the_audio(policy, expected) -> None:
    """Catches a policy that truncates silently or shows the wrong driving frame past the sequence's end."""
    plan = plan_frame_count(audio_frames=8, driving_frames=3, policy=policy)
    assert plan.num_frames == 8 and plan.driving_indices() == expected
    assert "3-frame driving sequence" in plan.reason
    assert [driving_index(i, 1, policy) for i in range(3)] == [0, 0, 0]


def test_stop_policy_ends_with_the_shorter_and_says_why() -> None:
    """Catches the old silent min(): 'stop' must say the driving sequence limited the video."""
    plan = plan_frame_count(audio_frames=27, driving_frames=7, policy="stop")
    assert plan.num_frames == 7 and "'stop'" in plan.reason and "27" in plan.reason
    assert plan_frame_count(audio_frames=5, driving_frames=7, policy="stop").num_frames == 5
    assert set(LENGTH_POLICIES) == {"loop", "ping-pong", "hold", "stop"}


def test_requested_length_longer_than_the_audio_is_reported() -> None:
    """`--length 100` with 1 s of speech: the plan says what will be produced and why, before any work."""
    plan = plan_frame_count(audio_frames=27, requested=100)
    assert plan.num_frames == 27 and "100 were requested" in plan.reason and "audio covers only 27" in plan.reason
    assert plan_frame_count(audio_frames=27, requested=10).num_frames == 10
    assert plan_frame_count(audio_frames=None, driving_frames=4, requested=9, policy="loop").num_frames == 9
    assert plan_frame_count(audio_frames=None, driving_frames=4, requested=9, policy="stop").num_frames == 4


def test_landmarks_shorter_than_the_audio_loop_by_default(pose_setup) -> None:
    """Catches a sampler that truncates to the landmark count, or feeds other frames than the plan says."""
    models, vae, frames = pose_setup
    short = frames[:3]
    seen = []
    handle = models.face_locator.register_forward_hook(lambda _m, args, _o: seen.append(args[0][0, :, :].clone()))
    try:
        video = generate_video(
            models,
            vae,
            torch.rand(64, 64, 3),
            landmark_images=short,
            audio_features=ZeroAudio(7),
            settings=small(steps=1, cfg=1.0, context_frames=7, context_overlap=0),
        )
    finally:
        handle.remove()
    assert video.frames.shape[0] == 7 and video.plan.num_frames == 7 and "looped" in video.plan.reason
    fed = seen[0].permute(1, 2, 3, 0)  # [F, H, W, 3] as given to the encoder
    assert all(torch.equal(fed[i], short[i % 3]) for i in range(7))
    stopped = generate_video(
        models,
        vae,
        torch.rand(64, 64, 3),
        landmark_images=short,
        audio_features=ZeroAudio(7),
        settings=small(steps=1, cfg=1.0, length_policy="stop"),
    )
    assert stopped.frames.shape[0] == 3


# V2 ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v2_setup(tmp_path_factory):
    case = json.loads((V2_CASE / "case.json").read_text())
    models = load_echomimic(make_weights_folder(V2_CASE, case, tmp_path_factory.mktemp("v2")), "v2")
    vae = load_diffusers_vae(V2_CASE / "vae")
    poses = torch.from_numpy(np.load(V2_CASE / "inputs" / "pose_frames.npy"))  # [7, 96, 64, 3]: non-square
    return models, vae, poses


def test_v2_runs_without_cfg_and_non_square(v2_setup, speech_features) -> None:
    """Official V2 crashes with cfg <= 1 (bank always doubled) and allocates its pose canvas (W, H); both fixed:
    a 64x96 video with cfg 1 runs, and poses drawn at another aspect ratio are refused, not stretched."""
    models, vae, poses = v2_setup
    reference = torch.rand(96, 64, 3, generator=torch.Generator().manual_seed(3))
    settings = small(width=64, height=96, cfg=1.0, steps=1, context_frames=6, context_overlap=2)
    video = generate_video(
        models, vae, reference, audio_features=speech_features, hand_pose_images=poses, settings=settings
    )
    assert video.frames.shape == (speech_features.num_frames, 96, 64, 3)
    assert "looped" in video.plan.reason and video.fps == 24.0
    transposed = poses.permute(0, 2, 1, 3)  # 96 wide, 64 high: another aspect ratio
    with pytest.raises(InputError, match="aspect ratio"):
        generate_video(
            models, vae, reference, audio_features=speech_features, hand_pose_images=transposed, settings=settings
        )
    with pytest.raises(InputError, match="hand-pose images"):
        generate_video(models, vae, reference, audio_features=speech_features, landmark_images=poses, settings=settings)
    with pytest.raises(InputError, match="audio features"):
        generate_video(models, vae, reference, hand_pose_images=poses, settings=settings)


def test_old_pose_images_keyword_still_works_with_a_dated_warning(v2_setup, speech_features) -> None:
    """Catches the rename of generate_video(pose_images=) to hand_pose_images breaking callers of the old
    name: it gives the same frames, with a DeprecationWarning that says when it goes; both at once are refused."""
    models, vae, poses = v2_setup
    reference = torch.rand(96, 64, 3, generator=torch.Generator().manual_seed(3))
    settings = small(width=64, height=96, cfg=1.0, steps=1, context_frames=6, context_overlap=2, length=2)
    new = generate_video(
        models, vae, reference, audio_features=speech_features, hand_pose_images=poses, settings=settings
    )
    with pytest.warns(DeprecationWarning, match="removed in 0.3.0; pass hand_pose_images"):
        old = generate_video(
            models, vae, reference, audio_features=speech_features, pose_images=poses, settings=settings
        )
    assert torch.equal(new.frames, old.frames)
    with pytest.raises(InputError, match="hand_pose_images only"), pytest.warns(DeprecationWarning):
        generate_video(
            models, vae, reference, audio_features=speech_features, pose_images=poses, hand_pose_images=poses
        )


def test_v2_pose_encoder_runs_per_window(v2_setup, speech_features) -> None:
    """Memory flat in video length: the pose encoder never sees more than one window of frames."""
    models, vae, poses = v2_setup
    widest = []
    handle = models.face_locator.register_forward_hook(lambda _m, args, _o: widest.append(args[0].shape[2]))
    try:
        generate_video(
            models,
            vae,
            torch.rand(96, 64, 3),
            audio_features=speech_features,
            hand_pose_images=poses,
            settings=small(width=64, height=96, steps=1, cfg=2.5, context_frames=4, context_overlap=1),
        )
    finally:
        handle.remove()
    assert widest and max(widest) <= 4


# Several windows per UNet call (issue 13) ----------------------------------------------------------------


def _unet_batches(models) -> tuple[list[int], object]:
    batches: list[int] = []
    handle = models.denoising_unet.register_forward_hook(lambda _m, args, _o: batches.append(int(args[0].shape[0])))
    return batches, handle


@pytest.mark.parametrize("cfg", [2.5, 1.0])
def test_window_batch_gives_the_one_at_a_time_video(audio_setup, speech_features, cfg) -> None:
    """Catches batched windows that mix up rows (uncond/cond order, audio or features of another window):
    3 windows per UNet call must give the one-window-per-call video within the parity tolerance."""
    models, vae, reference, mask = audio_setup
    settings = small(cfg=cfg, steps=2, context_frames=4, context_overlap=1, length=10)
    one = generate_video(
        models,
        vae,
        reference,
        audio_features=speech_features,
        face_mask=mask,
        settings=small(**{**settings.__dict__, "window_batch": 1}),
    )
    batches, handle = _unet_batches(models)
    try:
        three = generate_video(
            models,
            vae,
            reference,
            audio_features=speech_features,
            face_mask=mask,
            settings=small(**{**settings.__dict__, "window_batch": 3}),
        )
    finally:
        handle.remove()
    rows = 2 if cfg > 1 else 1
    assert batches[:2] == [3 * rows, 1 * rows]  # 4 windows: one call of 3, one of 1, per step
    assert float((one.frames - three.frames).abs().max()) < 1e-4


def test_window_batch_v2_pose_windows(v2_setup, speech_features) -> None:
    """The same for V2: each window's own pose features must go with its own latents and audio."""
    models, vae, poses = v2_setup
    reference = torch.rand(96, 64, 3, generator=torch.Generator().manual_seed(5))
    base = dict(width=64, height=96, cfg=2.5, steps=1, context_frames=4, context_overlap=1, length=9)
    one = generate_video(
        models,
        vae,
        reference,
        audio_features=speech_features,
        hand_pose_images=poses,
        settings=small(**base, window_batch=1),
    )
    batched = generate_video(
        models,
        vae,
        reference,
        audio_features=speech_features,
        hand_pose_images=poses,
        settings=small(**base, window_batch=4),
    )
    assert float((one.frames - batched.frames).abs().max()) < 1e-4
    assert SamplingSettings().window_batch == 0  # auto by default
    with pytest.raises(InputError, match="window_batch"):
        SamplingSettings(window_batch=-1).validated()


# Input rules (one place for the CLI and the nodes) ------------------------------------------------------


def test_face_mask_rule_is_one_bilinear_resize_of_the_first_mask() -> None:
    """Catches front-end-specific mask handling coming back: a ComfyUI batch [B, H, W], a numpy [H, W] and a
    uint8 mask all become the same [1, 1, 1, H, W] 0..1 mask, resized bilinearly (the official cv2 INTER_LINEAR)."""
    from echomimic.pipeline.inputs import prepare_face_mask

    small_mask = torch.zeros(32, 32)
    small_mask[8:24, 10:22] = 1.0
    expected = torch.nn.functional.interpolate(
        small_mask[None, None], size=(64, 64), mode="bilinear", align_corners=False
    )[0, 0]
    batch = torch.stack([small_mask, torch.zeros(32, 32)])
    for given in (batch, small_mask.numpy(), (small_mask * 255).to(torch.uint8)):
        prepared = prepare_face_mask(given, 64, 64)
        assert prepared.shape == (1, 1, 1, 64, 64)
        assert torch.allclose(prepared[0, 0, 0], expected, atol=1e-6)
    assert torch.equal(prepare_face_mask(small_mask, 32, 32)[0, 0, 0], small_mask)  # right size: untouched
    with pytest.raises(InputError, match="empty"):
        prepare_face_mask(torch.zeros(1, 32, 32), 64, 64)
    with pytest.raises(InputError, match="NaN"):
        prepare_face_mask(torch.full((8, 8), float("nan")), 64, 64)


def test_reference_rule_resizes_and_accepts_uint8() -> None:
    """Catches a reference that reaches the VAE at another size or in 0..255."""
    from echomimic.pipeline.inputs import reference_pixels

    image = torch.rand(1, 48, 40, 3)
    pixels = reference_pixels(image, 64, 56)
    assert pixels.shape == (1, 3, 64, 56) and 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    as_uint8 = (image[0] * 255).round().to(torch.uint8)
    assert torch.allclose(reference_pixels(as_uint8, 48, 40), as_uint8.permute(2, 0, 1)[None].float() / 255)


def test_uint8_drawings_stay_uint8_and_give_the_float_windows() -> None:
    """Catches a 4x memory copy of long uint8 pose sequences, or a per-window conversion that differs from
    drawing / 255 (the official pipeline input)."""
    from echomimic.pipeline.inputs import driving_window, prepare_inputs

    drawings = torch.randint(0, 256, (3, 96, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    settings = SamplingSettings(width=64, height=96)
    as_uint8 = prepare_inputs(
        "hand_poses", torch.rand(96, 64, 3), settings=settings, audio_features=ZeroAudio(5), hand_pose_images=drawings
    )
    as_float = prepare_inputs(
        "hand_poses",
        torch.rand(96, 64, 3),
        settings=settings,
        audio_features=ZeroAudio(5),
        hand_pose_images=drawings.float() / 255,
    )
    assert as_uint8.driving_images.dtype == torch.uint8
    window = [3, 4, 0, 1]
    assert torch.equal(
        driving_window(as_uint8, window, torch.device("cpu")), driving_window(as_float, window, torch.device("cpu"))
    )
    assert as_uint8.plan.driving_indices(window) == [0, 1, 0, 1]  # looped
