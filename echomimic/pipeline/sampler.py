"""Chunked video sampling for EchoMimic V1 (audio, landmark) and V2 (semi-body, hand poses).

Numerically this follows the official pipelines (same seed, same video). The modes differ only in the
context shift per step and whether the starting noise is clamped (:data:`CONDITIONING_CONVENTIONS`); the
accelerated variants also round-trip the velocity per window. Deliberate fixes, for every variant:

- overlapping window predictions are always averaged; the official non-accelerated pipelines skip the
  division when ``cfg <= 1``;
- the reference bank is never doubled without CFG, so the landmark and V2 pipelines work with
  ``cfg <= 1`` (the official ones crash there);
- driving drawings are (H, W), so non-square V2 videos work.

Memory stays bounded in video length: the conditioning features are computed per window, the audio
tokens are gathered per window, and frames are decoded in small chunks straight into the output.
The steps: :func:`~.inputs.prepare_inputs` (every input rule), :func:`~.conditioning.encode_reference`,
:func:`denoise` (the loop), :func:`decode_latents`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .. import release
from ..errors import CancelledError, InputError
from ..models.loading import EchoMimicModels
from ..models.unet import DeepCacheCall
from .conditioning import Conditioning, encode_reference, window_audio, window_features
from .context import uniform_windows, windows_at_step
from .deep_cache import FrameFeatureCache, check_depth
from .inputs import AudioTokenSource, PreparedInputs, prepare_inputs
from .length import FramePlan
from .scheduler import make_scheduler, reround_velocity
from .settings import SamplingSettings
from .vae import VaeAdapter, auto_decode_batch

NOISE_CLAMP = 1.5


@dataclass(frozen=True)
class ConditioningConvention:
    """How the official pipeline of a conditioning kind differs: frames rotated per step, clamped starting noise."""

    context_shift: int
    noise_clamp: bool


CONDITIONING_CONVENTIONS: dict[release.ConditioningKind, ConditioningConvention] = {
    "face_mask": ConditioningConvention(context_shift=2, noise_clamp=True),  # V1 audio (and acc)
    "landmarks": ConditioningConvention(context_shift=3, noise_clamp=False),  # V1 landmarks (and acc)
    "hand_poses": ConditioningConvention(context_shift=3, noise_clamp=True),  # V2 semi-body (and acc)
}


@dataclass(frozen=True)
class ProgressInfo:
    step: int  # 0-based denoising step
    steps: int
    window: int  # 0-based window within the step
    windows: int
    done: int  # (step, window) units finished
    total: int


@dataclass(frozen=True)
class RunProgress:
    """Progress over the whole of :func:`generate_video`, in units of work: the reference encoding (1),
    every denoised (step, window), every decoded chunk; ``done == total`` only after the last decode."""

    stage: str  # the unit just finished: "reference", "denoise" or "decode"
    done: int
    total: int


@dataclass
class GeneratedVideo:
    frames: torch.Tensor | None  # [F, H, W, 3] float32 in 0..1, on the CPU; None when handed to on_frames
    fps: float
    plan: FramePlan | None = None  # how many frames were made and why


def initial_latents(seed: int, shape: tuple[int, ...], clamp: bool) -> torch.Tensor:
    """The official starting noise: ``torch.manual_seed(seed)`` CPU stream, fp32, whatever the device.

    The V1 audio and V2 pipelines clamp it to [-1.5, 1.5]; the V1 landmark pipelines do not.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed))
    latents = torch.randn(shape, generator=generator, dtype=torch.float32)
    return latents.clamp(-NOISE_CLAMP, NOISE_CLAMP) if clamp else latents


