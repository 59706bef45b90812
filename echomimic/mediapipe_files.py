"""MediaPipe Tasks model files: found in a models folder, or downloaded there on first use.

The files and their checksums are :data:`echomimic.release.MEDIAPIPE_MODELS`. They are looked for as
``<models_dir>/<name>`` and ``<models_dir>/mediapipe/<name>`` and downloaded into the latter from
``$ECHOMIMIC_MEDIAPIPE_BASE_URL`` (default: Google's storage) + the pinned ``float16/1`` path. A
``file://`` base may also be a flat folder of the files (an offline mirror such as ../shared/mediapipe).
Without a models folder (a plain library call) ``$ECHOMIMIC_MODELS_DIR`` or the user cache folder
(``~/.cache/echomimic``) is used. Torch-free and mediapipe-free: ``check`` and ``download`` use it before
anything heavy loads.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from .downloads import ProgressCallback, check_base_url, download_file, looks_like_html
from .errors import WeightsError
from .release import MEDIAPIPE_BASE_URL, MEDIAPIPE_BASE_URL_ENV, MEDIAPIPE_FOLDER, MediaPipeModel


def mediapipe_base_url() -> str:
    """The base URL in use: ``$ECHOMIMIC_MEDIAPIPE_BASE_URL`` or Google's storage, without a final slash.

    Raises:
        WeightsError: the variable is set to something that is not an http(s):// or file:// URL.
    """
    configured = os.environ.get(MEDIAPIPE_BASE_URL_ENV, "").strip()
    return check_base_url(configured, MEDIAPIPE_BASE_URL_ENV) if configured else MEDIAPIPE_BASE_URL


def mediapipe_url(model: MediaPipeModel) -> str:
    """Where ``model`` is downloaded from. A ``file://`` base without the pinned sub-path is read flat."""
    base = mediapipe_base_url()
    url = f"{base}/{model.url_path}"
    if base.startswith("file://"):
        pinned = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if not pinned.is_file():
            return f"{base}/{model.name}"
    return url


MODELS_DIR_ENV = "ECHOMIMIC_MODELS_DIR"


def default_models_dir() -> Path:
    """The models folder of calls that name none: ``$ECHOMIMIC_MODELS_DIR``, else ``~/.cache/echomimic``
    (``$XDG_CACHE_HOME/echomimic``)."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "echomimic"


def mediapipe_download_dir(models_dir: str | Path | None) -> Path:
    """The folder downloads go to: ``<models_dir>/mediapipe`` (None: the default models folder)."""
    return Path(models_dir if models_dir is not None else default_models_dir()) / MEDIAPIPE_FOLDER


def find_mediapipe_model(model: MediaPipeModel, models_dir: str | Path | None) -> Path | None:
    """The existing ``<models_dir>/<name>`` or ``<models_dir>/mediapipe/<name>``, else None."""
    if models_dir is None:
        models_dir = default_models_dir()
    for candidate in (Path(models_dir) / model.name, mediapipe_download_dir(models_dir) / model.name):
        if candidate.is_file():
            return candidate
    return None


# (path, size, mtime) of files already hashed in this process: a node run does not hash 20 MB each time.
_VERIFIED: set[tuple[str, int, int]] = set()


def mediapipe_file_problem(model: MediaPipeModel, path: Path) -> str | None:
    """Why the file at ``path`` is not ``model``'s (wrong size, wrong sha256, an HTML page), else None."""
    try:
        info = path.stat()
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
        if key in _VERIFIED:
            return None
        with open(path, "rb") as handle:
            head = handle.read(64)
            if info.st_size != model.size:
                what = "an HTML page" if looks_like_html(head) else "an interrupted or wrong download"
                return f"it has {info.st_size:,} bytes, expected {model.size:,} ({what})"
            digest = hashlib.sha256(head)
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    if digest.hexdigest() != model.sha256:
        return f"its sha256 is {digest.hexdigest()}, expected {model.sha256} (a wrong file)"
    _VERIFIED.add(key)
    return None


def check_mediapipe_file(model: MediaPipeModel, path: Path) -> Path:
    """``path`` when it holds ``model``'s exact bytes, else one :class:`WeightsError` line saying to delete
    it (a wrong file is never replaced without asking: it may be the user's own)."""
    problem = mediapipe_file_problem(model, path)
    if problem is not None:
        raise WeightsError(
            f"{path} is not the {model.what} file: {problem}. Delete it and run again (it is downloaded from "
            f"{mediapipe_url(model)}), or put the right file there."
        )
    return path


def missing_mediapipe_message(models: Iterable[MediaPipeModel], models_dir: str | Path | None, reason: str = "") -> str:
    """One line per missing file: its name, its URL and the folder to put it in."""
    models = list(models)
    where = mediapipe_download_dir(models_dir).absolute()
    lead = f"{reason} needs" if reason else "Missing"
    files = "; ".join(f"{model.what} '{model.name}' from {mediapipe_url(model)}" for model in models)
    return f"{lead} the MediaPipe file(s) {files}. Download them into {where}."


def ensure_mediapipe_model(
    model: MediaPipeModel,
    models_dir: str | Path | None,
    *,
    download: bool = True,
    progress: ProgressCallback | None = None,
    reason: str = "",
) -> Path:
    """The path of ``model``'s file, downloaded into ``<models_dir>/mediapipe/`` first when missing.

    Args:
        model: one of release.FACE_DETECTOR, FACE_LANDMARKER, HAND_LANDMARKER, POSE_LANDMARKER.
        models_dir: the models folder (CLI: the weights folder; ComfyUI: models/echomimic; None: the
            default, :func:`default_models_dir`).
        download: False: never download, a missing file is an error.
        progress: (bytes done, bytes expected) during a download; may raise to cancel.
        reason: what needs the file, for the error message.

    Raises:
        WeightsError: the file is missing and cannot be downloaded (names the file, URL and folder), or the
            file in place is not the right one (wrong size or sha256: says to delete it).
    """
    found = find_mediapipe_model(model, models_dir)
    if found is not None:
        return check_mediapipe_file(model, found)
    if not download:
        raise WeightsError(missing_mediapipe_message([model], models_dir, reason))
    target = mediapipe_download_dir(models_dir) / model.name
    # download_file's errors already name the file, its URL and this folder.
    return download_file(mediapipe_url(model), target, sha256=model.sha256, size=model.size, progress=progress)


def ensure_mediapipe_models(
    models: Iterable[MediaPipeModel],
    models_dir: str | Path | None,
    *,
    progress_for: Callable[[MediaPipeModel], ProgressCallback | None] | None = None,
    reason: str = "",
) -> dict[str, Path]:
    """Every file of ``models`` (each downloaded when missing); ``name -> path``.

    All are tried before failing, so that an offline error names each file that could not be fetched,
    its URL and the folder to put it in.
    """
    paths: dict[str, Path] = {}
    failed: list[MediaPipeModel] = []
    first_error = ""
    for model in models:
        try:
            paths[model.name] = ensure_mediapipe_model(
                model, models_dir, progress=progress_for(model) if progress_for else None, reason=reason
            )
        except WeightsError as error:
            failed.append(model)
            first_error = first_error or str(error)
    if len(failed) == 1:
        raise WeightsError(first_error)
    if failed:
        raise WeightsError(f"{missing_mediapipe_message(failed, models_dir, reason)} First failure: {first_error}")
    return paths
