"""Video and audio files through PyAV (no ffmpeg program; outputs are written atomically).

- :func:`write_mp4` writes ``[F, H, W, 3]`` frames in 0..1 as H.264 (libx264, or MPEG-4 part 2 when
  the PyAV build has no libx264) in yuv420p, with an optional AAC audio track trimmed or padded to
  the video's duration; :class:`Mp4Writer` writes the same from chunks as they are made.
- :func:`read_audio` decodes the audio track of any file PyAV can open into ``[C, T]`` float32.
- :func:`read_video_frames` decodes the frames of a video into ``[F, H, W, 3]`` float32 0..1.

PyAV, numpy and torch are imported inside the functions so that importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import math
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .atomic import atomic_path, check_output_file, check_output_folder
from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch

# Sample rates the AAC encoder accepts; anything else is resampled to 48 kHz.
AUDIO_FRAME_SAMPLES = 1024  # samples per AudioFrame handed to the AAC encoder
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _fps_fraction(fps: float) -> Fraction:
    """``fps`` as an exact fraction (24 -> 24/1, 29.97 -> 30000/1001, 23.976 -> 24000/1001)."""
    if not fps or not math.isfinite(fps) or fps <= 0:  # nan / inf would fail in round() below
        raise InputError(f"fps must be a positive number, got {fps!r}; pass e.g. 24 or 25.")
    nearest = round(fps)
    if abs(fps - nearest) < 1e-6:
        return Fraction(nearest)
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc * 1000 / 1001) < 5e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


def _frames_as_uint8_source(frames: torch.Tensor | np.ndarray):
    """Returns ``(num_frames, height, width, get_frame)``; ``get_frame(i)`` gives ``[H, W, 3]`` uint8.

    Converts one frame at a time so that a long float video is never copied whole.
    """
    import numpy as np

    if hasattr(frames, "detach"):  # torch.Tensor
        tensor = frames.detach()
        if tensor.ndim != 4 or tensor.shape[-1] != 3:
            raise InputError(
                f"frames must have shape [F, H, W, 3] (RGB), got {tuple(tensor.shape)}; "
                "convert the video to RGB channels-last first."
            )
        is_uint8 = str(tensor.dtype) == "torch.uint8"

        def get_frame(i: int) -> np.ndarray:
            frame = tensor[i].cpu()
            if is_uint8:
                return frame.numpy()
            return (frame.float().clamp(0, 1) * 255.0).round().to(dtype=_torch_uint8()).numpy()

        return tensor.shape[0], tensor.shape[1], tensor.shape[2], get_frame

    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InputError(
            f"frames must have shape [F, H, W, 3] (RGB), got {array.shape}; "
            "convert the video to RGB channels-last first."
        )

    def get_frame_np(i: int) -> np.ndarray:
        frame = array[i]
        if frame.dtype == np.uint8:
            return frame
        return np.round(np.clip(frame.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)

    return array.shape[0], array.shape[1], array.shape[2], get_frame_np


def _torch_uint8():
    import torch

    return torch.uint8


def _audio_as_planar_float(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[C, T]`` or ``[T]`` (or ``[1, C, T]``) -> ``[C', T]`` float32 in -1..1 with C' in {1, 2}.

    More than two channels are mixed down to mono.
    """
    import numpy as np

    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().float().numpy()
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 3 and samples.shape[0] == 1:
        samples = samples[0]
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.ndim != 2:
        raise InputError(f"audio must have shape [C, T] or [T], got {samples.shape}; pass one clip (no batch axis).")
    if samples.shape[0] > 2:
        samples = samples.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(np.clip(samples, -1.0, 1.0))


def write_mp4(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    audio: torch.Tensor | np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    audio_bitrate: int = 128_000,
    odd_size: str = "pad",
) -> Path:
    """Writes an mp4: H.264 (libx264; MPEG-4 part 2 if unavailable) yuv420p + optional AAC audio.

    Args:
        path: output file; its folder is created if needed. It is written to a temporary file beside it
            that replaces it only when complete: on any error or interrupt a previous file is intact.
        frames: ``[F, H, W, 3]`` RGB, float 0..1 (clamped) or uint8, torch or numpy.
        fps: frames per second of the video (fractions like 29.97 are kept exact as 30000/1001).
        audio: ``[C, T]`` or ``[T]`` float in -1..1 (clipped), or None for a silent video. It is
            trimmed or zero-padded to exactly the video's duration (``F / fps`` seconds).
        sample_rate: the audio's sample rate in Hz (required with ``audio``). Rates the AAC encoder
            does not support are resampled to 48 kHz.
        crf: libx264 constant rate factor (lower = better quality, larger file).
        audio_bitrate: AAC bit rate in bits/s.
        odd_size: yuv420p needs an even width and height. ``"pad"`` repeats the last row/column to
            make them even; ``"error"`` raises :class:`InputError` instead.

    Returns:
        The path written. :class:`Mp4Writer` writes the same file from frame chunks as they come.
    """
    with Mp4Writer(path, fps, audio, sample_rate, crf=crf, audio_bitrate=audio_bitrate, odd_size=odd_size) as writer:
        writer.write(frames)
    return writer.path


