"""Which files a variant needs, a clear report of the missing ones, and their download.

Every name, repository and checksum comes from :mod:`echomimic.release`. The weights folder has the
layout of the variant's Hugging Face repository as downloaded (``BadToBest/EchoMimic`` for V1,
``BadToBest/EchoMimicV2`` for V2)::

    <weights_dir>/reference_unet.pth, denoising_unet.pth, ... (the variant's 4 files; .safetensors accepted)
    <weights_dir>/audio_processor/whisper_tiny.pt  (V1; V2: audio_processor/tiny.pt)
    <weights_dir>/sd-vae-ft-mse/config.json + diffusion_pytorch_model.safetensors (or .bin)
    <weights_dir>/mediapipe/*.task, *.tflite  (MediaPipe Tasks files, fetched on first use)

Hugging Face files are fetched with ``huggingface_hub`` (``HF_ENDPOINT``, ``HF_TOKEN``, the HF cache and
offline settings apply) into a hidden staging folder of the weights folder, then renamed into place: a
file the loader finds is always complete. Nothing here imports torch.
"""

from __future__ import annotations

import inspect
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import release
from .atomic import check_output_folder
from .downloads import DEADLINE_SECONDS_ENV, STALL_SECONDS_ENV, check_base_url, deadline_seconds, stall_seconds
from .errors import EchoMimicError, WeightsError
from .mediapipe_files import (
    check_mediapipe_file,
    find_mediapipe_model,
    mediapipe_download_dir,
    mediapipe_file_problem,
    mediapipe_url,
)
from .release import VAE_FOLDER, VAE_REPO, WHISPER_ORIGINAL_URL
from .weights import check_weights_folder, release_file_problem

