"""One file over HTTP(S) (or ``file://``), checked and renamed into place only when complete.

The bytes stream into a temporary file beside the target (:func:`echomimic.atomic.atomic_path`), are
counted and hashed on the way, and replace the target only when the size and sha256 match. A dropped
connection, a wrong file, a full disk or a cancel (an exception raised by the progress callback) leave
nothing behind. Failures are one-line :class:`WeightsError` messages naming the file, the URL and the
folder to put it in by hand. Standard library only: no torch, no requests.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_path, check_output_folder
from .errors import WeightsError

# Called with (bytes done, bytes expected); total is 0 when unknown. May raise to cancel the download.
ProgressCallback = Callable[[int, int], None]

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 30.0
USER_AGENT = "echomimic-comfyui"


def text_progress(name: str, write: Callable[[str], None], *, every_percent: int = 10) -> ProgressCallback:
    """A progress callback that writes 'downloading <name>: 40% of 3.8 MB' every ``every_percent``."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        if total <= 0:
            return
        percent = min(100, 100 * done // total) // every_percent * every_percent
        if percent != shown[0]:
            shown[0] = percent
            write(f"downloading {name}: {percent:3d}% of {total / 1e6:.1f} MB")

    return report


def _fail(url: str, target: Path, reason: str) -> WeightsError:
    return WeightsError(
        f"Could not download {target.name} from {url}: {reason}. Check the network (or a proxy), or download "
        f"it by hand and put it in {target.parent}."
    )


def download_file(
    url: str,
    target: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: ProgressCallback | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Path:
    """Download ``url`` to ``target`` atomically; returns ``target``.

    Args:
        url: an ``http(s)://`` or ``file://`` URL.
        target: the final path; its folder is created. An existing file is replaced only on success.
        sha256: the expected hex digest (None: not checked).
        size: the expected byte count (None: the server's Content-Length, when it sends one).
        progress: called after each chunk with (bytes done, bytes expected or 0); an exception it raises
            (a cancel) stops the download and removes the partial file.
        timeout: seconds to wait for the server to answer or send more bytes.

    Raises:
        WeightsError: unreachable server, HTTP error, dropped connection, wrong size or checksum.
    """
    target = Path(target).expanduser().absolute()
    check_output_folder(target.parent)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    with atomic_path(target) as temporary:
        # Network failures are raised as WeightsError (not OSError) inside the block, so atomic_path does
        # not report them as a write error; it removes the temporary file either way.
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, open(temporary, "wb") as out:
                announced = response.headers.get("Content-Length")
                total = size if size is not None else int(announced) if announced and announced.isdigit() else 0
                digest = hashlib.sha256()
                done = 0
                if progress is not None:
                    progress(0, total)
                while block := response.read(CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        except urllib.error.HTTPError as error:
            raise _fail(url, target, f"the server answered HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise _fail(url, target, f"cannot reach the server ({error.reason})") from None
        except (http.client.HTTPException, ConnectionError, TimeoutError) as error:
            raise _fail(url, target, f"the connection broke ({type(error).__name__}: {error})") from None
        if total and done != total:
            raise _fail(url, target, f"got {done:,} bytes, expected {total:,} (an interrupted or wrong file)")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise _fail(url, target, f"its sha256 is {digest.hexdigest()}, expected {sha256} (a wrong file)")
    return target
