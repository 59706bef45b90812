"""Screenshots of the shipped workflows in the real ComfyUI page: the README's picture, and the template
browser's thumbnails.

    bash scripts/setup_comfyui.sh /tmp/cui      # once: a real ComfyUI with this extension's requirements
    pip install playwright                       # and a Chromium: apt-get install chromium (or playwright install)
    export COMFYUI_DIR=/tmp/cui/ComfyUI COMFYUI_PYTHON=/tmp/cui/venv/bin/python
    python scripts/screenshot_comfyui.py ["workflows/EchoMimic V1 audio.json"] [docs/comfyui_workflow.png]
    python scripts/screenshot_comfyui.py --templates [docs/template_browser.png]
    python scripts/screenshot_comfyui.py --measure-layout [tests/comfyui_layout]

It starts that ComfyUI on a free loopback port with only this extension enabled (an empty models folder:
the loaders show their default choices), opens the page in headless Chromium, loads the workflow with the
frontend's own loader, fits it to the window and saves the picture through a temporary file.

``--templates`` refreshes every thumbnail of ComfyUI's template browser: ``workflows/<name>.jpg`` beside
``workflows/<name>.json`` (the frontend shows a custom node's workflows by file name, with that picture;
square cards), then a picture of the browser itself showing them (docs/template_browser.png).

``--measure-layout`` records where the page's own panels sit over the canvas, as a first visit shows them
(the "Nodes 2.0" banner not dismissed), at VIEWPORT: the bounding boxes (getBoundingClientRect) of the
workflow tabs, the banner, the sidebar, the workflow breadcrumb (widest over the shipped workflows' names)
and the Run toolbar, and of the canvas itself. It writes ``<folder>/<frontend version>.json``, which
tests/test_workflows.py and scripts/fix_workflow_layout.py read. ``--front-end-root DIR`` (passed on to
ComfyUI) measures another frontend package's static folder with the same server; ``--for-comfyui VERSION``
then names the ComfyUI version that pins that frontend (e.g. 1.27.10 for 0.3.64: its requirements.txt).
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXTENSION_NAME = "ComfyUI-EchoMimic"
VIEWPORT = {"width": 1920, "height": 1080}
THUMBNAIL_VIEWPORT = {"width": 1600, "height": 1600}  # square: the template cards crop to a square
# Screen px the page's own panels may cover: the sidebar on the left; the menu, tabs and banner on top; the
# canvas toolbar at the bottom.
CHROME_LEFT, CHROME_TOP, CHROME_BOTTOM, CHROME_MARGIN = 60, 110, 70, 20
THUMBNAIL_SIZE = 512
THUMBNAIL_QUALITY = 85


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


def start_comfyui(
    comfyui_dir: Path, python: str, base: Path, extra_args: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    (base / "custom_nodes").mkdir(parents=True)
    (base / "input").mkdir()
    for example in (REPO / "example_inputs").iterdir():  # what the workflows' Load Image / Load Audio name
        if example.suffix != ".md":
            shutil.copy(example, base / "input" / example.name)
    (base / "custom_nodes" / EXTENSION_NAME).symlink_to(REPO, target_is_directory=True)
    port = _free_port()
    command = [
        python,
        "main.py",
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-auto-launch",
        "--base-directory",
        str(base),
        "--disable-all-custom-nodes",
        "--whitelist-custom-nodes",
        EXTENSION_NAME,
        *(extra_args or []),
    ]
    log = open(base / "comfyui.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        command, cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
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


def _settings(url: str) -> None:
    """A first visit opens the template browser and warns about models this empty folder lacks: what a
    returning user sees is the workflow itself. Text stays drawn when the whole graph is fitted into the
    window (no low-detail mode), no minimap, no frame-rate corner."""
    settings = {
        "Comfy.TutorialCompleted": True,
        "Comfy.Workflow.ShowMissingModelsWarning": False,
        "Comfy.Workflow.ShowMissingNodesWarning": False,
        "Comfy.Minimap.Visible": False,
        "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1,
        "LiteGraph.Canvas.MinFontSizeForLOD": 1,
        "Comfy.Graph.CanvasInfo": False,
    }
    request = urllib.request.Request(
        url + "/settings",
        data=json.dumps(settings).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).read()


def _open_page(browser: Any, url: str, viewport: dict[str, int]) -> Any:
    page = browser.new_page(viewport=viewport, device_scale_factor=1)
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
    page.wait_for_timeout(3000)
    page.keyboard.press("Escape")
    return page


def _show_workflow(page: Any, workflow: dict, viewport: dict[str, int], fit: bool = True) -> None:
    """Load ``workflow`` with the frontend's own loader and (``fit``) fit it to the window."""
    page.evaluate(
        "async (workflow) => { await window.app.loadGraphData(workflow, true, true, 'EchoMimic'); }", workflow
    )
    page.wait_for_timeout(1500)
    page.keyboard.press("Escape")
    if fit:  # the frontend's "." shortcut, then let it draw
        page.mouse.click(viewport["width"] // 2, viewport["height"] // 2)
        page.keyboard.press(".")
        page.wait_for_timeout(1500)
    for button in page.locator("button").all():  # an announcement banner's close button (top right)
        box = button.bounding_box() if button.is_visible() else None
        if box and box["y"] < 40 and box["x"] > viewport["width"] - 100:
            button.click()
    page.wait_for_timeout(500)


def _frame_graph(page: Any, viewport: dict[str, int]) -> dict[str, float]:
    """Centre the whole graph (title bars included) in the largest square of the window that the page's
    panels leave free, by setting the canvas view; returns that square as a screenshot clip."""
    x0, y0, x1, y1 = page.evaluate("""() => {
        let box = [Infinity, Infinity, -Infinity, -Infinity];
        for (const node of window.app.graph._nodes) {
            const [x, y] = node.pos, [w, h] = node.size;
            box = [Math.min(box[0], x), Math.min(box[1], y - 30), Math.max(box[2], x + w), Math.max(box[3], y + h)];
        }
        return box;
    }""")
    if not all(abs(value) < 1e9 for value in (x0, y0, x1, y1)):
        raise RuntimeError("the page shows no graph: the workflow did not load")
    left, top = CHROME_LEFT + CHROME_MARGIN, CHROME_TOP + CHROME_MARGIN
    side = min(viewport["width"] - left - CHROME_MARGIN, viewport["height"] - top - CHROME_BOTTOM)
    centre_x, centre_y = left + side / 2, top + side / 2
    scale = 0.96 * side / max(x1 - x0, y1 - y0)
    offset = [centre_x / scale - (x0 + x1) / 2, centre_y / scale - (y0 + y1) / 2]  # screen = (pos + offset) * scale
    page.evaluate(
        """([scale, offset]) => {
        const canvas = window.app.canvas;
        canvas.deselectAll?.();  // no selection toolbox over the graph
        canvas.ds.scale = scale;
        canvas.ds.offset = offset;
        canvas.setDirty(true, true);
    }""",
        [scale, offset],
    )
    page.wait_for_timeout(1000)
    return {"x": left, "y": top, "width": side, "height": side}


def _launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])


