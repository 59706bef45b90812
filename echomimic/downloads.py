"""One file over HTTP(S) (or ``file://``), checked and renamed into place only when complete.

The bytes stream into a temporary file beside the target (:func:`echomimic.atomic.atomic_path`), are
counted and hashed on the way, and replace the target only when the size and sha256 match. A dropped
connection, a wrong file, a full disk or a cancel (an exception raised by the progress callback) leave
nothing behind. Failures are one-line :class:`WeightsError` messages naming the file, the URL and the
folder to put it in by hand. Standard library only: no torch, no requests.

Every download is bounded: at most the expected size is read (one byte more proves a wrong file), the
server may stay silent for at most the stall timeout, and the whole file must arrive before the deadline
(``$ECHOMIMIC_DOWNLOAD_STALL_SECONDS``, ``$ECHOMIMIC_DOWNLOAD_DEADLINE_SECONDS``).
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .atomic import atomic_path, check_output_folder
from .errors import EchoMimicError, WeightsError

# Called with (bytes done, bytes expected); total is 0 when unknown. May raise to cancel the download.
ProgressCallback = Callable[[int, int], None]

CHUNK_BYTES = 1 << 20
USER_AGENT = "echomimic-comfyui"
# The longest silence from a server (connecting, answering, or between two reads), and the longest a whole
# file may take; the environment overrides both (the tests set them small).
STALL_SECONDS_ENV = "ECHOMIMIC_DOWNLOAD_STALL_SECONDS"
DEADLINE_SECONDS_ENV = "ECHOMIMIC_DOWNLOAD_DEADLINE_SECONDS"
DEFAULT_STALL_SECONDS = 30.0
DEFAULT_DEADLINE_SECONDS = 3600.0  # an hour per file: the largest release file at a slow 3 MB/s
# A body whose size nobody announced is read up to this many bytes, never more.
DEFAULT_MAX_BYTES = 1 << 31
_URL_SCHEMES = ("http", "https", "file")


def _seconds_setting(name: str, default: float) -> float:
    """A positive number of seconds from ``$name`` (unset or empty: ``default``); else one line."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise WeightsError(
            f"{name}={text!r} is not a positive number of seconds; set it to one (e.g. {default:g}) or unset it."
        )
    return value


def stall_seconds() -> float:
    """The longest a server may stay silent: ``$ECHOMIMIC_DOWNLOAD_STALL_SECONDS`` or 30 s."""
    return _seconds_setting(STALL_SECONDS_ENV, DEFAULT_STALL_SECONDS)


def deadline_seconds() -> float:
    """The longest one file may take: ``$ECHOMIMIC_DOWNLOAD_DEADLINE_SECONDS`` or an hour."""
    return _seconds_setting(DEADLINE_SECONDS_ENV, DEFAULT_DEADLINE_SECONDS)


