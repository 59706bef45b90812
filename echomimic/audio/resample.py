"""Resampling to 16 kHz with ffmpeg's own resampler (libswresample, through PyAV).

The official code converts the audio with the ffmpeg program, whose default resampler is swr;
``av.AudioResampler`` is that same library with its default settings, so other rates give what the
official conversion gives. 16 kHz input is returned untouched (bit-exact, no resampler involved).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

TARGET_RATE = 16000
# Samples handed to swr per call: swr is a streaming filter, so blocks give the same output as
# one call, and no second copy of a long clip exists inside ffmpeg.
_BLOCK_SAMPLES = 1 << 16
# Rates outside this range are not audio ComfyUI or ffmpeg produce (swr allocates T * 16000 / rate).
MIN_RATE, MAX_RATE = 1000, 768000


def mix_to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels of a [C, T] waveform (a [T] one passes through) into [T]."""
    if waveform.ndim == 1:
        return waveform
    if waveform.shape[0] == 1:
        return waveform[0]
    return waveform.mean(dim=0)


def resample(samples: torch.Tensor, sample_rate: int, target_rate: int = TARGET_RATE) -> torch.Tensor:
    """ffmpeg swr resampling of a mono [T] float waveform to ``target_rate`` -> [T'] float32.

    T' = round(T * target_rate / sample_rate) (swr flushes its delay line at the end).
    """
    if sample_rate == target_rate:
        return samples
    import av  # PyAV loads on first use only

    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    source = samples.detach().to(device="cpu", dtype=torch.float32).numpy()
    pieces: list[np.ndarray] = []
    for start in range(0, source.size, _BLOCK_SAMPLES):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(source[None, start : start + _BLOCK_SAMPLES]), format="flt", layout="mono"
        )
        frame.sample_rate = sample_rate
        pieces += [out.to_ndarray()[0] for out in resampler.resample(frame)]
    pieces += [out.to_ndarray()[0] for out in resampler.resample(None)]
    return torch.from_numpy(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32))


def resample_to_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mix a [C, T] (or [T]) waveform to mono and resample it to 16 kHz -> [T'] float32.

    A [B, C, T] batch uses its first item. 16 kHz input is not filtered at all (bit-exact
    pass-through). :func:`echomimic.audio.prepare_waveform` also validates the samples.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"Audio sample rate must be a positive whole number of Hz, got {sample_rate!r}.")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InputError(
            f"Audio sample rate {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz; "
            "re-export the audio at a usual rate (e.g. 16000, 44100 or 48000 Hz)."
        )
    if waveform.ndim == 3 and waveform.shape[0] > 0:
        waveform = waveform[0]
    if waveform.ndim not in (1, 2):
        raise InputError(
            "Expected a [batch, channels, samples], [channels, samples] or [samples] waveform, "
            f"got shape {tuple(waveform.shape)}."
        )
    mono = mix_to_mono(waveform.to(torch.float32))
    return resample(mono, sample_rate, TARGET_RATE)