class Mp4Writer:
    """An mp4 written chunk by chunk, so that memory does not grow with the video (see :func:`write_mp4`).

    Use as a context manager; :meth:`write` takes ``[n, H, W, 3]`` chunks (the first fixes the size). The file
    appears at ``path`` only when the block ends without an error; the audio is trimmed or padded to the
    frames actually written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio: torch.Tensor | np.ndarray | None = None,
        sample_rate: int | None = None,
        *,
        crf: int = 18,
        audio_bitrate: int = 128_000,
        odd_size: str = "pad",
    ) -> None:
        self.path = Path(path)
        self.rate = _fps_fraction(fps)
        if audio is not None and not sample_rate:
            raise InputError("audio was given without its sample_rate; pass sample_rate=<Hz>.")
        check_output_folder(self.path.parent)
        check_output_file(self.path)
        self.audio_samples = None if audio is None else _audio_as_planar_float(audio)
        self.sample_rate = int(sample_rate) if sample_rate else None
        self.crf, self.audio_bitrate, self.odd_size = crf, audio_bitrate, odd_size
        self.frames_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._stack is None:
            if kind is None:
                raise InputError("there are no frames to write; generate at least one frame.")
            return
        stack, self._stack = self._stack, None
        if kind is not None:
            stack.__exit__(kind, error, traceback)  # the temporary file is removed, the target untouched
            return
        try:
            self._finish()
        except BaseException as failure:
            stack.__exit__(type(failure), failure, failure.__traceback__)
            raise
        stack.__exit__(None, None, None)  # renamed over the target

    def _open(self, height: int, width: int) -> None:
        import av

        pad_h, pad_w = height % 2, width % 2
        if (pad_h or pad_w) and self.odd_size != "pad":
            raise InputError(
                f"the video is {width}x{height}, but yuv420p mp4 needs an even width and height; "
                "use an even size (EchoMimic sizes are multiples of 8) or pass odd_size='pad'."
            )
        self._size, self._pad = (height, width), (pad_h, pad_w)
        stack = contextlib.ExitStack()
        try:
            temporary = stack.enter_context(atomic_path(self.path))
            self._container = stack.enter_context(
                av.open(str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"})
            )
            self._video = _add_video_stream(self._container, self.rate, width + pad_w, height + pad_h, self.crf)
            self._audio = self._resampler = None
            self._audio_pts = 0
            if self.audio_samples is not None:
                encode_rate = self.sample_rate if self.sample_rate in AAC_SAMPLE_RATES else 48000
                layout = "mono" if self.audio_samples.shape[0] == 1 else "stereo"
                self._audio = self._container.add_stream("aac", rate=encode_rate)
                self._audio.layout = layout
                self._audio.bit_rate = self.audio_bitrate
                if encode_rate != self.sample_rate:
                    self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=encode_rate)
        except BaseException as failure:
            stack.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._stack = stack

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append ``[n, H, W, 3]`` frames (float 0..1 or uint8, torch or numpy)."""
        import av
        import numpy as np

        count, height, width, get_frame = _frames_as_uint8_source(frames)
        if self._size is None:
            if count < 1:
                return
            self._open(height, width)
        elif (height, width) != self._size:
            raise InputError(
                f"frames of {width}x{height} after frames of {self._size[1]}x{self._size[0]}: "
                "every frame of a video has one size."
            )
        pad_h, pad_w = self._pad
        for index in range(count):
            image = get_frame(index)
            if pad_h or pad_w:
                image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            video_frame.pts = self.frames_written
            video_frame.time_base = 1 / self.rate
            self._container.mux(self._video.encode(video_frame))
            self.frames_written += 1
            if self._audio is not None:  # interleave: audio up to the end of this frame
                self._mux_audio_until(self._samples_for(self.frames_written))

    def _samples_for(self, frames: int) -> int:
        """Audio samples covering ``frames`` video frames: exactly ``frames / fps`` seconds."""
        assert self.sample_rate is not None
        return int(round(frames * self.sample_rate / self.rate))

    def _mux_audio_until(self, end_sample: int) -> None:
        import av
        import numpy as np

        assert self.audio_samples is not None and self.sample_rate is not None and self._audio is not None
        end_sample = min(end_sample, self.audio_samples.shape[1])
        while self._audio_pts < end_sample:
            chunk = self.audio_samples[:, self._audio_pts : min(end_sample, self._audio_pts + AUDIO_FRAME_SAMPLES)]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self._audio.layout.name
            )
            frame.sample_rate = self.sample_rate
            frame.pts = self._audio_pts
            frame.time_base = Fraction(1, self.sample_rate)
            self._audio_pts += chunk.shape[1]
            for resampled in self._resampler.resample(frame) if self._resampler else [frame]:
                self._container.mux(self._audio.encode(resampled))

    def _finish(self) -> None:
        import numpy as np

        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            assert self.audio_samples is not None
            audio = self._audio
            wanted = self._samples_for(self.frames_written)  # the video's duration exactly
            if self.audio_samples.shape[1] < wanted:
                self.audio_samples = np.pad(self.audio_samples, ((0, 0), (0, wanted - self.audio_samples.shape[1])))
            self._mux_audio_until(wanted)
            if self._resampler is not None:
                for resampled in self._resampler.resample(None):
                    self._container.mux(audio.encode(resampled))
            self._container.mux(audio.encode(None))


