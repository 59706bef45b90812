"""A file server on 127.0.0.1 (ephemeral port, own thread) for download tests: no test reaches the internet.

It serves a fixed map of URL paths to files, records every request, and can misbehave on purpose (``mode``):
send a wrong file of the right length (``wrong``), drop the connection half-way through the body (``drop``),
send an endless body without a Content-Length (``nolength``; HEAD still announces the real size), drip the
body one byte per ``drip_seconds`` (``drip``), never answer at all (``silent``), or answer every file with a
small HTML error page (``html``, like a broken mirror or a captive portal). With ``hub=True`` it
answers like the Hugging Face Hub's ``/{repo}/resolve/{revision}/{filename}`` (the ``X-Repo-Commit``,
``ETag`` and ``Content-Length`` headers huggingface_hub's HEAD request reads).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import urllib.parse
from pathlib import Path

MODES = ("ok", "wrong", "drop", "nolength", "drip", "silent", "html")
HTML_PAGE = b"<!DOCTYPE html><html><body>Not here</body></html>\n"  # 52 bytes: a broken mirror's page
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackFiles:
    """Serves ``files`` (URL path -> local file) until closed; use as a context manager."""

    def __init__(self, files: dict[str, Path], *, hub: bool = False) -> None:
        self.files = {path: Path(local) for path, local in files.items()}
        self.hub = hub
        self.mode = "ok"
        self.drip_seconds = 0.2
        self.body_bytes_sent = 0  # of the misbehaving bodies (nolength, drip): what a client read at most
        self._closing = threading.Event()  # ends the handlers that never finish on their own
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self._sha256: dict[str, str] = {}
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def get_requests(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET"]

    def __enter__(self) -> LoopbackFiles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def _etag(self, path: str) -> str:
        if path not in self._sha256:
            self._sha256[path] = hashlib.sha256(self.files[path].read_bytes()).hexdigest()
        return self._sha256[path]

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def _answer(self, with_body: bool) -> None:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                owner.requests.append((self.command, path))
                if owner.hub and path.startswith("/api/"):
                    self._api(path)
                    return
                if owner.hub:  # a download pinned to the commit that repo_info reported
                    path = path.replace(f"/resolve/{FAKE_COMMIT}/", "/resolve/main/", 1)
                local = owner.files.get(path)
                if owner.mode == "silent":  # read the request, then say nothing until the server closes
                    owner._closing.wait()
                    return
                if local is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = HTML_PAGE if owner.mode == "html" else local.read_bytes()
                self.send_response(200)
                if not (with_body and owner.mode == "nolength"):
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "text/html" if owner.mode == "html" else "application/octet-stream")
                if owner.hub:
                    self.send_header("X-Repo-Commit", FAKE_COMMIT)
                    etag = hashlib.sha256(body).hexdigest() if owner.mode == "html" else owner._etag(path)
                    self.send_header("ETag", f'"{etag}"')
                self.end_headers()
                if not with_body:
                    return
                if owner.mode in ("nolength", "drip"):
                    self._misbehave(body)
                    return
                if owner.mode == "wrong":  # same length, other bytes
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if owner.mode == "drop":  # half the body, then the connection is gone
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _misbehave(self, body: bytes) -> None:
                """nolength: the file, then junk without end; drip: the file one byte at a time. Either
                stops when the client goes away or the server closes."""
                self.close_connection = True
                try:
                    if owner.mode == "drip":
                        for byte in body:
                            if owner._closing.wait(owner.drip_seconds):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            owner.body_bytes_sent += 1
                        return
                    self.wfile.write(body)
                    owner.body_bytes_sent += len(body)
                    junk = b"\0" * (1 << 16)
                    while not owner._closing.is_set():
                        self.wfile.write(junk)
                        owner.body_bytes_sent += len(junk)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _api(self, path: str) -> None:
                """``hf download`` with several files or patterns: repo_info and the recursive tree listing
                (``/api/models/{repo}/revision/{rev}``, ``/api/models/{repo}/tree/{rev}``)."""
                parts = path.split("/")  # ['', 'api', 'models', owner, name, 'revision' | 'tree', rev, ...]
                repo, kind = "/".join(parts[3:5]), parts[5] if len(parts) > 5 else ""
                prefix = f"/{repo}/resolve/main/"
                names = {key[len(prefix) :]: local for key, local in owner.files.items() if key.startswith(prefix)}
                if not names or kind not in ("revision", "tree"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "revision":
                    answer: object = {
                        "id": repo,
                        "sha": FAKE_COMMIT,
                        "siblings": [{"rfilename": name} for name in sorted(names)],
                    }
                else:
                    answer = [
                        {
                            "type": "file",
                            "path": name,
                            "size": local.stat().st_size,
                            "oid": owner._etag(prefix + name)[:40],
                        }
                        for name, local in sorted(names.items())
                    ]
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(with_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(with_body=True)

        return Handler


def mediapipe_server(mediapipe_root: Path) -> LoopbackFiles:
    """Google's MediaPipe layout (``/<task>/<model>/float16/1/<file>``) over the flat shared folder."""
    from echomimic.release import MEDIAPIPE_MODELS

    return LoopbackFiles({f"/{model.url_path}": mediapipe_root / model.name for model in MEDIAPIPE_MODELS.values()})


def hub_server(repo_files: dict[str, dict[str, Path]], revision: str = "main") -> LoopbackFiles:
    """The Hub's layout for ``{repo_id: {filename: local file}}``."""
    return LoopbackFiles(
        {
            f"/{repo}/resolve/{revision}/{name}": local
            for repo, files in repo_files.items()
            for name, local in files.items()
        },
        hub=True,
    )