def predict_windows(
    models: EchoMimicModels,
    prepared: PreparedInputs,
    conditioning: Conditioning,
    latents: torch.Tensor,
    windows: Sequence[Sequence[int]],
    timestep: int,
    use_cfg: bool,
    alphas_cumprod: torch.Tensor,
    deep_cache: DeepCacheCall | None = None,
) -> list[torch.Tensor]:
    """The UNet's velocity for the frames of each window, all windows in one UNet call (they have one length).

    Returns one [2 if CFG (uncond, cond) else 1, 4, len(window), h, w] tensor per window. Batch items are
    independent in the UNet (per-item GroupNorm, per-item temporal attention), so n windows in one call give
    the one-at-a-time numbers up to fp32 rounding. ``deep_cache``: the deep-feature cache's call (rows ordered
    (CFG half, window, frame), as the batch), or None: every layer.
    """
    count = len(windows)
    model_input = torch.cat([latents[:, :, list(window)] for window in windows])
    features = torch.cat([window_features(models, prepared, conditioning, window) for window in windows])
    audio = [window_audio(models, prepared, window) for window in windows]
    audio_tokens = None if audio[0] is None else torch.cat([tokens for tokens in audio if tokens is not None])
    if use_cfg:  # batch [uncond x n, cond x n]: uncond has zero features, zero audio and no reference bank
        model_input = model_input.repeat(2, 1, 1, 1, 1)
        features = torch.cat([torch.zeros_like(features), features])
        if audio_tokens is not None:  # None stays None: the UNet then uses zero tokens for every row
            audio_tokens = torch.cat([torch.zeros_like(audio_tokens), audio_tokens])
    prediction = models.denoising_unet(
        model_input,
        timestep,
        audio_tokens=audio_tokens,
        reference_features=conditioning.reference_features,
        conditioning=features,
        unconditional_items=count if use_cfg else 0,
        **({} if deep_cache is None else {"deep_cache": deep_cache}),
    ).float()
    if models.accelerated:
        prediction = reround_velocity(prediction, model_input, alphas_cumprod, timestep)
    if use_cfg:
        return [prediction[index::count] for index in range(count)]
    return [prediction[index : index + 1] for index in range(count)]


