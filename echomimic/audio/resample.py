"""In-process band-limited resampling to 16 kHz (no ffmpeg, no torchaudio, no temporary files).

Kaiser-windowed sinc interpolation, evaluated exactly at every output instant. The design is
close to ffmpeg's default ``swr`` resampler that the official code runs (16 zero crossings on
each side, Kaiser beta 9, cutoff 0.97 of the lower Nyquist frequency). 16 kHz input is returned
untouched, so the official numbers are reproduced bit for bit.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError

TARGET_RATE = 16000
_ZERO_CROSSINGS = 16
_KAISER_BETA = 9.0
_CUTOFF = 0.97
# Output samples computed per step; bounds the [outputs, taps] work arrays to a few MB.
_OUTPUT_BLOCK = 65536
# Above this many distinct filter phases, weights are computed per block instead of tabulated.
_MAX_TABULATED_PHASES = 4096


def _kaiser(x: torch.Tensor) -> torch.Tensor:
    """Kaiser window on x in [-1, 1] (0 outside)."""
    inside = x.abs() < 1.0
    root = torch.sqrt(torch.clamp(1.0 - x * x, min=0.0))
    window = torch.special.i0(_KAISER_BETA * root) / torch.special.i0(torch.tensor(_KAISER_BETA, dtype=x.dtype))
    return torch.where(inside, window, torch.zeros_like(window))


def _filter_weights(offsets: torch.Tensor, cutoff_per_input_sample: float, half_width: float) -> torch.Tensor:
    """Windowed-sinc weights of input taps at the given distances (in input samples).

    Args:
        offsets: [..., taps] float64 distance from each output instant to each input tap.
        cutoff_per_input_sample: low-pass cutoff as a fraction of the input rate (<= 0.5).
        half_width: filter half length in input samples.
    """
    weights = 2.0 * cutoff_per_input_sample * torch.sinc(2.0 * cutoff_per_input_sample * offsets)
    return weights * _kaiser(offsets / half_width)


def mix_to_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels of a [C, T] waveform (a [T] one passes through) into [T]."""
    if waveform.ndim == 1:
        return waveform
    if waveform.shape[0] == 1:
        return waveform[0]
    return waveform.mean(dim=0)


def resampled_length(num_samples: int, sample_rate: int, target_rate: int = TARGET_RATE) -> int:
    """Length after resampling: round(T * target / sr), with halves rounded up."""
    return (num_samples * target_rate * 2 + sample_rate) // (2 * sample_rate)


def resample(samples: torch.Tensor, sample_rate: int, target_rate: int = TARGET_RATE) -> torch.Tensor:
    """Band-limited resampling of a mono [T] float waveform to ``target_rate`` -> [T'].

    T' = round(T * target_rate / sample_rate). Output sample n sits at input time
    n * sample_rate / target_rate; samples outside the clip count as zero.
    """
    if sample_rate == target_rate:
        return samples
    samples = samples.to(torch.float32)
    gcd = math.gcd(sample_rate, target_rate)
    step_in, step_out = sample_rate // gcd, target_rate // gcd  # out n <-> in n * step_in / step_out
    cutoff = _CUTOFF * 0.5 * min(1.0, target_rate / sample_rate)  # fraction of the input rate
    half_width = _ZERO_CROSSINGS / (2.0 * cutoff)  # in input samples
    reach = math.ceil(half_width)
    taps = torch.arange(-reach + 1, reach + 1, dtype=torch.int64)  # relative to floor(instant)

    num_in = samples.numel()
    num_out = resampled_length(num_in, sample_rate, target_rate)
    # Zero padding so that every tap index is valid.
    padded = torch.nn.functional.pad(samples, (reach, reach + 1))

    table = None
    if step_out <= _MAX_TABULATED_PHASES:
        phases = torch.arange(step_out, dtype=torch.float64) / step_out * step_in
        fractions = phases - torch.floor(phases)
        table = _filter_weights(fractions[:, None] - taps[None, :].double(), cutoff, half_width).float()

    output = torch.empty(num_out, dtype=torch.float32)
    for first in range(0, num_out, _OUTPUT_BLOCK):
        out_index = torch.arange(first, min(first + _OUTPUT_BLOCK, num_out), dtype=torch.int64)
        # exact rational position: whole input samples + remainder / step_out
        whole = (out_index * step_in) // step_out
        remainder = (out_index * step_in) % step_out
        if table is not None:
            weights = table[out_index % step_out]
        else:
            fraction = remainder.double() / step_out
            weights = _filter_weights(fraction[:, None] - taps[None, :].double(), cutoff, half_width).float()
        gathered = padded[whole[:, None] + taps[None, :] + reach]
        output[first: first + out_index.numel()] = (gathered * weights).sum(dim=1)
    return output


def resample_to_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mix a [C, T] (or [T]) waveform to mono and resample it to 16 kHz -> [T'] float32.

    16 kHz input is not filtered at all (bit-exact pass-through). Use
    :func:`echomimic.audio.prepare_waveform` first for ComfyUI's [B, C, T] layout.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"Audio sample rate must be a positive whole number of Hz, got {sample_rate!r}.")
    if waveform.ndim not in (1, 2):
        raise InputError(f"Expected a [channels, samples] or [samples] waveform, got shape {tuple(waveform.shape)}.")
    mono = mix_to_mono(waveform.to(torch.float32))
    return resample(mono, sample_rate, TARGET_RATE)