def _add_video_stream(container, rate: Fraction, width: int, height: int, crf: int):
    """H.264 through libx264 when PyAV has it, else MPEG-4 part 2 (always built in)."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        stream = container.add_stream("libx264", rate=rate)
        stream.options = {"crf": str(int(crf)), "preset": "medium"}
    except (av.error.FFmpegError, ValueError):  # pragma: no cover - depends on the PyAV build
        stream = container.add_stream("mpeg4", rate=rate)
        stream.bit_rate = max(1_000_000, int(width * height * float(rate) * 0.15))
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    return stream


def _open_input(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {'a folder, not a file' if path.is_dir() else 'file not found'}; check the path.")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); pass a wav/mp3/flac/m4a/mp4 file with sound in it.")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)  # without PyAV's errno and path
        raise InputError(f"cannot open {path} as a media file ({reason}); pass a wav/mp3/flac/m4a/mp4 file.") from None


def read_audio(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Decodes the first audio track of any file PyAV reads (wav, mp3, flac, ogg, m4a, mp4, ...).

    Returns:
        ``(waveform, sample_rate)``: waveform ``[C, T]`` float32 in -1..1 at the file's own rate.
    """
    import av
    import numpy as np
    import torch

    with _open_input(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path} has no audio track; pass a file with speech in it.")
        stream = container.streams.audio[0]
        sample_rate = int(stream.codec_context.sample_rate or stream.rate)
        resampler = None
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=frame.sample_rate)
                    sample_rate = int(frame.sample_rate)
                for planar in resampler.resample(frame):
                    chunks.append(planar.to_ndarray())
            if resampler is not None:
                for planar in resampler.resample(None):
                    chunks.append(planar.to_ndarray())
        except av.error.FFmpegError as error:
            raise InputError(f"cannot decode the audio of {path} ({error}); re-save it as a wav file.") from error
    if not chunks:
        raise InputError(f"{path} has an empty audio track; pass a file with speech in it.")
    waveform = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(waveform)), sample_rate


def read_video_frames(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Decodes the frames of a video file (any format PyAV reads).

    Args:
        path: the video file.
        max_frames: stop after this many frames (None = all).

    Returns:
        ``(frames, fps)``: frames ``[F, H, W, 3]`` float32 in 0..1 (RGB), fps of the stream.
    """
    import av
    import numpy as np
    import torch

    with _open_input(path) as container:
        if not container.streams.video:
            raise InputError(f"{path} has no video track; pass a video of a talking face.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        images: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                images.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(images) >= max_frames:
                    break
        except av.error.FFmpegError as error:
            raise InputError(f"cannot decode the video {path} ({error}); re-encode it as mp4.") from error
    if not images:
        raise InputError(f"{path} has no decodable frames; pass another video.")
    frames = torch.from_numpy(np.stack(images)).float().div_(255.0)
    return frames, fps
