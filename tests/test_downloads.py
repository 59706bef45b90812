"""First use just works: MediaPipe and Hugging Face files downloaded, checked and placed atomically.

Every download goes to a loopback server (tests/loopback_http.py) serving ../shared/mediapipe and the tiny
parity weights; nothing reaches the internet. Runs on the current mediapipe (Tasks API only).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from echomimic.errors import WeightsError
from echomimic.mediapipe_files import ensure_mediapipe_model, ensure_mediapipe_models, mediapipe_url
from echomimic.release import (
    FACE_DETECTOR,
    FACE_LANDMARKER,
    HAND_LANDMARKER,
    MEDIAPIPE_BASE_URL_ENV,
    MEDIAPIPE_MODELS,
    POSE_LANDMARKER,
    VARIANTS,
)
from echomimic.weights_download import mediapipe_status_lines
from tests.loopback_http import hub_server, mediapipe_server
from tests.parity_cases import MEDIAPIPE_ROOT, PARITY_ROOT, REPO_ROOT, make_weights_folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    """Every file under folder (temporary files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def mediapipe_files(monkeypatch: pytest.MonkeyPatch):
    """The loopback server of the MediaPipe files, set as the download base URL."""
    assert all((MEDIAPIPE_ROOT / name).is_file() for name in MEDIAPIPE_MODELS), (
        f"MediaPipe files missing in {MEDIAPIPE_ROOT}"
    )
    with mediapipe_server(MEDIAPIPE_ROOT) as server:
        monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, server.url)
        yield server


# MediaPipe files (library) ----------------------------------------------------------------------------


def test_mediapipe_files_arrive_checked_and_are_fetched_once(mediapipe_files: Any, tmp_path: Path) -> None:
    """Catches: a wrong URL layout, a file saved elsewhere than models_dir/mediapipe, a missing checksum
    check, progress not reported, or a second call downloading again."""
    seen: dict[str, tuple[int, int]] = {}
    for model in MEDIAPIPE_MODELS.values():
        path = ensure_mediapipe_model(
            model, tmp_path, progress=lambda done, total, name=model.name: seen.__setitem__(name, (done, total))
        )
        assert path == tmp_path / "mediapipe" / model.name
        assert _sha256(path) == model.sha256 and path.stat().st_size == model.size
        assert seen[model.name] == (model.size, model.size)
    assert len(mediapipe_files.get_requests()) == len(MEDIAPIPE_MODELS)
    assert _leftovers(tmp_path) == sorted(f"mediapipe/{name}" for name in MEDIAPIPE_MODELS)
    for model in MEDIAPIPE_MODELS.values():  # second use: found, no request
        ensure_mediapipe_model(model, tmp_path)
    assert len(mediapipe_files.get_requests()) == len(MEDIAPIPE_MODELS)


