"""Reading weight files safely and loading them strictly.

``.pth``/``.pt``/``.bin`` files are opened only with ``torch.load(weights_only=True)``: a pickle that
would run code is refused. ``.safetensors`` files are read with safetensors.
"""

from __future__ import annotations

import errno
import pickle
import re
import stat
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import WeightsError

if TYPE_CHECKING:  # torch is imported when a file is read, so the CLI can check folders without it
    import torch
    from torch import nn

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
_SHOWN_KEYS = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` state dict from ``.safetensors`` or a weights-only ``.pth``."""
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        loaded = load_pickle_weights(path)
    else:
        raise WeightsError(f"{path}: unknown weight format {suffix!r}. Use the official .pth files or .safetensors.")
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors; it is not an EchoMimic weight file.")
    return dict(loaded)


def _first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's text (some are empty: EOFError), at most 200 chars."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(error).__name__


def check_weights_file(path: Path) -> int:
    """Raise a :class:`WeightsError` saying what is wrong unless ``path`` is a readable non-empty file.

    Catches what a failed or interrupted download leaves (missing, empty, a Git LFS pointer or an HTML
    page in place of the file) and symlink loops. Returns the file's size in bytes.
    """
    try:
        info = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise WeightsError(
                f"{path}: the path is a symlink loop; point it at the real weights file or folder."
            ) from None
        if isinstance(error, FileNotFoundError):
            raise WeightsError(
                f"Weight file {path} does not exist; download it (python -m echomimic "
                "download) or check the weights folder."
            ) from None
        raise WeightsError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None
    if not stat.S_ISREG(info.st_mode):
        raise WeightsError(f"{path} is not a file (a folder?); point at the weights file itself.")
    if info.st_size == 0:
        raise WeightsError(f"{path} is empty: the download probably failed; download it again.")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise WeightsError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(
            f"{path} is not a weights file but a Git LFS pointer (a few bytes of text): "
            "download the real file again (git lfs pull, or python -m echomimic download)."
        )
    if all(32 <= b < 127 or b in b"\r\n\t" for b in head):  # binary formats all have bytes outside this
        raise WeightsError(f"{path} is not a weights file (it holds text, perhaps an error page); download it again.")
    return info.st_size


def _is_text(head: bytes) -> bool:
    """Printable ASCII only: binary weight formats all have bytes outside this in their first 64."""
    return all(32 <= b < 127 or b in b"\r\n\t" for b in head)


def release_file_problem(path: Path, release_size: int | None = None) -> str | None:
    """Why ``path`` cannot be the release file its name says, else None.

    Cheap enough for every file of a folder: the first bytes (empty, a Git LFS pointer, an HTML or text page
    where a binary file belongs, a ``.json`` that is not JSON) and, for torch zip and ``.safetensors`` files,
    the length their own structure declares (a truncated file). What a download and a found file both pass.

    ``release_size``: the bytes of the full-size release file, where known. A file whose own structure proves
    it complete (a torch zip with its directory, a ``.safetensors`` file of exactly its header's length) may
    be smaller (a tiny build of the same network, as the tests use); one that proves nothing (a legacy pickle)
    must not be far smaller (under half). Truncated files name the release size.
    """
    problem = _file_problem(path)
    if release_size is None:
        return problem
    if problem is not None:
        return f"{problem}; the release file is {release_size:,} bytes" if "truncated" in problem else problem
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    self_checked = head.startswith(b"PK") or path.suffix.lower() in (SAFETENSORS_SUFFIX, ".json")
    if not self_checked and size < release_size // 2:
        return (
            f"{size:,} bytes, far smaller than the release file's {release_size:,} (an interrupted or wrong download)"
        )
    return None


def _file_problem(path: Path) -> str | None:
    """:func:`release_file_problem` without a release size."""
    from .downloads import looks_like_html

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(64)
            suffix = path.suffix.lower()
            if size == 0:
                return "an empty file"
            if head.startswith(b"version https://git-lfs"):
                return "a Git LFS pointer (a few bytes of text), not the file"
            if looks_like_html(head):
                return f"an HTML page of {size:,} bytes, not the file"
            if suffix == ".json":
                return None if head.lstrip()[:1] in (b"{", b"[") else f"not JSON ({size:,} bytes)"
            if _is_text(head):
                return f"text of {size:,} bytes (perhaps an error page), not a weights file"
            if suffix in PICKLE_SUFFIXES:
                if head.startswith(b"PK"):
                    return (
                        None if zipfile.is_zipfile(path) else f"truncated ({size:,} bytes, no zip directory at its end)"
                    )
                return None if head.startswith(b"\x80") else "neither a PyTorch zip nor a pickle"
            if suffix == SAFETENSORS_SUFFIX:
                return _safetensors_size_problem(handle, head, size)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    return None


def _safetensors_size_problem(handle: BinaryIO, head: bytes, size: int) -> str | None:
    """A ``.safetensors`` file is 8 bytes of header length, the JSON header, then exactly the tensor bytes
    its header's offsets cover: anything else is truncated or not safetensors."""
    import json

    header_bytes = int.from_bytes(head[:8], "little")
    if len(head) < 8 or header_bytes > min(size - 8, 100 << 20):
        return f"not a .safetensors file or truncated ({size:,} bytes)"
    handle.seek(8)
    try:
        header = json.loads(handle.read(header_bytes))
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"not a .safetensors file (its header is not readable; {size:,} bytes)"
    expected = 8 + header_bytes + end
    if expected != size:
        return f"{size:,} bytes where its header says {expected:,} (truncated or damaged)"
    return None


def check_weights_folder(folder: str | Path, *, must_exist: bool = True) -> Path:
    """Raise a :class:`WeightsError` if ``folder`` is a symlink loop, a file, unreadable or (with
    ``must_exist``) missing; returns it as an absolute path (symlinks not resolved)."""
    folder = Path(folder).expanduser().absolute()
    try:
        info = folder.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise WeightsError(f"The weights folder {folder} is a symlink loop; point it at the real folder.") from None
        if isinstance(error, FileNotFoundError):
            if not must_exist:
                return folder
            raise WeightsError(
                f"The weights folder {folder} does not exist; download the weights (python -m "
                "echomimic download) or pass the folder that holds them."
            ) from None
        raise WeightsError(f"The weights folder {folder} cannot be read ({error.strerror or error}).") from None
    if not stat.S_ISDIR(info.st_mode):
        raise WeightsError(f"{folder} is a file, not a weights folder; pass the folder that holds the weights.")
    return folder


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file on the CPU; any damage is one :class:`WeightsError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    check_weights_file(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"{path} is not a readable .safetensors file ({_first_line(exc)}); it is probably truncated: "
            "download it again."
        ) from None