def check_base_url(url: str, setting: str, *, schemes: tuple[str, ...] = _URL_SCHEMES) -> str:
    """``url`` (without a final slash) when it is a usable ``schemes`` address, else one
    :class:`WeightsError` line naming ``setting`` (the environment variable it came from)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        if parts.scheme.lower() not in schemes:
            problem = f"its scheme must be one of {', '.join(s + '://' for s in schemes)}"
        elif parts.scheme.lower() != "file" and not parts.hostname:
            problem = "it names no host"
        elif any(ch.isspace() or ord(ch) < 32 for ch in url.strip()):
            problem = "it holds spaces or control characters"
        else:
            return url.strip().rstrip("/")
    except ValueError as error:
        problem = str(error) or "it cannot be parsed"
    raise WeightsError(f"{setting}={url!r} is not a usable URL ({problem}); fix it or unset it.")


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes of a body are an HTML/XML page (an error, login or proxy page)."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<title"))


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
    timeout: float | None = None,
    deadline: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Download ``url`` to ``target`` atomically; returns ``target``.

    Args:
        url: an ``http(s)://`` or ``file://`` URL.
        target: the final path; its folder is created. An existing file is replaced only on success.
        sha256: the expected hex digest (None: not checked).
        size: the expected byte count (None: the server's Content-Length, when it sends one). At most this
            many bytes are read (one more proves a wrong file).
        progress: called after each chunk with (bytes done, bytes expected or 0); an exception it raises
            (a cancel) stops the download and removes the partial file.
        timeout: seconds the server may stay silent (None: :func:`stall_seconds`).
        deadline: seconds the whole file may take (None: :func:`deadline_seconds`).
        max_bytes: the most bytes read when neither ``size`` nor a Content-Length is known.

    Raises:
        WeightsError: unreachable server, HTTP error, dropped connection, silence past the stall timeout,
            the deadline passed, more bytes than expected, wrong size or checksum.
    """
    target = Path(target).expanduser().absolute()
    check_output_folder(target.parent)
    stall = stall_seconds() if timeout is None else timeout
    allowed = deadline_seconds() if deadline is None else deadline
    ends = time.monotonic() + allowed
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    except ValueError as error:  # no scheme, a bad host or port: the URL itself
        raise _fail(url, target, f"the URL is not usable ({error})") from None
    with atomic_path(target) as temporary:
        # Network failures are raised as WeightsError (not OSError) inside the block, so atomic_path does
        # not report them as a write error; it removes the temporary file either way.
        head = b""
        try:
            with urllib.request.urlopen(request, timeout=stall) as response, open(temporary, "wb") as out:
                announced = response.headers.get("Content-Length")
                announced_size = int(announced) if announced and announced.strip().isdigit() else None
                if size is not None and announced_size is not None and announced_size != size:
                    head = response.read(min(announced_size, 64))  # only to name an error page as such
                    what = "an HTML page, not the file" if looks_like_html(head) else "a wrong file"
                    raise _fail(
                        url, target, f"the server announces {announced_size:,} bytes, expected {size:,} ({what})"
                    )
                total = size if size is not None else announced_size or 0
                limit = size if size is not None else announced_size if announced_size is not None else max_bytes
                # read1: at most one read of the socket, so a server dripping bytes still meets the deadline.
                read = getattr(response, "read1", response.read)
                digest = hashlib.sha256()
                done = 0
                if progress is not None:
                    progress(0, total)
                while True:
                    if time.monotonic() > ends:
                        raise _fail(
                            url,
                            target,
                            f"it took longer than {allowed:g} s ({done:,} bytes so far; "
                            f"{DEADLINE_SECONDS_ENV} sets the limit)",
                        )
                    block = read(min(CHUNK_BYTES, limit + 1 - done))
                    if not block:
                        break
                    done += len(block)
                    if len(head) < 64:
                        head += block[: 64 - len(head)]
                    if done > limit:
                        raise _fail(
                            url,
                            target,
                            f"the server sent more than the expected {limit:,} bytes "
                            f"({'an HTML page, ' if looks_like_html(head) else ''}a wrong file)",
                        )
                    out.write(block)
                    digest.update(block)
                    if progress is not None:
                        progress(done, total)
        except EchoMimicError:  # ours (sizes, deadline) or a cancel: as is
            raise
        except urllib.error.HTTPError as error:
            raise _fail(url, target, f"the server answered HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                reason = f"no answer within {stall:g} s; {STALL_SECONDS_ENV} sets the limit"
            raise _fail(url, target, f"cannot reach the server ({reason})") from None
        except TimeoutError:
            raise _fail(
                url, target, f"the server sent nothing for {stall:g} s ({STALL_SECONDS_ENV} sets the limit)"
            ) from None
        except (http.client.HTTPException, ConnectionError) as error:
            raise _fail(url, target, f"the connection broke ({type(error).__name__}: {error})") from None
        except ValueError as error:  # a malformed URL urllib only notices when connecting (a bad port)
            raise _fail(url, target, f"the URL is not usable ({error})") from None
        what = "an HTML page, not the file" if looks_like_html(head) else "an interrupted or wrong file"
        if total and done != total:
            raise _fail(url, target, f"got {done:,} bytes, expected {total:,} ({what})")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise _fail(url, target, f"its sha256 is {digest.hexdigest()}, expected {sha256} ({what})")
    return target
