"""What a newcomer sees from the command line: hints that lead the right way, a warning and an estimate
when there is no GPU, progress with elapsed and remaining time, quiet MediaPipe, and the small words."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from echomimic import cli
from echomimic.cli.report import _Reporter, count
from echomimic.native_logs import NATIVE_LOG_LINE, VERBOSE_ENV
from tests.parity_cases import MEDIAPIPE_ROOT, REPO_ROOT


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = cli.main(list(argv))
    return status, capsys.readouterr().err


@pytest.mark.parametrize("mode", ["audio", "pose_acc", "v2", "v2_acc"])
def test_a_missing_weights_folder_is_one_line_with_the_command_for_that_mode(tmp_path, capsys, mode):
    """Catches a mistyped --weights reported as a list of missing files, or a hint that fetches another
    release (download without --mode v2 fills a V1 folder), in both generate and check."""
    missing = tmp_path / "pretrained"
    for command in (["generate", "--image", str(REPO_ROOT / "example_inputs" / "portrait.png")], ["check"]):
        extra = (
            ["--driving-video", str(REPO_ROOT / "example_inputs" / "portrait.png")]
            if (command[0] == "generate" and mode != "audio")
            else []
        )
        if command[0] == "generate":
            extra += ["--out", str(tmp_path / "out.mp4")]
        status, err = run_cli(*command, *extra, "--mode", mode, "--weights", str(missing), capsys=capsys)
        assert status == 2, err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "does not exist" in lines[0] and err.strip().endswith(lines[0]), err
        assert f"python -m echomimic download --mode {mode} --weights {missing}" in lines[0], err
        assert not missing.exists()


def test_check_with_files_missing_suggests_a_command_check_accepts(tmp_path, capsys):
    """Catches `check` telling the user to 'run again with --download', an option `check` refuses."""
    (tmp_path / "w").mkdir()
    status, err = run_cli("check", "--mode", "v2", "--weights", str(tmp_path / "w"), capsys=capsys)
    assert status == 2
    assert "run again with --download" not in err
    assert f"python -m echomimic download --mode v2 --weights {tmp_path / 'w'}" in err
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["check", "--download"])  # still refused, so the hint must not say it


def test_generate_download_accepts_a_folder_that_does_not_exist_yet(tmp_path, monkeypatch):
    """Catches the inverted flag: `generate --download` refusing the very folder it is meant to create."""
    from echomimic.cli import generate

    seen: dict[str, object] = {}

    def fake_download(folder, mode, log=None):
        seen["folder"], seen["mode"] = Path(folder), mode
        raise SystemExit(0)  # stop before anything heavy

    monkeypatch.setattr(generate, "download_weights", fake_download)
    with pytest.raises(SystemExit):
        cli.main(
            [
                "generate",
                "--download",
                "--mode",
                "v2_acc",
                "--weights",
                str(tmp_path / "new"),
                "--driving-video",
                str(REPO_ROOT / "example_inputs" / "portrait.png"),
            ]
        )
    assert seen == {"folder": tmp_path / "new", "mode": "v2_acc"}


class StubClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _info(done: int, total: int, step: int, steps: int, window: int, windows: int) -> SimpleNamespace:
    return SimpleNamespace(done=done, total=total, step=step, steps=steps, window=window, windows=windows)


def test_no_gpu_warning_and_an_estimate_from_the_first_window(capsys):
    """Catches a silent CPU fallback, an estimate missing or not based on the first measured window, or a
    progress line without elapsed and remaining time."""
    clock = StubClock()
    report = _Reporter(quiet=False, clock=clock)
    report.interactive = False
    report.warn_no_gpu()
    clock.now += 30.0  # model loading: not part of the estimate
    report.start_sampling()
    clock.now += 92.7
    report.progress(_info(1, 330, 0, 30, 0, 11))
    clock.now += 92.7
    report.progress(_info(12, 330, 1, 30, 0, 11))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("warning: no GPU found") and "--device cuda" in lines[0] and "CUDA build" in lines[0]
    assert lines[1] == (
        "estimate on the CPU: about 8h 29m for the whole run (the first window took 92.7 s; 330 windows over all steps)"
    )
    assert "elapsed 1m 33s" in lines[2] and "remaining ~8h 28m" in lines[2]
    assert "elapsed 3m 05s" in lines[3] and "remaining ~1h 21m" in lines[3]
    assert sum("estimate" in line for line in lines) == 1


def test_no_warning_with_a_gpu_or_an_explicit_cpu(monkeypatch, tmp_path, capsys):
    """Catches the warning firing when the user chose the CPU, or missing when auto falls back to it."""
    from echomimic.cli import generate

    calls: list[str] = []
    monkeypatch.setattr(_Reporter, "warn_no_gpu", lambda self: calls.append("warned"))

    def stop(*args, **kwargs):
        raise SystemExit(0)

    monkeypatch.setattr(generate, "_prepare_reference", stop)
    monkeypatch.setattr(generate, "check_weights", lambda folder, mode: {})
    monkeypatch.setattr(generate, "fetch_mediapipe_for_run", lambda *a, **k: None)
    (tmp_path / "w").mkdir()
    for device, expected in (("auto", ["warned"]), ("cpu", [])):
        calls.clear()
        with pytest.raises(SystemExit):
            cli.main(["generate", "--weights", str(tmp_path / "w"), "--device", device, "--quiet"])
        assert calls == expected, device


def test_help_and_counts_read_right():
    """Catches the top-level help naming V1 only, and '1 steps'."""
    text = cli.build_parser().format_help()
    assert "V1, V2 and V3 flash" in text and "EchoMimic V1:" not in text
    assert count(1, "step") == "1 step" and count(6, "step") == "6 steps"


_EXTRACT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from echomimic.cli import build_parser, resolve_mode_defaults
    from echomimic.cli.inputs import _hand_pose_images
    from echomimic.cli.report import _Reporter
    from echomimic.video_io import write_mp4
    from tests.test_poses_extract import PHOTOS, load_photo
    from tests.parity_cases import MEDIAPIPE_ROOT
    tmp = Path(sys.argv[1])
    write_mp4(tmp / "clip.mp4", np.stack([load_photo(name, 256) for name in PHOTOS]), 24.0)
    args = resolve_mode_defaults(build_parser().parse_args(["generate", "--mode", "v2", "--image",
        str(MEDIAPIPE_ROOT / "test_images" / PHOTOS[0]), "--driving-video", str(tmp / "clip.mp4"),
        "--width", "96", "--height", "96", "--weights", str(tmp / "weights")]))
    print("extracted", _hand_pose_images(args, _Reporter(quiet=False)).shape, file=sys.stderr)
""")


