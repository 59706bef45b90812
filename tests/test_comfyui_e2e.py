"""Opt-in end-to-end test: every workflow in workflows/ runs in a real ComfyUI and saves an mp4 with sound.

Skipped unless COMFYUI_DIR names a ComfyUI checkout (Comfy-Org/ComfyUI; not on PyPI). COMFYUI_PYTHON is
the interpreter that can run it (default: this one). The test:
- builds a temporary --base-directory: this repository linked into custom_nodes, tiny EchoMimic weights
  from the shared parity cases in models/echomimic, a random full-size SD VAE in models/vae, a tiny
  random upscale model, and the inputs (portrait, speech, a driving video with sound);
- starts ComfyUI headless on CPU with only this extension, converts each workflow to the API format with
  the server's own /object_info, points it at those files at a tiny size, queues it over HTTP;
- checks that each run succeeds and its mp4 has a video and an audio stream.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_stubs import REPO_ROOT, build_tiny_weights
from tests.comfy_stubs.workflow_format import ui_to_api, widget_slots
from tests.parity_cases import PARITY_ROOT

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file(),
    reason="set COMFYUI_DIR to a ComfyUI checkout to run the end-to-end test",
)
EXTENSION_NAME = "ComfyUI-EchoMimic"
WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
SIZE = 64  # the tiny parity models are 64x64
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600


# Test files ------------------------------------------------------------------------------------------

def write_random_sd_vae(path: Path) -> None:
    """A full-size SD1.x VAE (diffusers key layout, random weights) that ComfyUI's VAELoader accepts."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    save_file({key: value.half().contiguous() for key, value in vae.state_dict().items()}, str(path))


def write_tiny_upscale_model(path: Path) -> None:
    """A random 2x Real-ESRGAN "compact" (SRVGGNetCompact) state dict, which spandrel recognises."""
    import torch

    torch.manual_seed(0)
    features, convs, scale = 8, 2, 2
    state: dict[str, Any] = {"body.0.weight": torch.randn(features, 3, 3, 3) * 0.1,
                             "body.0.bias": torch.zeros(features), "body.1.weight": torch.full((features,), 0.25)}
    index = 2
    for _ in range(convs):
        state[f"body.{index}.weight"] = torch.randn(features, features, 3, 3) * 0.1
        state[f"body.{index}.bias"] = torch.zeros(features)
        state[f"body.{index + 1}.weight"] = torch.full((features,), 0.25)
        index += 2
    state[f"body.{index}.weight"] = torch.randn(3 * scale * scale, features, 3, 3) * 0.1
    state[f"body.{index}.bias"] = torch.zeros(3 * scale * scale)
    torch.save(state, path)


def write_driving_video(path: Path, portrait: Path, speech: Path, fps: float = 24.0) -> None:
    """An mp4 of the portrait moving a little, with the speech as its sound."""
    import numpy as np
    import torch
    from PIL import Image

    from echomimic.video_io import read_audio, write_mp4

    audio, rate = read_audio(speech)
    image = torch.from_numpy(np.asarray(Image.open(portrait).convert("RGB"), dtype=np.float32) / 255.0)
    count = int(audio.shape[-1] / rate * fps) + 1
    frames = torch.stack([torch.roll(image, shifts=(i % 5, (i * 2) % 7), dims=(0, 1)) for i in range(count)])
    write_mp4(path, frames, fps, audio, rate)


def build_base_directory(base: Path) -> None:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / EXTENSION_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
    models = base / "models"
    build_tiny_weights(models)
    (models / "vae").mkdir(parents=True)
    write_random_sd_vae(models / "vae" / "random_sd_vae.safetensors")
    (models / "upscale_models").mkdir(parents=True)
    write_tiny_upscale_model(models / "upscale_models" / "tiny_compact_x2.pth")
    inputs = base / "input"
    inputs.mkdir()
    shutil.copy(REPO_ROOT / "example_inputs" / "portrait.png", inputs / "portrait.png")
    shutil.copy(PARITY_ROOT / "v1_audio" / "inputs" / "audio.wav", inputs / "speech.wav")
    write_driving_video(inputs / "driving_video.mp4", inputs / "portrait.png", inputs / "speech.wav")


