"""End-to-end test: every workflow in workflows/ runs in a real ComfyUI and saves an mp4 with sound.

COMFYUI_DIR names a ComfyUI source tree (Comfy-Org/ComfyUI; not on PyPI; `scripts/setup_comfyui.sh` unpacks
the newest ../shared/comfyui snapshot and builds its venv), COMFYUI_PYTHON the interpreter that runs it
(default: this one). Without COMFYUI_DIR the tests skip, except in CI (CI=true), where they fail.
The test:
- builds a temporary --base-directory: this repository linked into custom_nodes, tiny EchoMimic weights
  from the shared parity cases in models/echomimic/tiny_<variant> (one folder per release variant), a
  random full-size SD VAE in models/vae, a tiny random upscale model, and the inputs (portrait, speech, a
  driving video with sound);
- serves ../shared/mediapipe on a loopback HTTP server and points the server process at it with
  ECHOMIMIC_MEDIAPIPE_BASE_URL, so the MediaPipe files arrive through the extension's own download code;
- starts ComfyUI headless on CPU with only this extension, converts each workflow to the API format with
  the server's own /object_info, points it at those files at a tiny size, queues it over HTTP while a
  websocket client listens (progress and preview messages);
- checks that each run succeeds and its mp4 has a video and an audio stream.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from echomimic import release
from tests.comfy_stubs import REPO_ROOT
from tests.comfy_stubs.workflow_format import ui_to_api, widget_slots
from tests.parity_cases import MEDIAPIPE_ROOT, PARITY_ROOT
from tests.v3_cases import make_v3_weights_folder, v3_cases

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXTENSION_NAME = "ComfyUI-EchoMimic"
WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
# Shared workflows saved from earlier releases (tests/old_workflows/README.md): they must keep loading and running.
OLD_WORKFLOWS = sorted((REPO_ROOT / "tests" / "old_workflows").glob("*.json"))
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600
# The parity case whose tiny networks stand in for each (version, mode, accelerated) release variant.
TINY_CASES = {"face_mask": "v1_audio", "landmarks": "v1_pose_acc", "hand_poses": "v2_hands_acc"}


def comfyui_missing_message(comfyui_dir: str | None) -> str:
    """Why the real-ComfyUI tests cannot run, and how to make them run."""
    how = "run scripts/setup_comfyui.sh DEST, then set COMFYUI_DIR=DEST/ComfyUI COMFYUI_PYTHON=DEST/venv/bin/python"
    if not comfyui_dir:
        return f"the real-ComfyUI tests need a ComfyUI: COMFYUI_DIR is not set; {how}"
    return f"COMFYUI_DIR={comfyui_dir} is not a ComfyUI tree (no main.py there); {how}"


def _require_comfyui() -> Path:
    """COMFYUI_DIR, or skip (local runs) / fail (CI: these tests must run there)."""
    if COMFYUI_DIR and (Path(COMFYUI_DIR) / "main.py").is_file():
        return Path(COMFYUI_DIR)
    message = comfyui_missing_message(COMFYUI_DIR)
    if IN_CI:
        pytest.fail(f"CI must run the real-ComfyUI tests: {message}")
    pytest.skip(message)


# Test files ------------------------------------------------------------------------------------------


def write_random_sd_vae(path: Path) -> None:
    """A full-size SD1.x VAE (diffusers key layout, random weights) that ComfyUI's VAELoader accepts."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    save_file({key: value.half().contiguous() for key, value in vae.state_dict().items()}, str(path))


def write_tiny_upscale_model(path: Path) -> None:
    """A random 2x Real-ESRGAN "compact" (SRVGGNetCompact) state dict, which spandrel recognises."""
    import torch

    torch.manual_seed(0)
    features, convs, scale = 8, 2, 2
    state: dict[str, Any] = {
        "body.0.weight": torch.randn(features, 3, 3, 3) * 0.1,
        "body.0.bias": torch.zeros(features),
        "body.1.weight": torch.full((features,), 0.25),
    }
    index = 2
    for _ in range(convs):
        state[f"body.{index}.weight"] = torch.randn(features, features, 3, 3) * 0.1
        state[f"body.{index}.bias"] = torch.zeros(features)
        state[f"body.{index + 1}.weight"] = torch.full((features,), 0.25)
        index += 2
    state[f"body.{index}.weight"] = torch.randn(3 * scale * scale, features, 3, 3) * 0.1
    state[f"body.{index}.bias"] = torch.zeros(3 * scale * scale)
    torch.save(state, path)


def write_driving_video(
    path: Path, portrait: Path, speech: Path, fps: float = 24.0, frame_count: int | None = None
) -> None:
    """An mp4 of the portrait moving a little, with the speech as its sound: as long as the speech, or
    `frame_count` frames (the sound cut to them)."""
    import numpy as np
    import torch
    from PIL import Image

    from echomimic.video_io import read_audio, write_mp4

    audio, rate = read_audio(speech)
    image = torch.from_numpy(np.asarray(Image.open(portrait).convert("RGB"), dtype=np.float32) / 255.0)
    count = int(audio.shape[-1] / rate * fps) + 1 if frame_count is None else frame_count
    audio = audio[..., : int(round(count / fps * rate))]
    frames = torch.stack([torch.roll(image, shifts=(i % 5, (i * 2) % 7), dims=(0, 1)) for i in range(count)])
    write_mp4(path, frames, fps, audio, rate)


def build_tiny_weights(echomimic_dir: Path) -> dict[str, str]:
    """models/echomimic/tiny_<variant>/ for every release variant, in the release layout (file names from
    echomimic.release), linking the tiny networks of the parity case of the same kind. Returns the loader's
    combo label -> folder name."""
    folders = {}
    for variant in release.VARIANTS.values():
        case_dir = PARITY_ROOT / TINY_CASES[variant.conditioning]
        if not (case_dir / "case.json").is_file():
            pytest.fail(f"parity case {case_dir} not found (set ECHOMIMIC_PARITY_CASES)")
        folder = echomimic_dir / f"tiny_{variant.name}"
        folder.mkdir(parents=True)
        for role, stem in variant.stems.items():
            # The case names its networks by role; the conditioning net is face_locator (V1) or pose_encoder (V2).
            case_stem = next(
                name for name in (role, "pose_encoder") if (case_dir / "weights" / f"{name}.safetensors").exists()
            )
            (folder / f"{stem}.safetensors").symlink_to(case_dir / "weights" / f"{case_stem}.safetensors")
        for config in (case_dir / "config").glob("*.json"):
            (folder / config.name).symlink_to(config)
        whisper = folder / variant.whisper_file
        whisper.parent.mkdir(parents=True, exist_ok=True)
        whisper.symlink_to(PARITY_ROOT / "common" / "whisper_tiny_random.pt")
        folders[variant.label] = folder.name
    return folders


