"""Whisper log-mel spectrogram, numerically the same as the official whisper package.

The 80 mel filters come from ``transformers.audio_utils.mel_filter_bank`` (Slaney mel scale, Slaney
area normalisation: bit-identical to whisper's shipped ``mel_filters.npz``); the STFT is ``torch.stft``
with whisper's framing.
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
# Clips are transformed this many mel frames (one encoder segment) at a time, so the STFT of a
# long clip never exists at once. Frames are independent, so the result is unchanged.
_STFT_BLOCK_FRAMES = SEGMENT_FRAMES


@functools.lru_cache(maxsize=1)
def _whisper_mel_filters() -> np.ndarray:
    """[80, 201] float32: what whisper's ``mel_filters.npz`` holds (= librosa's Slaney bank)."""
    from transformers.audio_utils import mel_filter_bank  # loads on first use only

    bank = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=N_MELS,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return np.ascontiguousarray(bank.T, dtype=np.float32)


def mel_filters(device: torch.device | str = "cpu") -> torch.Tensor:
    """Whisper's mel filter bank as a float32 tensor of shape [80, 201]."""
    return torch.from_numpy(_whisper_mel_filters().copy()).to(device)


def num_mel_frames(num_samples: int) -> int:
    """Number of log-mel frames whisper makes from ``num_samples`` 16 kHz samples."""
    return num_samples // HOP_LENGTH


def _check_length(samples: torch.Tensor) -> torch.Tensor:
    samples = samples.detach().to(device="cpu", dtype=torch.float32).reshape(-1)
    if samples.numel() <= N_FFT // 2:
        from ..errors import InputError

        raise InputError(
            f"Audio of {samples.numel()} samples at 16 kHz is too short for a mel spectrogram; "
            "give at least 20 ms of audio."
        )
    return samples


def _padded_slice(samples: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """samples[start - 200 : stop - 200] of the reflect-padded clip (a centred STFT's input),
    built for this slice only so that a long clip is never copied whole."""
    half = N_FFT // 2
    positions = torch.arange(start - half, stop - half, dtype=torch.int64)
    last = samples.numel() - 1
    positions = torch.where(positions < 0, -positions, positions)
    positions = torch.where(positions > last, 2 * last - positions, positions)
    return samples[positions]


def _log_mel_blocks(samples: torch.Tensor):
    """Yield [80, frames] log10 mel power for consecutive blocks of the clip."""
    window = torch.hann_window(N_FFT)
    filters = mel_filters()
    num_frames = num_mel_frames(samples.numel())
    for first in range(0, num_frames, _STFT_BLOCK_FRAMES):
        last = min(first + _STFT_BLOCK_FRAMES, num_frames)
        block = _padded_slice(samples, first * HOP_LENGTH, (last - 1) * HOP_LENGTH + N_FFT)
        spectrum = torch.stft(block, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
        yield torch.clamp(filters @ (spectrum.abs() ** 2), min=1e-10).log10()


def log_mel_segments(samples_16k: torch.Tensor):
    """Whisper log-mel of a clip, yielded in blocks of at most ``_STFT_BLOCK_FRAMES`` frames.

    Two passes over the audio: the first finds the clip's maximum (the floor of the
    normalisation depends on it), the second yields the normalised blocks, so memory does not
    grow with the length of the clip. Concatenated, the blocks equal :func:`log_mel_spectrogram`.

    Yields:
        [80, frames] float32 tensors in time order.
    """
    samples = _check_length(samples_16k)
    clip_max = max(float(block.max()) for block in _log_mel_blocks(samples))
    for block in _log_mel_blocks(samples):
        yield (torch.clamp(block, min=clip_max - 8.0) + 4.0) / 4.0


def log_mel_spectrogram(samples_16k: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel of a whole 16 kHz mono clip.

    Args:
        samples_16k: [T] float waveform at 16 kHz, nominally in [-1, 1]; T > 200.

    Returns:
        [80, T // 160] float32 tensor: centred Hann STFT (n_fft 400, hop 160, last frame
        dropped), power, Slaney mel, log10(max(x, 1e-10)), floored at (clip max - 8), then
        (x + 4) / 4. The maximum is taken over the whole clip, as the official code does.
    """
    return torch.cat(list(log_mel_segments(samples_16k)), dim=1)
