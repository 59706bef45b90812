"""Audio features: ComfyUI AUDIO (from LoadAudio, a text-to-speech node, a video) -> Whisper chunks per frame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..echomimic.release import DEFAULT_LENGTH_POLICY, LENGTH_POLICIES, MAX_FPS
from .common import AUDIO_ENCODER_TYPE, AUDIO_FEATURES_TYPE, CATEGORY, EchoMimicNodeError, tooltip, user_errors
from .model_nodes import LoadedAudioEncoder, load_patched_models

if TYPE_CHECKING:
    import torch

    from .comfy_types import ComfyAudio


def audio_waveform(audio: ComfyAudio) -> tuple[torch.Tensor, int]:
    """(waveform [B, C, T] float, sample rate) of a ComfyUI AUDIO dict, or a clear error."""
    import torch

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise EchoMimicNodeError(
            "No audio was given. Connect an AUDIO output (Load Audio, a text-to-speech node, or the audio of "
            "Get Video Components); if it comes from a video, check that the video has a sound track."
        )
    waveform = torch.as_tensor(audio["waveform"])
    while waveform.ndim < 3:  # [T] or [C, T] from some nodes
        waveform = waveform.unsqueeze(0)
    if waveform.numel() == 0 or waveform.shape[-1] == 0:
        raise EchoMimicNodeError("The audio is empty (0 samples). Give a clip with speech, at least a second long.")
    return waveform.float(), int(audio["sample_rate"])


class EchoMimicAudioFeatures:
    DESCRIPTION = (
        "Turns speech into the per-frame Whisper features that drive the mouth, counts the video frames the "
        "audio covers, and returns the audio trimmed to exactly those frames (for Create Video)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "audio": (
                    "AUDIO",
                    tooltip(
                        "Speech: from Load Audio, a text-to-speech node, or Get Video Components. "
                        "Any sample rate, mono or stereo (the first channel is used)."
                    ),
                ),
                "audio_encoder": (AUDIO_ENCODER_TYPE, tooltip("From Load EchoMimic Audio Encoder.")),
                "fps": (
                    "FLOAT",
                    tooltip(
                        "Frame rate of the video to generate (official: 24). Connect Get Video "
                        "Components' fps to follow a driving video.",
                        default=24.0,
                        min=1.0,
                        max=MAX_FPS,  # the draw nodes' audio bound counts on it
                        step=1.0,
                    ),
                ),
            },
            "optional": {
                "driving_images": (
                    "IMAGE",
                    tooltip(
                        "The landmark or hand-pose images the sampler gets, so frame_count and the trimmed audio match "
                        "the video exactly when they are shorter than the speech (with the 'stop' policy)."
                    ),
                ),
                "length": (
                    "INT",
                    tooltip(
                        "The sampler's length (0 = follow the audio): the same value gives the same "
                        "frame_count as the video.",
                        default=0,
                        min=0,
                        max=100000,
                    ),
                ),
                "length_policy": (
                    list(LENGTH_POLICIES),
                    tooltip(
                        "The sampler's length policy, for the same frame count (loop, ping-pong, hold or stop).",
                        default=DEFAULT_LENGTH_POLICY,
                    ),
                ),
            },
        }

    RETURN_TYPES = (AUDIO_FEATURES_TYPE, "INT", "AUDIO")
    RETURN_NAMES = ("audio_features", "frame_count", "audio")
    OUTPUT_TOOLTIPS = (
        "Whisper features per video frame, for the EchoMimic Sampler.",
        "How many video frames the sampler will make from this audio (with the optional driving images, length "
        "and policy given to it too).",
        "The input audio trimmed to frame_count frames: connect it to Create Video so picture and sound match.",
    )
    FUNCTION = "compute"
    CATEGORY = CATEGORY

    @user_errors
    def compute(
        self,
        audio: ComfyAudio,
        audio_encoder: LoadedAudioEncoder,
        fps: float,
        driving_images: torch.Tensor | None = None,
        length: int = 0,
        length_policy: str = DEFAULT_LENGTH_POLICY,
    ) -> tuple[Any, int, dict[str, Any]]:
        from ..echomimic.audio import compute_audio_features, trim_audio_to_frames
        from ..echomimic.pipeline.length import plan_frame_count

        waveform, sample_rate = audio_waveform(audio)
        import torch

        load_patched_models(audio_encoder.patcher)
        with torch.no_grad():  # inference only: keep no autograd graph of the encoder
            features = compute_audio_features(waveform, sample_rate, audio_encoder.encoder, float(fps))
        # The sampler's own length rule, so the sound ends with the picture (never 2 frames past it).
        driving = None if driving_images is None else torch.as_tensor(driving_images)
        driving_frames = None if driving is None else (int(driving.shape[0]) if driving.ndim == 4 else 1)
        plan = plan_frame_count(
            audio_frames=int(features.num_frames),
            driving_frames=driving_frames,
            requested=int(length),
            policy=str(length_policy),
        )
        frame_count = plan.num_frames
        trimmed = trim_audio_to_frames(waveform, sample_rate, frame_count, float(fps))
        return (features, frame_count, {"waveform": trimmed, "sample_rate": sample_rate})


NODE_CLASS_MAPPINGS = {"EchoMimicAudioFeatures": EchoMimicAudioFeatures}
NODE_DISPLAY_NAME_MAPPINGS = {"EchoMimicAudioFeatures": "EchoMimic Audio Features"}