def load_pickle_weights(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU with every failure as one :class:`WeightsError`.

    A pickle that asks to import anything beyond tensors is refused by torch before it runs; the
    message names the import it asked for. Returns whatever plain container the file holds.
    """
    import torch

    path = Path(path)
    size = check_weights_file(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    is_zip = head.startswith(b"PK")
    if is_zip and not zipfile.is_zipfile(path):
        raise WeightsError(
            f"{path} is truncated or damaged ({size} bytes, no zip directory at its end): download it again."
        )
    if not is_zip and not head.startswith(b"\x80"):  # neither torch's zip format nor a legacy pickle
        raise WeightsError(
            f"{path} is not a weights file (it is neither a PyTorch zip nor a pickle); use the "
            "official release file or a .safetensors copy."
        )
    try:
        # Legacy (non-zip) torch files cannot be memory-mapped; still weights-only.
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        blocked = _blocked_import(exc, path)
        if blocked is None:  # torch refused something that is not an import: a damaged pickle
            raise WeightsError(
                f"{path} is not a readable weights file ({_first_line(exc)}); download it again."
            ) from None
        raise WeightsError(
            f"{path} refused: it would import {blocked}; nothing was run. Use the official release file or "
            "a .safetensors copy."
        ) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise WeightsError(
            f"{path} could not be read ({_first_line(exc)}); it is probably truncated or from another "
            "program: download it again."
        ) from None


_TORCH_BLOCKED = re.compile(r"GLOBAL ([\w.]+)")
_OS_MODULES = {"posix": "os", "nt": "os"}  # pickles name os.system after the platform module


def _blocked_import(error: pickle.UnpicklingError, path: Path) -> str | None:
    """The ``module.name`` a refused pickle asked for: from torch's message, else from the opcodes."""
    match = _TORCH_BLOCKED.search(str(error))
    name = match.group(1) if match else _first_foreign_global(path)
    if name is None:
        return None
    module, _, attribute = name.rpartition(".")
    return f"{_OS_MODULES.get(module, module)}.{attribute}" if module else name


def _first_foreign_global(path: Path) -> str | None:
    """Scan (never execute) the pickle opcodes for the first GLOBAL outside torch / collections."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            data = path.read_bytes()
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(argument))
            elif opcode.name == "GLOBAL":
                candidate = str(argument).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                candidate = f"{strings[-2]}.{strings[-1]}"
            else:
                continue
            if not candidate.startswith(("torch.", "collections.", "builtins.set", "_codecs.")):
                return candidate
    except Exception:  # a damaged pickle: nothing more to say than torch did
        return None
    return None


def _describe(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return shown + more


def check_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    *,
    expected_keys: Iterable[str] | None = None,
    hint: str = "",
) -> None:
    """Raise a :class:`WeightsError` naming ``source`` unless ``state_dict`` fits ``module`` exactly.

    ``expected_keys`` restricts the check to part of the module (a file that holds only some keys).
    """
    own = module.state_dict()
    expected = set(own) if expected_keys is None else set(expected_keys)
    given = set(state_dict)
    missing, unexpected = expected - given, given - expected
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_describe(unexpected)}")
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}"
        for key in sorted(expected & given)
        if tuple(state_dict[key].shape) != tuple(own[key].shape)
    ]
    if mismatched:
        problems.append(
            f"{len(mismatched)} tensors of another shape (file vs model): " + "; ".join(mismatched[:_SHOWN_KEYS])
        )
    if problems:
        advice = hint or "Check that the file belongs to this model variant and that the config matches it."
        raise WeightsError(f"{source} does not fit the model: " + "; ".join(problems) + f". {advice}")