def screenshot(url: str, workflow: dict, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    _settings(url)
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        page = _open_page(browser, url, VIEWPORT)
        _show_workflow(page, workflow, VIEWPORT)
        temporary = out.with_name(f".{out.name}.part.png")
        page.screenshot(path=str(temporary))
        browser.close()
    os.replace(temporary, out)


def template_pictures(url: str, workflows: list[Path], browser_out: Path) -> None:
    """``<name>.jpg`` beside each workflow (a square view of the fitted graph, THUMBNAIL_SIZE px), then
    ``browser_out``: the template browser open on this extension's workflows, with those thumbnails."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    _settings(url)
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        for path in workflows:
            # A fresh page per workflow: loading one graph after another in the same page sometimes leaves it
            # empty (seen with frontend 1.32.9), and a fresh page is what a user opening a template sees.
            page = _open_page(browser, url, THUMBNAIL_VIEWPORT)
            _show_workflow(page, json.loads(path.read_text(encoding="utf-8")), THUMBNAIL_VIEWPORT, fit=False)
            shot = path.with_name(f".{path.stem}.part.png")
            page.screenshot(path=str(shot), clip=_frame_graph(page, THUMBNAIL_VIEWPORT))
            thumbnail = path.with_suffix(".jpg")
            temporary = thumbnail.with_name(f".{thumbnail.name}.part.jpg")
            with Image.open(shot) as picture:
                picture.convert("RGB").resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS).save(
                    temporary, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True
                )
            shot.unlink()
            os.replace(temporary, thumbnail)
            print(f"wrote {thumbnail}")
            page.close()
        # The browser as a user opens it (Workflow > Browse Templates), on this extension's category.
        page = _open_page(browser, url, VIEWPORT)
        page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        page.wait_for_timeout(3000)
        page.get_by_text(EXTENSION_NAME, exact=True).first.click()
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(3000)
        temporary = browser_out.with_name(f".{browser_out.name}.part.png")
        page.screenshot(path=str(temporary))
        browser.close()
    os.replace(temporary, browser_out)
    print(f"wrote {browser_out}")


# Panels over the canvas: CSS selectors of each, the first that matches a visible element wins (frontend
# versions name them differently); the box of all matches of the chosen selector together.
LAYOUT_PANELS = {
    "tabs": [".workflow-tabs-container", ".comfyui-menu"],
    "banner": ["text=Introducing Nodes 2.0"],
    "sidebar": [".side-tool-bar-container"],
    "breadcrumb": [".subgraph-breadcrumb .p-breadcrumb-item"],
    "run_toolbar": [".actionbar-container", ".actionbar"],
}
MEASURE_JS = """(panels) => {
    const box = (elements) => {
        const rects = elements.map((el) => el.getBoundingClientRect()).filter((r) => r.width > 0 && r.height > 0);
        if (!rects.length) return null;
        const [x0, y0] = [Math.min(...rects.map((r) => r.left)), Math.min(...rects.map((r) => r.top))];
        const [x1, y1] = [Math.max(...rects.map((r) => r.right)), Math.max(...rects.map((r) => r.bottom))];
        return {x: x0, y: y0, width: x1 - x0, height: y1 - y0};
    };
    const found = {};
    for (const [name, selectors] of Object.entries(panels)) {
        found[name] = null;
        for (const selector of selectors) {
            let elements;
            if (selector.startsWith("text=")) {  // the banner: the full-width block around its message
                const text = selector.slice(5);
                const span = [...document.querySelectorAll("span")].find((el) => el.textContent.includes(text));
                elements = span ? [span.parentElement.parentElement] : [];
            } else {
                elements = [...document.querySelectorAll(selector)];
            }
            const measured = box(elements);
            if (measured) { found[name] = {...measured, selector}; break; }
        }
    }
    const canvas = document.querySelector("#graph-canvas") || document.querySelector("canvas");
    return {panels: found, canvas: box([canvas]), version: window.__COMFYUI_FRONTEND_VERSION__ || null};
}"""


def _union(first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any] | None:
    if first is None or second is None:
        return first or second
    x0, y0 = min(first["x"], second["x"]), min(first["y"], second["y"])
    x1 = max(first["x"] + first["width"], second["x"] + second["width"])
    y1 = max(first["y"] + first["height"], second["y"] + second["height"])
    return {**first, "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


def measure_layout(url: str, workflows: list[Path], folder: Path, comfyui_version: str, served_by: str) -> Path:
    """Measure the page's panels (see LAYOUT_PANELS) with each workflow open under its own name; write the
    record (the breadcrumb: the widest seen) to ``folder/<frontend version>.json``."""
    from playwright.sync_api import sync_playwright

    _settings(url)
    measured: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        for path in workflows:
            page = _open_page(browser, url, VIEWPORT)  # a fresh page: a first visit, the banner still shown
            page.evaluate(
                "async ([workflow, name]) => { await window.app.loadGraphData(workflow, true, true, name); }",
                [json.loads(path.read_text(encoding="utf-8")), path.stem],
            )
            page.wait_for_timeout(1500)
            page.mouse.move(VIEWPORT["width"] // 2, VIEWPORT["height"] // 2)  # no hover on a panel
            page.wait_for_timeout(300)
            found = page.evaluate(MEASURE_JS, LAYOUT_PANELS)
            if not measured:
                measured = found
            else:
                for name, box in found["panels"].items():
                    measured["panels"][name] = _union(measured["panels"][name], box)
            print(f"{path.stem}: breadcrumb {found['panels'].get('breadcrumb')}")
            page.close()
        browser.close()
    rounded = {
        name: None
        if box is None
        else {**{k: round(box[k], 1) for k in ("x", "y", "width", "height")}, "selector": box["selector"]}
        for name, box in measured["panels"].items()
    }
    record = {
        "_record": {
            "frontend": measured["version"],
            "comfyui": comfyui_version,
            "served_by_comfyui": served_by,
            "made_by": "python scripts/screenshot_comfyui.py --measure-layout (getBoundingClientRect in the real page)",
            "viewport": VIEWPORT,
        },
        "canvas": {k: round(measured["canvas"][k], 1) for k in ("x", "y", "width", "height")},
        "panels": rounded,
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{measured['version']}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str]) -> int:
    extra_args: list[str] = []
    if "--front-end-root" in argv:  # handed to ComfyUI: measure another frontend package
        index = argv.index("--front-end-root")
        extra_args = argv[index : index + 2]
        argv = argv[:index] + argv[index + 2 :]
    for_comfyui = None
    if "--for-comfyui" in argv:  # the ComfyUI version whose requirements pin that frontend
        index = argv.index("--for-comfyui")
        for_comfyui = argv[index + 1]
        argv = argv[:index] + argv[index + 2 :]
    measure = bool(argv) and argv[0] == "--measure-layout"
    templates = bool(argv) and argv[0] == "--templates"
    if measure:
        out = Path(argv[1]) if len(argv) > 1 else REPO / "tests" / "comfyui_layout"
    elif templates:  # --templates [picture of the browser]
        out = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "template_browser.png"
    else:  # [workflow] [picture]
        workflow_path = Path(argv[0]) if argv else REPO / "workflows" / "EchoMimic V1 audio.json"
        out = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "comfyui_workflow.png"
    comfyui_dir = os.environ.get("COMFYUI_DIR")
    if not comfyui_dir or not (Path(comfyui_dir) / "main.py").is_file():
        print("set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI made by scripts/setup_comfyui.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="echomimic-screenshot-") as base:
        process, url = start_comfyui(
            Path(comfyui_dir), os.environ.get("COMFYUI_PYTHON", sys.executable), Path(base), extra_args
        )
        try:
            if measure:
                version = json.loads(urllib.request.urlopen(url + "/system_stats", timeout=30).read())
                served_by = version["system"]["comfyui_version"]
                written = measure_layout(
                    url, sorted((REPO / "workflows").glob("*.json")), out, for_comfyui or served_by, served_by
                )
                print(f"wrote {written}")
            elif templates:
                template_pictures(url, sorted((REPO / "workflows").glob("*.json")), out)
            else:
                screenshot(url, json.loads(workflow_path.read_text()), out)
                print(f"wrote {out}")
        finally:
            process.terminate()
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
