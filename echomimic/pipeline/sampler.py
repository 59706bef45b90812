"""Chunked video sampling for EchoMimic V1 (audio, landmark and audio + landmark driven).

Numerically this follows the official pipelines (same seed, same video), with two deliberate fixes:

- overlapping window predictions are always averaged; the official non-accelerated pipelines skip the
  division when ``cfg <= 1``;
- the landmark pipeline works with ``cfg <= 1`` (the official one crashes there).

Memory stays bounded in video length: the face-locator/landmark features are computed per window,
the audio tokens are gathered per window, and frames are decoded in small chunks straight into the
output tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import CancelledError, InputError
from ..models.loading import EchoMimicModels
from .context import uniform_windows, windows_at_step
from .scheduler import make_scheduler, reround_velocity
from .settings import SamplingSettings
from .vae import VaeAdapter

NOISE_CLAMP = 1.5
CONTEXT_SHIFT = {"audio": 2, "pose": 3}


class AudioTokenSource(Protocol):
    """What the sampler needs from :class:`echomimic.audio.AudioFeatures`."""

    @property
    def num_frames(self) -> int: ...

    def tokens_for_frames(self, frame_indices: Sequence[int]) -> torch.Tensor:
        """-> [len(frame_indices), 50, 384]"""
        ...


@dataclass(frozen=True)
class ProgressInfo:
    step: int  # 0-based denoising step
    steps: int
    window: int  # 0-based window within the step
    windows: int
    done: int  # (step, window) units finished
    total: int


@dataclass
class GeneratedVideo:
    frames: torch.Tensor  # [F, H, W, 3] float32 in 0..1, on the CPU
    fps: float


def _image_tensor(image: torch.Tensor, name: str) -> torch.Tensor:
    """Accept [H, W, C] or [1, H, W, C] float 0..1 -> [H, W, 3] float32."""
    image = torch.as_tensor(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise InputError(f"The {name} must be one image [H, W, 3], got shape {tuple(image.shape)}.")
    if image.shape[-1] != 3:
        raise InputError(
            f"The {name} has {image.shape[-1]} channels; convert it to RGB (3 channels) first."
        )
    return image.float()


def _resize(images: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, height, width]."""
    if images.shape[-2:] == (height, width):
        return images
    if mode == "nearest":
        return F.interpolate(images, size=(height, width), mode="nearest")
    return F.interpolate(images, size=(height, width), mode=mode, antialias=True, align_corners=False)


def _frame_count(models: EchoMimicModels, settings: SamplingSettings, audio: AudioTokenSource | None,
                 landmark_images: torch.Tensor | None) -> int:
    available = []
    if audio is not None:
        if audio.num_frames < 1:
            raise InputError("The audio is shorter than one video frame; use a longer clip.")
        available.append(audio.num_frames)
    if landmark_images is not None:
        if settings.length > landmark_images.shape[0]:
            raise InputError(
                f"The landmark sequence has {landmark_images.shape[0]} frames but {settings.length} were "
                "requested: lower the length, or use a longer driving video / repeat the landmarks."
            )
        available.append(landmark_images.shape[0])
    if not available:
        raise InputError("Give audio features (or landmark images for a landmark variant) to drive the video.")
    length = min(available)
    if settings.length:
        length = min(length, settings.length)
    return length


