"""The V3 flash weights folder: which files it needs, checking them, fetching them, loading the networks.

Layout (the official run_flash.sh's, one folder for the three repositories)::

    <weights>/transformer/diffusion_pytorch_model.safetensors    BadToBest/EchoMimicV3 (echomimicv3-flash-pro/)
    <weights>/Wan2.1-Fun-V1.1-1.3B-InP/config.json, Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth,
        models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth, google/umt5-xxl/   alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP
    <weights>/chinese-wav2vec2-base/                             TencentGameMate/chinese-wav2vec2-base
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import release
from ..errors import WeightsError

if TYPE_CHECKING:
    import torch

    from .image_encoder import ClipVisionEncoder
    from .pipeline import FlashModels
    from .transformer import FlashTransformer
    from .vae import WanVAE

# Optional, not in any release: {"clip_num_heads": n} for test weights whose CLIP head width is not ViT-H's 80.
OVERRIDES_FILE = "echomimic_v3_overrides.json"


def required_files():
    """Every Hugging Face file a flash run needs, as weights_download.RequiredFile rows."""
    from ..weights_download import RequiredFile

    return [
        RequiredFile(
            role=f.role,
            relative_path=f.relative_path,
            alternatives=(),
            repo_id=f.repo_id,
            repo_filename=f.repo_filename,
            size=f.size,
        )
        for f in release.V3_FLASH_FILES
    ]


def download_command(weights_dir: str | os.PathLike, mode: str = "v3_flash") -> str:
    return f"python -m echomimic download --mode {mode} --weights {shlex.quote(str(weights_dir))}"


def refuse_v1_v2_folder(weights_dir: str | os.PathLike) -> None:
    """A V1 or V2 folder given for V3: one line (the releases need folders of their own)."""
    from ..weights_download import release_of_folder

    other = release_of_folder(weights_dir)
    if other is not None:
        raise WeightsError(
            f"{Path(weights_dir).resolve()} holds EchoMimic {other.upper()} files, but v3_flash is EchoMimic V3. "
            f"Give V3 a folder of its own (for example {release.DEFAULT_WEIGHTS_FOLDER['v3']}): "
            f"{download_command(release.DEFAULT_WEIGHTS_FOLDER['v3'])}."
        )


def is_v3_folder(weights_dir: str | os.PathLike) -> bool:
    """Whether ``weights_dir`` holds V3 files (for refusing it in a V1/V2 run)."""
    folder = Path(weights_dir)
    return any((folder / f.relative_path).is_file() for f in release.V3_FLASH_FILES[:2])


def role_path(weights_dir: str | os.PathLike, role: str) -> Path:
    """Where the V3 file of ``role`` (a ``release.V3_FLASH_FILES`` role) lies in ``weights_dir``."""
    for item in release.V3_FLASH_FILES:
        if item.role == role:
            return Path(weights_dir) / item.relative_path
    raise KeyError(role)


def missing_files(weights_dir: str | os.PathLike) -> list:
    folder = Path(weights_dir)
    return [item for item in required_files() if item.found_path(folder) is None]


def check_files_in_place(weights_dir: str | os.PathLike, files: list | None = None, *, fix: str | None = None) -> None:
    """Each V3 file of ``files`` (default: all) in ``weights_dir`` can be what its name says (not an HTML or text
    page, not truncated, not far smaller than the release file), before anything loads it; else one
    :class:`WeightsError` line naming it: delete it and ``fix`` (default: the download command)."""
    from ..weights_download import check_files_in_place as check

    check(
        weights_dir,
        required_files() if files is None else files,
        fix=fix or f"download it again: {download_command(weights_dir)}",
    )


def check_weights(weights_dir: str | os.PathLike, mode: str = "v3_flash") -> dict[str, Path]:
    """``role -> path`` of every V3 file, or one :class:`WeightsError` naming what is missing and where from,
    or the first file in place that cannot be what its name says (:func:`check_files_in_place`)."""
    folder = Path(weights_dir)
    refuse_v1_v2_folder(folder)
    check_files_in_place(folder, fix=f"download it again: {download_command(weights_dir, mode)}")
    missing = missing_files(folder)
    if missing:
        lines = [f"{len(missing)} EchoMimic V3 file(s) are missing from {folder.resolve()}:"]
        lines += [f"  - {item.relative_path}: from {item.repo_id} ({item.url})" for item in missing]
        lines.append(f"To fix: {download_command(weights_dir, mode)} (or add --download to the generate command).")
        raise WeightsError("\n".join(lines))
    return {item.role: folder / item.relative_path for item in required_files()}


def download_weights(
    weights_dir: str | os.PathLike,
    mode: str = "v3_flash",
    *,
    log: Callable[[str], None] = print,
    endpoint: str | None = None,
) -> dict[str, Path]:
    """Fetch the V3 files ``weights_dir`` lacks (three repositories); files already there stay once checked
    (an error page or a truncated file in place is refused, not taken as done), and each file that arrives is
    checked the same way before it is renamed into place."""
    from ..atomic import check_output_folder
    from ..weights_download import download_hub_files

    folder = Path(weights_dir)
    check_output_folder(folder)
    refuse_v1_v2_folder(folder)
    download_hub_files(folder, required_files(), endpoint=endpoint, log=log)
    return check_weights(folder, mode)


def _overrides(folder: Path) -> dict:
    path = folder / OVERRIDES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"{path}: not readable JSON ({error}); fix or delete it.") from None
    return data if isinstance(data, dict) else {}


def clip_num_heads(weights_dir: str | os.PathLike) -> int | None:
    """The CLIP head count the folder's override file gives (None: derived from ViT-H's head width)."""
    value = _overrides(Path(weights_dir)).get("clip_num_heads")
    return None if value is None else int(value)


def load_clip(
    weights_dir: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> ClipVisionEncoder:
    """The CLIP-H visual tower of a V3 folder (float32 when ``dtype`` is None)."""
    import torch

    from .image_encoder import load_clip_vision

    folder = Path(weights_dir)
    return load_clip_vision(
        folder / release.V3_BASE_FOLDER / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
        device=device,
        dtype=dtype or torch.float32,
        num_heads=clip_num_heads(folder),
    )


def load_transformer_and_vae(
    weights_dir: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[FlashTransformer, WanVAE]:
    """The flash transformer (the file's dtype when ``dtype`` is None) and the Wan VAE (float32 when None)."""
    import torch

    from .transformer import load_flash_transformer
    from .vae import load_wan_vae

    folder = Path(weights_dir)
    base = folder / release.V3_BASE_FOLDER
    transformer = load_flash_transformer(
        folder / release.V3_FLASH_FILES[0].relative_path, base / "config.json", device=device, dtype=dtype
    )
    vae = load_wan_vae(base / "Wan2.1_VAE.pth", device=device, dtype=dtype or torch.float32)
    return transformer, vae


def load_flash_models(
    weights_dir: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> FlashModels:
    """Transformer, VAE and CLIP of a V3 folder on ``device`` (all at once: tests and benchmarks; a run loads
    CLIP first, encodes the reference and frees it)."""
    from .pipeline import FlashModels

    transformer, vae = load_transformer_and_vae(weights_dir, device, dtype)
    return FlashModels(transformer, vae, load_clip(weights_dir, device, dtype))
