"""Writing files so that nothing is ever lost: a temporary file in the target's folder, renamed at the end.

Every file the project writes (mp4, frames, landmark or pose JSON, converted weights, downloads) goes
through :func:`atomic_path`: on any error or interrupt the previous file is intact and no partial file
is left behind. OS errors become one-line :class:`OutputError` messages that name the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import EchoMimicError

TEMP_PREFIX = ".echomimic-partial-"


class OutputError(EchoMimicError, OSError):
    """An output file or folder cannot be written."""


def describe_os_error(error: OSError, path: str | os.PathLike) -> str:
    """'<path>: <reason>' without Python's errno tuple."""
    reason = error.strerror or str(error) or type(error).__name__
    return f"{Path(path)}: {reason}"


def check_output_file(path: str | os.PathLike) -> Path:
    """Check, before any work starts, that ``path`` can be written: its folder exists and is writable,
    and it is not a folder itself. Returns the absolute path; raises :class:`OutputError` otherwise."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise OutputError(
            f"Cannot write {target}: it is a folder; give a file name (for example {target / 'out.mp4'})."
        )
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"Cannot write {target}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write {target}: the folder {folder} is not writable; choose another place.")
    refuse_special_file(target)
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"Cannot write {target}: the file is read-only; choose another name.")
    return target


def refuse_special_file(target: Path) -> None:
    """An existing target that is not a regular file (a device such as /dev/null, a FIFO, a socket) would be
    replaced by the rename: refuse it. A symlink is judged by what it points to."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"Cannot write {describe_os_error(error, target)}.") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = (
            "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise OutputError(f"Cannot write {target}: it is {kind}, not a file; give the name of a file to write.")


def check_output_folder(path: str | os.PathLike, *, create: bool = True) -> Path:
    """Check (and by default create) a folder that files will be written into."""
    folder = Path(path).expanduser().absolute()
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"Cannot create the folder {describe_os_error(error, folder)}.") from None
    if not folder.is_dir():
        raise OutputError(f"Cannot write into {folder}: it is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write into {folder}: the folder is not writable; choose another place.")
    return folder


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; when the block ends without error it replaces ``target``.

    The temporary file keeps ``target``'s suffix (or ``suffix``) so that writers that pick a format from
    the name (PyAV, PIL) still do. On any exception, KeyboardInterrupt included, it is removed and
    ``target`` is left as it was.
    """
    target = Path(target).expanduser().absolute()
    refuse_special_file(target)
    suffix = target.suffix if suffix is None else suffix
    try:
        handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=target.parent)
    except OSError as error:
        raise OutputError(f"Cannot write {describe_os_error(error, target)}.") from None
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        try:
            with contextlib.suppress(OSError):  # keep the permissions a previous file had
                os.chmod(temporary, os.stat(target).st_mode if target.exists() else 0o644)
            os.replace(temporary, target)
        except OSError as error:
            raise OutputError(f"Cannot write {describe_os_error(error, target)}.") from None
    except OSError as error:
        if isinstance(error, OutputError):
            raise
        raise OutputError(f"Cannot write {describe_os_error(error, target)}.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(target)