def auto_window_batch(device: torch.device, settings: SamplingSettings, use_cfg: bool) -> int:
    """Windows per UNet call when the settings leave it at 0: 1 on CPU (measured no faster batched there);
    on a GPU as many as its free memory holds by a conservative activation estimate, at most 8."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return 1
    free, _total = torch.cuda.mem_get_info(device)
    # ~1.5 kB of activations per latent pixel per frame per batch item at the widest (320-channel) level in
    # half precision, times 2 for fp32 and the attention peaks: an estimate, kept on the safe side.
    per_window = (
        3_000 * settings.context_frames * (settings.height // 8) * (settings.width // 8) * (2 if use_cfg else 1)
    )
    return max(1, min(8, int(free * 0.5) // max(per_window, 1)))


def denoise(
    models: EchoMimicModels,
    prepared: PreparedInputs,
    conditioning: Conditioning,
    *,
    progress: Callable[[ProgressInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """The denoising loop over context windows -> final latents [1, 4, F, h, w].

    With ``settings.deep_cache_interval`` > 1 the deep-feature cache (:mod:`.deep_cache`) runs: whole steps are
    full or cached, never single windows, and the cache is kept per frame and CFG half.
    """
    settings, device = prepared.settings, models.device
    convention = CONDITIONING_CONVENTIONS[models.conditioning]
    num_frames = prepared.plan.num_frames
    scheduler = make_scheduler(models.config.scheduler_kwargs or None)
    scheduler.set_timesteps(settings.steps, device="cpu")
    timesteps = [int(t) for t in scheduler.timesteps]
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    use_cfg = settings.cfg > 1.0

    latent_shape = (1, 4, num_frames, settings.height // 8, settings.width // 8)
    latents = initial_latents(settings.seed, latent_shape, clamp=convention.noise_clamp)
    latents = (latents * scheduler.init_noise_sigma).to(device)
    base_windows = uniform_windows(num_frames, settings.context_frames, settings.context_overlap)
    window_batch = settings.window_batch or auto_window_batch(torch.device(device), settings, use_cfg)
    total, done = denoise_unit_count(settings, num_frames), 0  # one unit per (step, window)
    cache = None
    if settings.deep_cache_interval > 1:
        settings.validated(models.config.motion.max_frames, variant=models.variant)  # refused when accelerated
        check_depth(settings.deep_cache_depth, models.denoising_unet.skip_count)
        cache = FrameFeatureCache(
            settings.deep_cache_interval, settings.deep_cache_depth, num_frames, 2 if use_cfg else 1
        )
    for step_index, timestep in enumerate(timesteps):
        windows = windows_at_step(base_windows, step_index, convention.context_shift, num_frames)
        prediction_sum = torch.zeros((2 if use_cfg else 1, *latent_shape[1:]), device=device)
        counts = torch.zeros((1, 1, num_frames, 1, 1), device=device)
        full_step = cache is not None and cache.is_full_step(step_index)
        if cache is not None and full_step:
            cache.start_full_step()
        for first in range(0, len(windows), window_batch):
            if should_cancel is not None and should_cancel():
                raise CancelledError("Sampling was cancelled.")
            group = windows[first : first + window_batch]
            call = None if cache is None else cache.call(step_index, group)
            predictions = predict_windows(
                models, prepared, conditioning, latents, group, timestep, use_cfg, alphas_cumprod, call
            )
            if cache is not None and call is not None and full_step:
                cache.store(group, call)
            for window_index, (window, prediction) in enumerate(zip(group, predictions), start=first):
                prediction_sum[:, :, window] += prediction
                counts[:, :, window] += 1
                done += 1
                if progress is not None:
                    progress(ProgressInfo(step_index, len(timesteps), window_index, len(windows), done, total))
        if cache is not None and full_step:
            cache.finish_full_step()
        averaged = prediction_sum / counts  # always averaged (deliberate: the official skips it without CFG)
        if use_cfg:
            unconditional, conditional = averaged.chunk(2)
            averaged = unconditional + settings.cfg * (conditional - unconditional)
        latents = scheduler.step(averaged, timestep, latents, eta=0.0).prev_sample
        if on_step is not None:
            on_step(step_index, latents)
    return latents


@torch.inference_mode()
def generate_video(
    models: EchoMimicModels,
    vae: VaeAdapter,
    reference_image: torch.Tensor,
    *,
    audio_features: AudioTokenSource | None = None,
    face_mask: torch.Tensor | None = None,
    landmark_images: torch.Tensor | None = None,
    hand_pose_images: torch.Tensor | None = None,
    settings: SamplingSettings | None = None,
    progress: Callable[[ProgressInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    on_frames: Callable[[torch.Tensor], None] | None = None,
    run_progress: Callable[[RunProgress], None] | None = None,
    pose_images: torch.Tensor | None = None,
) -> GeneratedVideo:
    """Animate ``reference_image``.

    reference_image: [H, W, 3] float 0..1 (resized to the output size when it differs).
    audio_features: per-frame whisper tokens; required by the audio and V2 variants, optional for the V1
        landmark variants (no audio = the mouth follows the landmarks only).
    face_mask: [H, W] 0..1, the face-locator input of the V1 audio variants.
    landmark_images: [F, H, W, 3] 0..1 drawn face landmarks, the input of the V1 landmark variants.
    hand_pose_images: [F, H, W, 3] 0..1 drawn hand poses, the pose-encoder input of the V2 variants.
    settings: default the variant's official ones; ``length_policy`` says how a shorter landmark / pose
        sequence fills the video (see :mod:`.length`); ``GeneratedVideo.plan`` reports the outcome.
    on_step: called after every denoising step with (step index, latents [1, 4, F, h, w]), e.g. for previews.
    on_frames: receives the decoded frames chunk by chunk ([n, H, W, 3] float32 0..1 on the CPU, in order)
        instead of one tensor of the whole video, so that memory does not grow with the video's length
        (the command line pipes them into the mp4); ``GeneratedVideo.frames`` is then None.
    progress: after every (step, window) of the denoising only (:class:`ProgressInfo`).
    run_progress: after every unit of the whole call (:class:`RunProgress`), for a bar that ends with it.
    Raises :class:`CancelledError` when ``should_cancel()`` turns true (checked at every window and
    before every decoded chunk).
    pose_images: the old name of ``hand_pose_images`` (deprecated 2026-12-04, removed in 0.3.0).
    """
    if pose_images is not None:
        import warnings

        warnings.warn(
            "generate_video(pose_images=...) is deprecated since 2026-12-04 and is removed in 0.3.0; "
            "pass hand_pose_images=... instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        if hand_pose_images is not None:
            raise InputError("Pass hand_pose_images only (pose_images is its old name).")
        hand_pose_images = pose_images
    prepared = prepare_inputs(
        models.conditioning,
        reference_image,
        settings=settings or SamplingSettings.defaults_for(models.variant),
        audio_features=audio_features,
        face_mask=face_mask,
        landmark_images=landmark_images,
        hand_pose_images=hand_pose_images,
    )
    return generate_prepared(
        models,
        vae,
        prepared,
        progress=progress,
        should_cancel=should_cancel,
        on_step=on_step,
        on_frames=on_frames,
        run_progress=run_progress,
    )


def generate_prepared(
    models: EchoMimicModels,
    vae: VaeAdapter,
    prepared: PreparedInputs,
    *,
    progress: Callable[[ProgressInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    on_frames: Callable[[torch.Tensor], None] | None = None,
    run_progress: Callable[[RunProgress], None] | None = None,
) -> GeneratedVideo:
    """:func:`generate_video` from inputs already checked by :func:`~.inputs.prepare_inputs` (for
    :mod:`echomimic.run`, which plans the run before the models load); the callbacks as there."""
    max_window = models.config.motion.max_frames
    if prepared.settings.context_frames > max_window:
        raise InputError(f"context_frames can be at most {max_window} (the motion modules' span).")
    num_frames = prepared.plan.num_frames
    decode_batch = prepared.settings.decode_batch or auto_decode_batch(models.device)
    denoise_units = denoise_unit_count(prepared.settings, num_frames)
    total = 1 + denoise_units + -(-num_frames // decode_batch)  # reference + (step, window)s + decoded chunks

    def report(stage: str, done: int) -> None:
        if run_progress is not None:
            run_progress(RunProgress(stage, done, total))

    def report_denoising(info: ProgressInfo) -> None:
        if progress is not None:
            progress(info)
        report("denoise", 1 + info.done)

    conditioning = encode_reference(models, vae, prepared)
    report("reference", 1)
    latents = denoise(
        models, prepared, conditioning, progress=report_denoising, should_cancel=should_cancel, on_step=on_step
    )
    fps = float(prepared.settings.fps)

    def decoded_chunks() -> Iterator[torch.Tensor]:
        for index, chunk in enumerate(iter_decoded_frames(vae, latents, decode_batch, should_cancel), start=1):
            yield chunk
            report("decode", 1 + denoise_units + index)  # after the consumer took the chunk

    if on_frames is not None:
        for chunk in decoded_chunks():
            on_frames(chunk)
        return GeneratedVideo(frames=None, fps=fps, plan=prepared.plan)
    return GeneratedVideo(frames=gather_frames(decoded_chunks(), num_frames), fps=fps, plan=prepared.plan)


def denoise_unit_count(settings: SamplingSettings, num_frames: int) -> int:
    """How many (step, window) units :func:`denoise` reports for ``num_frames`` frames."""
    return settings.steps * len(uniform_windows(num_frames, settings.context_frames, settings.context_overlap))


def iter_decoded_frames(
    vae: VaeAdapter, latents: torch.Tensor, batch: int = 0, should_cancel: Callable[[], bool] | None = None
) -> Iterator[torch.Tensor]:
    """[1, 4, F, h, w] scaled latents -> chunks [n <= batch, 8h, 8w, 3] float32 0..1 on the CPU, in order
    (``batch`` 0: :func:`~.vae.auto_decode_batch` for the latents' device)."""
    batch = batch or auto_decode_batch(latents.device)
    for start in range(0, latents.shape[2], batch):
        if should_cancel is not None and should_cancel():
            raise CancelledError("Decoding was cancelled.")
        chunk = latents[0, :, start : start + batch].permute(1, 0, 2, 3)
        yield vae.decode(chunk).float().permute(0, 2, 3, 1).cpu()  # the adapter gives 0..1 pixels


def gather_frames(chunks: Iterable[torch.Tensor], num_frames: int) -> torch.Tensor:
    """Decoded chunks [n, H, W, 3], in order -> one [num_frames, H, W, 3] float32 tensor, filled chunk by chunk."""
    frames: torch.Tensor | None = None
    start = 0
    for decoded in chunks:
        if frames is None:
            frames = torch.empty((num_frames, *decoded.shape[1:]), dtype=torch.float32)
        frames[start : start + decoded.shape[0]] = decoded
        start += decoded.shape[0]
    assert frames is not None
    return frames


def decode_latents(
    vae: VaeAdapter, latents: torch.Tensor, batch: int = 0, should_cancel: Callable[[], bool] | None = None
) -> torch.Tensor:
    """[1, 4, F, h, w] scaled latents -> [F, 8h, 8w, 3] float32 0..1 on the CPU, filled chunk by chunk."""
    return gather_frames(iter_decoded_frames(vae, latents, batch, should_cancel), latents.shape[2])


__all__ = [
    "CONDITIONING_CONVENTIONS",
    "GeneratedVideo",
    "ProgressInfo",
    "RunProgress",
    "SamplingSettings",
    "decode_latents",
    "denoise",
    "generate_video",
    "iter_decoded_frames",
    "initial_latents",
]
