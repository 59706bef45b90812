"""mp4 writing and audio/video reading through PyAV, checked by reading the files back."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from echomimic.errors import InputError
from echomimic.video_io import read_audio, read_video_frames, write_mp4
from tests.helpers import probe_mp4

AAC_FRAME = 1024  # samples per AAC frame


def _gradient_frames(num_frames: int, height: int, width: int) -> torch.Tensor:
    """[F, H, W, 3] in 0..1: a moving horizontal gradient (distinct frames, easy to compress)."""
    x = torch.linspace(0, 1, width)[None, None, :, None]
    t = torch.arange(num_frames, dtype=torch.float32)[:, None, None, None] / max(num_frames, 1)
    frames = ((x + t) % 1.0).expand(num_frames, height, width, 3).clone()
    frames[..., 1] = 0.5
    return frames


@pytest.mark.parametrize(
    ("num_frames", "fps", "audio_seconds"),
    [(30, 24.0, 1.0), (25, 25.0, 3.0)],  # audio shorter than the video -> padded; longer -> trimmed
)
def test_write_mp4_frames_size_and_audio_duration(tmp_path, num_frames, fps, audio_seconds):
    sample_rate = 16000
    t = np.arange(int(audio_seconds * sample_rate)) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_mp4(tmp_path / "out.mp4", _gradient_frames(num_frames, 64, 96), fps, tone, sample_rate)

    info = probe_mp4(path)
    video_seconds = num_frames / fps
    assert len(info["frames"]) == num_frames
    assert (info["width"], info["height"]) == (96, 64)
    assert info["pix_fmt"] == "yuv420p"
    assert info["rate"] == Fraction(fps)
    assert info["video_seconds"] == pytest.approx(video_seconds, abs=1e-6)
    assert info["audio"] is not None and info["audio"]["codec"] == "aac"
    assert info["audio"]["sample_rate"] == sample_rate
    assert abs(info["audio"]["seconds"] - video_seconds) <= AAC_FRAME / sample_rate


def test_write_mp4_keeps_the_pictures(tmp_path):
    frames = _gradient_frames(8, 48, 64)
    path = write_mp4(tmp_path / "pictures.mp4", frames, 24)
    decoded, fps = read_video_frames(path)
    assert fps == 24
    assert decoded.shape == frames.shape
    # yuv420p + crf 18: small colour error only
    assert (decoded - frames).abs().mean() < 0.02


def test_write_mp4_without_audio_has_no_audio_track(tmp_path):
    path = write_mp4(tmp_path / "silent.mp4", np.zeros((5, 32, 32, 3), np.float32), 25)
    info = probe_mp4(path)
    assert len(info["frames"]) == 5
    assert info["audio"] is None


def test_write_mp4_odd_size_pads_or_raises(tmp_path):
    frames = torch.rand(4, 33, 47, 3)
    info = probe_mp4(write_mp4(tmp_path / "odd.mp4", frames, 24))
    assert (info["width"], info["height"]) == (48, 34)
    with pytest.raises(InputError, match="even width and height"):
        write_mp4(tmp_path / "odd2.mp4", frames, 24, odd_size="error")


def test_write_mp4_stereo_torch_audio_and_uncommon_rate(tmp_path):
    sample_rate = 22222  # not an AAC rate -> resampled to 48 kHz
    audio = torch.rand(2, sample_rate) * 0.2 - 0.1
    path = write_mp4(tmp_path / "stereo.mp4", torch.rand(12, 32, 32, 3), 29.97, audio, sample_rate)
    info = probe_mp4(path)
    assert info["rate"] == Fraction(30000, 1001)
    assert len(info["frames"]) == 12
    assert info["audio"]["channels"] == 2
    assert info["audio"]["sample_rate"] == 48000
    assert abs(info["audio"]["seconds"] - 12 / (30000 / 1001)) <= AAC_FRAME / 48000


def test_write_mp4_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match=r"\[F, H, W, 3\]"):
        write_mp4(tmp_path / "x.mp4", torch.rand(4, 32, 32), 24)
    with pytest.raises(InputError, match="sample_rate"):
        write_mp4(tmp_path / "x.mp4", torch.rand(4, 32, 32, 3), 24, audio=np.zeros(100, np.float32))
    with pytest.raises(InputError, match="fps"):
        write_mp4(tmp_path / "x.mp4", torch.rand(4, 32, 32, 3), 0)


def test_read_audio_round_trips_wav_and_mp4(tmp_path):
    import wave

    sample_rate = 16000
    t = np.arange(sample_rate) / sample_rate
    tone = 0.25 * np.sin(2 * np.pi * 300 * t)
    pcm = (tone * 32767).astype("<i2")
    wav_path = tmp_path / "tone.wav"
    with wave.open(str(wav_path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())

    waveform, rate = read_audio(wav_path)
    assert rate == sample_rate
    assert waveform.dtype == torch.float32 and waveform.shape == (1, sample_rate)
    np.testing.assert_allclose(waveform[0].numpy(), pcm / 32768.0, atol=1e-6)

    # The audio track of an mp4 we wrote (AAC) decodes back to the same tone, roughly.
    mp4_path = write_mp4(tmp_path / "tone.mp4", torch.rand(24, 32, 32, 3), 24, waveform, rate)
    decoded, decoded_rate = read_audio(mp4_path)
    assert decoded_rate == sample_rate
    assert decoded.shape[0] == 1 and abs(decoded.shape[1] - sample_rate) <= 2 * AAC_FRAME
    spectrum = np.abs(np.fft.rfft(decoded[0].numpy()))
    peak_hz = np.argmax(spectrum) * decoded_rate / decoded.shape[1]
    assert abs(peak_hz - 300) < 5


def test_read_audio_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    silent = write_mp4(tmp_path / "silent.mp4", torch.rand(3, 32, 32, 3), 24)
    with pytest.raises(InputError, match="no audio track"):
        read_audio(silent)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a media file at all" * 10)
    with pytest.raises(InputError, match="cannot"):
        read_audio(junk)
