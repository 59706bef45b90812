"""Bad input and failures never cost a user their work (issue 12), through ``python -m echomimic``.

Each case asserts the class of outcome a user sees: exit status 2, exactly one ``error:`` line that
names the path and says what to do, no traceback, a previous output byte-identical, and no partial or
temporary file left in the output folder or the temp dir.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echomimic import cli
from echomimic.atomic import TEMP_PREFIX, OutputError
from echomimic.errors import InputError
from tests.parity_cases import PARITY_ROOT, REPO_ROOT
from tests.test_cli import make_weights_dir

AUDIO_CASE = PARITY_ROOT / "v1_audio"
# A fast run on the case's tiny weights: its own mask, no face detector.
FAST = [
    "--width",
    "64",
    "--height",
    "64",
    "--steps",
    "1",
    "--length",
    "6",
    "--context-frames",
    "4",
    "--context-overlap",
    "1",
    "--device",
    "cpu",
    "--no-crop",
    "--quiet",
]
PREVIOUS = b"the previous video: must survive every failure byte for byte\n" * 50


@pytest.fixture(scope="module")
def case() -> Path:
    assert (AUDIO_CASE / "case.json").is_file(), f"parity case v1_audio missing under {PARITY_ROOT}"
    return AUDIO_CASE


@pytest.fixture(scope="module")
def weights(case: Path, tmp_path_factory) -> Path:
    return make_weights_dir(case, tmp_path_factory.mktemp("weights") / "weights")


@pytest.fixture(scope="module")
def inputs(case: Path, tmp_path_factory) -> list[str]:
    """--image/--audio/--mask of the case (the mask as the png a user would pass)."""
    folder = tmp_path_factory.mktemp("inputs")
    mask = np.rint(np.load(case / "inputs" / "face_mask.npy") * 255).astype(np.uint8)
    Image.fromarray(mask).save(folder / "mask.png")
    return [
        "--image",
        str(case / "inputs" / "reference.png"),
        "--audio",
        str(case / "inputs" / "audio.wav"),
        "--mask",
        str(folder / "mask.png"),
    ]


@pytest.fixture
def private_temp(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """The process temp dir, checked empty after the test (nothing may be left there either)."""
    folder = tmp_path / "system-temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    # torch keeps its own kernel cache folder there (torchinductor_<user>); anything else is ours.
    assert [name for name in os.listdir(folder) if not name.startswith("torchinductor_")] == [], (
        "files left in the temp dir"
    )


def run(capsys, *args: object) -> tuple[int, str]:
    status = cli.main([str(arg) for arg in args])
    return status, capsys.readouterr().err


def assert_one_line_error(status: int, err: str, *fragments: str) -> str:
    assert status == 2, err
    assert "Traceback" not in err and 'File "' not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX) or "partial" in name)


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs at ``folder``: a real file system that can be filled or made read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    assert result.returncode == 0, f"this test needs to mount a small tmpfs (root): {result.stderr.strip()}"
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


# --- outputs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["folder name", "folder that cannot be made", "save-frames in a file"])
def test_unwritable_output_fails_before_any_model_loads(tmp_path, capsys, private_temp, inputs, where):
    """Catches an output location checked only after generating (a traceback minutes later): the
    weights folder does not even exist, so the output error must come first."""
    no_weights = tmp_path / "no-weights"
    out, extra = tmp_path / "out.mp4", []
    if where == "folder name":
        out = tmp_path
        expected = "it is a folder"
    elif where == "folder that cannot be made":
        (tmp_path / "a-file").write_text("a file where the folder should be")
        out = tmp_path / "a-file" / "out.mp4"
        expected = "Cannot create the folder"
    else:
        (tmp_path / "a-file").write_text("a file where the folder should be")
        extra = ["--save-frames", str(tmp_path / "a-file" / "frames.npy")]
        expected = "--save-frames"
    status, err = run(capsys, "generate", *inputs, "--weights", no_weights, "--out", out, *extra, *FAST)
    line = assert_one_line_error(status, err, expected)
    assert "weights" not in line.lower().replace(str(tmp_path).lower(), "")
    assert leftovers(tmp_path) == []


def test_read_only_output_folder_fails_before_loading_and_keeps_the_previous_file(tmp_path, capsys, inputs):
    """Catches writing into a read-only folder discovered only by PyAV after the whole generation."""
    folder = tmp_path / "read-only"
    with mounted_tmpfs(folder):
        (folder / "out.mp4").write_bytes(PREVIOUS)
        remount(folder, "ro")
        status, err = run(
            capsys, "generate", *inputs, "--weights", tmp_path / "no-weights", "--out", folder / "out.mp4", *FAST
        )
        assert_one_line_error(status, err, str(folder), "not writable")
        assert (folder / "out.mp4").read_bytes() == PREVIOUS
        assert leftovers(folder) == []


def test_disk_full_while_writing_keeps_the_previous_file(tmp_path, capsys, private_temp, weights, inputs):
    """Catches the previous video destroyed and an unplayable partial left when the disk fills mid-write."""
    folder = tmp_path / "full"
    with mounted_tmpfs(folder, "256k"):
        (folder / "out.mp4").write_bytes(PREVIOUS)
        with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as filler:
            while True:  # leave no free block
                filler.write(b"\0" * 4096)
        status, err = run(capsys, "generate", *inputs, "--weights", weights, "--out", folder / "out.mp4", *FAST)
        assert_one_line_error(status, err, str(folder / "out.mp4"), "No space left")
        assert (folder / "out.mp4").read_bytes() == PREVIOUS
        assert leftovers(folder) == []


def test_a_write_error_midway_leaves_no_partial_file(tmp_path, private_temp, monkeypatch):
    """Catches write_mp4 writing straight to the target: an OSError(ENOSPC) after two frames must leave
    the previous file and no temporary file (the path a full disk takes, without a file system)."""
    from echomimic import video_io

    original = video_io._frames_as_uint8_source

    def fills_the_disk(frames):
        count, height, width, get_frame = original(frames)

        def get(index: int):
            if index >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return get_frame(index)

        return count, height, width, get

    monkeypatch.setattr(video_io, "_frames_as_uint8_source", fills_the_disk)
    out = tmp_path / "out.mp4"
    out.write_bytes(PREVIOUS)
    with pytest.raises(OutputError, match=f"{out}: No space left on device"):
        video_io.write_mp4(out, np.zeros((6, 16, 16, 3), np.float32), 24.0)
    assert out.read_bytes() == PREVIOUS
    assert leftovers(tmp_path) == []


_SLOW_WRITER = """
import sys, time
import echomimic.video_io as video_io
original = video_io._frames_as_uint8_source
def slow(frames):
    count, height, width, get_frame = original(frames)
    def get_slowly(index):
        time.sleep(0.4)  # observable: the temporary mp4 exists while frames are encoded
        return get_frame(index)
    return count, height, width, get_slowly
