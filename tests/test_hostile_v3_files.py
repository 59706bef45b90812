"""V3 flash weight files that are not what their names say: refused with one line before anything loads them.

An HTML error page or a truncated file in a V3 folder is one line naming the file and saying to delete it and
download it again, from ``check``, ``generate --mode v3_flash``, ``download`` and the V3 loader nodes; a
broken mirror answering every file with an HTML page makes ``download --mode v3_flash`` fail and leaves no
file behind. The tiny test weights (complete files far smaller than the release's) still pass.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from echomimic import release
from echomimic.cli import main
from echomimic.downloads import DEADLINE_SECONDS_ENV, STALL_SECONDS_ENV
from echomimic.errors import WeightsError
from echomimic.weights import release_file_problem
from echomimic.weights_download import STAGING_FOLDER
from tests.loopback_http import HTML_PAGE, hub_server
from tests.v3_cases import make_v3_weights_folder, v3_cases

CASE = v3_cases("flash")[0]
PARAMS = json.loads((CASE / "case.json").read_text())["parameters"]
IMAGE = CASE / "inputs" / PARAMS["image"]
SPEECH = CASE / "inputs" / PARAMS["audio"]
BASE = release.V3_BASE_FOLDER
VAE = f"{BASE}/Wan2.1_VAE.pth"
TRANSFORMER = release.V3_FLASH_FILES[0].relative_path
WAV2VEC2_BIN = f"{release.V3_WAV2VEC2_FOLDER}/pytorch_model.bin"


@pytest.fixture(autouse=True)
def small_bounds(monkeypatch: pytest.MonkeyPatch):
    """Small download bounds; afterwards, waits for abandoned Hub workers so none writes into a later test."""
    monkeypatch.setenv(STALL_SECONDS_ENV, "1")
    monkeypatch.setenv(DEADLINE_SECONDS_ENV, "2")
    yield
    for thread in threading.enumerate():
        if thread.name == "echomimic-hub-download":
            thread.join(30)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A complete tiny V3 folder (links to the flash case's files) of this test's own."""
    return make_v3_weights_folder(CASE, tmp_path)


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every V3 network loader fails the test if called: a refusal must come before any loading."""
    from echomimic.v3 import audio, files

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a V3 network was loaded despite a damaged file")

    for module, name in ((audio, "load_audio_encoder"), (files, "load_clip"), (files, "load_transformer_and_vae")):
        monkeypatch.setattr(module, name, refuse)


def _replace(folder: Path, relative: str, data: bytes) -> Path:
    """``folder/relative`` (a link into the shared fixtures) replaced by a file holding ``data``."""
    path = folder / relative
    path.unlink()
    path.write_bytes(data)
    return path


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _generate(folder: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "--mode",
            "v3_flash",
            "--weights",
            str(folder),
            "--image",
            str(IMAGE),
            "--audio",
            str(SPEECH),
            "--out",
            str(out),
            "--steps",
            "1",
            "--length",
            "5",
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )


def _truncated(source: Path) -> bytes:
    data = source.resolve().read_bytes()
    return data[: len(data) * 2 // 3]


def test_tiny_test_weights_still_pass() -> None:
    """Catches a size rule that refuses the tiny test builds (complete files, thousands of times smaller than
    the release's): every file of the flash case passes with its release size given."""
    from echomimic.v3.files import required_files

    for item in required_files():
        source = CASE / "models" / item.relative_path
        if source.is_file():
            assert release_file_problem(source, item.size) is None, item.relative_path
    sized = {item.relative_path for item in release.V3_FLASH_FILES if item.size}
    assert {TRANSFORMER, VAE, WAV2VEC2_BIN} <= sized  # the release table knows the weights' sizes


@pytest.mark.parametrize("relative", [VAE, TRANSFORMER, WAV2VEC2_BIN, f"{release.V3_WAV2VEC2_FOLDER}/config.json"])
def test_html_v3_file_in_place_is_refused_before_loading(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_loading: None, relative: str
) -> None:
    """Catches a broken mirror's HTML page left as a V3 file reaching torch.load / safetensors / transformers
    (a raw error or a traceback) instead of one line naming the file and the command that fetches it again;
    `check` must refuse it as well rather than list it as ok."""
    path = _replace(weights, relative, HTML_PAGE)
    assert _generate(weights, tmp_path / "x.mp4") == 2
    message = _one_line(capsys.readouterr().err)
    assert str(path) in message and "HTML page" in message and "Delete it" in message
    assert f"python -m echomimic download --mode v3_flash --weights {weights}" in message
    assert not (tmp_path / "x.mp4").exists()
    assert main(["check", "--mode", "v3_flash", "--weights", str(weights)]) == 2
    assert str(path) in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "relative, make, words",
    [
        (TRANSFORMER, lambda f: _truncated(f / TRANSFORMER), "the release file is 3,727,671,120 bytes"),
        (VAE, lambda f: _truncated(f / VAE), "no zip directory"),
        (WAV2VEC2_BIN, None, "far smaller than the release file's 380,261,837"),
        (f"{release.V3_TOKENIZER_FOLDER}/tokenizer.json", lambda f: b"Bad gateway\n", "not JSON"),
    ],
)
def test_truncated_or_too_small_v3_file_is_refused(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_loading: None, relative: str, make, words: str
) -> None:
    """Catches a half-downloaded V3 file (a cut safetensors or torch zip, a legacy pickle a fraction of the
    release's size, a text page as the tokenizer) taken as present and failing deep in a loader."""
    if make is None:  # a legacy (non-zip) pickle: nothing in it proves it complete, so its size must
        import torch

        legacy = tmp_path / "legacy.bin"
        torch.save({"w": torch.zeros(8)}, legacy, _use_new_zipfile_serialization=False)
        data = legacy.read_bytes()
    else:
        data = make(weights)
    path = _replace(weights, relative, data)
    assert _generate(weights, tmp_path / "x.mp4") == 2
    message = _one_line(capsys.readouterr().err)
    assert str(path) in message and words in message and "Delete it and download it again" in message
    with pytest.raises(WeightsError):
        from echomimic.v3.files import check_weights

        check_weights(weights)


