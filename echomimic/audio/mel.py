"""Whisper log-mel spectrogram, numerically the same as the official whisper package.

The 80 mel filters are computed here (Slaney mel scale, Slaney area normalisation, the same
construction as ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``) instead of being read
from a shipped ``mel_filters.npz``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
# Frames per encoder segment (30 s); the encoder halves it to 1500 feature rows.
SEGMENT_FRAMES = 3000
# Long clips are transformed this many mel frames at a time, so the complex STFT of a
# 10-minute clip never exists at once. Frames are independent, so the result is unchanged.
_STFT_BLOCK_FRAMES = 6000

_SLANEY_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney (Auditory Toolbox) mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _SLANEY_LINEAR_HZ_PER_MEL
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ_PER_MEL
    above = hz >= _SLANEY_BREAK_HZ
    mel[above] = break_mel + np.log(hz[above] / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * _SLANEY_LINEAR_HZ_PER_MEL
    break_mel = _SLANEY_BREAK_HZ / _SLANEY_LINEAR_HZ_PER_MEL
    above = mel >= break_mel
    hz[above] = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (mel[above] - break_mel))
    return hz


@functools.lru_cache(maxsize=4)
def _mel_filters_numpy(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    fft_hz = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edge_mels = np.linspace(_hz_to_slaney_mel(np.array([0.0]))[0],
                            _hz_to_slaney_mel(np.array([sample_rate / 2.0]))[0], n_mels + 2)
    edge_hz = _slaney_mel_to_hz(edge_mels)
    band_widths = np.diff(edge_hz)
    # distance of each FFT bin below every band edge
    edge_minus_bin = edge_hz[:, None] - fft_hz[None, :]
    rising = -edge_minus_bin[:-2] / band_widths[:-1, None]
    falling = edge_minus_bin[2:] / band_widths[1:, None]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: every triangle has unit area in Hz.
    triangles *= (2.0 / (edge_hz[2:] - edge_hz[:-2]))[:, None]
    return triangles.astype(np.float32)


def mel_filters(device: torch.device | str = "cpu") -> torch.Tensor:
    """Whisper's mel filter bank as a float32 tensor of shape [80, 201]."""
    return torch.from_numpy(_mel_filters_numpy(SAMPLE_RATE, N_FFT, N_MELS).copy()).to(device)


def num_mel_frames(num_samples: int) -> int:
    """Number of log-mel frames whisper makes from ``num_samples`` 16 kHz samples."""
    return num_samples // HOP_LENGTH


def log_mel_spectrogram(samples_16k: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel of a whole 16 kHz mono clip.

    Args:
        samples_16k: [T] float waveform at 16 kHz, nominally in [-1, 1]; T > 200.

    Returns:
        [80, T // 160] float32 tensor: centred Hann STFT (n_fft 400, hop 160, last frame
        dropped), power, Slaney mel, log10(max(x, 1e-10)), floored at (clip max - 8), then
        (x + 4) / 4. The maximum is taken over the whole clip, as the official code does.
    """
    samples = samples_16k.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
    if samples.numel() <= N_FFT // 2:
        from ..errors import InputError

        raise InputError(
            f"Audio of {samples.numel()} samples at 16 kHz is too short for a mel spectrogram; "
            "give at least 20 ms of audio."
        )
    num_frames = num_mel_frames(samples.numel())
    window = torch.hann_window(N_FFT)
    filters = mel_filters()
    half = N_FFT // 2
    # Reflect-pad once, like a centred STFT does; blocks then cut frames out of the padded clip.
    padded = torch.nn.functional.pad(samples[None, None], (half, half), mode="reflect")[0, 0]
    log_mel = torch.empty((N_MELS, num_frames), dtype=torch.float32)
    for first in range(0, num_frames, _STFT_BLOCK_FRAMES):
        last = min(first + _STFT_BLOCK_FRAMES, num_frames)
        block = padded[first * HOP_LENGTH: (last - 1) * HOP_LENGTH + N_FFT]
        spectrum = torch.stft(block, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
        power = spectrum.abs() ** 2
        log_mel[:, first:last] = torch.clamp(filters @ power, min=1e-10).log10()
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0