# The server ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, base: Path, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        python = os.environ.get("COMFYUI_PYTHON", sys.executable)
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--base-directory", str(base), "--disable-all-custom-nodes",
                   "--whitelist-custom-nodes", EXTENSION_NAME, "--cache-none"]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=COMFYUI_DIR, stdout=self._log, stderr=subprocess.STDOUT)

    def request(self, path: str, payload: dict | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
        return json.loads(body) if body.strip() else None

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI exited at start-up:\n{self.log_tail()}")
            try:
                self.request("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        pytest.fail(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def queue(self, prompt: dict[str, Any]) -> str:
        try:
            queued = self.request("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
        except urllib.error.HTTPError as error:
            pytest.fail(f"ComfyUI refused the workflow: {error.read().decode(errors='replace')}")
        return queued["prompt_id"]

    def wait(self, prompt_id: str) -> dict[str, Any]:
        """The history entry of a finished prompt (success, error or interrupted)."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            history = self.request(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            time.sleep(0.5)
        pytest.fail(f"the workflow did not finish within {RUN_TIMEOUT_S} s:\n{self.log_tail()}")

    def run(self, prompt: dict[str, Any]) -> dict[str, Any]:
        entry = self.wait(self.queue(prompt))
        if entry["status"].get("status_str") != "success":
            pytest.fail(f"the workflow failed: {json.dumps(entry['status'].get('messages'))[:3000]}\n{self.log_tail()}")
        return entry

    def log_tail(self, chars: int = 6000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory: pytest.TempPathFactory):
    if not (PARITY_ROOT / "v1_audio").is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY_ROOT}")
    base = tmp_path_factory.mktemp("comfyui_base")
    build_base_directory(base)
    server = ComfyServer(base, base / "comfyui.log")
    try:
        server.wait_until_up()
        server.base = base
        yield server
    finally:
        server.stop()


# Pointing a workflow at the tiny test files ---------------------------------------------------------

def set_widget(node: dict[str, Any], object_info: dict[str, Any], name: str, value: Any) -> None:
    for index, (spec, role) in enumerate(widget_slots(object_info[node["type"]])):
        if spec is not None and spec.name == name and role == "value":
            node["widgets_values"][index] = value
            return
    raise KeyError(f"{node['type']} has no widget {name!r}")


def shrink_workflow(workflow: dict[str, Any], object_info: dict[str, Any], prefix: str) -> dict[str, Any]:
    variant = next(n for n in workflow["nodes"] if n["type"] == "EchoMimicModelLoader")["widgets_values"][0]
    folder = "tiny_pose" if variant.startswith("V1 landmarks") else "tiny_audio"
    changes: dict[str, dict[str, Any]] = {
        "EchoMimicModelLoader": {"weights_folder": folder, "precision": "fp32"},
        "EchoMimicAudioEncoderLoader": {"weights_folder": folder},
        "EchoMimicFaceMaskCrop": {"width": SIZE, "height": SIZE},
        "EchoMimicDrawLandmarks": {"width": SIZE, "height": SIZE},
        "EchoMimicSampler": {"width": SIZE, "height": SIZE, "length": 8, "steps": 1, "context_frames": 4,
                             "context_overlap": 1},
        "VAELoader": {"vae_name": "random_sd_vae.safetensors"},
        "UpscaleModelLoader": {"model_name": "tiny_compact_x2.pth"},
        "LoadImage": {"image": "portrait.png"},
        "LoadAudio": {"audio": "speech.wav"},
        "LoadVideo": {"file": "driving_video.mp4"},
        "SaveVideo": {"filename_prefix": prefix},
    }
    for node in workflow["nodes"]:
        for name, value in changes.get(node["type"], {}).items():
            set_widget(node, object_info, name, value)
    return workflow


def assert_mp4_with_sound(path: Path, min_frames: int) -> None:
    import av

    with av.open(str(path)) as container:
        video = [s for s in container.streams if s.type == "video"]
        audio = [s for s in container.streams if s.type == "audio"]
        assert video and audio, f"{path.name}: video streams {video}, audio streams {audio}"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= min_frames


def test_server_lists_every_echomimic_node(comfy_server: ComfyServer) -> None:
    info = comfy_server.request("/object_info")
    ours = {name for name in info if name.startswith("EchoMimic")}
    assert ours == {"EchoMimicModelLoader", "EchoMimicAudioEncoderLoader", "EchoMimicAudioFeatures",
                    "EchoMimicFaceMaskCrop", "EchoMimicExtractLandmarks", "EchoMimicAlignLandmarks",
                    "EchoMimicSelectLandmarkParts", "EchoMimicDrawLandmarks", "EchoMimicSampler"}
    assert {"tiny_audio", "tiny_pose", "EchoMimic"} <= set(info["EchoMimicModelLoader"]["input"]["required"]
                                                          ["weights_folder"][0])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.stem)
def test_workflow_runs_and_saves_an_mp4_with_sound(comfy_server: ComfyServer, path: Path) -> None:
    object_info = comfy_server.request("/object_info")
    workflow = shrink_workflow(json.loads(path.read_text(encoding="utf-8")), object_info, f"e2e/{path.stem}")
    entry = comfy_server.run(ui_to_api(workflow, object_info))
    saved = [item for output in entry["outputs"].values() for items in output.values() if isinstance(items, list)
             for item in items if isinstance(item, dict) and str(item.get("filename", "")).endswith(".mp4")]
    assert saved, f"no mp4 among the outputs: {entry['outputs']}"
    folder = comfy_server.base / "output" / saved[0].get("subfolder", "")
    assert_mp4_with_sound(folder / saved[0]["filename"], min_frames=8)


def _messages(entry: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [message for name, message in entry["status"].get("messages", []) if name == kind]


def _api_prompt(server: ComfyServer, name: str, prefix: str, **sampler: Any) -> dict[str, Any]:
    object_info = server.request("/object_info")
    workflow = shrink_workflow(json.loads((REPO_ROOT / "workflows" / name).read_text(encoding="utf-8")),
                               object_info, prefix)
    for node in workflow["nodes"]:
        if node["type"] == "EchoMimicSampler":
            for key, value in sampler.items():
                set_widget(node, object_info, key, value)
    return ui_to_api(workflow, object_info)


def test_cancel_stops_the_sampler_then_the_next_run_succeeds(comfy_server: ComfyServer) -> None:
    # A run long enough to be inside the sampler when Cancel is pressed (all 27 frames, 4 steps).
    long_run = _api_prompt(comfy_server, "echomimic_v1_audio.json", "e2e/cancelled", length=0, steps=4)
    prompt_id = comfy_server.queue(long_run)
    deadline = time.monotonic() + 120
    while not comfy_server.request("/queue")["queue_running"]:
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.2)
    time.sleep(15.0)  # past the loaders and the audio features, into sampling
    pressed = time.monotonic()
    comfy_server.request("/interrupt", {})
    entry = comfy_server.wait(prompt_id)
    stopped_after = time.monotonic() - pressed
    interrupted = _messages(entry, "execution_interrupted")
    assert interrupted, f"not interrupted: {entry['status']}"
    assert interrupted[0]["node_type"] == "EchoMimicSampler"
    assert stopped_after < 30, f"Cancel took {stopped_after:.0f} s"
    assert not _messages(entry, "execution_error")
    comfy_server.run(_api_prompt(comfy_server, "echomimic_v1_audio.json", "e2e/after_cancel"))


def test_missing_weights_reach_the_error_dialog_as_a_clear_message(comfy_server: ComfyServer) -> None:
    prompt = _api_prompt(comfy_server, "echomimic_v1_audio.json", "e2e/missing")
    loader = next(node for node in prompt.values() if node["class_type"] == "EchoMimicModelLoader")
    loader["inputs"]["weights_folder"] = "EchoMimic"  # listed, but not downloaded in this base directory
    entry = comfy_server.wait(comfy_server.queue(prompt))
    (error,) = _messages(entry, "execution_error")
    assert error["node_type"] == "EchoMimicModelLoader"
    assert error["exception_type"].endswith("EchoMimicNodeError")
    expected_path = str(comfy_server.base / "models" / "echomimic" / "EchoMimic")
    assert expected_path in error["exception_message"]
    assert "huggingface.co/BadToBest/EchoMimic" in error["exception_message"]


ADAPTER_CHECK = r"""
import importlib.util, sys
import torch
comfyui_dir, repo, vae_path = sys.argv[1:4]
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True  # as `main.py --cpu`
import comfy.sd
import comfy.utils
from diffusers import AutoencoderKL

# the extension as a package (the adapter imports the bundled library relative to it)
spec = importlib.util.spec_from_file_location("echomimic_extension", f"{repo}/__init__.py",
                                              submodule_search_locations=[repo])
sys.modules["echomimic_extension"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["echomimic_extension"])
adapter_module = importlib.import_module("echomimic_extension.nodes.vae_adapter")
adapter = adapter_module.ComfyVaeAdapter(comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path)))

reference = AutoencoderKL(latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
reference.load_state_dict({k: v.float() for k, v in comfy.utils.load_torch_file(vae_path).items()})
reference.eval()
torch.manual_seed(0)
pixels = torch.rand(2, 3, 64, 64) * 2 - 1
with torch.no_grad():
    official = reference.encode(pixels).latent_dist.mean * 0.18215
    ours = adapter.encode((pixels + 1) / 2)  # the adapter speaks 0..1 pixels, as the library does
    decoded_official = (reference.decode(official / 0.18215).sample / 2 + 0.5).clamp(0, 1)
    decoded_ours = adapter.decode(official)
print("encode", float((ours - official).abs().max()), float(official.abs().max()))
print("decode", float((decoded_ours - decoded_official).abs().max()))
"""


def test_comfy_vae_adapter_gives_the_official_latent_convention(comfy_server: ComfyServer) -> None:
    """ComfyUI's real VAE behind the adapter = diffusers' latent_dist.mean * 0.18215, and back."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    vae_path = comfy_server.base / "models" / "vae" / "random_sd_vae.safetensors"
    result = subprocess.run([python, "-c", ADAPTER_CHECK, COMFYUI_DIR, str(REPO_ROOT), str(vae_path)],
                            capture_output=True, text=True, cwd=COMFYUI_DIR, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines() if line[:6] in ("encode", "decode"))
    encode_error, scale = (float(v) for v in lines["encode"].split())
    assert scale > 0 and encode_error <= 1e-4 * max(1.0, scale), lines
    assert float(lines["decode"]) <= 1e-3, lines


MODEL_MANAGEMENT_CHECK = r"""
import importlib, importlib.util, sys
import torch
comfyui_dir, repo, models_dir = sys.argv[1:4]
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True  # as `main.py --cpu`
import folder_paths
folder_paths.models_dir = models_dir
import comfy.model_management as mm
from comfy.model_patcher import ModelPatcher

spec = importlib.util.spec_from_file_location("echomimic_extension", f"{repo}/__init__.py",
                                              submodule_search_locations=[repo])
sys.modules["echomimic_extension"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["echomimic_extension"])
folder_paths.add_model_folder_path("echomimic", f"{models_dir}/echomimic")
model_nodes = importlib.import_module("echomimic_extension.nodes.model_nodes")
(loaded,) = model_nodes.EchoMimicModelLoader().load("V1 audio", "fp32", "tiny_audio", False)
patcher = loaded.patcher
children = dict(patcher.model.named_children())
print("patcher", isinstance(patcher, ModelPatcher))
print("dtype", patcher.model_dtype() == torch.float32)
print("size", patcher.model_size() > 0)
print("wraps", all(children.get(n) is getattr(loaded.models, n) for n in ("reference_unet", "denoising_unet", "face_locator")))
model_nodes.load_patched_models(patcher)
print("loaded", any(entry.model is patcher for entry in mm.current_loaded_models))
mm.unload_all_models()
print("unloaded", not any(entry.model is patcher for entry in mm.current_loaded_models))
model_nodes.load_patched_models(patcher)
print("reloaded", any(entry.model is patcher for entry in mm.current_loaded_models))
"""


def test_models_live_under_comfyui_model_management(comfy_server: ComfyServer) -> None:
    """ComfyUI's real model management sees the loaded EchoMimic models: a real ModelPatcher wrapping the three
    networks with their dtype and size, loaded by load_models_gpu, dropped by unload_all_models and loaded
    again. Catches a claim the stand-ins in tests/comfy_stubs make about comfy.model_management /
    comfy.model_patcher that the real ones do not honour (the stand-ins cannot show it)."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    result = subprocess.run([python, "-c", MODEL_MANAGEMENT_CHECK, COMFYUI_DIR, str(REPO_ROOT),
                             str(comfy_server.base / "models")],
                            capture_output=True, text=True, cwd=COMFYUI_DIR, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    checks = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines()
                  if line.split(" ", 1)[0] in ("patcher", "dtype", "size", "wraps", "loaded", "unloaded", "reloaded"))
    assert checks == dict.fromkeys(("patcher", "dtype", "size", "wraps", "loaded", "unloaded", "reloaded"), "True"), \
        result.stdout[-2000:]
