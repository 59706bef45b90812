"""Finding the shared parity cases and laying their weights out as the official release does."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The material beside the repository (../shared): parity cases, MediaPipe files, ComfyUI snapshots.
SHARED_ROOT = Path(os.environ.get("ECHOMIMIC_SHARED", REPO_ROOT.parent / "shared")).resolve()
PARITY_ROOT = Path(os.environ.get("ECHOMIMIC_PARITY_CASES", SHARED_ROOT / "parity")).resolve()
# EchoMimic V3 flash cases (../shared/parity_v3): same case.json conventions, discovered the same way.
PARITY_V3_ROOT = Path(os.environ.get("ECHOMIMIC_PARITY_V3_CASES", SHARED_ROOT / "parity_v3")).resolve()
MEDIAPIPE_ROOT = SHARED_ROOT / "mediapipe"
COMFYUI_SNAPSHOTS = SHARED_ROOT / "comfyui"


def discover_cases(root: Path = PARITY_ROOT) -> list[Path]:
    """Every folder under ``root`` that holds a case.json."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if (path / "case.json").is_file())


def find_case(predicate, root: Path = PARITY_ROOT) -> Path | None:
    """The first discovered case whose parsed case.json satisfies ``predicate``."""
    import json

    for case_dir in discover_cases(root):
        if predicate(json.loads((case_dir / "case.json").read_text())):
            return case_dir
    return None


def make_weights_folder(case_dir: Path, case: dict, target: Path, suffixes: tuple[str, ...] | None = None) -> Path:
    """A folder in the Hugging Face release layout: the case's weight files under their release names
    (``release_names`` in case.json, e.g. ``denoising_unet_pose_acc.pth``) plus its tiny configs.

    By default the official ``.pth`` files are used when the case has them, else ``.safetensors``.
    """
    if suffixes is None:
        has_pth = any((case_dir / "weights").glob("*.pth"))
        suffixes = (".pth",) if has_pth else (".safetensors",)
    release_names = case.get("model", {}).get("release_names", {})
    folder = target / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for weight in sorted((case_dir / "weights").iterdir()):
        if weight.suffix not in suffixes:
            continue
        stem = Path(release_names.get(f"{weight.stem}.pth", f"{weight.stem}.pth")).stem
        (folder / f"{stem}{weight.suffix}").symlink_to(weight)
    for config in (case_dir / "config").glob("*.json"):
        (folder / config.name).symlink_to(config)
    return folder


def make_v2_release_folder(case_dir: Path, case: dict, target: Path) -> Path:
    """A V2 case's weights as the BadToBest/EchoMimicV2 download: its networks, audio_processor/tiny.pt and the
    sd-vae-ft-mse folder."""
    folder = make_weights_folder(case_dir, case, target)
    (folder / "audio_processor").mkdir()
    (folder / "audio_processor" / "tiny.pt").symlink_to(case_dir.parent / "common" / "whisper_tiny_random.pt")
    (folder / "sd-vae-ft-mse").symlink_to(case_dir / "vae")
    return folder