video_io._frames_as_uint8_source = slow
from echomimic.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_writing_keeps_the_previous_file(tmp_path, weights, inputs):
    """Catches Ctrl-C during mp4 writing replacing the previous file with a 2-frame mp4: SIGINT reaches
    a child ``python -m echomimic``-style process once its temporary mp4 exists."""
    out_folder = tmp_path / "videos"
    out_folder.mkdir()
    out = out_folder / "out.mp4"
    out.write_bytes(PREVIOUS)
    child_temp = tmp_path / "child-temp"
    child_temp.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, "generate", *inputs, "--weights", str(weights), "--out", str(out), *FAST],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(child_temp)},
        # A shell's Ctrl-C reaches a foreground program with SIGINT's default action, even when this suite
        # runs with SIGINT ignored (nohup, some CI runners), which the child would otherwise inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not leftovers(out_folder):
        assert child.poll() is None, f"the child ended before writing: {child.communicate()}"
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == PREVIOUS
    assert leftovers(out_folder) == []
    assert [name for name in os.listdir(child_temp) if not name.startswith("torchinductor_")] == []


# --- damaged weight files -----------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this would call os.system: the payload of a malicious .pth."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


SLOTS = (
    "reference_unet.pth",
    "denoising_unet.pth",
    "motion_module.pth",
    "face_locator.pth",
    "audio_processor/whisper_tiny.pt",
)


def _damage(target: Path, kind: str, marker: Path) -> str:
    """Replace ``target`` (a symlink into the case) with a damaged file; returns the expected message part."""
    real = target.resolve()
    target.unlink()
    if kind == "empty":
        target.write_bytes(b"")
        return "is empty: the download probably failed; download it again"
    if kind == "text":
        target.write_text("<html><body>Rate limit exceeded</body></html>\n")
        return "is not a weights file"
    if kind == "truncated":
        data = real.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return "download it again"
    if kind == "hostile":
        torch.save({"conv_in.weight": torch.zeros(1), "payload": _RunsCode(marker)}, target)
        return "refused: it would import os.system; nothing was run"
    if kind == "hostile-legacy":
        torch.save({"payload": _RunsCode(marker)}, target, _use_new_zipfile_serialization=False)
        return "refused: it would import os.system; nothing was run"
    raise AssertionError(kind)


