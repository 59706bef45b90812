"""Which weight files a variant needs, a clear report of the missing ones, and an opt-in download.

The weights folder has the layout of the Hugging Face repository ``BadToBest/EchoMimic`` as
downloaded (``git clone https://huggingface.co/BadToBest/EchoMimic``)::

    <weights_dir>/reference_unet.pth, denoising_unet.pth, motion_module.pth, face_locator.pth
                  (+ the *_acc / *_pose variants; .safetensors versions are accepted too)
    <weights_dir>/audio_processor/whisper_tiny.pt
    <weights_dir>/sd-vae-ft-mse/config.json + diffusion_pytorch_model.safetensors (or .bin)

Nothing here imports torch; :func:`download_weights` imports ``huggingface_hub`` when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError

ECHOMIMIC_REPO = "BadToBest/EchoMimic"
VAE_REPO = "stabilityai/sd-vae-ft-mse"
VAE_FOLDER = "sd-vae-ft-mse"
WHISPER_FILE = "audio_processor/whisper_tiny.pt"
WHISPER_ORIGINAL_URL = (
    "https://openaipublic.azureedge.net/main/whisper/models/"
    "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9/tiny.pt"
)

VARIANTS = ("audio", "audio_acc", "pose", "pose_acc")

# role -> file stem (without extension), per variant, as released in BadToBest/EchoMimic.
VARIANT_MODEL_STEMS: dict[str, dict[str, str]] = {
    "audio": {
        "reference_unet": "reference_unet",
        "denoising_unet": "denoising_unet",
        "motion_module": "motion_module",
        "face_locator": "face_locator",
    },
    "audio_acc": {
        "reference_unet": "reference_unet",
        "denoising_unet": "denoising_unet_acc",
        "motion_module": "motion_module_acc",
        "face_locator": "face_locator",
    },
    "pose": {
        "reference_unet": "reference_unet_pose",
        "denoising_unet": "denoising_unet_pose",
        "motion_module": "motion_module_pose",
        "face_locator": "face_locator_pose",
    },
    "pose_acc": {
        "reference_unet": "reference_unet_pose",
        "denoising_unet": "denoising_unet_pose_acc",
        "motion_module": "motion_module_pose_acc",
        "face_locator": "face_locator_pose",
    },
}


@dataclass(frozen=True)
class RequiredFile:
    """One file a variant needs.

    Attributes:
        role: what it is (``"denoising_unet"``, ``"vae_weights"``, ``"whisper"``, ...).
        relative_path: its path inside the weights folder, as downloaded.
        alternatives: other accepted relative paths (e.g. the ``.safetensors`` version).
        repo_id: the Hugging Face repository it is downloaded from.
        repo_filename: its path inside that repository.
        note: extra hint for the message (another place to get it), or "".
    """

    role: str
    relative_path: str
    alternatives: tuple[str, ...]
    repo_id: str
    repo_filename: str
    note: str = ""

    def found_path(self, weights_dir: Path) -> Path | None:
        """The existing accepted path in ``weights_dir`` (alternatives first, then the main one)."""
        for relative in (*self.alternatives, self.relative_path):
            candidate = weights_dir / relative
            if candidate.is_file():
                return candidate
        return None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.repo_filename}"


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise WeightsError(f"unknown EchoMimic variant {variant!r}; use one of {', '.join(VARIANTS)}.")


def required_files(variant: str = "audio") -> list[RequiredFile]:
    """Every file ``variant`` needs: its 4 model files, the Whisper tiny encoder and the VAE."""
    _check_variant(variant)
    files = [
        RequiredFile(
            role=role,
            relative_path=f"{stem}.pth",
            alternatives=(f"{stem}.safetensors",),
            repo_id=ECHOMIMIC_REPO,
            repo_filename=f"{stem}.pth",
        )
        for role, stem in VARIANT_MODEL_STEMS[variant].items()
    ]
    files.append(
        RequiredFile(
            role="whisper",
            relative_path=WHISPER_FILE,
            alternatives=("audio_processor/whisper_tiny.safetensors",),
            repo_id=ECHOMIMIC_REPO,
            repo_filename=WHISPER_FILE,
            note=f"Whisper tiny; the same file is OpenAI's {WHISPER_ORIGINAL_URL}",
        )
    )
    files.append(
        RequiredFile(
            role="vae_config",
            relative_path=f"{VAE_FOLDER}/config.json",
            alternatives=(),
            repo_id=VAE_REPO,
            repo_filename="config.json",
        )
    )
    files.append(
        RequiredFile(
            role="vae_weights",
            relative_path=f"{VAE_FOLDER}/diffusion_pytorch_model.safetensors",
            alternatives=(f"{VAE_FOLDER}/diffusion_pytorch_model.bin",),
            repo_id=VAE_REPO,
            repo_filename="diffusion_pytorch_model.safetensors",
        )
    )
    return files


def missing_files(weights_dir: str | os.PathLike, variant: str = "audio") -> list[RequiredFile]:
    """The required files of ``variant`` that ``weights_dir`` lacks (empty when complete)."""
    folder = Path(weights_dir)
    return [item for item in required_files(variant) if item.found_path(folder) is None]


def missing_weights_message(weights_dir: str | os.PathLike, variant: str, missing: list[RequiredFile]) -> str:
    """A message naming each missing file, where it was expected and where to get it."""
    folder = Path(weights_dir).resolve()
    lines = [f"{len(missing)} weight file(s) for EchoMimic variant {variant!r} are missing from {folder}:"]
    for item in missing:
        accepted = " or ".join(str(folder / p) for p in (item.relative_path, *item.alternatives))
        line = f"  - {item.relative_path} ({item.role}): expected at {accepted}; get it from {item.url}"
        if item.note:
            line += f" ({item.note})"
        lines.append(line)
    lines.append(
        "To fix: run again with --download (fetches them with huggingface_hub), or download the "
        f"Hugging Face repo yourself (git clone https://huggingface.co/{ECHOMIMIC_REPO} <folder>; "
        f"the VAE is https://huggingface.co/{VAE_REPO}) and pass --weights <folder>."
    )
    return "\n".join(lines)


def check_weights(weights_dir: str | os.PathLike, variant: str = "audio") -> dict[str, Path]:
    """Returns ``role -> existing path`` for every required file, or raises :class:`WeightsError`.

    The error lists each missing file, the folder it was expected in and where to download it.
    """
    folder = Path(weights_dir)
    missing = missing_files(folder, variant)
    if missing:
        raise WeightsError(missing_weights_message(folder, variant, missing))
    return {item.role: item.found_path(folder) for item in required_files(variant)}


def download_weights(
    weights_dir: str | os.PathLike,
    variant: str = "audio",
    *,
    endpoint: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Downloads the files ``variant`` still lacks into ``weights_dir`` with huggingface_hub.

    Files already present are not fetched again. The EchoMimic files and Whisper tiny come from
    ``BadToBest/EchoMimic``; the VAE from ``stabilityai/sd-vae-ft-mse`` into ``sd-vae-ft-mse/``.

    Args:
        weights_dir: the weights folder (created if needed).
        variant: one of :data:`VARIANTS`.
        endpoint: Hugging Face endpoint (None = the default, or ``HF_ENDPOINT``).
        log: receives one line per file.

    Returns:
        ``role -> path`` of every required file.

    Raises:
        WeightsError: a file could not be downloaded (no network, ...); names the file and its URL.
    """
    folder = Path(weights_dir)
    missing = missing_files(folder, variant)
    if not missing:
        return check_weights(folder, variant)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:  # pragma: no cover - huggingface_hub is a dependency of diffusers
        raise WeightsError(
            "--download needs the huggingface_hub package; install it with `pip install huggingface_hub`."
        ) from error
    folder.mkdir(parents=True, exist_ok=True)
    for item in missing:
        target_dir = folder / Path(item.relative_path).parent
        log(f"downloading {item.repo_id}/{item.repo_filename} -> {folder / item.relative_path}")
        try:
            downloaded = Path(
                hf_hub_download(
                    repo_id=item.repo_id,
                    filename=item.repo_filename,
                    local_dir=str(folder if item.repo_id == ECHOMIMIC_REPO else target_dir),
                    endpoint=endpoint,
                )
            )
        except Exception as error:  # network, auth, disk: all reported the same way
            raise WeightsError(
                f"could not download {item.repo_filename} from {item.url} ({type(error).__name__}: {error}). "
                f"Check the network (or HF_ENDPOINT / a proxy), or download it by hand into "
                f"{(folder / item.relative_path).resolve()} and run again without --download."
            ) from error
        expected = folder / item.relative_path
        if downloaded.resolve() != expected.resolve() and not expected.exists():
            expected.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, expected)
    return check_weights(folder, variant)