def initial_latents(seed: int, shape: tuple[int, ...], clamp: bool) -> torch.Tensor:
    """The official starting noise: ``torch.manual_seed(seed)`` CPU stream, fp32, whatever the device.

    The audio-driven pipelines clamp it to [-1.5, 1.5]; the landmark pipelines do not.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed))
    latents = torch.randn(shape, generator=generator, dtype=torch.float32)
    return latents.clamp(-NOISE_CLAMP, NOISE_CLAMP) if clamp else latents


@torch.inference_mode()
def generate_video(
    models: EchoMimicModels,
    vae: VaeAdapter,
    reference_image: torch.Tensor,
    *,
    audio_features: AudioTokenSource | None = None,
    face_mask: torch.Tensor | None = None,
    landmark_images: torch.Tensor | None = None,
    settings: SamplingSettings | None = None,
    progress: Callable[[ProgressInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> GeneratedVideo:
    """Animate ``reference_image``.

    reference_image: [H, W, 3] float 0..1 (resized to the output size when it differs).
    audio_features: per-frame whisper tokens; required by the audio variants, optional for the
        landmark variants (no audio = the mouth follows the landmarks only).
    face_mask: [H, W] 0..1, the face-locator input of the audio variants.
    landmark_images: [F, H, W, 3] 0..1 drawn landmarks, the face-locator input of the landmark variants.
    on_step: called after every denoising step with (step index, latents [1, 4, F, h, w]), e.g. for previews.
    Raises :class:`CancelledError` when ``should_cancel()`` turns true (checked at every window).
    """
    settings = (settings or SamplingSettings.defaults_for(models.variant)).validated()
    device, dtype = models.device, models.dtype
    height, width = settings.height, settings.width
    max_window = models.config.motion.max_frames
    if settings.context_frames > max_window:
        raise InputError(f"context_frames can be at most {max_window} (the motion modules' span).")

    reference = _image_tensor(reference_image, "reference image")
    if models.mode == "audio":
        if audio_features is None:
            raise InputError("This is an audio-driven variant: connect audio features.")
        if landmark_images is not None:
            raise InputError(
                "Landmark images drive only the landmark variants; load a 'V1 landmarks' model to use them."
            )
        if face_mask is None:
            raise InputError("The audio-driven variants need a face mask: use the face mask node or any MASK.")
        mask = torch.as_tensor(face_mask).float()
        mask = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
        if mask.ndim != 2:
            raise InputError(f"The face mask must be one [H, W] mask, got shape {tuple(mask.shape)}.")
    else:
        if landmark_images is None:
            raise InputError("This is a landmark-driven variant: connect drawn landmark images.")
        landmark_images = torch.as_tensor(landmark_images)
        if landmark_images.ndim != 4 or landmark_images.shape[-1] != 3:
            raise InputError(
                f"Landmark images must be [F, H, W, 3] RGB, got shape {tuple(landmark_images.shape)}."
            )
    num_frames = _frame_count(models, settings, audio_features, landmark_images)

    scheduler = make_scheduler(models.config.scheduler_kwargs or None)
    scheduler.set_timesteps(settings.steps, device="cpu")
    timesteps = [int(t) for t in scheduler.timesteps]
    use_cfg = settings.cfg > 1.0
    shift = CONTEXT_SHIFT[models.mode]

    # Reference: VAE latent mean, then the reference UNet once at timestep 0.
    pixels = _resize(reference.permute(2, 0, 1)[None], height, width, "bicubic").clamp(0, 1)
    reference_latents = vae.encode(pixels * 2.0 - 1.0).to(device=device, dtype=dtype)
    reference_features = models.reference_unet(reference_latents, 0)

    latent_shape = (1, 4, num_frames, height // 8, width // 8)
    latents = initial_latents(settings.seed, latent_shape, clamp=models.mode == "audio")
    latents = (latents * scheduler.init_noise_sigma).to(device)

    if models.mode == "audio":
        mask = _resize(mask[None, None], height, width, "nearest")
        face_features = models.face_locator(mask[:, :, None].to(device))  # [1, C0, 1, h, w]
    batch_flags = torch.tensor([False, True], device=device) if use_cfg else None
    alphas_cumprod = scheduler.alphas_cumprod.to(device)

    base_windows = uniform_windows(num_frames, settings.context_frames, settings.context_overlap)
    total = len(timesteps) * len(base_windows)
    done = 0
    for step_index, timestep in enumerate(timesteps):
        windows = windows_at_step(base_windows, step_index, shift, num_frames)
        prediction_sum = torch.zeros((2 if use_cfg else 1, *latent_shape[1:]), device=device)
        counts = torch.zeros((1, 1, num_frames, 1, 1), device=device)
        for window_index, window in enumerate(windows):
            if should_cancel is not None and should_cancel():
                raise CancelledError("Sampling was cancelled.")
            model_input = latents[:, :, window]
            if models.mode == "audio":
                conditioning = face_features
            else:
                frames = landmark_images[window].to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
                frames = _resize(frames, height, width, "bilinear").clamp(0, 1)
                conditioning = models.face_locator(frames.permute(1, 0, 2, 3)[None])
            audio_tokens = None
            if audio_features is not None:
                audio_tokens = audio_features.tokens_for_frames(window)[None].to(device=device, dtype=dtype)
            if use_cfg:
                model_input = model_input.repeat(2, 1, 1, 1, 1)
                conditioning = torch.cat([torch.zeros_like(conditioning), conditioning])
                if audio_tokens is not None:  # None stays None: the UNet then uses zero tokens for both rows
                    audio_tokens = torch.cat([torch.zeros_like(audio_tokens), audio_tokens])
            prediction = models.denoising_unet(
                model_input,
                timestep,
                audio_tokens=audio_tokens,
                reference_features=reference_features,
                conditioning=conditioning,
                reference_batch=batch_flags,
            ).float()
            if models.accelerated:
                prediction = reround_velocity(prediction, model_input, alphas_cumprod, timestep)
            prediction_sum[:, :, window] = prediction_sum[:, :, window] + prediction
            counts[:, :, window] = counts[:, :, window] + 1
            done += 1
            if progress is not None:
                progress(ProgressInfo(step_index, len(timesteps), window_index, len(windows), done, total))
        averaged = prediction_sum / counts
        if use_cfg:
            unconditional, conditional = averaged.chunk(2)
            velocity = unconditional + settings.cfg * (conditional - unconditional)
        else:
            velocity = averaged
        latents = scheduler.step(velocity, timestep, latents, eta=0.0).prev_sample
        if on_step is not None:
            on_step(step_index, latents)

    frames = decode_latents(vae, latents, settings.decode_batch, should_cancel)
    return GeneratedVideo(frames=frames, fps=float(settings.fps))


def decode_latents(vae: VaeAdapter, latents: torch.Tensor, batch: int = 4,
                   should_cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """[1, 4, F, h, w] scaled latents -> [F, 8h, 8w, 3] float32 0..1 on the CPU, ``batch`` frames at a time."""
    num_frames = latents.shape[2]
    frames: torch.Tensor | None = None
    for start in range(0, num_frames, batch):
        if should_cancel is not None and should_cancel():
            raise CancelledError("Decoding was cancelled.")
        chunk = latents[0, :, start:start + batch].permute(1, 0, 2, 3)
        decoded = (vae.decode(chunk).float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()
        if frames is None:
            frames = torch.empty((num_frames, *decoded.shape[1:]), dtype=torch.float32)
        frames[start:start + decoded.shape[0]] = decoded
    assert frames is not None
    return frames


__all__ = [
    "GeneratedVideo",
    "ProgressInfo",
    "SamplingSettings",
    "decode_latents",
    "generate_video",
    "initial_latents",
]
