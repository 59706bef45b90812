"""``python -m echomimic generate --mode v3_flash`` end to end on tiny weights: an mp4 with sound for speech of
one chunk and of three chunks, the weights folder rules, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from echomimic.cli import main
from tests.parity_cases import PARITY_ROOT
from tests.v3_cases import make_v3_weights_folder, v3_cases

FLASH_CASE = v3_cases("flash")[0]
PARAMS = json.loads((FLASH_CASE / "case.json").read_text())["parameters"]
IMAGE = FLASH_CASE / "inputs" / PARAMS["image"]
SPEECH = FLASH_CASE / "inputs" / PARAMS["audio"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_v3_weights_folder(FLASH_CASE, tmp_path_factory.mktemp("cli_v3"))


def _generate(weights: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--mode",
            "v3_flash",
            "--weights",
            str(weights),
            "--image",
            str(IMAGE),
            "--audio",
            str(SPEECH),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )


def _streams(path: Path) -> tuple[int, float, bool]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, float(video.average_rate), bool(container.streams.audio)


@pytest.mark.parametrize(
    "extra, frames",
    [(("--length", "13"), 13), (("--length", "29", "--chunk-frames", "13", "--chunk-overlap", "5"), 29)],
)
def test_writes_a_v3_mp4_with_sound(weights: Path, tmp_path: Path, extra, frames) -> None:
    """Catches a broken V3 command line (one chunk and three chunks): the mp4 exists, has the frames asked for
    at 25 fps, and the speech muxed in; the prompt embedding is cached for the next run."""
    out = tmp_path / "v3.mp4"
    assert _generate(weights, out, *extra) == 0
    assert _streams(out) == (frames, 25.0, True)
    assert any((weights / ".prompt-cache").iterdir())


def test_v1_folder_for_v3_and_v3_folder_for_v1_are_refused(weights: Path, tmp_path: Path, capsys) -> None:
    """Catches mixing releases: a V1 folder given to v3_flash, or a V3 folder to a V1 mode, is one line
    (exit 2) before anything loads."""
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "face_locator.pth").write_bytes(b"x")
    (v1 / "audio_processor").mkdir()
    (v1 / "audio_processor" / "whisper_tiny.pt").write_bytes(b"x")
    assert _generate(v1, tmp_path / "a.mp4") == 2
    assert "holds EchoMimic V1 files" in capsys.readouterr().err
    assert main(["check", "--mode", "audio", "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "holds EchoMimic V3 files" in err and err.count("\n") == 1


def test_missing_file_names_it_and_its_repository(weights: Path, tmp_path: Path, capsys) -> None:
    """Catches a missing base-model file reported as a traceback: the message names the file, its repository
    and the download command."""
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "transformer").mkdir()
    (partial / "transformer" / "diffusion_pytorch_model.safetensors").symlink_to(
        weights / "transformer" / "diffusion_pytorch_model.safetensors"
    )
    assert main(["check", "--mode", "v3_flash", "--weights", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "Wan2.1_VAE.pth" in err and "alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP" in err
    assert "python -m echomimic download --mode v3_flash" in err


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--mask", str(IMAGE)), "V1/V2 options"),
        (("--chunk-frames", "12"), "1 + 4k"),
        (("--width", "100", "--height", "64"), "multiples of 16"),
        (("--width", "64"), "both --width and --height"),
    ],
)
def test_bad_v3_options_are_one_line(weights: Path, tmp_path: Path, capsys, extra, words) -> None:
    """Catches V3 options that fail late or with a traceback instead of one line (exit 2)."""
    assert _generate(weights, tmp_path / "x.mp4", *extra) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_wrong_wav2vec2_folder_is_one_line(weights: Path, tmp_path: Path, capsys) -> None:
    """Catches a wav2vec2 folder of the wrong kind (here: a Whisper-style config) failing deep in transformers."""
    folder = tmp_path / "w"
    for item in weights.rglob("*"):
        if item.is_file() or item.is_symlink():
            target = folder / item.relative_to(weights)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(item.resolve())
    config = folder / "chinese-wav2vec2-base" / "config.json"
    config.unlink()
    config.write_text(json.dumps({"model_type": "whisper"}))
    assert _generate(folder, tmp_path / "x.mp4", "--length", "5") == 2
    err = capsys.readouterr().err
    assert "wav2vec2" in err and err.count("\n") == 1


def test_parity_root_is_beside_the_repo() -> None:
    """Catches the V1/V2 fixtures moving (the V1-folder test above mirrors their file names)."""
    assert PARITY_ROOT.is_dir()


def _wav(path: Path, samples, rate: int = 16000) -> Path:
    import wave

    import numpy as np

    data = (np.asarray(samples, dtype=np.float32) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.tobytes())
    return path


@pytest.mark.parametrize("kind", ["silent", "short", "tiny_picture"])
def test_unusable_speech_or_picture_is_one_line(weights: Path, tmp_path: Path, capsys, kind: str) -> None:
    """Catches silent speech, speech shorter than the loudness meter's block, or a picture smaller than one
    16x16 latent patch failing deep inside the models: one line, exit 2, no mp4."""
    import numpy as np
    from PIL import Image

    image, audio = IMAGE, SPEECH
    if kind == "silent":
        audio = _wav(tmp_path / "silent.wav", np.zeros(32000))
    elif kind == "short":
        audio = _wav(tmp_path / "short.wav", np.sin(np.arange(3200) / 5.0) * 0.5)
    else:
        image = tmp_path / "tiny.png"
        Image.new("RGB", (12, 40), (200, 100, 50)).save(image)
    out = tmp_path / "x.mp4"
    status = main(
        [
            "generate",
            "--mode",
            "v3_flash",
            "--weights",
            str(weights),
            "--image",
            str(image),
            "--audio",
            str(audio),
            "--out",
            str(out),
            "--steps",
            "1",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()
