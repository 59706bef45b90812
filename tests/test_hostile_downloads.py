"""Downloads from servers that misbehave are bounded, and every failure is one line that leaves nothing behind.

Each server is a loopback one (tests/loopback_http.py): an endless body without a Content-Length, a body
dripped one byte at a time, a server that never answers, an HTML page instead of the file, and files already
in place that are not what their name says. The stall timeout and the deadline are set small through their
environment variables, so every case must end within a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from echomimic.downloads import DEADLINE_SECONDS_ENV, STALL_SECONDS_ENV
from echomimic.errors import WeightsError
from echomimic.mediapipe_files import ensure_mediapipe_model
from echomimic.release import FACE_DETECTOR, MEDIAPIPE_BASE_URL_ENV, VARIANTS
from echomimic.weights_download import STAGING_FOLDER, required_files
from tests.loopback_http import HTML_PAGE, hub_server, mediapipe_server
from tests.parity_cases import MEDIAPIPE_ROOT, REPO_ROOT

STALL = 1.0
DEADLINE = 2.0
# Stall + deadline + the slack of a loaded 2-core machine: every failure must come well before this.
BOUND = 12.0
HUB_BODY = MEDIAPIPE_ROOT / FACE_DETECTOR.name  # any binary file serves as every Hub file


def _leftovers(folder: Path) -> list[str]:
    """Every path under folder (temporary files and folders included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def small_bounds(monkeypatch: pytest.MonkeyPatch):
    """Small stall and deadline; afterwards, waits for abandoned Hub workers (they end with their server), so
    none writes into a later test."""
    monkeypatch.setenv(STALL_SECONDS_ENV, str(STALL))
    monkeypatch.setenv(DEADLINE_SECONDS_ENV, str(DEADLINE))
    yield
    for thread in threading.enumerate():
        if thread.name == "echomimic-hub-download":
            thread.join(30)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so nothing is copied from a real cache instead of downloaded."""
    import huggingface_hub.constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def _hub_repos() -> dict[str, dict[str, Path]]:
    """Every file `download --mode audio` asks the Hub for, each served as the same small binary file."""
    repos: dict[str, dict[str, Path]] = {}
    for item in required_files("audio"):
        repos.setdefault(item.repo_id, {})[item.repo_filename] = HUB_BODY
    return repos


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# MediaPipe files: our own bounded reader -------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("nolength", "more than the expected"),
        ("drip", "took longer than"),
        ("silent", "sent nothing"),
        ("html", "HTML page"),
    ],
)
def test_misbehaving_server_fails_in_bounded_time_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, reason: str
) -> None:
    """Catches: an endless body without a Content-Length written to disk in full (it would fill the disk), a
    1-byte drip or a silent server with no deadline, an HTML page taken for the file, a partial file left, or
    an error of several lines."""
    with mediapipe_server(MEDIAPIPE_ROOT) as server:
        server.mode = mode
        monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, server.url)
        started = time.monotonic()
        with pytest.raises(WeightsError) as caught:
            ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
        elapsed = time.monotonic() - started
    message = _one_line(str(caught.value))
    assert reason in message and FACE_DETECTOR.name in message and str(tmp_path / "mediapipe") in message
    assert elapsed < BOUND, f"{mode}: {elapsed:.1f} s"
    assert _leftovers(tmp_path / "mediapipe") == []
    if mode == "nolength":  # stopped at the expected size (plus what sat in the socket buffers), not read on
        assert server.body_bytes_sent < FACE_DETECTOR.size + (64 << 20)


@pytest.mark.parametrize(
    "base",
    ["not a url", "http://", "http://127.0.0.1:99999", "http://[::1", "ftp://example.com", "http://exa mple.com"],
)
def test_malformed_mediapipe_base_url_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, base: str
) -> None:
    """Catches: a raw ValueError (or an InvalidURL traceback) for a mistyped ECHOMIMIC_MEDIAPIPE_BASE_URL, in
    the library and at the command line (exit 2)."""
    from echomimic import cli

    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, base)
    with pytest.raises(WeightsError) as caught:
        ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
    assert MEDIAPIPE_BASE_URL_ENV in _one_line(str(caught.value))
    (tmp_path / "w").mkdir()
    assert cli.main(["check", "--weights", str(tmp_path / "w")]) == 2
    assert MEDIAPIPE_BASE_URL_ENV in _one_line(capsys.readouterr().err)
    assert _leftovers(tmp_path) == ["w"]


@pytest.mark.parametrize("content", [HTML_PAGE, "same size, other bytes"])
def test_wrong_mediapipe_file_in_place_is_refused_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, content: Any
) -> None:
    """Catches: a wrong or HTML .tflite in <weights>/mediapipe handed to mediapipe (a raw native error), a
    message that does not say to delete it, or the user's file replaced or deleted without asking."""
    from echomimic import cli

    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, "http://127.0.0.1:9")  # nothing may be fetched
    placed = tmp_path / "mediapipe" / FACE_DETECTOR.name
    placed.parent.mkdir()
    data = HTML_PAGE if isinstance(content, bytes) else b"\0" * FACE_DETECTOR.size
    placed.write_bytes(data)
    with pytest.raises(WeightsError) as caught:
        ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
    message = _one_line(str(caught.value))
    assert str(placed) in message and "Delete it" in message
    assert ("HTML page" if isinstance(content, bytes) else "sha256") in message
    assert placed.read_bytes() == data
    assert cli.main(["check", "--weights", str(tmp_path)]) == 2  # the Hub files are missing, but:
    assert f"damaged  {FACE_DETECTOR.name}" in capsys.readouterr().out
    placed.unlink()
    placed.symlink_to(MEDIAPIPE_ROOT / FACE_DETECTOR.name)  # the right file is taken
    assert ensure_mediapipe_model(FACE_DETECTOR, tmp_path) == placed


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_bad_timeout_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Catches: a non-number (or a non-positive, infinite) stall setting crashing with a ValueError or
    silently disabling the bound."""
    monkeypatch.setenv(STALL_SECONDS_ENV, value)
    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, MEDIAPIPE_ROOT.as_uri())
    with pytest.raises(WeightsError) as caught:
        ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
    assert STALL_SECONDS_ENV in _one_line(str(caught.value))


# Hugging Face files: huggingface_hub inside our bounds -------------------------------------------------


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("html", "HTML page"),
        ("silent", "did not answer"),
        ("drip", "took longer than"),
        ("nolength", "more than the announced"),
    ],
)
def test_misbehaving_hub_download_command_exits_2_with_one_line(
    tmp_path: Path,
    hub_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    mode: str,
    reason: str,
) -> None:
    """Catches: a broken mirror's 52-byte HTML page saved as a weight file with `download` reporting success,
    a Hub that never answers stalling for minutes, a drip or an endless body without a deadline or a size
    bound, or the scratch folder <weights>/.echomimic-download left behind after a failure."""
    from echomimic import cli

    weights = tmp_path / "weights"
    with hub_server(_hub_repos()) as hub, mediapipe_server(MEDIAPIPE_ROOT) as google:
        hub.mode = mode
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, google.url)
        started = time.monotonic()
        status = cli.main(["download", "--weights", str(weights)])
        elapsed = time.monotonic() - started
        captured = capsys.readouterr()
        assert not (weights / STAGING_FOLDER).exists()  # gone at once, not when the server closes
    assert status == 2, captured
    message = _one_line(captured.err)
    assert message.startswith("error: ") and reason in message and "reference_unet.pth" in message
    assert elapsed < BOUND, f"{mode}: {elapsed:.1f} s"
    assert not any(weights.rglob("*.pth")) and not (weights / STAGING_FOLDER).exists()
    assert "all audio weights are in" not in captured.out


def test_html_page_in_place_is_refused_not_taken_as_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Catches: `download` skipping (and reporting done) a weight file that a broken mirror left as an HTML
    page, or a JSON config that is an error page; the message must say which file to delete."""
    from echomimic import cli

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be fetched
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "reference_unet.pth").write_bytes(HTML_PAGE)
    assert cli.main(["download", "--weights", str(weights)]) == 2
    message = _one_line(capsys.readouterr().err)
    assert str(weights / "reference_unet.pth") in message and "HTML page" in message and "Delete it" in message
    (weights / "reference_unet.pth").unlink()
    (weights / "sd-vae-ft-mse").mkdir()
    (weights / "sd-vae-ft-mse" / "config.json").write_bytes(b"Bad gateway\n")
    assert cli.main(["download", "--weights", str(weights)]) == 2
    assert "config.json is not JSON" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("endpoint", ["huggingface.co", "http://", "http://127.0.0.1:70000", "file:///tmp"])