def build_base_directory(base: Path) -> dict[str, str]:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / EXTENSION_NAME).symlink_to(REPO_ROOT, target_is_directory=True)
    models = base / "models"
    folders = build_tiny_weights(models / "echomimic")
    # V3 flash: the first flash case's tiny models in the official layout, under the loaders' default name.
    make_v3_weights_folder(v3_cases("flash")[0], models / "scratch_v3").rename(models / "echomimic" / V3_FOLDER)
    (models / "vae").mkdir(parents=True)
    write_random_sd_vae(models / "vae" / "random_sd_vae.safetensors")
    (models / "upscale_models").mkdir(parents=True)
    write_tiny_upscale_model(models / "upscale_models" / "tiny_compact_x2.pth")
    inputs = base / "input"
    inputs.mkdir()
    for example in (REPO_ROOT / "example_inputs").glob("*.png"):  # the files the workflows name
        shutil.copy(example, inputs / example.name)
    shutil.copy(PARITY_ROOT / "v1_audio" / "inputs" / "audio.wav", inputs / "speech.wav")
    write_driving_video(inputs / "driving_video.mp4", inputs / "portrait.png", inputs / "speech.wav")
    # V2: a half-body photo with both hands visible, a driving video of it, and its hand poses as JSON.
    from PIL import Image

    Image.open(HALF_BODY_PHOTO).convert("RGB").resize((512, 512)).save(inputs / "half_body.png")  # fast
    write_driving_video(inputs / HALF_BODY_VIDEO, inputs / "half_body.png", inputs / "speech.wav")
    write_hand_poses(inputs / "hand_poses.json", inputs / "half_body.png")
    return folders


def write_hand_poses(path: Path, photo: Path) -> None:
    """The photo's hand poses (two frames, as a Save node writes them), found with the shared MediaPipe files."""
    import numpy as np
    from PIL import Image

    from echomimic.poses import extract_hand_poses

    image = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255.0
    extract_hand_poses(np.stack([image, image]), models_dir=MEDIAPIPE_ROOT).save(path)


# Loopback file server (MediaPipe models; a Hugging Face endpoint that has nothing) ----------------------


class _FileServerHandler(http.server.BaseHTTPRequestHandler):
    """GET <anything>/<name>: the file `name` of the served folder (the MediaPipe URL layout is
    <task>/<model>/float16/1/<name>); 404 for anything else. Every request is recorded."""

    def __init__(self, *args: Any, folder: Path, requests: list[str], **kwargs: Any) -> None:
        self.folder, self.requests_seen = folder, requests
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.requests_seen.append(self.path)
        name = self.path.rsplit("/", 1)[-1].split("?")[0]
        path = self.folder / name
        if not name or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:  # noqa: N802
        self.requests_seen.append("HEAD " + self.path)
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackFileServer:
    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        handler = functools.partial(_FileServerHandler, folder=folder, requests=self.requests)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# Websocket listener (stdlib only: the few RFC 6455 frames ComfyUI's server sends) ---------------------