@pytest.mark.parametrize("mode, reason", [("wrong", "sha256"), ("drop", "bytes")])
def test_wrong_file_or_dropped_connection_leaves_nothing(
    mediapipe_files: Any, tmp_path: Path, mode: str, reason: str
) -> None:
    """Catches: a corrupt or truncated download kept (or its temporary file left) where it would be used,
    or an error that does not say which file, from where and where to put it."""
    mediapipe_files.mode = mode
    with pytest.raises(WeightsError) as caught:
        ensure_mediapipe_model(FACE_LANDMARKER, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and reason in message
    assert "face_landmarker.task" in message and mediapipe_url(FACE_LANDMARKER) in message
    assert str(tmp_path / "mediapipe") in message
    assert _leftovers(tmp_path) == []


def test_cancel_during_download_leaves_nothing(mediapipe_files: Any, tmp_path: Path) -> None:
    """Catches: a cancel (an exception from the progress callback) leaving a partial file behind."""

    class Stop(Exception):
        pass

    def cancel_half_way(done: int, total: int) -> None:
        if done > total // 2:
            raise Stop

    with pytest.raises(Stop):
        ensure_mediapipe_model(FACE_LANDMARKER, tmp_path, progress=cancel_half_way)
    assert _leftovers(tmp_path) == []


def test_offline_error_names_each_file_url_and_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Catches: an offline failure that does not tell the user what to download from where into which folder."""
    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, "http://127.0.0.1:9")  # closed port
    with pytest.raises(WeightsError) as caught:
        ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
    message = str(caught.value)
    assert "blaze_face_short_range.tflite" in message and str(tmp_path / "mediapipe") in message
    assert f"http://127.0.0.1:9/{FACE_DETECTOR.url_path}" in message
    with pytest.raises(WeightsError, match="blaze_face_short_range.tflite"):
        ensure_mediapipe_model(FACE_DETECTOR, tmp_path, download=False)
    with pytest.raises(WeightsError) as caught:  # several files: each one is named
        ensure_mediapipe_models([HAND_LANDMARKER, POSE_LANDMARKER], tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "mediapipe") in message
    assert all(
        model.name in message and mediapipe_url(model) in message for model in (HAND_LANDMARKER, POSE_LANDMARKER)
    )
    assert _leftovers(tmp_path) == []


PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


def _refusing_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections to it are refused at once."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_missing_hub_file_is_reported_within_seconds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Catches huggingface_hub's retries reaching the user offline (5 per request with backoff, 23 s for the
    first file alone): the first refused connection says "offline" at once, naming the file and the folder,
    and leaves nothing in the weights folder."""
    import time

    import huggingface_hub.constants

    from echomimic.weights_download import download_hub_files, model_files

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    port = _refusing_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # as the loader node reads it
    weights = tmp_path / "weights"
    started = time.monotonic()
    with pytest.raises(WeightsError) as caught:
        download_hub_files(weights, model_files("v2_acc"))
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert "offline" in message and f"127.0.0.1:{port}" in message and "\n" not in message
    assert "reference_unet.pth" in message and str(weights.resolve()) in message
    assert not weights.exists() or _leftovers(weights) == []


def test_hub_probe_goes_through_the_proxy_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches the probe calling a network offline that is online only through its proxy (or the reverse)."""
    from echomimic.weights_download import hub_unreachable

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with hub_server({}) as server:
        assert hub_unreachable(server.url) is None
        proxy_port = _refusing_port()
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        assert f"127.0.0.1:{proxy_port}" in (hub_unreachable(server.url) or "")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        assert hub_unreachable(server.url) is None


def test_default_base_url_is_googles_pinned_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches: a `latest` URL (its bytes may change under the checksum) or a wrong pinned path."""
    monkeypatch.delenv(MEDIAPIPE_BASE_URL_ENV)
    assert mediapipe_url(FACE_LANDMARKER) == (
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
    )
    assert all("/float16/1/" in mediapipe_url(model) for model in MEDIAPIPE_MODELS.values())


def test_file_url_mirror_of_a_flat_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Catches: a file:// mirror (air-gapped sites, CI) not working, or its files not checked."""
    monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, MEDIAPIPE_ROOT.as_uri())
    path = ensure_mediapipe_model(FACE_DETECTOR, tmp_path)
    assert _sha256(path) == FACE_DETECTOR.sha256


# ComfyUI nodes (in-process, ComfyUI's modules stood in) ----------------------------------------------


@pytest.fixture
def comfy_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from tests.comfy_stubs import extension_submodule, install_stub_modules, load_extension

    models_dir = tmp_path / "models"
    (models_dir / "echomimic").mkdir(parents=True)
    install_stub_modules(models_dir)
    nodes = {node_id: cls() for node_id, cls in load_extension().NODE_CLASS_MAPPINGS.items()}
    # The Tasks API path, whichever mediapipe is installed (the legacy one would need no file).
    monkeypatch.setattr(
        extension_submodule("echomimic.landmarks.backends"), "legacy_solutions_available", lambda: False
    )
    return {"nodes": nodes, "models_dir": models_dir, "error": extension_submodule("nodes.common").EchoMimicNodeError}


def _portrait() -> Any:
    """The shipped example portrait as ComfyUI's IMAGE [1, H, W, 3]."""
    import numpy as np
    import torch
    from PIL import Image

    from echomimic.cli import EXAMPLE_IMAGE

    image = Image.open(EXAMPLE_IMAGE).convert("RGB")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


