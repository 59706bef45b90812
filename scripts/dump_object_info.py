"""Record a ComfyUI version's core node definitions from its real server's GET /object_info.

    python scripts/dump_object_info.py --comfyui-dir DIR [--python PY] [--out FILE]

Starts DIR's main.py on CPU with no custom nodes and an empty temporary base directory in which every
model folder and the input folder hold one marker file, fetches /object_info, and writes the fields the
workflow validator reads (inputs with their order and options, outputs, display names) to
tests/comfyui_object_info/<version>.json (or FILE). A combo that lists the marker file is a file chooser
(the user's own files): its options are recorded as "__files__", so the record does not depend on which
files happened to be on the machine. Stdlib only: runs with any Python; the server runs with PY (default:
this interpreter; use the ComfyUI venv's python, e.g. from scripts/setup_comfyui.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORDS_DIR = REPO_ROOT / "tests" / "comfyui_object_info"
FILE_COMBO = "__files__"  # the same marker as tests/comfy_stubs/workflow_format.py
MARKER = "zz_object_info_marker"
# Options of an input that the validator or the editor's widget layout depend on.
KEPT_OPTIONS = (
    "default",
    "min",
    "max",
    "step",
    "round",
    "multiline",
    "image_upload",
    "video_upload",
    "audio_upload",
    "control_after_generate",
    "forceInput",
    "defaultInput",
    "dynamicPrompts",
)
KEPT_NODE_FIELDS = ("display_name", "output", "output_name", "output_is_list", "output_node", "category", "input_order")
START_TIMEOUT_S = 240

MODEL_FOLDERS_SCRIPT = r"""
import json, os, folder_paths
print(json.dumps({name: [[os.path.relpath(p, folder_paths.models_dir) for p in paths], sorted(exts)]
                  for name, (paths, exts) in folder_paths.folder_names_and_paths.items()}))
"""


def comfyui_version(comfyui_dir: Path) -> str:
    """The version string of a ComfyUI tree (comfyui_version.py, else pyproject.toml)."""
    for name, pattern in (
        ("comfyui_version.py", r'__version__\s*=\s*"([^"]+)"'),
        ("pyproject.toml", r'^version\s*=\s*"([^"]+)"'),
    ):
        path = comfyui_dir / name
        if path.is_file():
            found = re.search(pattern, path.read_text(encoding="utf-8"), re.MULTILINE)
            if found:
                return found.group(1)
    raise SystemExit(f"cannot tell the ComfyUI version of {comfyui_dir}")


def prepare_base_directory(base: Path, comfyui_dir: Path, python: str) -> None:
    """A marker file in every model folder (with an extension that folder lists) and in input/."""
    listing = subprocess.run(
        [python, "-c", MODEL_FOLDERS_SCRIPT], cwd=comfyui_dir, capture_output=True, text=True, check=True, timeout=300
    )
    folders = json.loads(listing.stdout.strip().splitlines()[-1])
    for name, (relative_paths, extensions) in folders.items():
        if name == "custom_nodes":
            continue
        suffix = ".safetensors" if not extensions or ".safetensors" in extensions else extensions[0]
        for relative in relative_paths:
            if relative.startswith(".."):
                continue
            folder = base / "models" / relative
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{MARKER}{suffix}").write_bytes(b"")
    (base / "input").mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".wav", ".mp4"):
        (base / "input" / f"{MARKER}{suffix}").write_bytes(b"")
    (base / "custom_nodes").mkdir(exist_ok=True)


def fetch_object_info(comfyui_dir: Path, python: str, base: Path) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
    ]
    with open(base / "server.log", "w") as log:
        process = subprocess.Popen(command, cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("ComfyUI did not start:\n" + (base / "server.log").read_text()[-4000:])
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=120) as response:
                        return json.loads(response.read())
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(1.0)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _trim_input(raw: list[Any]) -> list[Any]:
    kind = raw[0]
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    kept = {key: options[key] for key in KEPT_OPTIONS if key in options}
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if isinstance(choices, list):
        is_files = any(isinstance(choice, str) and MARKER in choice for choice in choices)
        choices = FILE_COMBO if is_files else choices
        if isinstance(kind, list):
            return [choices, kept] if choices != FILE_COMBO else [FILE_COMBO, kept]
        kept["options"] = choices
    return [kind, kept]


def trim(object_info: dict[str, Any]) -> dict[str, Any]:
    """The fields the validator reads, with file choosers replaced by FILE_COMBO."""
    nodes = {}
    for name in sorted(object_info):
        info = object_info[name]
        entry = {field: info[field] for field in KEPT_NODE_FIELDS if field in info}
        entry["input"] = {
            section: {key: _trim_input(value) for key, value in inputs.items()}
            for section, inputs in info.get("input", {}).items()
            if section in ("required", "optional")
        }
        nodes[name] = entry
    return nodes


def write_record(path: Path, version: str, nodes: dict[str, Any]) -> None:
    """One node per line, so a new ComfyUI version's changes read as a small diff."""
    lines = [f"  {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}" for name, entry in nodes.items()]
    header = {"comfyui_version": version, "generated_by": "scripts/dump_object_info.py"}
    text = "{\n" + f'  "_record": {json.dumps(header, sort_keys=True)},\n' + ",\n".join(lines) + "\n}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-dir", type=Path, default=os.environ.get("COMFYUI_DIR"), required=False)
    parser.add_argument("--python", default=os.environ.get("COMFYUI_PYTHON", sys.executable))
    parser.add_argument("--out", type=Path, help="default: tests/comfyui_object_info/<version>.json")
    args = parser.parse_args(argv)
    if args.comfyui_dir is None or not (args.comfyui_dir / "main.py").is_file():
        parser.error("--comfyui-dir (or COMFYUI_DIR) must name a ComfyUI tree")
    comfyui_dir = args.comfyui_dir.resolve()
    version = comfyui_version(comfyui_dir)
    with tempfile.TemporaryDirectory(prefix="object_info_") as temporary:
        base = Path(temporary)
        prepare_base_directory(base, comfyui_dir, args.python)
        nodes = trim(fetch_object_info(comfyui_dir, args.python, base))
    out = args.out or RECORDS_DIR / f"{version}.json"
    write_record(out, version, nodes)
    print(f"ComfyUI {version}: {len(nodes)} node definitions -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