VARIANTS = release.VARIANT_NAMES
# huggingface_hub downloads here first (inside the weights folder, so the final rename stays on one disk).
STAGING_FOLDER = ".echomimic-download"


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
        size: the bytes of the full-size release file, where known (:func:`echomimic.weights.release_file_problem`).
    """

    role: str
    relative_path: str
    alternatives: tuple[str, ...]
    repo_id: str
    repo_filename: str
    note: str = ""
    size: int | None = None

    def found_path(self, weights_dir: Path) -> Path | None:
        """The existing accepted path in ``weights_dir`` (alternatives first, then the main one)."""
        for relative in (*self.alternatives, self.relative_path):
            candidate = Path(weights_dir) / relative
            if candidate.is_file():
                return candidate
        return None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/blob/main/{self.repo_filename}"


def _release_only_files(version: str) -> set[str]:
    """Relative paths that only ``version``'s release has (its network files whose names the other
    release does not use, and its Whisper file)."""

    def names(v: str) -> set[str]:
        return {
            f"{stem}{suffix}"
            for spec in release.VARIANTS.values()
            if spec.version == v
            for stem in spec.stems.values()
            for suffix in (".pth", ".safetensors")
        } | {spec.whisper_file for spec in release.VARIANTS.values() if spec.version == v}

    other = "v1" if version == "v2" else "v2"
    return names(version) - names(other)


def release_of_folder(weights_dir: str | os.PathLike) -> str | None:
    """``"v1"`` or ``"v2"`` when ``weights_dir`` holds files that only that release has, else None (empty,
    missing, or only names both releases use)."""
    folder = Path(weights_dir)
    found = [
        version for version in ("v1", "v2") if any((folder / name).is_file() for name in _release_only_files(version))
    ]
    return found[0] if len(found) == 1 else None


def whisper_file_of_folder(
    weights_dir: str | os.PathLike, version: str | None = None, *, folder_names: dict[str, str] | None = None
) -> RequiredFile:
    """The Whisper-tiny file a run on ``weights_dir`` reads: the one that is there (V1 ``whisper_tiny.pt`` or
    V2 ``tiny.pt``); else that of release ``version`` ("v1"/"v2") when given; else that of the release whose
    files the folder holds (:func:`release_of_folder`); else that of the release installed there by default
    (``folder_names``: release -> folder name, the adapter's own table). A folder that tells nothing gets a
    :class:`WeightsError`: fetching the wrong name would later make the folder look like the other release."""
    candidates = {"v1": whisper_file("audio"), "v2": whisper_file("v2")}
    folder = Path(weights_dir)
    for item in candidates.values():
        if item.found_path(folder) is not None:
            return item
    if version is None:
        version = release_of_folder(folder)
    if version is None:
        by_name = {name: key for key, name in (folder_names or {}).items()}
        version = by_name.get(folder.name)
    if version is None:
        raise WeightsError(
            f"{folder} has no Whisper-tiny file and nothing that tells EchoMimic V1 from V2; choose the release "
            "of this folder on the audio encoder loader, or load the EchoMimic models from it first."
        )
    return candidates[version]


def refuse_other_release(
    weights_dir: str | os.PathLike,
    variant: str,
    *,
    variant_name: str | None = None,
    folder_names: dict[str, str] | None = None,
) -> None:
    """Raise :class:`WeightsError` when ``weights_dir`` holds files of the other EchoMimic release.

    V1 and V2 name different weights alike (``reference_unet.pth``, ``denoising_unet.pth``, ...) and their
    UNets have the same shapes, so a V2 run pointed at a V1 folder (or the reverse) would load the wrong
    weights without any shape error, and downloading into it would mix the two. Each needs its own folder.
    The message names the variant as ``variant_name`` (default its id) and suggests the folder of
    ``folder_names`` (release -> folder; default the command line's :data:`release.DEFAULT_WEIGHTS_FOLDER`),
    so an adapter can speak its own words (the node: its combo label and models/echomimic folder).
    """
    spec = release.variant(variant)
    folder = Path(weights_dir)
    from .v3.files import is_v3_folder

    if is_v3_folder(folder):
        raise WeightsError(
            f"{folder.resolve()} holds EchoMimic V3 files, but '{variant}' is a {spec.version.upper()} variant. "
            f"Point the weights folder at the {spec.version.upper()} folder (for example "
            f"{release.DEFAULT_WEIGHTS_FOLDER[spec.version]}), or use --mode v3_flash."
        )
    other = "v1" if spec.version == "v2" else "v2"
    foreign = sorted(name for name in _release_only_files(other) if (folder / name).is_file())
    if foreign:
        example = (folder_names or release.DEFAULT_WEIGHTS_FOLDER)[spec.version]
        raise WeightsError(
            f"{folder.resolve()} holds EchoMimic {other.upper()} files ({', '.join(foreign)}), but "
            f"'{variant_name or variant}' is a {spec.version.upper()} variant. The two releases use the same file "
            f"names for different weights, so each needs a folder of its own: point the weights folder at the "
            f"{spec.version.upper()} folder (for example {example}) or pick a {other.upper()} variant."
        )


def model_files(variant: str) -> list[RequiredFile]:
    """The 4 network files of ``variant`` (what the model loader node reads)."""
    spec = release.variant(variant)
    return [
        RequiredFile(
            role=role,
            relative_path=f"{stem}.pth",
            alternatives=(f"{stem}.safetensors",),
            repo_id=spec.repo_id,
            repo_filename=f"{stem}.pth",
        )
        for role, stem in spec.stems.items()
    ]


def whisper_file(variant: str) -> RequiredFile:
    """The Whisper-tiny file of ``variant``'s repository (V1 ``whisper_tiny.pt``, V2 ``tiny.pt``)."""
    spec = release.variant(variant)
    stem = spec.whisper_file.rsplit(".", 1)[0]
    return RequiredFile(
        role="whisper",
        relative_path=spec.whisper_file,
        alternatives=(f"{stem}.safetensors",),
        repo_id=spec.repo_id,
        repo_filename=spec.whisper_file,
        note=f"Whisper tiny; the same file is OpenAI's {WHISPER_ORIGINAL_URL}",
    )


def vae_files() -> list[RequiredFile]:
    """The SD1.5 VAE (``stabilityai/sd-vae-ft-mse``) in ``sd-vae-ft-mse/``."""
    config, weights = release.VAE_FILES
    return [
        RequiredFile(
            role="vae_config",
            relative_path=f"{VAE_FOLDER}/{config}",
            alternatives=(),
            repo_id=VAE_REPO,
            repo_filename=config,
        ),
        RequiredFile(
            role="vae_weights",
            relative_path=f"{VAE_FOLDER}/{weights}",
            alternatives=tuple(f"{VAE_FOLDER}/{name}" for name in release.VAE_WEIGHT_ALTERNATIVES),
            repo_id=VAE_REPO,
            repo_filename=weights,
        ),
    ]


def required_files(variant: str = "audio") -> list[RequiredFile]:
    """Every Hugging Face file ``variant`` needs: its 4 model files, the Whisper tiny encoder and the VAE."""
    return [*model_files(variant), whisper_file(variant), *vae_files()]


def missing_files(weights_dir: str | os.PathLike, variant: str = "audio") -> list[RequiredFile]:
    """The required files of ``variant`` that ``weights_dir`` lacks (empty when complete)."""
    folder = Path(weights_dir)
    return [item for item in required_files(variant) if item.found_path(folder) is None]


def missing_mediapipe(
    weights_dir: str | os.PathLike,
    variant: str = "audio",
    *,
    face_crop: bool = True,
    extract: bool = True,
    align: bool = True,
) -> list[release.MediaPipeModel]:
    """The MediaPipe Tasks files a run of ``variant`` needs (release.mediapipe_models_for) that ``weights_dir``
    lacks."""
    needed = release.mediapipe_models_for(variant, face_crop=face_crop, extract=extract, align=align)
    return [model for model in needed if find_mediapipe_model(model, Path(weights_dir)) is None]


def missing_weights_message(weights_dir: str | os.PathLike, variant: str, missing: list[RequiredFile]) -> str:
    """A message naming each missing file, where it was expected and where to get it."""
    folder = Path(weights_dir).resolve()
    repo = release.variant(variant).repo_id
    lines = [f"{len(missing)} weight file(s) for EchoMimic variant {variant!r} are missing from {folder}:"]
    for item in missing:
        accepted = " or ".join(str(folder / p) for p in (item.relative_path, *item.alternatives))
        line = f"  - {item.relative_path} ({item.role}): expected at {accepted}; get it from {item.url}"
        if item.note:
            line += f" ({item.note})"
        lines.append(line)
    lines.append(
        f"To fix: {download_command(weights_dir, variant)} (or add --download to the generate command), "
        f"or download the Hugging Face repo yourself (hf download {repo} --local-dir <folder>; "
        f"the VAE is https://huggingface.co/{VAE_REPO}) and pass --weights <folder>."
    )
    return "\n".join(lines)


def download_command(weights_dir: str | os.PathLike, variant: str) -> str:
    """The command line that fetches every file of ``variant`` into ``weights_dir``."""
    return f"python -m echomimic download --mode {variant} --weights {shlex.quote(str(weights_dir))}"


def check_run_folder(weights_dir: str | os.PathLike, variant: str, *, download: bool) -> Path:
    """The weights folder of a ``variant`` run as an absolute path, or one :class:`WeightsError` line.

    With ``download`` a missing folder is fine (the download creates it); without, a missing folder (a
    mistyped ``--weights`` or nothing fetched yet) is said to be missing, with the command that fetches
    this variant's files, rather than listed file by file.
    """
    folder = Path(weights_dir).expanduser().absolute()
    if os.path.lexists(folder):
        return check_weights_folder(folder)  # a file, a symlink loop, unreadable: its own line
    if download:
        return folder
    raise WeightsError(
        f"The weights folder {folder} does not exist. Fetch the {variant} files into it with "
        f"{download_command(weights_dir, variant)} (or add --download to the generate command), "
        "or pass --weights with the folder that holds them."
    )


def mediapipe_status_lines(weights_dir: str | os.PathLike, variant: str, *, face_crop: bool = True) -> list[str]:
    """One line per MediaPipe file of ``variant``: found where, or missing with its URL and folder."""
    lines = []
    for model in release.mediapipe_models_for(variant, face_crop=face_crop):
        found = find_mediapipe_model(model, Path(weights_dir))
        problem = mediapipe_file_problem(model, found) if found is not None else None
        if problem is not None:
            lines.append(
                f"damaged  {model.name} ({model.what}): {found}: {problem}; delete it (it is downloaded "
                f"again on first use from {mediapipe_url(model)})"
            )
            continue
        lines.append(
            f"ok       {model.name} ({model.what}): {found}"
            if found is not None
            else f"missing  {model.name} ({model.what}): downloaded on first use from {mediapipe_url(model)} "
            f"into {mediapipe_download_dir(Path(weights_dir)).resolve()}"
        )
    return lines


def check_weights(weights_dir: str | os.PathLike, variant: str = "audio") -> dict[str, Path]:
    """Returns ``role -> existing path`` for every required file, or raises :class:`WeightsError`.

    The error lists each missing file, the folder it was expected in and where to download it.
    """
    folder = Path(weights_dir)
    refuse_other_release(folder, variant)
    missing = missing_files(folder, variant)
    if missing:
        raise WeightsError(missing_weights_message(folder, variant, missing))
    return {item.role: found for item in required_files(variant) if (found := item.found_path(folder)) is not None}


def check_files_in_place(
    weights_dir: str | os.PathLike, files: Iterable[RequiredFile], *, fix: str | None = None
) -> None:
    """Each of ``files`` that ``weights_dir`` holds can be what its name says (:func:`release_file_problem`:
    not an HTML or text page, not truncated, not far smaller than the release file), else one
    :class:`WeightsError` line naming the file and saying to delete it and ``fix`` (default: download it
    again from its URL). Missing files are not this check's business."""
    folder = Path(weights_dir)
    for item in files:
        found = item.found_path(folder)
        if found is not None and (problem := release_file_problem(found, item.size)) is not None:
            how = fix or f"download it again (it comes from {item.url})"
            raise WeightsError(f"{found} is {problem}. Delete it and {how}.")


def download_hub_files(
    weights_dir: str | os.PathLike,
    files: Iterable[RequiredFile],
    *,
    endpoint: str | None = None,
    log: Callable[[str], None] | None = None,
    tqdm_class: Any = None,
) -> dict[str, Path]:
    """Fetch each of ``files`` that ``weights_dir`` lacks from Hugging Face; ``role -> path`` of all.

    The file lands in ``<weights_dir>/.echomimic-download/`` (huggingface_hub writes ``.incomplete`` there
    and renames; a copy from the HF cache lands there too), then one rename puts it at its release path.
    ``tqdm_class`` receives huggingface_hub's progress (a subclass may raise in ``update`` to cancel).

    Raises:
        WeightsError: a file could not be downloaded (no network, ...); names the file, its URL and folder.
    """
    folder = Path(weights_dir)
    files = list(files)
    check_files_in_place(folder, files)  # a file in place is used only when it can be what its name says
    todo = [item for item in files if item.found_path(folder) is None]
    if not todo:
        return {item.role: item.found_path(folder) for item in files}  # type: ignore[misc]
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as error:  # pragma: no cover - huggingface_hub is a dependency of diffusers
        raise WeightsError(
            "Downloading needs the huggingface_hub package; install it with `pip install huggingface_hub`."
        ) from error
    # HF_ENDPOINT read now: huggingface_hub reads it once at import, which may predate the setting.
    configured = endpoint or os.environ.get("HF_ENDPOINT") or ""
    endpoint = check_base_url(configured, "HF_ENDPOINT", schemes=("http", "https")) if configured.strip() else None
    # Offline, huggingface_hub retries each request with backoff (~23 s per file): one quick probe first
    # (none in its own offline mode, which reaches no server).
    offline = None if constants.HF_HUB_OFFLINE else hub_unreachable(endpoint or constants.ENDPOINT)
    staging = folder / STAGING_FOLDER
    try:
        for item in todo:
            if offline is not None:
                raise WeightsError(
                    f"Could not download {item.repo_filename} from {item.url}: the Hugging Face endpoint cannot be "
                    f"reached ({offline}), so this computer seems to be offline. Check the network (or HF_ENDPOINT "
                    f"/ a proxy), or download it by hand into {(folder / item.relative_path).resolve()}."
                )
            expected = folder / item.relative_path
            if log is not None:
                log(f"downloading {item.repo_id}/{item.repo_filename} -> {expected}")
            try:
                staging.mkdir(parents=True, exist_ok=True)
                staged = _bounded_hub_download(
                    hf_hub_download,
                    tqdm_class,
                    repo_id=item.repo_id,
                    filename=item.repo_filename,
                    local_dir=str(staging / item.repo_id),
                    endpoint=endpoint,
                )
                problem = release_file_problem(staged, item.size)
                if problem is not None:  # a broken mirror's error page, saved under the file's name
                    raise _HubFailure(f"the server sent {problem}")
                expected.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, expected)  # same disk: atomic
            except _HubFailure as failure:
                raise WeightsError(
                    f"Could not download {item.repo_filename} from {item.url}: {failure}. Check the network (or "
                    f"HF_ENDPOINT / a proxy), or download it by hand into {expected.resolve()}."
                ) from None
            except EchoMimicError:  # a cancel from tqdm_class, or ours: as is
                raise
            except Exception as error:  # network, auth, disk, hub errors: all reported the same way
                raise WeightsError(
                    f"Could not download {item.repo_filename} from {item.url} ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}). Check the network (or HF_ENDPOINT / a "
                    f"proxy), or download it by hand into {expected.resolve()}."
                ) from None
    finally:  # success, failure, cancel or deadline: no scratch folder stays behind
        shutil.rmtree(staging, ignore_errors=True)
    return {item.role: item.found_path(folder) for item in files}  # type: ignore[misc]


HUB_PROBE_SECONDS = 3.0


def hub_unreachable(endpoint: str | None, timeout: float = HUB_PROBE_SECONDS) -> str | None:
    """Why no TCP connection opens to ``endpoint`` (or to the proxy the environment sets for it) within
    ``timeout`` seconds, name lookup included; None when one opens, or for no endpoint / a non-HTTP one."""
    import socket
    import threading
    import urllib.parse
    import urllib.request

    target = urllib.parse.urlsplit(endpoint or "")
    if target.scheme not in ("http", "https") or not target.hostname:
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(target.hostname):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    address = (target.hostname or "", target.port or (443 if target.scheme == "https" else 80))
    outcome: list[str | None] = []

    def connect() -> None:  # in a thread: a hanging name lookup ignores the socket timeout
        try:
            socket.create_connection(address, timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{address[0]}:{address[1]}: {error.strerror or error}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"{address[0]}:{address[1]}: no answer within {timeout:g} s"


class _HubFailure(Exception):
    """A hub download stopped by our bounds (deadline, silence, size) or refused after it arrived."""


# A Hub file whose size the Hub does not announce is read up to this (the largest release file is ~11 GB).
HUB_MAX_BYTES = 32 << 30
_POLL_SECONDS = 0.05


def _bounded_hub_download(hf_hub_download: Callable[..., str], tqdm_class: Any, **arguments: Any) -> Path:
    """``hf_hub_download(**arguments)`` within the download bounds of :mod:`echomimic.downloads`.

    huggingface_hub has its own read timeout and retries, but no overall deadline, and reads a body without
    a Content-Length to its end. So it runs in a worker thread: this thread gives up when the Hub has not
    answered within the stall timeout or the file is not complete by the deadline, and a progress class
    stops the worker at its next chunk past the announced size (or :data:`HUB_MAX_BYTES`), past the
    deadline, or once given up. A worker still blocked on a silent socket ends with its read timeout; its
    files are in the staging folder, which the caller removes.
    """
    import threading

    from tqdm.auto import tqdm

    stall, allowed = stall_seconds(), deadline_seconds()
    started = time.monotonic()
    ends = started + allowed
    state = {"answered": False, "given_up": False}
    base = tqdm_class if tqdm_class is not None else tqdm

    class BoundedProgress(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            state["answered"] = True  # huggingface_hub opens its bar once the body starts
            if tqdm_class is None:
                kwargs["disable"] = True  # no bar of our own: the caller logs one line per file
            # Counted here: a disabled tqdm counts nothing.
            self.bytes_seen = int(kwargs.get("initial") or 0)
            self.bytes_limit = int(kwargs["total"]) if kwargs.get("total") else HUB_MAX_BYTES
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self.bytes_seen += int(n or 0)
            limit = self.bytes_limit
            if state["given_up"]:
                raise _HubFailure("given up")
            if self.bytes_seen > limit:
                raise _HubFailure(f"the server sent more than the announced {limit:,} bytes (a wrong file)")
            if time.monotonic() > ends:
                raise _HubFailure(f"it took longer than {allowed:g} s ({DEADLINE_SECONDS_ENV} sets the limit)")
            return shown

    options: dict[str, Any] = {"etag_timeout": stall}
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        options["tqdm_class"] = BoundedProgress
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["path"] = hf_hub_download(**arguments, **options)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread as is
            outcome["error"] = error

    worker = threading.Thread(target=work, name="echomimic-hub-download", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(_POLL_SECONDS)
        now = time.monotonic()
        if worker.is_alive() and not state["answered"] and now - started > stall:
            state["given_up"] = True
            raise _HubFailure(f"the Hub did not answer within {stall:g} s ({STALL_SECONDS_ENV} sets the limit)")
        if worker.is_alive() and now > ends:
            state["given_up"] = True
            raise _HubFailure(f"it took longer than {allowed:g} s ({DEADLINE_SECONDS_ENV} sets the limit)")
    if "error" in outcome:
        raise outcome["error"]
    return Path(outcome["path"])


def fetch_mediapipe_for_run(
    weights_dir: str | os.PathLike,
    variant: str,
    *,
    face_crop: bool = True,
    extract: bool = True,
    align: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """Before a run: the MediaPipe Tasks files it needs, downloaded into ``<weights_dir>/mediapipe/`` with a
    progress line (``log``). Nothing happens with a mediapipe that has the legacy API (bundled models)."""
    from .downloads import text_progress
    from .landmarks.backends import legacy_solutions_available
    from .mediapipe_files import ensure_mediapipe_models

    missing = missing_mediapipe(weights_dir, variant, face_crop=face_crop, extract=extract, align=align)
    if not missing or legacy_solutions_available():
        return
    ensure_mediapipe_models(
        missing,
        Path(weights_dir),
        progress_for=lambda model: text_progress(model.name, log),
        reason="This mediapipe has no legacy API, so the Tasks API",
    )


def download_weights(
    weights_dir: str | os.PathLike,
    variant: str = "audio",
    *,
    endpoint: str | None = None,
    log: Callable[[str], None] = print,
    mediapipe: bool = True,
    face_crop: bool = True,
    mediapipe_progress: Callable[[release.MediaPipeModel], Callable[[int, int], None] | None] | None = None,
) -> dict[str, Path]:
    """Downloads the files ``variant`` still lacks into ``weights_dir``; files already present stay.

    The EchoMimic files and Whisper tiny come from the variant's repository, the VAE from
    ``stabilityai/sd-vae-ft-mse`` into ``sd-vae-ft-mse/``, and (``mediapipe``) the MediaPipe Tasks files
    a run may need into ``mediapipe/`` (the Tasks API needs them; harmless with the legacy API).

    Args:
        weights_dir: the weights folder (created if needed).
        variant: one of :data:`VARIANTS`.
        endpoint: Hugging Face endpoint (None = the default, or ``HF_ENDPOINT``).
        log: receives one line per file.
        mediapipe: also fetch the MediaPipe files.
        face_crop: the run crops the face automatically (needs the face detector).
        mediapipe_progress: model -> (bytes done, total) callback for its download.

    Returns:
        ``role -> path`` of every required Hugging Face file.

    Raises:
        WeightsError: a file could not be downloaded (no network, ...); names the file and its URL.
    """
    from .mediapipe_files import ensure_mediapipe_models

    folder = Path(weights_dir)
    check_output_folder(folder)  # a read-only or file path: one OutputError line, not a traceback
    refuse_other_release(folder, variant)
    # Every file: those in place are checked (an error page saved as a weight is not taken as done).
    download_hub_files(folder, required_files(variant), endpoint=endpoint, log=log)
    if mediapipe:
        for model in release.mediapipe_models_for(variant, face_crop=face_crop):
            if (found := find_mediapipe_model(model, folder)) is not None:
                check_mediapipe_file(model, found)
        from .downloads import text_progress

        def progress_for(model: release.MediaPipeModel) -> Callable[[int, int], None] | None:
            log(f"downloading {mediapipe_url(model)} -> {mediapipe_download_dir(folder) / model.name}")
            return mediapipe_progress(model) if mediapipe_progress else text_progress(model.name, log)

        ensure_mediapipe_models(
            missing_mediapipe(folder, variant, face_crop=face_crop), folder, progress_for=progress_for
        )
    return check_weights(folder, variant)