def _copy_weights(weights: Path, target: Path) -> Path:
    shutil.copytree(weights, target, symlinks=True)
    return target


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "hostile", "hostile-legacy"])
@pytest.mark.parametrize("slot", SLOTS)
def test_damaged_or_hostile_weight_file_is_one_clear_message(tmp_path, capsys, weights, inputs, slot, kind):
    """Catches IndexError from inside the error handler (0-byte or text .pth), torch's refusal quoted cut
    off without the blocked import, the Whisper file named without its folder, and any pickle that runs."""
    folder = _copy_weights(weights, tmp_path / "weights")
    marker = tmp_path / "pwned"
    damaged = folder / slot
    expected = _damage(damaged, kind, marker)
    out = tmp_path / "out.mp4"
    out.write_bytes(PREVIOUS)
    status, err = run(capsys, "generate", *inputs, "--weights", folder, "--out", out, *FAST)
    assert_one_line_error(status, err, str(damaged), expected)
    assert not marker.exists(), "the pickle ran code"
    assert out.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


def test_truncated_safetensors_is_one_clear_message(tmp_path, capsys, weights, inputs):
    """Catches a damaged .safetensors (preferred over the .pth beside it) surfacing as a raw error."""
    folder = _copy_weights(weights, tmp_path / "weights")
    data = (AUDIO_CASE / "weights" / "reference_unet.safetensors").read_bytes()
    (folder / "reference_unet.safetensors").write_bytes(data[: len(data) // 2])
    status, err = run(capsys, "generate", *inputs, "--weights", folder, "--out", tmp_path / "out.mp4", *FAST)
    assert_one_line_error(status, err, str(folder / "reference_unet.safetensors"), "download it again")


@pytest.mark.parametrize("command", ["generate", "check", "download", "convert"])
def test_weights_folder_that_is_a_symlink_loop(tmp_path, capsys, inputs, command):
    """Catches pathlib's RuntimeError('Symlink loop') traceback for a weights folder linking to itself."""
    loop = tmp_path / "weights"
    loop.symlink_to(loop)
    args = {
        "generate": ["generate", *inputs, "--weights", loop, "--out", tmp_path / "out.mp4", *FAST],
        "check": ["check", "--weights", loop],
        "download": ["download", "--weights", loop],
        "convert": ["convert", loop],
    }[command]
    status, err = run(capsys, *args)
    assert_one_line_error(status, err, str(loop), "symlink loop")


# --- images decoded as they display -------------------------------------------------------------------


def _portrait(height: int = 24, width: int = 16) -> np.ndarray:
    """A picture whose orientation is obvious: a red top band, a blue left band, gray elsewhere."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:4] = (220, 30, 30)
    image[:, :3] = (30, 30, 220)
    return image


def test_phone_jpeg_with_exif_orientation_is_read_upright(tmp_path):
    """Catches a sideways portrait: a phone stores the pixels rotated with EXIF Orientation 6 (rotate 90°
    clockwise to display); ComfyUI's LoadImage applies ImageOps.exif_transpose, so must we."""
    upright = _portrait()
    stored = Image.fromarray(np.rot90(upright, k=1))  # what the sensor wrote: the upright picture turned left
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", quality=100, subsampling=0, exif=exif)
    notes: list[str] = []
    from echomimic.images import read_rgb_image

    decoded = read_rgb_image(tmp_path / "phone.jpg", note=notes.append)
    assert decoded.shape == (24, 16, 3)
    assert np.abs(decoded * 255 - upright).mean() < 4  # jpeg noise only
    assert any("EXIF orientation" in note for note in notes)
    assert np.array_equal(cli.load_rgb_image(tmp_path / "phone.jpg"), decoded)  # the CLI reads it the same


def test_sixteen_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    """Catches a 16-bit grayscale PNG read 97% white (Pillow's 'I;16' converted to RGB clips at 255)."""
    from echomimic.images import read_mask_image, read_rgb_image

    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    decoded = read_rgb_image(tmp_path / "gray16.png")
    expected = np.minimum(values / 255.0, 255) / 255.0  # ComfyUI's 'I' rule: value * (1/255), 8-bit RGB
    np.testing.assert_allclose(decoded[..., 0], expected, atol=1 / 255 + 1e-6)
    assert (decoded == 1.0).mean() < 0.01
    np.testing.assert_allclose(read_mask_image(tmp_path / "gray16.png"), expected, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P-transparency", "CMYK", "L"])
def test_other_modes_give_the_pixels_comfyui_load_image_gives(tmp_path, mode):
    """Catches alpha composited onto white (ComfyUI's LoadImage keeps the stored colours and drops alpha)
    or palette / CMYK / gray images decoded differently from LoadImage's convert('RGB')."""
    from echomimic.images import read_rgb_image

    rgb = _portrait()
    if mode == "RGBA":
        image = Image.fromarray(
            np.dstack([rgb, np.where(np.arange(16) < 8, 0, 255)[None].repeat(24, 0)]).astype(np.uint8)
        )
        expected = rgb
    elif mode == "LA":
        image = Image.fromarray(rgb).convert("LA")
        image.putalpha(0)
        expected = np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
    elif mode == "P-transparency":
        image = Image.fromarray(rgb).convert("P")
        image.info["transparency"] = 0
        expected = np.asarray(image.convert("RGB"))
    elif mode == "CMYK":
        cmyk = np.dstack([255 - rgb, np.zeros(rgb.shape[:2], np.uint8)])
        image = Image.fromarray(cmyk, "CMYK")
        expected = rgb  # C = 255 - R etc. with K = 0 displays as the RGB picture
    else:
        image = Image.fromarray(rgb).convert("L")
        expected = np.asarray(image.convert("RGB"))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"image{suffix}"
    image.save(path, **({"quality": 100} if suffix == ".jpg" else {}))
    error = np.abs(read_rgb_image(path) * 255 - expected)
    if suffix == ".jpg":
        assert error.mean() <= 3  # jpeg noise only
    else:
        assert error.max() <= 1e-3


def test_unreadable_image_is_one_line(tmp_path, capsys, weights):
    """Catches PIL's exception reaching the user for a file that is not an image."""
    fake = tmp_path / "portrait.png"
    fake.write_text("not an image")
    status, err = run(capsys, "generate", "--image", fake, "--weights", weights, "--out", tmp_path / "o.mp4", *FAST)
    assert_one_line_error(status, err, str(fake), "cannot read the image")
    with pytest.raises(InputError):
        cli.load_rgb_image(fake)


# --- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--cfg", "nan"], "not nan or inf"),
        (["--cfg", "inf"], "not nan or inf"),
        (["--fps", "nan"], "not nan or inf"),
        (["--fps", "inf"], "not nan or inf"),
        (["--context-frames", "40"], "between 1 and 32"),
        (["--seed", str(2**64)], "between 0 and 18446744073709551615"),
        (["--seed", "-1"], "between 0 and 18446744073709551615"),
    ],
)
def test_settings_are_refused_before_anything_loads(tmp_path, capsys, inputs, extra, expected):
    """Catches nan guidance silently turning guidance off, and fps / context / seed refused only after the
    models loaded: the weights folder does not exist, so the settings message must come first."""
    out = tmp_path / "out.mp4"
    status, err = run(capsys, "generate", *inputs, "--weights", tmp_path / "no-weights", "--out", out, *FAST, *extra)
    assert_one_line_error(status, err, expected)
    assert not out.exists()


def test_the_seed_range_is_comfyuis():
    """Catches a seed range narrower than ComfyUI's seed widget (0 .. 2**64 - 1) or one torch rejects."""
    from echomimic.pipeline.settings import SamplingSettings

    largest = SamplingSettings(seed=2**64 - 1).validated()
    torch.Generator().manual_seed(largest.seed)  # torch takes the whole range
    for bad in (2**64, -1):
        with pytest.raises(InputError, match="seed"):
            SamplingSettings(seed=bad).validated()
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(InputError, match="nan or inf"):
            SamplingSettings(cfg=value).validated()


# --- quiet --------------------------------------------------------------------------------------------


def test_vae_loads_without_accelerate_advice(case, capfd, caplog):
    """Catches diffusers' six-line 'install accelerate' advice printed on every run."""
    from echomimic.pipeline.vae import load_diffusers_vae

    load_diffusers_vae(case / "vae")
    captured = capfd.readouterr()
    assert "accelerate" not in captured.err + captured.out + caplog.text


# --- the same cases through the ComfyUI nodes ---------------------------------------------------------


@pytest.fixture(scope="module")
def comfy_nodes(tmp_path_factory) -> tuple[Path, dict, type]:
    """(models/echomimic folder, node instances, EchoMimicNodeError) with ComfyUI's modules stood in."""
    from tests.comfy_stubs import build_tiny_weights, extension_submodule, install_stub_modules, load_extension

    models_dir = tmp_path_factory.mktemp("comfy_models")
    echomimic_dir = build_tiny_weights(models_dir)
    install_stub_modules(models_dir)
    nodes = {node_id: cls() for node_id, cls in load_extension().NODE_CLASS_MAPPINGS.items()}
    return echomimic_dir, nodes, extension_submodule("nodes.common").EchoMimicNodeError


@pytest.mark.parametrize("kind", ["empty", "text", "hostile"])
@pytest.mark.parametrize("slot", ["reference_unet", "denoising_unet", "motion_module", "face_locator", "whisper"])
def test_nodes_show_the_same_one_line_message_for_damaged_weights(comfy_nodes, tmp_path, slot, kind):
    """Catches the ComfyUI dialog showing IndexError / torch's cut-off text instead of the message, and a
    hostile pickle in any slot (or the Whisper file) running code when loaded through the nodes."""
    echomimic_dir, nodes, node_error = comfy_nodes
    name = f"damaged_{slot}_{kind}"
    folder = echomimic_dir / name
    shutil.copytree(echomimic_dir / "tiny_audio", folder, symlinks=True)
    if slot == "whisper":
        damaged = folder / "audio_processor" / "whisper_tiny.pt"
    else:
        (folder / f"{slot}.safetensors").unlink()  # the .pth is what the release ships
        damaged = folder / f"{slot}.pth"
        damaged.symlink_to(AUDIO_CASE / "weights" / f"{slot}.pth")
    marker = tmp_path / "pwned"
    expected = _damage(damaged, kind, marker)
    with pytest.raises(node_error) as caught:
        if slot == "whisper":
            nodes["EchoMimicAudioEncoderLoader"].load(name, "fp32", download_missing=False)
        else:
            nodes["EchoMimicModelLoader"].load("V1 audio", "auto", name, download_missing=False)
    message = str(caught.value)
    assert str(damaged) in message and expected in message and "\n" not in message, message
    assert not marker.exists(), "the pickle ran code"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [("cfg", math.nan, "nan or inf"), ("seed", 2**64, "between 0 and"), ("context_frames", 33, "between 1 and 32")],
)
def test_sampler_node_refuses_the_settings_the_command_line_refuses(comfy_nodes, setting, value, expected):
    """Catches the node mapping cfg nan to the default (a silent change) or accepting what the CLI refuses:
    both front-ends go through SamplingSettings.validated before any work."""
    _, nodes, node_error = comfy_nodes
    model = nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "tiny_audio", download_missing=False)[0]
    arguments = dict(width=64, height=64, length=6, steps=1, cfg=2.5, seed=420, context_frames=4, context_overlap=1)
    arguments[setting] = value
    reference = torch.zeros(1, 64, 64, 3)
    with pytest.raises(node_error, match=expected):
        nodes["EchoMimicSampler"].sample(model, None, reference, object(), **arguments)


