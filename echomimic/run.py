"""What a V1/V2 run is, as data: the one recipe of the command line and the ComfyUI nodes.

A :class:`RunRequest` holds everything a run needs, in library types. :func:`prepare_run` applies every rule
that comes before the models: the face-mask fallback, the input checks, the frame plan and the sound trimmed to
it, and says what will be made and why. :func:`run_prepared` samples it and returns the frames, the fps and the
trimmed sound. The CLI reads files into a request and writes the result; the sampler node converts ComfyUI
types into a request and back. Neither decides anything about the run itself, so both give the same video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import release
from .audio.features import Speech
from .errors import InputError
from .pipeline.inputs import PreparedInputs, prepare_inputs
from .pipeline.length import FramePlan
from .pipeline.settings import SamplingSettings

if TYPE_CHECKING:
    from .audio import AudioFeatures
    from .models.loading import EchoMimicModels
    from .pipeline.sampler import GeneratedVideo, ProgressInfo, RunProgress
    from .pipeline.vae import VaeAdapter

ImageArray = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class RunRequest:
    """One run of a V1/V2 variant.

    Attributes:
        variant: a release variant name (``release.VARIANT_NAMES``: audio, pose_acc, v2, ...).
        picture: the portrait to animate, [H, W, 3] float 0..1 at any size (resized by the library's rule).
        settings: from :meth:`SamplingSettings.for_variant` (validated here).
        audio_features: the speech's Whisper features (required except for the V1 landmark variants).
        speech: the speech itself, trimmed to the video for the result; None: the audio features' own
            (:attr:`AudioFeatures.speech`), or no sound.
        face_mask: [H, W] 0..1 in the picture's coordinates (V1 audio variants); None: detected in the picture.
        landmark_images: [F, h, w, 3] drawn face landmarks (V1 landmark variants).
        hand_pose_images: [F, h, w, 3] drawn hand poses (V2 variants).
    """

    variant: str
    picture: ImageArray
    settings: SamplingSettings
    audio_features: AudioFeatures | None = None
    speech: Speech | None = None
    face_mask: ImageArray | None = None
    landmark_images: ImageArray | None = None
    hand_pose_images: ImageArray | None = None

    @property
    def conditioning(self) -> release.ConditioningKind:
        """What drives the conditioning net: "face_mask", "landmarks" or "hand_poses" (:class:`release.Variant`)."""
        return release.variant(self.variant).conditioning


def needs_face_detection(request: RunRequest) -> bool:
    """Whether :func:`prepare_run` runs the face detector: an audio variant given no face mask (and no
    drawings, which it refuses anyway)."""
    drawings = request.landmark_images is not None or request.hand_pose_images is not None
    return request.conditioning == "face_mask" and request.face_mask is None and not drawings


def detected_face_mask(picture: ImageArray, width: int, height: int, models_dir: str | Path | None) -> np.ndarray:
    """The face-locator mask of ``picture`` itself (no crop), as the Face Mask and Crop node makes it:
    [H, W] float32 0..1. ``models_dir``: where the face detector's MediaPipe file is (None: bundled)."""
    from .landmarks import face_mask_and_crop

    pixels = picture.detach().cpu().float().numpy() if isinstance(picture, torch.Tensor) else np.asarray(picture)
    return face_mask_and_crop(pixels, crop=False, size=(width, height), models_dir=models_dir).mask


@dataclass(frozen=True)
class PreparedRun:
    """A request after every rule that comes before the models.

    Attributes:
        variant: the request's variant.
        inputs: the checked inputs at the output size (reference, mask, drawings, settings with the fps).
        speech: the speech trimmed (or zero-padded) to exactly the video's frames, or None.
    """

    variant: str
    inputs: PreparedInputs
    speech: Speech | None

    @property
    def plan(self) -> FramePlan:
        return self.inputs.plan

    @property
    def settings(self) -> SamplingSettings:
        return self.inputs.settings

    def describe(self) -> list[str]:
        """What will be made and why, for the user (the CLI prints it, the node logs it)."""
        settings, reason = self.settings, self.plan.reason
        steps = f"{settings.steps} step" + ("" if settings.steps == 1 else "s")
        return [
            f"generating {reason[0].lower()}{reason[1:]}",
            f"  at {settings.width}x{settings.height}, {steps}, cfg {settings.cfg}, seed {settings.seed}",
        ]


def prepare_run(
    request: RunRequest, *, face_detector_dir: Callable[[], str | Path | None] | None = None
) -> PreparedRun:
    """Check ``request`` and plan it (no model is needed). ``face_detector_dir`` gives the folder of the face
    detector's MediaPipe file; it is called only when a mask must be detected (:func:`needs_face_detection`),
    so that a run which detects nothing downloads nothing. Raises :class:`InputError` saying what to change."""
    settings = request.settings.validated()
    face_mask = request.face_mask
    if needs_face_detection(request):
        models_dir = None if face_detector_dir is None else face_detector_dir()
        face_mask = detected_face_mask(request.picture, settings.width, settings.height, models_dir)
    inputs = prepare_inputs(
        request.conditioning,
        request.picture,
        settings=settings,
        audio_features=request.audio_features,
        face_mask=face_mask,
        landmark_images=request.landmark_images,
        hand_pose_images=request.hand_pose_images,
    )
    speech = request.speech
    if speech is None and request.audio_features is not None:
        speech = request.audio_features.speech
    if speech is not None:
        from .audio import trim_audio_to_frames

        trimmed = trim_audio_to_frames(speech.waveform, speech.sample_rate, inputs.plan.num_frames, inputs.settings.fps)
        speech = replace(speech, waveform=trimmed)
    return PreparedRun(variant=request.variant, inputs=inputs, speech=speech)


@dataclass
class RunResult:
    """A finished run: ``frames`` [F, H, W, 3] float32 0..1 on the CPU (None when they went to ``on_frames``),
    ``fps``, the frame ``plan`` and the ``speech`` trimmed to the frames (None without speech)."""

    frames: torch.Tensor | None
    fps: float
    plan: FramePlan
    speech: Speech | None


def run_prepared(
    prepared: PreparedRun,
    models: EchoMimicModels,
    vae: VaeAdapter,
    *,
    progress: Callable[[ProgressInfo], None] | None = None,
    run_progress: Callable[[RunProgress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    on_frames: Callable[[torch.Tensor], None] | None = None,
) -> RunResult:
    """Sample a prepared run with ``models`` of its variant; the callbacks as for
    :func:`echomimic.pipeline.generate_video`."""
    from .pipeline.sampler import generate_prepared

    if models.conditioning != release.variant(prepared.variant).conditioning:
        raise InputError(
            f"The run was prepared for {release.variant(prepared.variant).label} but the loaded models are "
            f"{release.variant(models.variant).label}; load the models of the run's variant."
        )
    video: GeneratedVideo = generate_prepared(
        models,
        vae,
        prepared.inputs,
        progress=progress,
        run_progress=run_progress,
        should_cancel=should_cancel,
        on_step=on_step,
        on_frames=on_frames,
    )
    return RunResult(frames=video.frames, fps=video.fps, plan=prepared.plan, speech=prepared.speech)