class WebsocketListener:
    """Connects to /ws?clientId=..., records JSON messages, and counts binary (preview image) messages per
    prompt: ComfyUI sends previews only to the client that queued the prompt, between its "executing"
    messages, so each binary frame is attributed to the prompt executing at that moment."""

    def __init__(self, port: int, client_id: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrivals: list[float] = []  # time.monotonic() when each of `messages` arrived
        self.previews: dict[str, int] = {}
        self.preview_nodes: dict[str, set[str]] = {}
        self._running_prompt: str | None = None
        self._running_node: str | None = None
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        header = b""
        while b"\r\n\r\n" not in header:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake failed")
            header += chunk
        if b" 101 " not in header.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {header[:200]!r}")
        self.sock.settimeout(None)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read_forever, daemon=True)
        self._thread.start()

    def _read_exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("websocket closed")
            data += chunk
        return data

    def _read_message(self) -> tuple[int, bytes]:
        opcode, payload = None, b""
        while True:
            first, second = self._read_exact(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read_exact(8))[0]
            mask = self._read_exact(4) if second & 0x80 else None
            data = self._read_exact(length)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            frame_opcode = first & 0x0F
            if frame_opcode == 9:  # ping: answer with a (client-masked) pong
                self._send(0xA, data)
                continue
            if frame_opcode != 0:
                opcode = frame_opcode
            payload += data
            if first & 0x80:
                return opcode or 0, payload

    def _send(self, opcode: int, data: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode, 0x80 | len(data)]) + mask  # control frames: < 126 bytes
        self.sock.sendall(header + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read_forever(self) -> None:
        try:
            while True:
                opcode, payload = self._read_message()
                if opcode == 8:
                    return
                with self._lock:
                    if opcode == 1:
                        message = json.loads(payload)
                        self.messages.append(message)
                        self.arrivals.append(time.monotonic())
                        data = message.get("data") or {}
                        if message.get("type") in ("executing", "execution_start"):
                            self._running_prompt = data.get("prompt_id", self._running_prompt)
                            self._running_node = data.get("node")
                    elif opcode == 2 and self._running_prompt is not None:
                        self.previews[self._running_prompt] = self.previews.get(self._running_prompt, 0) + 1
                        self.preview_nodes.setdefault(self._running_prompt, set()).add(str(self._running_node))
        except (ConnectionError, OSError, ValueError):
            return

    def progress_nodes(self, prompt_id: str) -> set[str]:
        """Node ids that reported progress (ComfyUI's progress bar) during `prompt_id`."""
        with self._lock:
            return {
                str(m["data"].get("node"))
                for m in self.messages
                if m.get("type") == "progress" and m.get("data", {}).get("prompt_id") == prompt_id
            }

    def timed_messages(self, prompt_id: str) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, message) of the JSON messages of `prompt_id`, in arrival order."""
        with self._lock:
            return [
                (arrival, message)
                for arrival, message in zip(self.arrivals, self.messages)
                if (message.get("data") or {}).get("prompt_id") == prompt_id
            ]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# The server ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    def __init__(self, comfyui_dir: Path, base: Path, log_path: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = str(uuid.uuid4())
        python = os.environ.get("COMFYUI_PYTHON", sys.executable)
        command = [
            python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--base-directory",
            str(base),
            "--disable-all-custom-nodes",
            "--whitelist-custom-nodes",
            EXTENSION_NAME,
            "--cache-none",
            # Live previews as a user who enabled them sees (latent2rgb on CPU: no TAESD here).
            "--preview-method",
            "auto",
        ]
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=comfyui_dir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.listener: WebsocketListener | None = None

    def request(self, path: str, payload: dict | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, headers={"Content-Type": "application/json"} if data else {}
        )
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
                self.listener = WebsocketListener(self.port, self.client_id)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        pytest.fail(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def queue(self, prompt: dict[str, Any]) -> str:
        try:
            queued = self.request("/prompt", {"prompt": prompt, "client_id": self.client_id})
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

    def run(self, prompt: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        prompt_id = self.queue(prompt)
        entry = self.wait(prompt_id)
        if entry["status"].get("status_str") != "success":
            pytest.fail(f"the workflow failed: {json.dumps(entry['status'].get('messages'))[:3000]}\n{self.log_tail()}")
        return prompt_id, entry

    def log_tail(self, chars: int = 6000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def mediapipe_server():
    if not all((MEDIAPIPE_ROOT / model.name).is_file() for model in release.MEDIAPIPE_MODELS.values()):
        pytest.fail(f"the MediaPipe model files are not in {MEDIAPIPE_ROOT}")
    server = LoopbackFileServer(MEDIAPIPE_ROOT)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def comfy_server(tmp_path_factory: pytest.TempPathFactory, mediapipe_server: LoopbackFileServer):
    comfyui_dir = _require_comfyui()
    base = tmp_path_factory.mktemp("comfyui_base")
    folders = build_base_directory(base)
    env = {
        **os.environ,
        release.MEDIAPIPE_BASE_URL_ENV: mediapipe_server.url,
        # Nothing may come from the real hub: a loopback endpoint that answers 404.
        "HF_ENDPOINT": mediapipe_server.url + "/hf",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("ECHOMIMIC_TEST_MODELS_DIR", None)
    server = ComfyServer(comfyui_dir, base, base / "comfyui.log", env)
    try:
        server.wait_until_up()
        server.base = base
        server.weight_folders = folders
        yield server
    finally:
        server.stop()


# Pointing a workflow at the tiny test files ---------------------------------------------------------

SIZE = 64  # the tiny parity models are 64x64
# Widgets of our nodes set for a tiny, fast run (where a node has them).
TINY_WIDGETS: dict[str, Any] = {
    "width": SIZE,
    "height": SIZE,
    "length": 8,
    "steps": 1,
    "context_frames": 4,
    "context_overlap": 1,
    "precision": "fp32",
}
# Core nodes pointed at the test files.
CORE_WIDGETS: dict[str, dict[str, Any]] = {
    "VAELoader": {"vae_name": "random_sd_vae.safetensors"},
    "UpscaleModelLoader": {"model_name": "tiny_compact_x2.pth"},
    "LoadAudio": {"audio": "speech.wav"},
    "LoadVideo": {"file": "driving_video.mp4"},
}
FACE_NODE_TYPES = {"EchoMimicFaceMaskCrop", "EchoMimicExtractLandmarks"}
V3_FOLDER = "EchoMimicV3"
V3_SIZE = (64, 48)  # (width, height): multiples of 16
# V3: 9 frames in two chunks of 5 frames overlapping by 1.
V3_SAMPLER_WIDGETS: dict[str, Any] = {"length": 9, "steps": 1}
V3_CHUNKED = {"chunk_frames": 5, "chunk_overlap": 1}
HALF_BODY_PHOTO = MEDIAPIPE_ROOT / "test_images" / "echomimic_v2_halfbody_0048.jpg"
HALF_BODY_VIDEO = "driving_video_half_body.mp4"


def is_v2_workflow(workflow: dict[str, Any]) -> bool:
    """V2 (half-body, hand poses) workflows get the half-body inputs."""
    return any("Hand" in node["type"] for node in workflow["nodes"])


def widget_names(node: dict[str, Any], object_info: dict[str, Any]) -> list[str]:
    return [spec.name for spec, role in widget_slots(object_info[node["type"]]) if spec and role == "value"]


def set_widget(node: dict[str, Any], object_info: dict[str, Any], name: str, value: Any) -> None:
    for index, (spec, role) in enumerate(widget_slots(object_info[node["type"]])):
        if spec is not None and spec.name == name and role == "value":
            node["widgets_values"][index] = value
            return
    raise KeyError(f"{node['type']} has no widget {name!r}")


def shrink_workflow(
    workflow: dict[str, Any], server: ComfyServer, object_info: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """The workflow at a tiny size on the tiny weights of its loader's variant, reading the test files."""
    v2 = is_v2_workflow(workflow)
    for node in workflow["nodes"]:
        if node["type"] not in object_info:
            continue
        names = widget_names(node, object_info)
        if node["type"] == "EchoMimicV3Sampler":  # every V3 workflow in two chunks: joins run too
            changes = {"width": V3_SIZE[0], "height": V3_SIZE[1], **V3_SAMPLER_WIDGETS, **V3_CHUNKED}
        elif node["type"].startswith("EchoMimicV3ClipVisionEncode"):
            changes = {"width": V3_SIZE[0], "height": V3_SIZE[1]}
        elif node["type"].startswith("EchoMimic"):
            changes = {name: value for name, value in TINY_WIDGETS.items() if name in names}
            if "variant" in names and "weights_folder" in names:
                label = node["widgets_values"][names.index("variant")]
                changes["weights_folder"] = server.weight_folders[label]
        else:
            changes = dict(CORE_WIDGETS.get(node["type"], {}))
            if "filename_prefix" in names:
                changes["filename_prefix"] = prefix
            if node["type"] == "LoadImage":
                named = node["widgets_values"][0]
                changes["image"] = (
                    "half_body.png" if v2 else named if (server.base / "input" / named).is_file() else "portrait.png"
                )
            if node["type"] == "LoadVideo" and v2:
                changes["file"] = HALF_BODY_VIDEO
        for name, value in changes.items():
            set_widget(node, object_info, name, value)
    # The audio encoder loader follows the model loader's folder (same release).
    loaders = [n for n in workflow["nodes"] if n["type"] == "EchoMimicModelLoader"]
    for node in workflow["nodes"]:
        if node["type"] == "EchoMimicAudioEncoderLoader" and loaders:
            folder = loaders[0]["widgets_values"][widget_names(loaders[0], object_info).index("weights_folder")]
            set_widget(node, object_info, "weights_folder", folder)
    return workflow


