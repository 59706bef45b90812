"""Every rule about the sampler's inputs, in one place: the command line and the nodes only convert types.

:func:`prepare_inputs` checks and normalises what a run gets (reference image, face mask, landmark or
hand-pose images, audio features, settings) and decides the video length (:mod:`.length`). The heavy
work (VAE, UNets) happens later, in :mod:`.conditioning` and :mod:`.sampler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .. import release
from ..errors import InputError
from .length import FramePlan, plan_frame_count
from .settings import SamplingSettings


class AudioTokenSource(Protocol):
    """What the sampler needs from :class:`echomimic.audio.AudioFeatures`."""

    @property
    def num_frames(self) -> int: ...

    @property
    def fps(self) -> float: ...

    def tokens_for_frames(self, frame_indices: Sequence[int]) -> torch.Tensor:
        """-> [len(frame_indices), 50, 384]"""
        ...


# What drives the conditioning net of each kind (release.Variant.conditioning) with drawings, for messages.
DRIVING_NAMES = {"landmarks": "landmark images", "hand_poses": "hand-pose images"}


@dataclass(frozen=True)
class PreparedInputs:
    """A run's inputs after every check, at the output size.

    Attributes:
        settings: validated settings (fps = the audio features' fps when audio is given).
        plan: the video length and why (:class:`FramePlan`).
        reference: [1, 3, H, W] float32 in 0..1, already at the output size.
        face_mask: [1, 1, 1, H, W] float32 in 0..1 (audio variants), else None.
        driving_images: [D, h, w, 3] landmark / hand-pose drawings (pose variants; float32 0..1 or uint8),
            else None; converted and resized to (H, W) per window by :func:`driving_window`.
        audio: the per-frame Whisper tokens, or None.
    """

    settings: SamplingSettings
    plan: FramePlan
    reference: torch.Tensor
    face_mask: torch.Tensor | None
    driving_images: torch.Tensor | None
    audio: AudioTokenSource | None


def _as_tensor(value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return torch.as_tensor(value)


def reference_pixels(image: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """One RGB image [H, W, 3] or [1, H, W, 3], float 0..1 (uint8 0..255 accepted) -> [1, 3, height, width].

    A different size is resized with antialiased bicubic (PIL's resize, as the official scripts do).
    """
    image = _as_tensor(image)
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"The reference image must be one image [H, W, 3], got shape {tuple(image.shape)}.")
    if image.shape[-1] != 3:
        raise InputError(f"The reference image has {image.shape[-1]} channels; convert it to RGB (3 channels) first.")
    pixels = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    pixels = pixels.permute(2, 0, 1)[None]
    if tuple(pixels.shape[-2:]) != (height, width):
        pixels = F.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return pixels.clamp(0.0, 1.0)


def prepare_face_mask(mask: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """A face mask ([H, W], [1, H, W] or a batch [B, H, W] whose first mask is used; 0..1, or uint8 0..255)
    -> [1, 1, 1, height, width] float32 in 0..1.

    The one resize rule: bilinear without antialiasing, as the official crop's ``cv2.resize`` (INTER_LINEAR).
    """
    mask = _as_tensor(mask)
    if mask.dtype == torch.bool:
        mask = mask.float()
    elif mask.dtype == torch.uint8:
        mask = mask.float() / 255.0
    mask = mask.float()
    while mask.ndim > 2 and mask.shape[0] >= 1:
        mask = mask[0]  # a batch of masks (ComfyUI MASK [B, H, W]): the first one
    if mask.ndim != 2 or mask.numel() == 0:
        raise InputError(f"The face mask must be one [H, W] mask, got shape {tuple(_as_tensor(mask).shape)}.")
    if not bool(torch.isfinite(mask).all()):
        raise InputError("The face mask holds NaN or infinite values; give a mask in 0..1.")
    mask = mask.clamp(0.0, 1.0)
    if float(mask.max()) <= 0.0:
        raise InputError(
            "The face mask is empty (all 0). Use the face mask of EchoMimic's face crop, or draw one "
            "over the face (1 where the face may move)."
        )
    if tuple(mask.shape) != (height, width):
        mask = F.interpolate(mask[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return mask[None, None, None].clamp(0.0, 1.0)


def prepare_driving_images(
    images: torch.Tensor | np.ndarray, height: int, width: int, conditioning: release.ConditioningKind
) -> torch.Tensor:
    """Drawn landmarks / hand poses [F, h, w, 3] (or one [h, w, 3]), float 0..1 or uint8 0..255 -> [F, h, w, 3]
    on the CPU (float32, or uint8 kept as is: 4x less memory for long videos).

    Hand poses (V2) must have the video's aspect ratio: they are drawn on an (H, W) canvas, and stretching
    them would move the hands off the body.
    """
    name = DRIVING_NAMES.get(conditioning, "driving images")
    images = _as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or min(images.shape[:3]) < 1:  # no empty frames
        raise InputError(f"The {name} must be [F, H, W, 3] RGB, got shape {tuple(images.shape)}.")
    images = images[..., :3]
    if images.dtype != torch.uint8:  # uint8 drawings stay uint8 (4x less memory), converted per window
        images = images.float()
    if conditioning == "hand_poses":
        frame_h, frame_w = int(images.shape[1]), int(images.shape[2])
        if not math.isclose(frame_w / frame_h, width / height, rel_tol=0.02):
            raise InputError(
                f"The hand-pose images are {frame_w}x{frame_h} but the video is {width}x{height} (another aspect "
                f"ratio); draw the poses at {width}x{height}."
            )
    return images.cpu()


def driving_window(prepared: PreparedInputs, window: Sequence[int], device: torch.device) -> torch.Tensor:
    """The driving drawings of the video frames in ``window`` -> [1, 3, len(window), H, W] float32 0..1."""
    assert prepared.driving_images is not None
    height, width = prepared.settings.height, prepared.settings.width
    frames = prepared.driving_images[prepared.plan.driving_indices(window)].to(device=device)
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames
    frames = frames.permute(0, 3, 1, 2)
    if tuple(frames.shape[-2:]) != (height, width):
        frames = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return frames.clamp(0.0, 1.0).permute(1, 0, 2, 3)[None]


def _check_fps(settings: SamplingSettings, audio: AudioTokenSource | None) -> SamplingSettings:
    """The video's frame rate is the one the audio features were cut for: take it, refuse a contradiction."""
    if audio is None:
        return settings if settings.fps else replace(settings, fps=release.DEFAULT_FPS)
    audio_fps = float(audio.fps)
    if settings.fps and not math.isclose(float(settings.fps), audio_fps, rel_tol=1e-6):
        raise InputError(
            f"The audio features were made for {audio_fps:g} fps but the video is set to {float(settings.fps):g} "
            "fps; compute the audio features at the video's frame rate (or leave fps at 0 to follow them)."
        )
    return replace(settings, fps=audio_fps)


def prepare_inputs(
    conditioning: release.ConditioningKind,
    reference_image: torch.Tensor | np.ndarray,
    *,
    settings: SamplingSettings,
    audio_features: AudioTokenSource | None = None,
    face_mask: torch.Tensor | np.ndarray | None = None,
    landmark_images: torch.Tensor | np.ndarray | None = None,
    hand_pose_images: torch.Tensor | np.ndarray | None = None,
) -> PreparedInputs:
    """Check and normalise one run's inputs for a model whose ``conditioning`` (:class:`release.Variant`) is
    'face_mask', 'landmarks' or 'hand_poses'.

    reference_image: [H, W, 3] (or [1, H, W, 3]) 0..1. face_mask: [H, W] 0..1 (V1 audio variants).
    landmark_images: [F, H, W, 3] drawn face landmarks (V1 landmark variants).
    hand_pose_images: [F, H, W, 3] drawn hand poses (V2 variants).
    """
    if conditioning == "landmarks" and hand_pose_images is not None:
        raise InputError("Hand-pose images drive only the V2 variants; the V1 landmark variants take landmark images.")
    if conditioning == "hand_poses" and landmark_images is not None:
        raise InputError(
            "The V2 variants are driven by hand-pose images, not face landmarks: connect the drawn "
            "hand poses (hand_pose_images)."
        )
    driving_images = hand_pose_images if hand_pose_images is not None else landmark_images
    settings = _check_fps(settings.validated(), audio_features)
    height, width = settings.height, settings.width
    if conditioning == "face_mask":
        if audio_features is None:
            raise InputError("This is an audio-driven variant: connect audio features.")
        if driving_images is not None:
            raise InputError(
                "Landmark or hand-pose images drive only the landmark and V2 variants; load a 'V1 landmarks' or "
                "'V2 semi-body' model to use them."
            )
        if face_mask is None:
            raise InputError("The audio-driven variants need a face mask: use the face mask node or any MASK.")
        mask = prepare_face_mask(face_mask, height, width)
        driving = None
    elif conditioning in DRIVING_NAMES:
        name = DRIVING_NAMES[conditioning]
        if driving_images is None:
            raise InputError(
                f"This variant is driven by {name}: connect them "
                f"({'EchoMimic Draw Landmarks' if conditioning == 'landmarks' else 'drawn hand poses'})."
            )
        if conditioning == "hand_poses" and audio_features is None:
            raise InputError("The V2 variants need audio features (speech) as well as the hand poses.")
        mask = None
        driving = prepare_driving_images(driving_images, height, width, conditioning)
    else:
        raise InputError(f"Unknown conditioning {conditioning!r}.")
    plan = plan_frame_count(
        audio_frames=None if audio_features is None else int(audio_features.num_frames),
        driving_frames=None if driving is None else int(driving.shape[0]),
        requested=settings.length,
        policy=settings.length_policy,
    )
    return PreparedInputs(
        settings=settings,
        plan=plan,
        reference=reference_pixels(reference_image, height, width),
        face_mask=mask,
        driving_images=driving,
        audio=audio_features,
    )