@pytest.mark.parametrize("verbose", [False, True])
def test_v2_extraction_prints_no_mediapipe_log_lines(tmp_path, verbose):
    """Catches MediaPipe's C++ log spam (LiteRT INFO lines, W0000 lines, 'Sparsity tensors ...') reaching the
    terminal during a V2 hand extraction; with ECHOMIMIC_VERBOSE=1 they must show (so the check can fail)."""
    env = {key: value for key, value in os.environ.items() if key != VERBOSE_ENV}
    env["ECHOMIMIC_MEDIAPIPE_BASE_URL"] = MEDIAPIPE_ROOT.as_uri()
    env["ECHOMIMIC_MODELS_DIR"] = str(tmp_path / "models")
    if verbose:
        env[VERBOSE_ENV] = "1"
    result = subprocess.run(
        [sys.executable, "-c", _EXTRACT, str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    native = [line for line in result.stderr.splitlines() if NATIVE_LOG_LINE.match(line)]
    assert "extracting hand poses from 2 frames" in result.stderr and "extracted (2, 96, 96, 3)" in result.stderr
    if verbose:
        assert len(native) > 3, result.stderr
    else:
        assert native == [], native


def test_lines_of_others_written_during_a_quiet_call_are_kept(capfd):
    """Catches the log silencer swallowing what is not MediaPipe's (another thread's message, a warning)."""
    from echomimic.native_logs import quiet_native_logs

    with quiet_native_logs():
        os.write(2, b"W0000 00:00:1796303240.109521    8548 inference_runner_litert.cc:1433] noise\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"a message of someone else\n")
    assert capfd.readouterr().err == "a message of someone else\n"