# --- landmarks that would draw nothing ----------------------------------------------------------------


def _landmark_json(tmp_path: Path, fill) -> Path:
    """A landmark file of 3 frames: all null (NaN), or all far off the 512x512 canvas."""
    from echomimic.landmarks import LandmarkSequence

    points = np.full((3, 478, 3), np.nan, np.float32) if fill == "null" else np.full((3, 478, 3), fill, np.float32)
    path = tmp_path / "landmarks.json"
    LandmarkSequence(points, 512, 512).save(path)
    return path


@pytest.mark.parametrize("fill", ["null", 1e6, -300.0])
def test_landmarks_that_draw_nothing_are_refused(tmp_path, comfy_nodes, fill):
    """Catches all-null / NaN / off-canvas landmarks drawn as blank images, so that the video silently has
    no pose guidance: the library refuses them, for the draw node as for the CLI."""
    from echomimic.landmarks import LandmarkSequence, draw_landmarks

    sequence = LandmarkSequence.load(_landmark_json(tmp_path, fill))
    with pytest.raises(InputError, match="draw nothing"):
        draw_landmarks(sequence, 64, 64)
    from tests.comfy_stubs import extension_submodule

    _, nodes, node_error = comfy_nodes
    as_loaded_by_comfyui = extension_submodule("echomimic.landmarks").LandmarkSequence.load(tmp_path / "landmarks.json")
    with pytest.raises(node_error, match="draw nothing"):
        nodes["EchoMimicDrawLandmarks"].draw(as_loaded_by_comfyui, 64, 64, False)