def test_face_node_downloads_on_first_use_with_progress_and_cancel(
    comfy_nodes: dict[str, Any], mediapipe_files: Any
) -> None:
    """Catches: the face node asking for hand work on a fresh install, no progress bar, a Cancel that does
    not stop the download (or leaves a partial file), or a download on every run."""
    import comfy.model_management
    import comfy.utils

    node = comfy_nodes["nodes"]["EchoMimicFaceMaskCrop"]
    folder = comfy_nodes["models_dir"] / "echomimic" / "mediapipe"
    portrait = _portrait()
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            node.crop_face(portrait, True, 64, 64, 0.1, 0.5)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert _leftovers(folder) == []
    updates: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        outputs = node.crop_face(portrait, True, 64, 64, 0.1, 0.5)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert tuple(outputs[0].shape) == (1, 64, 64, 3)
    assert _sha256(folder / FACE_DETECTOR.name) == FACE_DETECTOR.sha256
    assert updates and updates[-1][0] == updates[-1][1] > 0
    from tests.comfy_stubs import extension_submodule

    assert "mediapipe" not in extension_submodule("nodes.common").weights_folder_choices()  # not a weights folder
    requests = len(mediapipe_files.get_requests())  # the cancelled try and the download
    node.crop_face(portrait, True, 64, 64, 0.1, 0.5)
    assert len(mediapipe_files.get_requests()) == requests == 2


def _hub_files(case: str) -> dict[str, dict[str, Path]]:
    """BadToBest/EchoMimic's V1 audio files, served from the tiny parity weights."""
    weights = PARITY_ROOT / case / "weights"
    files = {f"{stem}.pth": weights / f"{stem}.pth" for stem in VARIANTS["audio"].stems.values()}
    files["audio_processor/whisper_tiny.pt"] = PARITY_ROOT / "common" / "whisper_tiny_random.pt"
    return {"BadToBest/EchoMimic": files}


def _folder_with_configs(models_dir: Path, name: str, case: str) -> Path:
    folder = models_dir / "echomimic" / name
    folder.mkdir(parents=True)
    for config in (PARITY_ROOT / case / "config").glob("*.json"):  # the tiny architecture
        (folder / config.name).symlink_to(config)
    return folder


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, so no file of a real cache is copied instead of downloaded."""
    import huggingface_hub.constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def test_model_loaders_download_missing_files_from_the_hub(
    comfy_nodes: dict[str, Any], hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: loaders that do not fetch missing official files, ignore HF_ENDPOINT, leave the staging
    folder behind, or download again when the files are there."""
    import comfy.utils

    folder = _folder_with_configs(comfy_nodes["models_dir"], "hub_audio", "v1_audio")
    with hub_server(_hub_files("v1_audio")) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        updates: list[tuple[int, int]] = []
        comfy.utils.set_progress_bar_global_hook(
            lambda value, total, preview, node_id=None: updates.append((value, total))
        )
        try:
            (loaded,) = comfy_nodes["nodes"]["EchoMimicModelLoader"].load("V1 audio", "fp32", "hub_audio")
            (encoder,) = comfy_nodes["nodes"]["EchoMimicAudioEncoderLoader"].load("hub_audio", "fp32")
        finally:
            comfy.utils.set_progress_bar_global_hook(None)
        assert loaded.variant == "audio" and encoder.encoder is not None
        for name, local in _hub_files("v1_audio")["BadToBest/EchoMimic"].items():
            assert _sha256(folder / name) == _sha256(local)
        assert not (folder / ".echomimic-download").exists()
        assert len(server.get_requests()) == 5 and updates
        comfy_nodes["nodes"]["EchoMimicModelLoader"].load("V1 audio", "fp32", "hub_audio")
        comfy_nodes["nodes"]["EchoMimicAudioEncoderLoader"].load("hub_audio", "fp32")
        assert len(server.get_requests()) == 5  # second use: no request


