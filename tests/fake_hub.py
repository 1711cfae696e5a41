"""A local stand-in for the Hugging Face hub: serves files the way `/{repo}/resolve/{rev}/{path}` does."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextmanager
def fake_hub(repo: str, files: dict[str, bytes], wrong_checksum: set[str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Serve `files` (repo path -> bytes) for `repo`; yields (endpoint, request log)."""
    wrong = wrong_checksum or set()
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _lookup(self) -> bytes | None:
            prefix = f"/{repo}/resolve/"
            if not self.path.startswith(prefix):
                return None
            name = self.path[len(prefix):].split("/", 1)[1].split("?")[0]
            from urllib.parse import unquote
            self.name = unquote(name)
            return files.get(self.name)

        def _headers(self, body: bytes) -> None:
            digest = hashlib.sha256(body).hexdigest()
            if self.name in wrong:
                digest = hashlib.sha256(b"something else").hexdigest()
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{digest}"')
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(body)))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802
            requests.append(f"HEAD {self.path}")
            body = self._lookup()
            if body is None:
                self.send_error(404)
                return
            self._headers(body)

        def do_GET(self) -> None:  # noqa: N802
            requests.append(f"GET {self.path}")
            body = self._lookup()
            if body is None:
                self.send_error(404)
                return
            self._headers(body)
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def golden_as_official(golden: Path, names: list[str]) -> dict[str, bytes]:
    """Official file names served with golden (official-format, tiny) bytes: real loaders can read them."""
    sources = {".ckpt": golden / "models" / "s1_tiny_v2.ckpt", ".pth": golden / "models" / "s2_tiny_v2pro.pth"}
    files = {}
    for name in names:
        if name.startswith("sv/"):
            files[name] = (golden / "models" / "sv_tiny_eres2netv2.ckpt").read_bytes()
        elif name.startswith("chinese-hubert-base/"):
            src = golden / "models" / "hubert_tiny" / name.split("/", 1)[1]
            files[name] = src.read_bytes()
        elif name.startswith("chinese-roberta-wwm-ext-large/"):
            files[name] = f"placeholder for {name}".encode()  # no golden RoBERTa exists
        else:
            files[name] = sources[Path(name).suffix].read_bytes()
    return files