def test_partly_blank_landmarks_are_reported_by_frame():
    """Catches blank frames (no point on the canvas) going unreported, or reported with wrong numbers."""
    from echomimic.landmarks import LandmarkSequence
    from echomimic.landmarks.sequence import frame_list

    points = np.full((6, 478, 3), 100.0, np.float32)
    points[[1, 2, 5]] = np.nan
    sequence = LandmarkSequence(points, 512, 512, detected=[True, False, False, True, True, False])
    assert sequence.check_drawable() == [1, 2, 5]
    assert frame_list([1, 2, 5]) == "1-2, 5" and frame_list(list(range(0, 40, 2)), shown=2) == "0, 2, ..."
    assert sequence.missing_face_report() == (
        "no face in 3 of 6 frames (frames 1-2, 5); their landmarks are filled in from the nearest frames"
    )
    assert LandmarkSequence(points, 512, 512).missing_face_report() == ""


# --- pose modes and the face detector ----------------------------------------------------------------


def _pose_args(tmp_path: Path, *extra: str):
    from echomimic.landmarks import LandmarkSequence

    gray = tmp_path / "no-face.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(gray)
    landmarks = tmp_path / "landmarks.json"
    points = np.full((2, 478, 3), 40.0, np.float32)
    LandmarkSequence(points, 96, 96).save(landmarks)
    args = cli.resolve_mode_defaults(
        cli.build_parser().parse_args(
            [
                "generate",
                "--mode",
                "pose_acc",
                "--image",
                str(gray),
                "--landmarks",
                str(landmarks),
                "--weights",
                str(tmp_path / "weights"),
                "--width",
                "64",
                "--height",
                "64",
                *extra,
            ]
        )
    )
    return args, gray


