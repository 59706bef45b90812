"""What the denoising UNet is conditioned on: the reference image, the face mask or the driving drawings,
and the speech.

The reference goes through the VAE and the reference UNet once per video. The face mask (V1 audio) is
encoded once; landmark / hand-pose drawings (V1 landmarks, V2) are encoded per context window, so memory
stays flat in the video length (the official V2 encodes every frame at once, a reported out-of-memory at
768x768). The conditioning net works frame by frame, so per-window features equal the official slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models.loading import EchoMimicModels
from ..models.unet import ReferenceFeatures
from .inputs import PreparedInputs, driving_window
from .vae import VaeAdapter


@dataclass
class Conditioning:
    """Per-video conditioning, computed once.

    Attributes:
        reference_features: the reference UNet's per-block hidden states (batch 1).
        face_features: [1, C0, 1, h, w] face-locator features of the mask (V1 audio), else None.
    """

    reference_features: ReferenceFeatures
    face_features: torch.Tensor | None


def encode_reference(models: EchoMimicModels, vae: VaeAdapter, prepared: PreparedInputs) -> Conditioning:
    """VAE latent mean of the reference (scaled), the reference UNet once at timestep 0, the face features."""
    device, dtype = models.device, models.dtype
    reference_latents = vae.encode(prepared.reference).to(device=device, dtype=dtype)  # 0..1 pixels
    # Once per video; on a GPU its weights then go back to the CPU, leaving the memory to the denoising UNet.
    reference_features = models.reference_unet.features_then_release(reference_latents, 0, device)
    face_features = None
    if prepared.face_mask is not None:
        face_features = models.face_locator(prepared.face_mask.to(device))
    return Conditioning(reference_features=reference_features, face_features=face_features)


def window_features(
    models: EchoMimicModels, prepared: PreparedInputs, conditioning: Conditioning, window: Sequence[int]
) -> torch.Tensor:
    """Conditioning-net features of the frames in ``window``: [1, C0, len(window) or 1, h, w]."""
    if conditioning.face_features is not None:
        return conditioning.face_features  # one frame, broadcast over the window inside the UNet
    return models.face_locator(driving_window(prepared, window, models.device))


def window_audio(models: EchoMimicModels, prepared: PreparedInputs, window: Sequence[int]) -> torch.Tensor | None:
    """Whisper tokens of the frames in ``window``: [1, len(window), 50, 384], or None without audio."""
    if prepared.audio is None:
        return None
    return prepared.audio.tokens_for_frames(list(window))[None].to(device=models.device, dtype=models.dtype)
