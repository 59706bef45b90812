"""Speech -> per-video-frame Whisper audio tokens, as EchoMimic's official audio processor makes them."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .mel import HOP_LENGTH, SEGMENT_FRAMES, log_mel_segments, log_mel_spectrogram, num_mel_frames
from .resample import TARGET_RATE, resample_to_16k
from .whisper_encoder import WhisperEncoder

logger = logging.getLogger(__name__)

# Whisper feature rows per second of audio (16 kHz / hop 160 / stride 2).
ROWS_PER_SECOND = 50
# Each video frame reads rows centre-4 .. centre+5 (the official audio_feat_length = [2, 2]).
ROWS_BEFORE = 4
ROWS_PER_FRAME = 10
# Longer clips keep their features in a disk-backed tensor (features are 384 KB per second of
# speech; 10 minutes in memory is 230 MB).
IN_MEMORY_ROWS = 10 * 60 * ROWS_PER_SECOND


def _check_fps(fps: float) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise InputError(f"Video fps must be a positive number, got {fps!r}. Set the frame rate (e.g. 24 or 25).")
    return fps


def chunk_indices(num_rows: int, fps: float) -> np.ndarray:
    """Whisper rows read by each video frame, exactly as the official ``feature2chunks``.

    Frame i centres on ``c = int(i * 50 / fps)`` and reads rows c-4 .. c+5 clamped to
    [0, num_rows - 1]. Frames are produced for i = 0, 1, ... and the list ends with the first i
    for which ``int(i * (50 / fps)) > num_rows`` (that frame is included, as officially).

    Returns:
        [N, 10] int64 array of row indices.
    """
    fps = _check_fps(fps)
    if num_rows < 1:
        raise InputError("There are no Whisper feature rows; the audio is shorter than 20 ms.")
    # The stop test uses i * (50 / fps) while the centre uses i * 50 / fps; both kept as-is
    # because they round differently for some fps.
    step = ROWS_PER_SECOND / fps
    last = max(0, int((num_rows + 1) / step) - 2)
    while int(last * step) <= num_rows:
        last += 1
    frames = np.arange(last + 1, dtype=np.float64)
    centres = np.floor(frames * ROWS_PER_SECOND / fps).astype(np.int64)
    offsets = np.arange(ROWS_PER_FRAME, dtype=np.int64) - ROWS_BEFORE
    return np.clip(centres[:, None] + offsets[None, :], 0, num_rows - 1)


@dataclass(frozen=True)
class Speech:
    """A speech clip: ``waveform`` [C, T] (or [B, C, T] / [T]) in -1..1 at ``sample_rate`` Hz."""

    waveform: torch.Tensor
    sample_rate: int


@dataclass
class AudioFeatures:
    """Whisper features of one clip and the rows each video frame reads.

    Attributes:
        whisper_features: [T, 5, 384] float32 on the CPU, 50 rows per second (input embedding
            + 4 encoder block outputs per row).
        chunk_indices: [N, 10] int64, the rows of every video frame (see :func:`chunk_indices`).
        fps: video frame rate the chunks were made for.
        speech: the clip they were computed from, as given (so that a run can return it trimmed to its frames).
    """

    whisper_features: torch.Tensor
    chunk_indices: np.ndarray
    fps: float
    speech: Speech | None = None

    @property
    def num_frames(self) -> int:
        """N, the number of per-frame token blocks (as many as the official processor yields)."""
        return int(self.chunk_indices.shape[0])

    def tokens_for_frames(self, frame_indices: torch.Tensor | np.ndarray | list[int] | range) -> torch.Tensor:
        """Audio tokens of the given video frames -> [len, 50, 384] float32.

        Tokens are ordered time-major: row 0 layers 0..4, row 1 layers 0..4, ...
        Built on demand so that long clips never hold all N blocks at once.
        """
        frames = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        if frames.size and (frames.min() < 0 or frames.max() >= self.num_frames):
            raise InputError(
                f"Audio tokens exist for frames 0..{self.num_frames - 1}, frame {int(frames.max())} was asked for; "
                "make the video no longer than the audio."
            )
        rows = torch.from_numpy(self.chunk_indices[frames])
        selected = self.whisper_features[rows]  # [len, 10, 5, 384]
        return selected.reshape(frames.size, -1, self.whisper_features.shape[-1])

    @property
    def audio_tokens(self) -> torch.Tensor:
        """All N token blocks, [N, 50, 384] float32 (77 KB per frame; prefer tokens_for_frames)."""
        return self.tokens_for_frames(np.arange(self.num_frames))


def prepare_waveform(waveform: torch.Tensor | np.ndarray, sample_rate: int) -> torch.Tensor:
    """Validate a ComfyUI-style waveform and turn it into 16 kHz mono float32 samples [T'].

    Accepts [B, C, T], [C, T] or [T]. For B > 1 only the first item is used (a warning is
    logged): one portrait video is driven by one voice. Integer PCM is scaled by its full range.
    """
    if not isinstance(waveform, torch.Tensor):
        waveform = torch.as_tensor(np.asarray(waveform))
    if waveform.ndim not in (1, 2, 3):
        raise InputError(f"Audio waveform must be [batch, channels, samples], got shape {tuple(waveform.shape)}.")
    if waveform.numel() == 0:
        raise InputError(
            f"The audio is empty (waveform shape {tuple(waveform.shape)}); connect audio with sound in it."
        )
    if waveform.ndim == 3:
        if waveform.shape[0] > 1:
            logger.warning("Audio batch of %d clips: only the first one drives the video.", waveform.shape[0])
        waveform = waveform[0]
    if not waveform.is_floating_point():
        if waveform.dtype == torch.bool or waveform.is_complex():
            raise InputError(f"Audio samples must be real numbers, got {waveform.dtype}.")
        full_scale = float(torch.iinfo(waveform.dtype).max) + 1.0
        waveform = waveform.to(torch.float32) / full_scale
    waveform = waveform.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(waveform).all():
        raise InputError("The audio contains NaN or infinite samples; fix or re-export the audio before using it.")
    return resample_to_16k(waveform, sample_rate)


def _feature_storage(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float32 tensor for the features: in memory for short clips, else backed by an
    unlinked temporary file, so an hour of speech (1.4 GB of fp32 features) lives on disk and
    only the windows being sampled are paged in."""
    if shape[0] <= IN_MEMORY_ROWS:
        return torch.empty(shape, dtype=torch.float32)
    with tempfile.NamedTemporaryFile(prefix="echomimic-audio-") as backing:  # the mapping outlives the file
        array = np.memmap(backing, dtype=np.float32, mode="w+", shape=shape)
    return torch.from_numpy(array)


@torch.inference_mode()
def encode_mel_segments(segments: Iterable[torch.Tensor], num_rows: int, encoder: WhisperEncoder) -> torch.Tensor:
    """Encode log-mel segments one at a time -> [num_rows, 5, 384] float32 on the CPU.

    Each segment ([80, <= 3000] frames) is zero-padded (after normalisation, as officially) and
    encoded on its own; only its first int(frames / 2) rows are kept and written straight into
    the result, so memory beyond the result is one segment of activations.
    """
    segment_frames = encoder.segment_frames
    features: torch.Tensor | None = None
    row = 0
    for segment in segments:
        if segment.shape[-1] > segment_frames:
            raise ValueError(f"mel segment of {segment.shape[-1]} frames exceeds the encoder's {segment_frames}")
        rows = segment.shape[-1] // 2
        padded = torch.nn.functional.pad(segment, (0, segment_frames - segment.shape[-1]))
        hidden = encoder(padded[None])[0, :rows]
        if features is None:
            features = _feature_storage((num_rows, *hidden.shape[1:]))
        features[row : row + rows] = hidden.to(device="cpu", dtype=torch.float32)
        row += rows
    if features is None or row != num_rows:
        raise ValueError(f"the mel segments gave {row} feature rows, {num_rows} were announced")
    return features


def feature_rows(num_frames: int, segment_frames: int = SEGMENT_FRAMES) -> int:
    """Whisper feature rows of a clip of ``num_frames`` mel frames (every segment keeps half its frames)."""
    whole, rest = divmod(num_frames, segment_frames)
    return whole * (segment_frames // 2) + rest // 2


def whisper_features_from_mel(mel: torch.Tensor, encoder: WhisperEncoder) -> torch.Tensor:
    """Encode a whole-clip log-mel [80, F] segment by segment -> [T, 5, 384] float32 on the CPU."""
    segment_frames = encoder.segment_frames
    return encode_mel_segments(mel.split(segment_frames, dim=-1), feature_rows(mel.shape[-1], segment_frames), encoder)


def compute_audio_features(
    waveform: torch.Tensor, sample_rate: int, encoder: WhisperEncoder, fps: float
) -> AudioFeatures:
    """Whisper audio features of a clip, identical to the official EchoMimic audio processor.

    Args:
        waveform: [B, C, T], [C, T] or [T] samples in [-1, 1] at ``sample_rate`` (any rate, any
            channel count; channels are averaged, B > 1 uses the first item).
        sample_rate: Hz of ``waveform``.
        encoder: from :func:`load_whisper_encoder`.
        fps: video frame rate.

    Returns:
        :class:`AudioFeatures` with [T, 5, 384] features and [N, 10] per-frame rows.
    """
    fps = _check_fps(fps)
    samples = prepare_waveform(waveform, sample_rate)
    seconds = samples.numel() / TARGET_RATE
    if seconds < 1.0 / fps or num_mel_frames(samples.numel()) < 2:
        raise InputError(
            f"The audio lasts {seconds * 1000:.1f} ms, shorter than one video frame at {fps:g} fps "
            f"(and whisper needs at least {2 * HOP_LENGTH / TARGET_RATE * 1000:.0f} ms). Use a longer clip."
        )
    if encoder.segment_frames == SEGMENT_FRAMES:  # every released Whisper: mel made one segment at a time
        num_rows = feature_rows(num_mel_frames(samples.numel()))
        features = encode_mel_segments(log_mel_segments(samples), num_rows, encoder)
    else:
        features = whisper_features_from_mel(log_mel_spectrogram(samples), encoder)
    return AudioFeatures(
        whisper_features=features,
        chunk_indices=chunk_indices(features.shape[0], fps),
        fps=fps,
        speech=Speech(waveform, int(sample_rate)),
    )


def trim_audio_to_frames(waveform: torch.Tensor, sample_rate: int, num_frames: int, fps: float) -> torch.Tensor:
    """Cut or zero-pad a [..., T] waveform to exactly num_frames / fps seconds (for muxing).

    Returns a [..., round(num_frames * sample_rate / fps)] tensor of the same dtype.
    """
    fps = _check_fps(fps)
    if num_frames < 0:
        raise InputError(f"Number of frames must be >= 0, got {num_frames}.")
    target = int(round(num_frames * sample_rate / fps))
    length = waveform.shape[-1]
    if length >= target:
        return waveform[..., :target]
    return torch.nn.functional.pad(waveform, (0, target - length))