def test_given_landmarks_and_no_crop_never_run_the_face_detector(tmp_path, monkeypatch):
    """Catches the face detector running (and failing on a picture without a face) when nothing needs it:
    the pose modes with --landmarks and --no-crop use the whole picture and no face mask."""
    from echomimic import landmarks
    from echomimic.cli.inputs import _prepare_reference
    from echomimic.cli.report import _Reporter

    def no_detector(*args, **kwargs):
        raise AssertionError("the face detector ran")

    monkeypatch.setattr(landmarks, "face_mask_and_crop", no_detector)
    args, gray = _pose_args(tmp_path, "--no-crop")
    reference, mask, landmark_reference, _ = _prepare_reference(args, gray, _Reporter(True))
    assert reference.shape == (96, 96, 3) and mask is None and landmark_reference is None  # sized by the library


def test_pose_mode_without_a_face_does_not_suggest_a_mask(tmp_path):
    """Catches the audio modes' advice (pass --mask) in the pose modes, which refuse --mask."""
    from echomimic.cli.inputs import _prepare_reference
    from echomimic.cli.report import _Reporter

    args, gray = _pose_args(tmp_path)
    with pytest.raises(InputError) as caught:
        _prepare_reference(args, gray, _Reporter(True))
    message = str(caught.value)
    assert "No face was found" in message and "--no-crop" in message and "mask" not in message


# --- the frame count is said before generating, and is what is written -----------------------------------


def _cut_wav(source: Path, target: Path, seconds: float) -> Path:
    import wave

    with wave.open(str(source)) as reader:
        params = reader.getparams()
        frames = reader.readframes(int(round(seconds * reader.getframerate())))
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(frames)
    return target


@pytest.mark.parametrize("seconds", [1.0, 0.05])
def test_length_beyond_the_speech_says_what_will_be_made_and_makes_it(tmp_path, capsys, weights, inputs, seconds):
    """Catches '--length 100' with 1 s of speech printing 'generating 100 frames' and writing 26, and 0.05 s
    printing 4 frames and writing 3: the printed plan is the library's, and the mp4 has exactly that many."""
    import re

    from tests.helpers import probe_mp4

    speech = _cut_wav(AUDIO_CASE / "inputs" / "audio.wav", tmp_path / "short.wav", seconds)
    given = [arg for arg in inputs]
    given[given.index("--audio") + 1] = str(speech)
    fast = [arg for arg in FAST if arg != "--quiet"]
    fast[fast.index("--length") + 1] = "100"
    out = tmp_path / "out.mp4"
    status, err = run(capsys, "generate", *given, "--weights", weights, "--out", out, *fast)
    assert status == 0, err
    planned = re.search(r"generating (\d+) frames: 100 were requested but the audio covers only \1", err)
    assert planned, err
    written = probe_mp4(out)["frames"].shape[0]
    assert written == int(planned.group(1)) and f"wrote {out}: {written} frames" in err