def swap_wan_loaders(prompt: dict[str, Any]) -> dict[str, Any]:
    """A V3 API prompt with ComfyUI's Wan loaders (which cannot build tiny models: umT5, CLIP-H and the VAE are
    fixed full-size configs there) replaced, by node id, with the project's own nodes on the tiny folder:
    CLIP Text Encode -> EchoMimic V3 Text Encode (same text), CLIP Vision Encode -> EchoMimic V3 CLIP Vision
    Encode (same image), Load VAE (or the VAE of Load Wan 2.1 Files) -> Load EchoMimic V3 VAE; the then unused
    CLIP loaders are dropped."""
    if not any(node["class_type"] == "EchoMimicV3Sampler" for node in prompt.values()):
        return prompt
    swapped = {}
    for node_id, node in prompt.items():
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("CLIPLoader", "CLIPVisionLoader"):
            continue
        if kind == "EchoMimicV3WanFiles":  # its VAE output (slot 2) becomes our VAE loader under its id
            node = {
                "class_type": "EchoMimicV3VAELoader",
                "inputs": {"weights_folder": V3_FOLDER, "download_missing": False},
            }
            for other in prompt.values():
                for name, value in other["inputs"].items():
                    if isinstance(value, list) and value[:1] == [node_id] and value[1] == 2:
                        other["inputs"][name] = [node_id, 0]
        if kind == "CLIPTextEncode":
            node = {
                "class_type": "EchoMimicV3TextEncode",
                "inputs": {"text": inputs["text"], "weights_folder": V3_FOLDER, "download_missing": False},
            }
        elif kind == "CLIPVisionEncode":
            node = {
                "class_type": "EchoMimicV3ClipVisionEncode",
                "inputs": {
                    "image": inputs["image"],
                    "weights_folder": V3_FOLDER,
                    "width": V3_SIZE[0],
                    "height": V3_SIZE[1],
                    "download_missing": False,
                },
            }
        elif kind == "VAELoader":
            node = {
                "class_type": "EchoMimicV3VAELoader",
                "inputs": {"weights_folder": V3_FOLDER, "download_missing": False},
            }
        swapped[node_id] = node
    return swapped


def assert_mp4_with_sound(path: Path, min_frames: int) -> None:
    import av

    with av.open(str(path)) as container:
        video = [s for s in container.streams if s.type == "video"]
        audio = [s for s in container.streams if s.type == "audio"]
        assert video and audio, f"{path.name}: video streams {video}, audio streams {audio}"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= min_frames


def assert_durations_agree(path: Path) -> None:
    """The sound lasts as long as the frames, within one frame."""
    from tests.helpers import probe_mp4

    info = probe_mp4(path)
    frame = 1.0 / 25.0  # V3 runs at 25 fps
    assert abs(info["audio"]["seconds"] - info["video_seconds"]) <= frame + 0.03, (info["audio"], info["video_seconds"])


def saved_mp4(server: ComfyServer, entry: dict[str, Any]) -> Path:
    """The first mp4 a history entry's outputs name, in the server's output folder."""
    saved = [
        item
        for output in entry["outputs"].values()
        for items in output.values()
        if isinstance(items, list)
        for item in items
        if isinstance(item, dict) and str(item.get("filename", "")).endswith(".mp4")
    ]
    assert saved, f"no mp4 among the outputs: {entry['outputs']}"
    return server.base / "output" / saved[0].get("subfolder", "") / saved[0]["filename"]


def _sampler_ids(prompt: dict[str, Any]) -> set[str]:
    return {
        node_id for node_id, node in prompt.items() if node["class_type"] in ("EchoMimicSampler", "EchoMimicV3Sampler")
    }


def test_the_skip_reason_says_what_to_set() -> None:
    """Catches the skip reason reading "COMFYUI_DIR=None is not a ComfyUI tree" when the variable is unset."""
    unset = comfyui_missing_message(None)
    assert "None" not in unset and "COMFYUI_DIR is not set" in unset and "setup_comfyui.sh" in unset
    assert "/nowhere is not a ComfyUI tree" in comfyui_missing_message("/nowhere")


def test_server_lists_every_echomimic_node(comfy_server: ComfyServer) -> None:
    """Catches node groups that fail to import inside the real ComfyUI (the in-process tests use stand-ins)
    and a loader that does not list the models/echomimic folders."""
    from tests.comfy_stubs import STUB_MODULES_DIR, load_extension

    if str(STUB_MODULES_DIR) not in sys.path:
        sys.path.insert(0, str(STUB_MODULES_DIR))
    expected = set(load_extension().NODE_CLASS_MAPPINGS)
    info = comfy_server.request("/object_info")
    assert {name for name in info if name.startswith("EchoMimic")} == expected, comfy_server.log_tail()
    folders = set(info["EchoMimicModelLoader"]["input"]["required"]["weights_folder"][0])
    assert set(comfy_server.weight_folders.values()) | {"EchoMimic"} <= folders


def test_recorded_core_nodes_match_the_running_server(comfy_server: ComfyServer) -> None:
    """Catches a stale tests/comfyui_object_info record (the workflow validator's view of ComfyUI's core nodes)
    for the version running here: inputs, their order and outputs must be what the server says."""
    version = comfy_server.request("/system_stats")["system"]["comfyui_version"]
    record_path = REPO_ROOT / "tests" / "comfyui_object_info" / f"{version}.json"
    assert record_path.is_file(), f"no record for ComfyUI {version}: run scripts/dump_object_info.py"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    live = comfy_server.request("/object_info")
    used = {node["type"] for path in WORKFLOWS for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]}
    for name in sorted(used & set(record)):
        assert name in live, name
        for field in ("input_order", "output", "output_name", "output_node"):
            assert record[name].get(field) == live[name].get(field), f"{name}.{field}"
        for section, inputs in record[name]["input"].items():
            assert set(inputs) == set(live[name]["input"].get(section, {})), f"{name} {section} inputs"


