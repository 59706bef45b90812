"""Screenshot of a shipped workflow in the real ComfyUI page, for the README (docs/comfyui_workflow.png).

    bash scripts/setup_comfyui.sh /tmp/cui      # once: a real ComfyUI with this extension's requirements
    pip install playwright                       # and a Chromium: apt-get install chromium (or playwright install)
    COMFYUI_DIR=/tmp/cui/ComfyUI COMFYUI_PYTHON=/tmp/cui/venv/bin/python \\
        python scripts/screenshot_comfyui.py [workflows/echomimic_v1_audio.json] [docs/comfyui_workflow.png]

It starts that ComfyUI on a free loopback port with only this extension enabled (an empty models folder:
the loaders show their default choices), opens the page in headless Chromium, loads the workflow with the
frontend's own loader, fits it to the window and saves the picture through a temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXTENSION_NAME = "ComfyUI-EchoMimic"
VIEWPORT = {"width": 1920, "height": 1080}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chromium() -> str | None:
    """A system Chromium if there is one (else playwright's own browser, if installed)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def start_comfyui(comfyui_dir: Path, python: str, base: Path) -> tuple[subprocess.Popen[bytes], str]:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "input").mkdir()
    for name in ("portrait.png", "speech.wav"):  # what the workflow's Load Image / Load Audio name
        shutil.copy(REPO / "example_inputs" / name, base / "input" / name)
    (base / "custom_nodes" / EXTENSION_NAME).symlink_to(REPO, target_is_directory=True)
    port = _free_port()
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
               "--base-directory", str(base), "--disable-all-custom-nodes", "--whitelist-custom-nodes",
               EXTENSION_NAME]
    log = open(base / "comfyui.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(command, cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ComfyUI exited at start-up; see {base / 'comfyui.log'}")
        try:
            urllib.request.urlopen(url + "/system_stats", timeout=5).read()
            return process, url
        except OSError:
            time.sleep(1.0)
    process.terminate()
    raise SystemExit("ComfyUI did not answer within 240 s")


def screenshot(url: str, workflow: dict, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    # A first visit opens the template browser and warns about models this empty folder lacks: what a
    # returning user sees is the workflow itself.
    # Text stays drawn when the whole graph is fitted into the window (no low-detail mode), no minimap.
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": False,
                "Comfy.Workflow.ShowMissingNodesWarning": False, "Comfy.Minimap.Visible": False,
                "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1, "LiteGraph.Canvas.MinFontSizeForLOD": 1}
    request = urllib.request.Request(url + "/settings", data=json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=30).read()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.goto(url, wait_until="networkidle")
        page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
        page.wait_for_timeout(3000)
        page.keyboard.press("Escape")
        page.evaluate("async (workflow) => { await window.app.loadGraphData(workflow, true, true, 'EchoMimic'); }",
                      workflow)
        page.wait_for_timeout(1500)
        page.keyboard.press("Escape")
        # Fit the graph to the window (the frontend's "." shortcut), then let it draw.
        page.mouse.click(VIEWPORT["width"] // 2, VIEWPORT["height"] // 2)
        page.keyboard.press(".")
        page.wait_for_timeout(1500)
        for button in page.locator("button").all():  # an announcement banner's close button (top right)
            box = button.bounding_box() if button.is_visible() else None
            if box and box["y"] < 40 and box["x"] > VIEWPORT["width"] - 100:
                button.click()
        page.wait_for_timeout(500)
        temporary = out.with_name(f".{out.name}.part.png")
        page.screenshot(path=str(temporary))
        browser.close()
    os.replace(temporary, out)


def main(argv: list[str]) -> int:
    workflow_path = Path(argv[0]) if argv else REPO / "workflows" / "echomimic_v1_audio.json"
    out = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "comfyui_workflow.png"
    comfyui_dir = os.environ.get("COMFYUI_DIR")
    if not comfyui_dir or not (Path(comfyui_dir) / "main.py").is_file():
        print("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI made by scripts/setup_comfyui.sh", file=sys.stderr)
        return 2
    workflow = json.loads(workflow_path.read_text())
    with tempfile.TemporaryDirectory(prefix="echomimic-screenshot-") as base:
        process, url = start_comfyui(Path(comfyui_dir), os.environ.get("COMFYUI_PYTHON", sys.executable), Path(base))
        try:
            screenshot(url, workflow, out)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