def test_an_all_zero_face_mask_is_refused_before_loading(tmp_path, capsys, weights, inputs):
    """Catches the CLI accepting an empty mask the nodes refuse: the library's rule (prepare_face_mask)
    refuses it for both, and the CLI applies it while reading the file, before any model loads."""
    zero = tmp_path / "zero.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(zero)
    given = [arg for arg in inputs]
    given[given.index("--mask") + 1] = str(zero)
    fast = [arg for arg in FAST if arg != "--quiet"]
    status, err = run(capsys, "generate", *given, "--weights", weights, "--out", tmp_path / "out.mp4", *fast)
    assert_one_line_error(status, err, "The face mask is empty (all 0)")
    assert "loading the" not in err


# --- convert --------------------------------------------------------------------------------------------


def test_convert_refuses_a_hostile_file_and_leaves_nothing_behind(tmp_path, capsys):
    """Catches convert unpickling a code-running .pth, or leaving a partial .safetensors when it stops."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(AUDIO_CASE / "weights" / "face_locator.pth", folder / "face_locator.pth")
    marker = tmp_path / "pwned"
    hostile = folder / "reference_unet.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "payload": _RunsCode(marker)}, hostile)
    status, err = run(capsys, "convert", folder)
    assert_one_line_error(status, err, str(hostile), "refused: it would import os.system")
    assert not marker.exists()
    assert sorted(path.name for path in folder.iterdir()) == [
        "face_locator.pth",
        "face_locator.safetensors",
        "reference_unet.pth",
    ]


def test_convert_into_a_read_only_folder_is_one_line(tmp_path, capsys):
    """Catches a traceback (or a conversion attempt) when the weights folder cannot be written."""
    folder = tmp_path / "read-only"
    with mounted_tmpfs(folder, "4m"):
        shutil.copy(AUDIO_CASE / "weights" / "face_locator.pth", folder / "face_locator.pth")
        remount(folder, "ro")
        status, err = run(capsys, "convert", folder)
        assert_one_line_error(status, err, str(folder), "not writable")
        assert sorted(os.listdir(folder)) == ["face_locator.pth"]


# --- the pixels ComfyUI's own LoadImage gives -----------------------------------------------------------


def _comfyui_load_image():
    """ComfyUI's ``LoadImage.load_image`` and ``node_helpers.pillow``, taken unchanged from the newest
    snapshot's source (ast) and run with Pillow, numpy and torch; only ``folder_paths`` (the input folder
    lookup) is a stand-in that returns the path it is given."""
    import ast
    import tarfile
    import types

    from PIL import ImageFile, ImageOps, ImageSequence, UnidentifiedImageError

    from tests.parity_cases import COMFYUI_SNAPSHOTS

    snapshots = sorted(Path(COMFYUI_SNAPSHOTS).glob("ComfyUI-*.tar.gz"))
    assert snapshots, f"no ComfyUI snapshot in {COMFYUI_SNAPSHOTS}"
    with tarfile.open(snapshots[-1]) as archive:
        sources = {name: archive.extractfile(name).read().decode() for name in ("nodes.py", "node_helpers.py")}

    def definition(source: str, name: str) -> str:
        node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
        return ast.get_source_segment(source, node)

    helpers: dict = {"ImageFile": ImageFile, "UnidentifiedImageError": UnidentifiedImageError}
    exec(definition(sources["node_helpers.py"], "pillow"), helpers)  # noqa: S102 - ComfyUI's own code
    namespace = {
        "Image": Image,
        "ImageOps": ImageOps,
        "ImageSequence": ImageSequence,
        "np": np,
        "torch": torch,
        "node_helpers": types.SimpleNamespace(pillow=helpers["pillow"]),
        "folder_paths": types.SimpleNamespace(get_annotated_filepath=lambda name: name),
    }
    exec(definition(sources["nodes.py"], "LoadImage"), namespace)  # noqa: S102 - ComfyUI's own code
    return lambda path: namespace["LoadImage"]().load_image(str(path))[0][0].numpy()


def _image_files(folder: Path) -> dict[str, Path]:
    """One file per kind of picture users bring: phone JPEG with EXIF rotation, alpha, palette, gray, CMYK."""
    rgb = _portrait()
    files = {}
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(rgb).save(folder / "phone.jpg", quality=90, exif=exif)
    files["exif"] = folder / "phone.jpg"
    alpha = np.dstack([rgb, np.where(np.arange(16) < 8, 0, 255)[None].repeat(24, 0)]).astype(np.uint8)
    Image.fromarray(alpha).save(folder / "rgba.png")
    files["rgba"] = folder / "rgba.png"
    Image.fromarray(rgb).convert("LA").save(folder / "la.png")
    files["la"] = folder / "la.png"
    palette = Image.fromarray(rgb).convert("P")
    palette.save(folder / "palette.png", transparency=0)
    files["palette"] = folder / "palette.png"
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    files["gray"] = folder / "gray.png"
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    files["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(np.linspace(0, 2**31 - 1, 24 * 16).reshape(24, 16).astype(np.int32), "I").save(folder / "i32.tif")
    files["32-bit"] = folder / "i32.tif"
    return files


def test_cli_and_library_read_images_exactly_as_comfyui_load_image(tmp_path):
    """Catches any difference from ComfyUI's Load Image (orientation, alpha, palette, gray, CMYK, 32-bit):
    the node user and the CLI user must animate the same pixels. Compared with ComfyUI's own code."""
    from echomimic.images import read_rgb_image

    load_image = _comfyui_load_image()
    for kind, path in _image_files(tmp_path).items():
        comfyui = load_image(path)
        assert np.array_equal(read_rgb_image(path), comfyui), kind
        assert np.array_equal(cli.load_rgb_image(path), comfyui), kind