@pytest.mark.parametrize("path", WORKFLOWS + OLD_WORKFLOWS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_workflow_runs_and_saves_an_mp4_with_sound(
    comfy_server: ComfyServer, mediapipe_server: LoopbackFileServer, path: Path
) -> None:
    """Catches a shipped workflow, or one saved from an earlier release (fewer widget values, the sound taken
    from Audio Features), that does not convert, validate or run in the real ComfyUI, a saved video without
    sound, a sampler without progress or live previews, and MediaPipe files that do not arrive through the
    extension's download code."""
    object_info = comfy_server.request("/object_info")
    workflow = shrink_workflow(
        json.loads(path.read_text(encoding="utf-8")), comfy_server, object_info, f"e2e/{path.parent.name}/{path.stem}"
    )
    prompt = swap_wan_loaders(ui_to_api(workflow, object_info))
    prompt_id, entry = comfy_server.run(prompt)
    saved = saved_mp4(comfy_server, entry)
    assert_mp4_with_sound(saved, min_frames=8)
    if any(node["class_type"] == "EchoMimicV3Sampler" for node in prompt.values()):
        assert_durations_agree(saved)
    listener = comfy_server.listener
    assert listener is not None
    assert _sampler_ids(prompt) & listener.progress_nodes(prompt_id), "the sampler sent no progress"
    # The sampler sends a preview image with its step progress (the server runs with previews enabled).
    assert listener.previews.get(prompt_id, 0) > 0, "no preview image arrived over the websocket"
    assert _sampler_ids(prompt) & listener.preview_nodes[prompt_id]
    if {node["class_type"] for node in prompt.values()} & FACE_NODE_TYPES:
        mediapipe_dir = comfy_server.base / "models" / "echomimic" / release.MEDIAPIPE_FOLDER
        for model in (release.FACE_DETECTOR, release.FACE_LANDMARKER):
            if any(request.endswith("/" + model.name) for request in mediapipe_server.requests):
                assert (mediapipe_dir / model.name).stat().st_size == model.size
        assert any((mediapipe_dir / name).is_file() for name in release.MEDIAPIPE_MODELS), (
            f"no MediaPipe file was downloaded into {mediapipe_dir}; requests: {mediapipe_server.requests}"
        )


def _messages(entry: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [message for name, message in entry["status"].get("messages", []) if name == kind]


def _api_prompt(server: ComfyServer, name: str, prefix: str, **sampler: Any) -> dict[str, Any]:
    object_info = server.request("/object_info")
    workflow = shrink_workflow(
        json.loads((REPO_ROOT / "workflows" / name).read_text(encoding="utf-8")), server, object_info, prefix
    )
    for node in workflow["nodes"]:
        if node["type"] in ("EchoMimicSampler", "EchoMimicV3Sampler"):
            for key, value in sampler.items():
                set_widget(node, object_info, key, value)
    return swap_wan_loaders(ui_to_api(workflow, object_info))


@pytest.mark.parametrize(
    "name, sampler, long_run",
    [
        ("EchoMimic V1 audio.json", "EchoMimicSampler", {"length": 0, "steps": 4}),
        (
            "EchoMimic V3 flash.json",
            "EchoMimicV3Sampler",
            {"length": 0, "steps": 8, "chunk_frames": 5, "chunk_overlap": 1},
        ),
    ],
)
def test_cancel_stops_the_sampler_then_the_next_run_succeeds(
    comfy_server: ComfyServer, name: str, sampler: str, long_run: dict[str, Any]
) -> None:
    """Catches a sampler (V1/V2's and V3's) that ignores ComfyUI's Cancel (interrupt) until it finishes, and
    state left broken by a cancelled run or by ComfyUI unloading the models (POST /free) before the next run."""
    # A run long enough to be inside the sampler when Cancel is pressed (all frames, several steps).
    prompt = _api_prompt(comfy_server, name, "e2e/cancelled", **long_run)
    prompt_id = comfy_server.queue(prompt)
    listener = comfy_server.listener
    assert listener is not None
    deadline = time.monotonic() + 300
    while not _sampler_ids(prompt) & listener.progress_nodes(prompt_id):  # sampling has begun
        assert time.monotonic() < deadline, f"the sampler never reported progress\n{comfy_server.log_tail()}"
        time.sleep(0.2)
    pressed = time.monotonic()
    comfy_server.request("/interrupt", {})
    entry = comfy_server.wait(prompt_id)
    stopped_after = time.monotonic() - pressed
    interrupted = _messages(entry, "execution_interrupted")
    assert interrupted, f"not interrupted: {entry['status']}"
    assert interrupted[0]["node_type"] == sampler
    assert stopped_after < 30, f"Cancel took {stopped_after:.0f} s"
    assert not _messages(entry, "execution_error")
    # ComfyUI's "unload models" (model management drops our ModelPatcher); the next run loads it again.
    comfy_server.request("/free", {"unload_models": True, "free_memory": True})
    comfy_server.run(_api_prompt(comfy_server, name, "e2e/after_cancel"))


def test_missing_weights_reach_the_error_dialog_as_a_clear_message(comfy_server: ComfyServer) -> None:
    """Catches a missing weight file surfacing as a traceback or a message without the folder to fix."""
    prompt = _api_prompt(comfy_server, "EchoMimic V1 audio.json", "e2e/missing")
    loader = next(node for node in prompt.values() if node["class_type"] == "EchoMimicModelLoader")
    loader["inputs"]["weights_folder"] = "EchoMimic"  # listed, but not present in this base directory
    entry = comfy_server.wait(comfy_server.queue(prompt))
    (error,) = _messages(entry, "execution_error")
    assert error["node_type"] == "EchoMimicModelLoader"
    assert error["exception_type"].endswith("EchoMimicNodeError")
    expected_path = str(comfy_server.base / "models" / "echomimic" / "EchoMimic")
    assert expected_path in error["exception_message"]
    assert "BadToBest/EchoMimic" in error["exception_message"]
    assert "Traceback" not in error["exception_message"]


def _node_id(prompt: dict[str, Any], class_type: str) -> str:
    (node_id,) = [node_id for node_id, node in prompt.items() if node["class_type"] == class_type]
    return node_id


def _preview_texts(entry: dict[str, Any], previews: dict[str, str]) -> dict[str, str]:
    """name -> the text a Preview as Text node (id previews[name]) showed in the history entry."""
    return {name: entry["outputs"][node_id]["text"][0] for name, node_id in previews.items()}


def test_v2_hand_poses_play_at_the_driving_clips_own_frame_rate(comfy_server: ComfyServer) -> None:
    """The V2 driving-video workflow on a 30 fps clip (not the 24 fps default): every frame of the clip becomes a
    hand-pose image, the sampler makes one frame per pose image at the clip's 30 fps (Get Video Components' fps
    reaches Audio Features, whose features set the sampler's fps), so the gestures span the clip at its own
    speed. Catches the fps link missing from the workflow (the video would run at 24 fps, 25% slower than the
    clip), poses dropped or repeated between the clip and the sampler, and the sampler's frame_count / fps
    outputs disagreeing with what it made."""
    clip_fps, clip_frames = 30.0, 18  # 0.6 s of gestures, shorter than the 1.05 s of speech
    clip_name = "driving_video_half_body_30fps.mp4"
    inputs = comfy_server.base / "input"
    write_driving_video(inputs / clip_name, inputs / "half_body.png", inputs / "speech.wav", clip_fps, clip_frames)
    object_info = comfy_server.request("/object_info")
    name = "EchoMimic V2 hands from a video.json"
    workflow = shrink_workflow(
        json.loads((REPO_ROOT / "workflows" / name).read_text(encoding="utf-8")), comfy_server, object_info, "e2e/fps"
    )
    for node in workflow["nodes"]:
        if node["type"] == "LoadVideo":
            set_widget(node, object_info, "file", clip_name)
        if node["type"] in ("EchoMimicAudioFeatures", "EchoMimicSampler"):
            # The whole clip, and a video that ends with its poses (the speech is longer).
            set_widget(node, object_info, "length", 0)
            set_widget(node, object_info, "length_policy", "stop")
    prompt = ui_to_api(workflow, object_info)
    sampler = _node_id(prompt, "EchoMimicSampler")
    features = _node_id(prompt, "EchoMimicAudioFeatures")
    assert prompt[features]["inputs"]["fps"] == [_node_id(prompt, "GetVideoComponents"), 2], "fps is not linked"
    draw = _node_id(prompt, "EchoMimicDrawHandPoses")
    assert prompt[sampler]["inputs"]["hand_pose_images"] == [draw, 0]
    # What reaches the sampler and what it reports, shown by core Preview as Text nodes.
    prompt["900"] = {"class_type": "GetImageSize", "inputs": {"image": [draw, 0]}}
    previews = {"pose_images": "901", "frame_count": "902", "fps": "903", "features_frame_count": "904"}
    for node_id, source in zip(previews.values(), (["900", 2], [sampler, 2], [sampler, 1], [features, 1])):
        prompt[node_id] = {"class_type": "PreviewAny", "inputs": {"source": source}}
    _prompt_id, entry = comfy_server.run(prompt)
    texts = _preview_texts(entry, previews)
    assert int(texts["pose_images"]) == clip_frames, texts  # one pose image per clip frame
    assert int(texts["frame_count"]) == int(texts["features_frame_count"]) == clip_frames, texts
    assert float(texts["fps"]) == clip_fps, texts
    from tests.helpers import probe_mp4

    info = probe_mp4(saved_mp4(comfy_server, entry))
    assert info["frames"].shape[0] == clip_frames and float(info["rate"]) == clip_fps, (info["rate"], texts)
    # The video lasts as long as the clip's gestures: 18 frames at 30 fps, not at 24.
    assert abs(info["video_seconds"] - clip_frames / clip_fps) < 0.5 / clip_fps, info["video_seconds"]


def test_sampler_progress_covers_the_whole_node(comfy_server: ComfyServer) -> None:
    """Over the websocket, the sampler's progress bar rises monotonically to 100% (value == max) with one unit
    for the reference, one per (step, window) and one per decoded chunk, and the node finishes right after its
    last progress message. Catches a bar that stops at 100% (or short of it) while the node still decodes, a
    bar whose total changes or that goes backwards, and decode chunks missing from the total."""
    from echomimic.pipeline.context import uniform_windows
    from echomimic.pipeline.vae import auto_decode_batch

    steps, frames, context, overlap = 1, TINY_WIDGETS["length"], TINY_WIDGETS["context_frames"], 1
    prompt = _api_prompt(comfy_server, "EchoMimic V1 audio.json", "e2e/progress", steps=steps, context_overlap=overlap)
    sampler = _node_id(prompt, "EchoMimicSampler")
    prompt_id, _entry = comfy_server.run(prompt)
    listener = comfy_server.listener
    assert listener is not None
    timed = listener.timed_messages(prompt_id)
    progress = [(t, m["data"]) for t, m in timed if m["type"] == "progress" and str(m["data"]["node"]) == sampler]
    values, maxima = [int(d["value"]) for _, d in progress], {int(d["max"]) for _, d in progress}
    assert len(maxima) == 1, maxima  # one bar, its total fixed from the start
    (total,) = maxima
    assert values == sorted(values) and values[-1] == total, values
    decode_chunks = -(-frames // auto_decode_batch("cpu"))
    denoise_units = steps * len(uniform_windows(frames, context, overlap))
    assert total == 1 + denoise_units + decode_chunks, (total, denoise_units, decode_chunks)
    assert values[-decode_chunks:] == list(range(total - decode_chunks + 1, total + 1)), values  # chunk by chunk
    # The node's end: ComfyUI's progress_state message that marks the sampler finished.
    finished = next(
        t
        for t, m in timed
        if m["type"] == "progress_state" and (m["data"]["nodes"].get(sampler) or {}).get("state") == "finished"
    )
    last, before_last = progress[-1][0], progress[-2][0]
    gap, last_chunk = finished - last, last - before_last
    # After its last progress message the node only hands its frames over: far less than decoding one chunk.
    assert 0 <= gap < last_chunk, (
        f"the node ran {gap:.2f} s after its last progress message (a chunk: {last_chunk:.2f} s)"
    )
    print(f"progress: {len(values)} messages, total {total}, last chunk {last_chunk:.3f} s, gap after {gap:.3f} s")


# The check scripts below load this repository as ComfyUI loads an extension (a package named
# echomimic_extension; its modules import the bundled library relative to it), given `repo`.
LOAD_EXTENSION = r"""
spec = importlib.util.spec_from_file_location("echomimic_extension", f"{repo}/__init__.py",
                                              submodule_search_locations=[repo])
sys.modules["echomimic_extension"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["echomimic_extension"])
"""


ADAPTER_CHECK = (
    r"""
import importlib.util, sys
import torch
comfyui_dir, repo, vae_path, scale = sys.argv[1:5]
scale = float(scale)  # echomimic.release.LATENT_SCALE
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True  # as `main.py --cpu`
import comfy.sd
import comfy.utils
from diffusers import AutoencoderKL

# the extension as a package (the adapter imports the bundled library relative to it)
"""
    + LOAD_EXTENSION
    + r"""
adapter_module = importlib.import_module("echomimic_extension.nodes.vae_adapter")
adapter = adapter_module.ComfyVaeAdapter(comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path)))

reference = AutoencoderKL(latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
reference.load_state_dict({k: v.float() for k, v in comfy.utils.load_torch_file(vae_path).items()})
reference.eval()
torch.manual_seed(0)
pixels = torch.rand(2, 3, 64, 64) * 2 - 1
with torch.no_grad():
    official = reference.encode(pixels).latent_dist.mean * scale
    ours = adapter.encode((pixels + 1) / 2)  # the adapter speaks 0..1 pixels, as the library does
    decoded_official = (reference.decode(official / scale).sample / 2 + 0.5).clamp(0, 1)
    decoded_ours = adapter.decode(official)
print("encode", float((ours - official).abs().max()), float(official.abs().max()))
print("decode", float((decoded_ours - decoded_official).abs().max()))
"""
)


def test_comfy_vae_adapter_gives_the_official_latent_convention(comfy_server: ComfyServer) -> None:
    """ComfyUI's real VAE behind the adapter = diffusers' latent_dist.mean * 0.18215, and back. Catches a
    wrong assumption about comfy.sd.VAE's scaling or pixel range (the stand-in VAE cannot show it)."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    vae_path = comfy_server.base / "models" / "vae" / "random_sd_vae.safetensors"
    result = subprocess.run(
        [
            python,
            "-c",
            ADAPTER_CHECK,
            str(_require_comfyui()),
            str(REPO_ROOT),
            str(vae_path),
            str(release.LATENT_SCALE),
        ],
        capture_output=True,
        text=True,
        cwd=_require_comfyui(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines() if line[:6] in ("encode", "decode"))
    encode_error, scale = (float(v) for v in lines["encode"].split())
    assert scale > 0 and encode_error <= 1e-4 * max(1.0, scale), lines
    assert float(lines["decode"]) <= 1e-3, lines


WAN_VAE_CHECK = (
    r"""
import importlib.util, sys
import torch
comfyui_dir, repo, vae_path, tiny_dim = sys.argv[1:5]
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import comfy.ldm.wan.vae
import comfy.sd
import comfy.utils

# ComfyUI builds the Wan 2.1 VAE at its real width (96); the tiny case's file is 8 wide: same class, same keys.
original_init = comfy.ldm.wan.vae.WanVAE.__init__
def tiny_init(self, *args, **kwargs):
    kwargs["dim"] = int(tiny_dim)
    original_init(self, *args, **kwargs)
comfy.ldm.wan.vae.WanVAE.__init__ = tiny_init

"""
    + LOAD_EXTENSION
    + r"""
adapters = importlib.import_module("echomimic_extension.nodes.v3_adapters")
library_vae = importlib.import_module("echomimic_extension.echomimic.v3.vae")

comfy_vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path))
adapter = adapters.ComfyWanVaeAdapter(comfy_vae)
ours = library_vae.load_wan_vae(vae_path, dtype=torch.float32)
torch.manual_seed(0)
video = torch.rand(1, 3, 5, 48, 64) * 2 - 1
official = ours.encode(video)
print("encode", float((adapter.encode(video) - official).abs().max()), float(official.abs().max()))
decoded = torch.cat(list(ours.decode_chunks(official)), dim=2)
print("decode", float((torch.cat(list(adapter.decode_chunks(official)), dim=2) - decoded).abs().max()))
"""
)


def test_comfy_wan_vae_adapter_gives_the_official_latents(comfy_server: ComfyServer) -> None:
    """ComfyUI's real Wan 2.1 VAE class (built by comfy.sd.VAE from the official key layout, at the tiny
    case's width) behind the V3 adapter = the library's official VAE path, encode and decode. Catches a wrong
    assumption about ComfyUI's Wan VAE conventions (raw posterior mean, 0..1 channels-last pixels, (1, F, H,
    W, 3) output) or about its key layout."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    case = v3_cases("vae")[0]
    tiny_dim = json.loads((case / "config" / "tiny_dims.json").read_text())["vae"]["dim"]
    vae_path = case / "models" / "Wan2.1-Fun-V1.1-1.3B-InP" / "Wan2.1_VAE.pth"
    result = subprocess.run(
        [python, "-c", WAN_VAE_CHECK, str(_require_comfyui()), str(REPO_ROOT), str(vae_path), str(tiny_dim)],
        capture_output=True,
        text=True,
        cwd=_require_comfyui(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines() if line[:6] in ("encode", "decode"))
    encode_error, scale = (float(v) for v in lines["encode"].split())
    assert scale > 0 and encode_error <= 1e-4 * max(1.0, scale), lines
    assert float(lines["decode"]) <= 1e-3, lines


CLIP_VISION_CHECK = (
    r"""
import importlib.util, json, sys, tempfile
import torch
comfyui_dir, repo, clip_path, dims = sys.argv[1:5]
dims = json.loads(dims)
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import comfy.clip_vision

"""
    + LOAD_EXTENSION
    + r"""
adapters = importlib.import_module("echomimic_extension.nodes.v3_adapters")
encoder = importlib.import_module("echomimic_extension.echomimic.v3.image_encoder")
weights = importlib.import_module("echomimic_extension.echomimic.weights")

ours = encoder.load_clip_vision(clip_path, dtype=torch.float32, num_heads=dims["vision_heads"])
# ComfyUI's CLIP vision class, built by its own code from a config file at the tiny widths (clip_vision_h's
# format: transformers' key names), loaded with the same tensors.
config = {"hidden_act": "gelu", "hidden_size": dims["vision_dim"], "image_size": 224,
          "intermediate_size": dims["vision_dim"] * dims["vision_mlp_ratio"], "layer_norm_eps": 1e-05,
          "model_type": "clip_vision_model", "num_attention_heads": dims["vision_heads"], "num_channels": 3,
          "num_hidden_layers": dims["vision_layers"], "patch_size": 14, "projection_dim": dims["embed_dim"]}
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
    json.dump(config, handle)
comfy_clip = comfy.clip_vision.ClipVisionModel(handle.name)
state = {(k if k.startswith("vision_model.") else "vision_model." + k): v
         for k, v in encoder.convert_clip_state_dict(weights.read_state_dict(clip_path)).items()}
missing, unexpected = comfy_clip.load_sd(state)
print("keys", sorted(k for k in missing if not k.startswith("visual_projection")), sorted(unexpected))
torch.manual_seed(0)
image = torch.randint(0, 256, (1, 224, 224, 3)).float() / 255.0  # 8-bit, already 224: both preprocessings agree
tokens = adapters.clip_tokens_from_output(comfy_clip.encode_image(image, crop=False))
official = ours.encode(image.permute(0, 3, 1, 2) * 2.0 - 1.0)
print("tokens", float((tokens - official).abs().max()), float(official.abs().max()))
"""
)


def test_comfy_clip_vision_output_is_the_official_clip_tokens(comfy_server: ComfyServer) -> None:
    """ComfyUI's CLIP vision class (its own code, the tiny case's widths from a config file, clip_vision_h's key
    format) behind the V3 adapter: its penultimate_hidden_states equal the official use_31_block features on an
    8-bit 224x224 picture (where both preprocessings coincide). Catches the adapter reading the wrong field
    (last_hidden_state, image_embeds) or ComfyUI's penultimate output not being the official tokens."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    case = v3_cases("text_clip")[0]
    dims = json.loads((case / "config" / "tiny_dims.json").read_text())["clip"]
    clip_path = case / "models" / "Wan2.1-Fun-V1.1-1.3B-InP" / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    result = subprocess.run(
        [python, "-c", CLIP_VISION_CHECK, str(_require_comfyui()), str(REPO_ROOT), str(clip_path), json.dumps(dims)],
        capture_output=True,
        text=True,
        cwd=_require_comfyui(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines() if line[:6] in ("keys [", "tokens"))
    assert lines.get("keys") == "[] []", result.stdout
    error, scale = (float(v) for v in lines["tokens"].split())
    assert scale > 0 and error <= 1e-4 * max(1.0, scale), lines


UMT5_CHECK = (
    r"""
import importlib.util, json, sys
import torch
comfyui_dir, repo, t5_path, dims, ids = sys.argv[1:6]
dims, ids = json.loads(dims), json.loads(ids)
sys.path.insert(0, comfyui_dir)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import comfy.ops
import comfy.sd1_clip
import comfy.text_encoders.t5

"""
    + LOAD_EXTENSION
    + r"""
adapters = importlib.import_module("echomimic_extension.nodes.v3_adapters")
text_encoder = importlib.import_module("echomimic_extension.echomimic.v3.text_encoder")
weights = importlib.import_module("echomimic_extension.echomimic.weights")

ours = text_encoder.load_umt5_encoder(t5_path, dtype=torch.float32)
# ComfyUI's umT5 text model exactly as comfy.text_encoders.wan.UMT5XXlModel builds it (T5 class, end 1 / pad 0,
# attention masks, masked rows zeroed), at the tiny case's widths (its config as a dict).
config = {"d_ff": dims["dim_ffn"], "d_kv": dims["dim_attn"] // dims["num_heads"], "d_model": dims["dim"],
          "dense_act_fn": "gelu_pytorch_tanh", "is_gated_act": True, "layer_norm_epsilon": 1e-06,
          "model_type": "umt5", "num_heads": dims["num_heads"], "num_layers": dims["num_layers"],
          "relative_attention_num_buckets": dims["num_buckets"], "vocab_size": dims["vocab"]}
model = comfy.sd1_clip.SDClipModel(textmodel_json_config=config, dtype=torch.float32, special_tokens={"end": 1, "pad": 0},
                                   model_class=comfy.text_encoders.t5.T5, enable_attention_masks=True,
                                   zero_out_masked=True)
state = text_encoder.convert_t5_state_dict(weights.read_state_dict(t5_path))
state.pop("encoder.embed_tokens.weight", None)  # transformers' tied copy of shared.weight; ComfyUI has only "shared"
missing, unexpected = model.transformer.load_state_dict(state, strict=False)
print("keys", sorted(missing), sorted(unexpected))
tokens = [[(token, 1.0) for token in ids] + [(0, 1.0)] * (512 - len(ids))]  # ComfyUI's tokenizer pads to 512
cond, _pooled = model.encode_token_weights(tokens)[:2]
embeds = adapters.prompt_embeds_from_conditioning([[cond, {}]])
official = ours.encode_ids(ids)
print("shape", list(embeds.shape) == list(official.shape))
print("embeds", float((embeds - official).abs().max()), float(official.abs().max()))
"""
)


def test_comfy_umt5_conditioning_is_the_official_prompt_embedding(comfy_server: ComfyServer) -> None:
    """ComfyUI's umT5 text model (built as comfy.text_encoders.wan builds it, at the tiny case's widths) on
    512 padded tokens, through the V3 CONDITIONING adapter: the official trimmed prompt embedding. Catches
    the adapter keeping ComfyUI's zeroed padding rows or cutting real tokens, and ComfyUI's masking differing
    from the official masked encode."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    case = v3_cases("text_clip")[0]
    dims = json.loads((case / "config" / "tiny_dims.json").read_text())["t5"]
    ids = next(iter(json.loads((case / "inputs" / "prompt_token_ids.json").read_text()).values()))
    t5_path = case / "models" / "Wan2.1-Fun-V1.1-1.3B-InP" / "models_t5_umt5-xxl-enc-bf16.pth"
    result = subprocess.run(
        [
            python,
            "-c",
            UMT5_CHECK,
            str(_require_comfyui()),
            str(REPO_ROOT),
            str(t5_path),
            json.dumps(dims),
            json.dumps(ids),
        ],
        capture_output=True,
        text=True,
        cwd=_require_comfyui(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = dict(
        line.split(" ", 1)
        for line in result.stdout.strip().splitlines()
        if line.split(" ", 1)[0] in ("keys", "shape", "embeds")
    )
    assert lines.get("keys") == "[] []" and lines.get("shape") == "True", result.stdout
    error, scale = (float(v) for v in lines["embeds"].split())
    assert scale > 0 and error <= 1e-4 * max(1.0, scale), lines


MODEL_MANAGEMENT_CHECK = (
    r"""
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

"""
    + LOAD_EXTENSION
    + r"""
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
)


def test_models_live_under_comfyui_model_management(comfy_server: ComfyServer) -> None:
    """ComfyUI's real model management sees the loaded EchoMimic models: a real ModelPatcher wrapping the three
    networks with their dtype and size, loaded by load_models_gpu, dropped by unload_all_models and loaded
    again. Catches a claim the stand-ins in tests/comfy_stubs make about comfy.model_management /
    comfy.model_patcher that the real ones do not honour (the stand-ins cannot show it)."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    result = subprocess.run(
        [
            python,
            "-c",
            MODEL_MANAGEMENT_CHECK,
            str(_require_comfyui()),
            str(REPO_ROOT),
            str(comfy_server.base / "models"),
        ],
        capture_output=True,
        text=True,
        cwd=_require_comfyui(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    checks = dict(
        line.split(" ", 1)
        for line in result.stdout.strip().splitlines()
        if line.split(" ", 1)[0] in ("patcher", "dtype", "size", "wraps", "loaded", "unloaded", "reloaded")
    )
    assert checks == dict.fromkeys(("patcher", "dtype", "size", "wraps", "loaded", "unloaded", "reloaded"), "True"), (
        result.stdout[-2000:]
    )