def test_loader_download_failure_leaves_no_file_the_loader_would_take(
    comfy_nodes: dict[str, Any], hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: a truncated Hub download placed at the release path (taken as complete next time), or an
    error that does not name the file and the folder."""
    folder = _folder_with_configs(comfy_nodes["models_dir"], "hub_broken", "v1_audio")
    with hub_server(_hub_files("v1_audio")) as server:
        server.mode = "drop"
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(comfy_nodes["error"]) as caught:
            comfy_nodes["nodes"]["EchoMimicModelLoader"].load("V1 audio", "fp32", "hub_broken")
    assert "reference_unet.pth" in str(caught.value) and str(folder) in str(caught.value)
    assert not any(folder.glob("*.pth"))


# The command line on a fresh install ----------------------------------------------------------------------


def _cli_weights(tmp_path: Path) -> Path:
    """Tiny V1 audio weights in the release layout, with the whisper file and a tiny VAE; no MediaPipe files."""
    case_dir = PARITY_ROOT / "v1_audio"
    weights = make_weights_folder(case_dir, json.loads((case_dir / "case.json").read_text()), tmp_path)
    (weights / "audio_processor").mkdir()
    (weights / "audio_processor" / "whisper_tiny.pt").symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
    (weights / "sd-vae-ft-mse").symlink_to(case_dir / "vae", target_is_directory=True)
    return weights


def test_fresh_install_generate_fetches_mediapipe_then_reuses_it(tmp_path: Path) -> None:
    """Catches: `python -m echomimic generate` stopping at face detection on a current mediapipe with no
    model files anywhere, files going elsewhere than <weights>/mediapipe, or a second run downloading again."""
    weights = _cli_weights(tmp_path)
    with mediapipe_server(MEDIAPIPE_ROOT) as server:
        env = {
            **os.environ,
            MEDIAPIPE_BASE_URL_ENV: server.url,
            "ECHOMIMIC_MODELS_DIR": str(tmp_path / "no_default_models"),
        }
        for run in (1, 2):
            out = tmp_path / f"out{run}.mp4"
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "echomimic",
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
                    "4",
                    "--context-frames",
                    "4",
                    "--context-overlap",
                    "1",
                    "--device",
                    "cpu",
                ],  # one window: the download is under test
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
                timeout=600,
                env=env,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            assert out.is_file() and out.stat().st_size > 0
            if run == 1:
                assert "downloading blaze_face_short_range.tflite: 100%" in result.stderr
        assert server.get_requests() == [f"/{FACE_DETECTOR.url_path}"]  # once, on the first run only
    assert _sha256(weights / "mediapipe" / FACE_DETECTOR.name) == FACE_DETECTOR.sha256
    assert not (tmp_path / "no_default_models").exists()


def test_check_lists_the_mediapipe_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Catches: `check` leaving out the MediaPipe files a run will fetch, or their URL and folder."""
    from echomimic import cli

    weights = _cli_weights(tmp_path)
    assert cli.main(["check", "--weights", str(weights)]) == 0
    printed = capsys.readouterr().out
    assert "missing  blaze_face_short_range.tflite" in printed and mediapipe_url(FACE_DETECTOR) in printed
    assert str((weights / "mediapipe").resolve()) in printed
    pose_lines = "\n".join(mediapipe_status_lines(weights, "pose"))
    assert "missing  face_landmarker.task" in pose_lines and mediapipe_url(FACE_LANDMARKER) in pose_lines


def test_download_command_fetches_weights_vae_and_mediapipe(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Catches: `python -m echomimic download` missing a file a run needs (the 4 networks, Whisper, the VAE,
    the MediaPipe files), placing one elsewhere than the release layout, or leaving its staging folder."""
    from echomimic import cli

    case_dir = PARITY_ROOT / "v1_audio"
    repos = _hub_files("v1_audio")
    repos["stabilityai/sd-vae-ft-mse"] = {
        name: case_dir / "vae" / name for name in ("config.json", "diffusion_pytorch_model.safetensors")
    }
    weights = tmp_path / "weights"
    with hub_server(repos) as hub, mediapipe_server(MEDIAPIPE_ROOT) as google:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv(MEDIAPIPE_BASE_URL_ENV, google.url)
        assert cli.main(["download", "--weights", str(weights)]) == 0
        assert len(hub.get_requests()) == 7 and google.get_requests() == [f"/{FACE_DETECTOR.url_path}"]
        assert cli.main(["download", "--weights", str(weights)]) == 0  # complete: nothing fetched again
        assert len(hub.get_requests()) == 7 and len(google.get_requests()) == 1
    for name, local in repos["BadToBest/EchoMimic"].items():
        assert _sha256(weights / name) == _sha256(local)
    assert _sha256(weights / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors") == _sha256(
        case_dir / "vae" / "diffusion_pytorch_model.safetensors"
    )
    assert not (weights / ".echomimic-download").exists()
    capsys.readouterr()
    assert cli.main(["check", "--weights", str(weights)]) == 0
    assert "ok       blaze_face_short_range.tflite" in capsys.readouterr().out


def test_hub_download_that_fails_offline_names_file_url_and_folder(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: an unreachable Hub reported as a traceback, or without the file and where to put it."""
    import huggingface_hub.constants

    from echomimic.weights_download import download_weights

    # Offline mode fails at once; a closed port fails the same way after huggingface_hub's ~25 s of retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(WeightsError) as caught:
        download_weights(tmp_path / "w", "v2_acc", log=lambda line: None)
    message = str(caught.value)
    assert "reference_unet.pth" in message and "huggingface.co/BadToBest/EchoMimicV2" in message
    assert str((tmp_path / "w" / "reference_unet.pth").resolve()) in message
    assert not any((tmp_path / "w").glob("*.pth"))


def test_audio_encoder_loader_fetches_v2s_whisper_file_into_a_v2_folder(
    comfy_nodes: dict[str, Any], hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: the encoder loader fetching V1's file name into a V2 folder (V2 ships audio_processor/tiny.pt)."""
    folder = comfy_nodes["models_dir"] / "echomimic" / "EchoMimicV2"
    folder.mkdir()
    whisper = PARITY_ROOT / "common" / "whisper_tiny_random.pt"
    with hub_server({"BadToBest/EchoMimicV2": {VARIANTS["v2"].whisper_file: whisper}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        comfy_nodes["nodes"]["EchoMimicAudioEncoderLoader"].load("EchoMimicV2", "fp32")
        assert server.get_requests() == ["/BadToBest/EchoMimicV2/resolve/main/audio_processor/tiny.pt"]
    assert _sha256(folder / "audio_processor" / "tiny.pt") == _sha256(whisper)


def test_encoder_loader_asks_for_the_release_of_a_folder_that_tells_nothing(
    comfy_nodes: dict[str, Any], hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches a V1/V2 guess for an empty folder with a name of the user's own ('halfbody'): fetching V1's
    whisper_tiny.pt there would make the V2 model loader refuse the folder as V1's. The loader asks for its
    release combo instead, in one line, and with release V2 it fetches V2's tiny.pt."""
    folder = comfy_nodes["models_dir"] / "echomimic" / "halfbody"
    folder.mkdir()
    whisper = PARITY_ROOT / "common" / "whisper_tiny_random.pt"
    with hub_server({"BadToBest/EchoMimicV2": {VARIANTS["v2"].whisper_file: whisper}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        loader = comfy_nodes["nodes"]["EchoMimicAudioEncoderLoader"]
        with pytest.raises(Exception, match="choose the release of this folder") as refused:
            loader.load("halfbody", "fp32")
        assert "\n" not in str(refused.value) and server.get_requests() == []
        loader.load("halfbody", "fp32", True, "V2")
        assert server.get_requests() == ["/BadToBest/EchoMimicV2/resolve/main/audio_processor/tiny.pt"]
    assert _sha256(folder / "audio_processor" / "tiny.pt") == _sha256(whisper)
    assert not (folder / "audio_processor" / "whisper_tiny.pt").exists()


def test_the_release_of_a_folder_comes_from_its_files_not_its_name(tmp_path: Path) -> None:
    """Catches a V1/V2 guess from the folder's name (an empty folder called 'halfbody_v2' taken for V2), or a
    folder with V2-only files (pose_encoder) not recognised."""
    from echomimic.weights_download import release_of_folder

    for name in ("halfbody_v2", "EchoMimic"):
        (tmp_path / name).mkdir()
        assert release_of_folder(tmp_path / name) is None
    (tmp_path / "halfbody_v2" / "pose_encoder.pth").write_bytes(b"x")
    assert release_of_folder(tmp_path / "halfbody_v2") == "v2"
    (tmp_path / "EchoMimic" / "face_locator.pth").write_bytes(b"x")
    assert release_of_folder(tmp_path / "EchoMimic") == "v1"
    (tmp_path / "EchoMimic" / "pose_encoder.pth").write_bytes(b"x")
    assert release_of_folder(tmp_path / "EchoMimic") is None  # both: refused elsewhere, never guessed
    assert release_of_folder(tmp_path / "missing") is None
