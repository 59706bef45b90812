"""Frames stream from the decoder into the mp4 and the ``--save-frames`` file: same files as the
whole-video writers, nothing left behind on failure, and the CLI never asks for the whole video."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echomimic.frames_npy import NpyFramesWriter
from echomimic.video_io import Mp4Writer, write_mp4
from tests.helpers import probe_mp4


def _frames(count: int = 10, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand((count, size, size, 3), generator=generator)


def test_chunked_mp4_equals_the_whole_video_writer(tmp_path):
    """Catches the streaming writer encoding other pictures or other sound than write_mp4 (frame order, pts,
    audio interleave or the trim/pad to the video's duration)."""
    frames = _frames()
    audio = torch.sin(torch.linspace(0, 400, 16000 * 1)) * 0.5  # 1 s: longer than the 10 frames at 24 fps
    whole = write_mp4(tmp_path / "whole.mp4", frames, 24.0, audio, 16000)
    with Mp4Writer(tmp_path / "chunks.mp4", 24.0, audio, 16000) as writer:
        for start, end in ((0, 3), (3, 7), (7, 10)):
            writer.write(frames[start:end])
    assert writer.frames_written == 10
    assert (tmp_path / "chunks.mp4").read_bytes() == whole.read_bytes()
    short = audio[:4000]  # shorter than the video: padded to it, as write_mp4 does
    write_mp4(tmp_path / "whole_short.mp4", frames, 24.0, short, 16000)
    with Mp4Writer(tmp_path / "chunks_short.mp4", 24.0, short, 16000) as writer:
        writer.write(frames[:5])
        writer.write(frames[5:])
    assert (tmp_path / "chunks_short.mp4").read_bytes() == (tmp_path / "whole_short.mp4").read_bytes()
    info = probe_mp4(tmp_path / "chunks_short.mp4")
    assert info["frames"].shape[0] == 10 and abs(info["audio"]["seconds"] - 10 / 24) < 0.07


def test_a_failure_while_streaming_keeps_the_previous_file(tmp_path):
    """Catches a half-written mp4 replacing the previous file when generation fails after some chunks."""
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="decoder broke"):
        with Mp4Writer(out, 24.0) as writer:
            writer.write(_frames(4))
            raise RuntimeError("decoder broke")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_the_npy_is_written_chunk_by_chunk_and_equals_np_save(tmp_path):
    """Catches --save-frames holding other numbers than the frames, a wrong header, or a partial file left
    when fewer frames arrive than announced."""
    frames = _frames(7, 16)
    with NpyFramesWriter(tmp_path / "frames.npy", 7, 16, 16) as saved:
        saved.write(frames[:4])
        saved.write(frames[4:])
    loaded = np.load(tmp_path / "frames.npy")
    assert loaded.dtype == np.float32 and np.array_equal(loaded, frames.numpy())
    np.save(tmp_path / "reference.npy", frames.numpy())
    assert (tmp_path / "frames.npy").read_bytes() == (tmp_path / "reference.npy").read_bytes()
    with pytest.raises(ValueError, match="3 of 7 frames"):
        with NpyFramesWriter(tmp_path / "partial.npy", 7, 16, 16) as saved:
            saved.write(frames[:3])
    assert not (tmp_path / "partial.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.npy", "reference.npy"]


def test_the_cli_streams_instead_of_keeping_the_whole_video(tmp_path, monkeypatch):
    """Catches the command line asking the sampler for the whole video as one tensor again (memory growing
    with the video's length): it must pass on_frames and write what arrives."""
    from echomimic.pipeline import sampler

    seen: dict[str, object] = {}
    original = sampler.generate_prepared

    def spy(*args, **kwargs):
        seen["on_frames"] = kwargs.get("on_frames")
        video = original(*args, **kwargs)
        seen["frames"] = video.frames
        return video

    monkeypatch.setattr(sampler, "generate_prepared", spy)
    from PIL import Image

    from echomimic import cli
    from tests.test_cli import make_weights_dir, parity_case

    case = parity_case("v1_audio")
    weights = make_weights_dir(case, tmp_path / "weights")
    mask = tmp_path / "mask.png"
    Image.fromarray(np.rint(np.load(case / "inputs" / "face_mask.npy") * 255).astype(np.uint8)).save(mask)
    out = tmp_path / "out.mp4"
    status = cli.main(
        [
            "generate",
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "1",
            "--length",
            "6",
            "--no-crop",
            "--mask",
            str(mask),
            "--save-frames",
            str(tmp_path / "frames.npy"),
            "--quiet",
        ]
    )
    assert status == 0
    assert callable(seen["on_frames"]) and seen["frames"] is None
    assert probe_mp4(out)["frames"].shape[0] == 6
    assert np.load(tmp_path / "frames.npy").shape == (6, 64, 64, 3)
