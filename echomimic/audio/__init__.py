"""Audio path: any ComfyUI AUDIO -> EchoMimic's per-video-frame Whisper-tiny audio tokens.

Public API (submodules load on first use, so importing this package costs nothing):

- ``load_whisper_encoder(path, device="cpu", dtype=torch.float32) -> WhisperEncoder``
- ``compute_audio_features(waveform, sample_rate, encoder, fps) -> AudioFeatures``
- ``AudioFeatures``: ``whisper_features`` [T, 5, 384], ``chunk_indices`` [N, 10], ``fps``,
  ``num_frames``, ``tokens_for_frames(frames)`` -> [len, 50, 384], ``audio_tokens`` [N, 50, 384]
- ``log_mel_spectrogram(samples_16k) -> [80, n_frames]`` (``log_mel_segments``: the same in blocks)
- ``resample_to_16k(waveform, sample_rate) -> [T']`` (mono, ffmpeg's swr through PyAV)
- ``chunk_indices(num_rows, fps) -> [N, 10]``
- ``trim_audio_to_frames(waveform, sample_rate, num_frames, fps)``
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AudioFeatures": "features",
    "compute_audio_features": "features",
    "encode_mel_segments": "features",
    "chunk_indices": "features",
    "prepare_waveform": "features",
    "trim_audio_to_frames": "features",
    "whisper_features_from_mel": "features",
    "log_mel_segments": "mel",
    "log_mel_spectrogram": "mel",
    "mel_filters": "mel",
    "resample_to_16k": "resample",
    "WhisperEncoder": "whisper_encoder",
    "EncoderDims": "whisper_encoder",
    "load_whisper_encoder": "whisper_weights",
    "read_whisper_encoder_state": "whisper_weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