def test_malformed_hf_endpoint_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, endpoint: str
) -> None:
    """Catches: a mistyped HF_ENDPOINT reported as a raw error from deep inside huggingface_hub."""
    from echomimic import cli

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert cli.main(["download", "--weights", str(tmp_path / "w")]) == 2
    message = _one_line(capsys.readouterr().err)
    assert "HF_ENDPOINT" in message and "not a usable URL" in message
    assert not (tmp_path / "w" / STAGING_FOLDER).exists()


def test_truncated_safetensors_in_place_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches: a half-downloaded .safetensors (its header says more bytes than it has) taken as present."""
    import torch
    from safetensors.torch import save_file

    from echomimic.weights import release_file_problem

    whole = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(1000)}, str(whole))
    assert release_file_problem(whole) is None
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:-100])
    assert "truncated" in (release_file_problem(cut) or "")
    zipped = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1000)}, zipped)
    assert release_file_problem(zipped) is None
    zipped.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    assert "truncated" in (release_file_problem(zipped) or "")


def test_html_mirror_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    """Catches: the broken-mirror failure printing a traceback or huggingface_hub's warnings around the one
    line, or a non-2 exit, when run as `python -m echomimic download`."""
    weights = tmp_path / "weights"
    with hub_server(_hub_repos()) as hub:
        hub.mode = "html"
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_CACHE": str(tmp_path / "hf_cache"),
            STALL_SECONDS_ENV: str(STALL),
            DEADLINE_SECONDS_ENV: str(DEADLINE),
        }
        env.pop("HF_HUB_OFFLINE", None)
        result = subprocess.run(
            [sys.executable, "-m", "echomimic", "download", "--weights", str(weights)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
            env=env,
        )
    assert result.returncode == 2, result.stderr
    assert "HTML page" in _one_line(result.stderr)
    assert VARIANTS["audio"].repo_id in result.stderr
    assert _leftovers(weights) == []
