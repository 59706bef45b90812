"""requirements.txt must never break a ComfyUI install: no torch family, no replacement or pin of a package
ComfyUI already depends on, none of the heavy extras other EchoMimic nodes are known for."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# ComfyUI installs its own build of these (CUDA, ROCm, ...); reinstalling them breaks the install.
FORBIDDEN = {"torch", "torchvision", "torchaudio", "xformers", "triton"}
# Heavy or conflicting extras that older EchoMimic nodes pulled in; none is needed here.
UNWANTED = {
    "facenet-pytorch",
    "moviepy",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "ffmpeg-python",
    "imageio-ffmpeg",
    "onnxruntime-gpu",
    "omegaconf",
    "accelerate",
}
# Packages ComfyUI itself depends on: a lower bound is fine, a pin or an upper bound would replace
# ComfyUI's version.
COMFYUI_DEPENDENCIES = {
    "numpy",
    "transformers",
    "safetensors",
    "einops",
    "av",
    "pillow",
    "scipy",
    "tokenizers",
    "sentencepiece",
    "aiohttp",
    "pyyaml",
    "tqdm",
    "psutil",
    "kornia",
    "spandrel",
    "soundfile",
}
OPENCV_FLAVOURS = re.compile(r"^opencv(-contrib)?-python(-headless)?$")


def _requirements(path: Path) -> list[tuple[str, str]]:
    """(normalised name, version specifier) of every requirement line."""
    entries = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith(("-", "git+", "http")), f"{path.name}: option or URL requirement {line!r}"
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$", line)
        assert match, f"{path.name}: cannot read {line!r}"
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        entries.append((name, match.group(3).split(";", 1)[0].strip()))
    return entries


def test_requirements_never_touch_torch_or_comfyui_packages() -> None:
    entries = _requirements(REPO_ROOT / "requirements.txt")
    assert entries, "requirements.txt lists nothing"
    names = [name for name, _ in entries]
    assert not FORBIDDEN & set(names), f"requirements.txt must not list {sorted(FORBIDDEN & set(names))}"
    assert not UNWANTED & set(names), f"requirements.txt must not list {sorted(UNWANTED & set(names))}"
    assert not [n for n in names if OPENCV_FLAVOURS.match(n)], "an opencv flavour here would replace ComfyUI's cv2"
    for name, specifier in entries:
        if name in COMFYUI_DEPENDENCIES:
            for clause in filter(None, (part.strip() for part in specifier.split(","))):
                assert clause.startswith(">=") and not clause.startswith("==="), (
                    f"{name}{specifier}: only a lower bound (>=) is allowed for a package ComfyUI depends on"
                )
        assert "==" not in specifier, f"{name}{specifier}: exact pins replace other nodes' versions"


def test_pyproject_is_ready_for_the_comfy_registry() -> None:
    import tomllib  # Python 3.11+ (CI and the supported ComfyUI Pythons)

    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = data["project"], data["tool"]["comfy"]
    assert project["name"] and project["version"] and project["description"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # The registry installs `dependencies`; they must follow the same rules as requirements.txt.
    listed = {
        re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", dep).group(0)).lower() for dep in project["dependencies"]
    }
    assert not (FORBIDDEN | UNWANTED) & listed
    required = {name for name, _ in _requirements(REPO_ROOT / "requirements.txt")}
    assert listed == required, "pyproject dependencies and requirements.txt disagree"
