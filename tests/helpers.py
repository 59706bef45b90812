"""Small helpers shared by several test modules: required fixture files, WAV reading, mp4 probing, audio stand-ins."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise the test FAILS (a missing fixture must never pass as a skip)."""
    if not path.exists():
        pytest.fail(f"test fixture {path} is missing (set ECHOMIMIC_PARITY_CASES / ECHOMIMIC_SHARED)")
    return path


def read_wav_int16(path: Path) -> tuple[Any, int]:
    """16-bit PCM WAV -> ([channels, samples] float32 tensor = int16 / 32768, sample rate)."""
    import torch

    with wave.open(str(require(path))) as wav:
        assert wav.getsampwidth() == 2, f"{path} is not 16-bit PCM"
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels, rate = wav.getnchannels(), wav.getframerate()
    samples = frames.reshape(-1, channels).T.astype(np.float32) / 32768.0
    return torch.from_numpy(np.ascontiguousarray(samples)), rate


def probe_mp4(path: Path) -> dict[str, Any]:
    """Decode an mp4 and describe it.

    Returns ``frames`` [F, H, W, 3] float32 0..1, ``width``, ``height``, ``pix_fmt``, ``rate`` (average
    frame rate), ``video_seconds``, and ``audio``: None or {codec, seconds, sample_rate, channels}.
    """
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video)]
        info: dict[str, Any] = {
            "frames": np.stack(frames).astype(np.float32) / 255.0 if frames else np.zeros((0, 0, 0, 3), np.float32),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "pix_fmt": video.codec_context.pix_fmt,
            "rate": video.average_rate,
            "video_seconds": float(video.duration * video.time_base),
            "audio": None,
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            audio = container.streams.audio[0]
            info["audio"] = {
                "codec": audio.codec_context.name,
                "seconds": float(audio.duration * audio.time_base),
                "sample_rate": audio.codec_context.sample_rate,
                "channels": audio.codec_context.channels,
            }
    return info


class ZeroAudio:
    """Audio features of a given length (silence-like zero tokens) without running Whisper: the members the
    sampler and the run plan read (``speech`` None: no sound to trim)."""

    fps = 24.0
    speech = None

    def __init__(self, frames: int) -> None:
        self.num_frames = frames

    def tokens_for_frames(self, frame_indices: Any) -> Any:
        """-> [len(frame_indices), 50, 384] zeros"""
        import torch

        return torch.zeros(len(list(frame_indices)), 50, 384)