def test_sixteen_bit_png_where_comfyui_itself_clips(tmp_path):
    """Catches our 16-bit reading regressing to ComfyUI's: its LoadImage only scales mode 'I', so the 'I;16'
    that Pillow gives for a 16-bit PNG comes out white; ours is scaled like 'I' (the deliberate difference)."""
    from echomimic.images import read_rgb_image

    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    comfyui = _comfyui_load_image()(tmp_path / "gray16.png")
    ours = read_rgb_image(tmp_path / "gray16.png")
    assert (comfyui == 1.0).mean() > 0.9  # ComfyUI's clipping (if this fails, ComfyUI fixed it: match it)
    np.testing.assert_allclose(ours[..., 0], np.minimum(values / 255.0, 255) / 255.0, atol=1 / 255 + 1e-6)


def test_node_weights_folder_that_is_a_symlink_loop(comfy_nodes):
    """Catches a symlink-loop weights folder in ComfyUI/models/echomimic reported as missing files (or a
    RuntimeError) instead of what it is."""
    echomimic_dir, nodes, node_error = comfy_nodes
    loop = echomimic_dir / "looping"
    loop.symlink_to(loop)
    with pytest.raises(node_error, match="symlink loop"):
        nodes["EchoMimicModelLoader"].load("V1 audio", "auto", "looping", download_missing=False)
    with pytest.raises(node_error, match="symlink loop"):
        nodes["EchoMimicAudioEncoderLoader"].load("looping", "fp32", download_missing=False)


# --- unreadable inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "content", "expected"),
    [
        ("--audio", "text", "cannot open"),
        ("--audio", "empty", "is empty (0 bytes)"),
        ("--audio", "folder", "a folder, not a file"),
        ("--image", "empty", "cannot read the image"),
        ("--mask", "text", "cannot read the mask"),
    ],
)
def test_unreadable_input_files_are_one_line(tmp_path, capsys, weights, inputs, option, content, expected):
    """Catches PyAV / PIL exceptions (or their errno tuples) reaching the user for a damaged input file.
    With --no-crop and a mask nothing needs the face detector, so this also runs offline."""
    bad = tmp_path / "bad-input"
    if content == "folder":
        bad.mkdir()
    else:
        bad.write_text("" if content == "empty" else "this is not a media file\n")
    given = [arg for arg in inputs]
    given[given.index(option) + 1] = str(bad)
    status, err = run(capsys, "generate", *given, "--weights", weights, "--out", tmp_path / "out.mp4", *FAST)
    assert_one_line_error(status, err, str(bad), expected)
    assert "Errno" not in err