def _v3_hub_files() -> dict[str, dict[str, Path]]:
    """Every file `download --mode v3_flash` asks the Hub for, served from the flash case (a small stand-in
    for files the case has not got)."""
    repos: dict[str, dict[str, Path]] = {}
    for item in release.V3_FLASH_FILES:
        source = CASE / "models" / item.relative_path
        repos.setdefault(item.repo_id, {})[item.repo_filename] = source if source.is_file() else IMAGE
    return repos


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so nothing is copied from a real cache instead of downloaded."""
    import huggingface_hub.constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def test_v3_download_from_an_html_mirror_fails_and_leaves_nothing(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Catches `download --mode v3_flash` reporting success after a broken mirror answered every file with an
    HTML page (saved under the weights' names), or leaving such a page or the staging folder behind."""
    folder = tmp_path / "v3"
    with hub_server(_v3_hub_files()) as hub:
        hub.mode = "html"
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        status = main(["download", "--mode", "v3_flash", "--weights", str(folder)])
        captured = capsys.readouterr()
        assert hub.get_requests()  # it did ask the mirror
    assert status == 2, captured
    message = _one_line(captured.err)
    assert "HTML page" in message and "diffusion_pytorch_model.safetensors" in message
    assert [p for p in folder.rglob("*") if p.is_file()] == [] and not (folder / STAGING_FOLDER).exists()


def test_v3_download_refuses_an_html_page_in_place_without_fetching(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Catches `download --mode v3_flash` skipping a file already in place (and reporting done) when that file
    is a broken mirror's HTML page; nothing may be fetched (the endpoint is closed)."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    path = _replace(weights, VAE, HTML_PAGE)
    assert main(["download", "--mode", "v3_flash", "--weights", str(weights)]) == 2
    message = _one_line(capsys.readouterr().err)
    assert str(path) in message and "HTML page" in message and "Delete it and download it again" in message


# The V3 loader nodes ----------------------------------------------------------------------------------------


@pytest.fixture
def comfy(tmp_path: Path) -> dict[str, Any]:
    """The extension's nodes over a models folder whose echomimic/EchoMimicV3 is a tiny V3 folder."""
    from tests.comfy_stubs import node_instances

    models_dir = tmp_path / "models"
    instances = node_instances(models_dir)
    make_v3_weights_folder(CASE, tmp_path / "scratch").rename(models_dir / "echomimic" / "EchoMimicV3")
    return instances


@pytest.mark.parametrize("download_missing", [False, True])
def test_v3_loader_node_refuses_a_damaged_file_before_loading(
    comfy: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, download_missing: bool
) -> None:
    """Catches the V3 VAE / model / audio loader nodes handing an HTML page or a truncated file to torch (a
    traceback in ComfyUI's dialog), or, with download_missing, taking it as already downloaded: one line
    naming the file and saying how to fetch it again, before any load or request."""
    from tests.comfy_stubs import extension_submodule

    error = extension_submodule("nodes.common").EchoMimicNodeError
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    folder = tmp_path / "models" / "echomimic" / "EchoMimicV3"
    cases = [
        ("EchoMimicV3VAELoader", VAE, HTML_PAGE, "HTML page"),
        ("EchoMimicV3ModelLoader", TRANSFORMER, _truncated(folder / TRANSFORMER), "truncated or damaged"),
        ("EchoMimicV3AudioEncoderLoader", f"{release.V3_WAV2VEC2_FOLDER}/config.json", HTML_PAGE, "HTML page"),
    ]
    for node, relative, data, words in cases:
        path = _replace(folder, relative, data)
        arguments = ("EchoMimicV3", "fp32", download_missing) if node == "EchoMimicV3ModelLoader" else None
        with pytest.raises(error) as caught:
            if arguments is None:
                comfy[node].load("EchoMimicV3", download_missing)
            else:
                comfy[node].load(*arguments)
        message = _one_line(str(caught.value))
        assert str(path) in message and words in message and "download_missing" in message, node


def test_comfy_wan_file_in_place_that_is_html_is_refused(
    comfy: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches an HTML page saved as ComfyUI's wan_2.1_vae.safetensors being handed to ComfyUI's loader (a raw
    safetensors error) instead of one line naming it."""
    import folder_paths

    from tests.comfy_stubs import extension_submodule

    v3 = extension_submodule("nodes.v3_nodes")
    error = extension_submodule("nodes.common").EchoMimicNodeError
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "vae", ([str(tmp_path / "vae")], set()))
    (tmp_path / "vae").mkdir()
    name = release.COMFY_WAN_FILES["vae"]
    (tmp_path / "vae" / name).write_bytes(HTML_PAGE)
    with pytest.raises(error) as caught:
        v3.ensure_wan_file("vae", name, True)
    message = _one_line(str(caught.value))
    assert name in message and "HTML page" in message and "Delete it" in message
