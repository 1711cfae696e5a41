"""Run a voxroom server in a background thread: for tests, benchmarks and programs embedding it."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
import uvloop

from voxroom.models.engine import Engine
from voxroom.streaming.app import VoxroomServer
from voxroom.streaming.config import ServerConfig

log = logging.getLogger(__name__)

WS_MAX_SIZE = 16 * 1024 * 1024  # larger than any sane message, so oversize ones get a protocol error


class RedactCredentials(logging.Filter):
    """Browsers cannot put headers on a WebSocket, so pages pass `?token=` / `?grant=` in its URL,
    and listener links carry a grant: uvicorn would write them into every access-log line.

    A parameter counts as a credential by its decoded name (Starlette percent-decodes names, so
    `?%74oken=` is read as `token`; case is ignored too), and any value that looks like one of our
    tokens or grants (`vxr_…`, `vxg_…`, percent-encoded or not) is hidden wherever it appears."""

    CREDENTIAL_PARAMS = frozenset({"token", "grant"})
    CREDENTIAL_PREFIXES = ("vxr_", "vxg_")
    PARAM = re.compile(r"(?<=[?&;])([^=&;?\s\"']+)=([^&;\s\"']*)")
    BARE_CREDENTIAL = re.compile(r"(?i)\bvx[rg]_[^&;\s\"']*")

    def _param(self, match: re.Match[str]) -> str:
        name = urllib.parse.unquote_plus(match.group(1)).strip().lower()
        value = urllib.parse.unquote_plus(match.group(2)).strip().lower()
        if name in self.CREDENTIAL_PARAMS or value.startswith(self.CREDENTIAL_PREFIXES):
            return f"{match.group(1)}=[redacted]"
        return match.group(0)

    def _clean(self, value: object) -> object:
        if not isinstance(value, str):
            return value
        return self.BARE_CREDENTIAL.sub("[redacted]", self.PARAM.sub(self._param, value))

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        return True


class DropInvalidUtf8Tracebacks(logging.Filter):
    """uvicorn's websockets-sansio layer answers a text frame that is not UTF-8 with close code 1007
    (right) and then logs it with `logger.exception` (an ERROR and a traceback per frame): any
    client could flood the log. A client's bad frame is its own mistake, already answered, so that
    one record goes to our debug log as a line; every other uvicorn record passes unchanged."""

    MESSAGE = "Invalid UTF-8 sequence received from client."

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg == self.MESSAGE and isinstance(exc, UnicodeDecodeError):
            log.debug("closed a WebSocket with 1007: a text frame was not UTF-8 (%s)", exc.reason)
            return False
        return True


def uvicorn_config(server: VoxroomServer, config: ServerConfig, **extra: object) -> uvicorn.Config:
    """The one uvicorn setup (`voxroom serve` uses it too): uvloop, websockets' sans-I/O core, and
    no credentials in its logs."""
    uv_config = uvicorn.Config(server.app, host=config.host, port=config.port, loop="uvloop", ws="websockets-sansio",
                               ws_max_size=WS_MAX_SIZE, lifespan="on", **extra)  # type: ignore[arg-type]
    for name in ("uvicorn.access", "uvicorn.error"):  # after Config(), which (re)configures logging
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropInvalidUtf8Tracebacks) for f in error_logger.filters):
        error_logger.addFilter(DropInvalidUtf8Tracebacks())
    return uv_config


@dataclass
class EmbeddedServer:
    server: VoxroomServer
    port: int
    loop: asyncio.AbstractEventLoop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_in_thread(config: ServerConfig, engine: Engine) -> Iterator[EmbeddedServer]:
    server = VoxroomServer(config, engine)
    uv = uvicorn.Server(uvicorn_config(server, config, log_level="warning"))
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(uv.serve(),), daemon=True, name="voxroom")
    thread.start()
    started = threading.Event()
    for _ in range(400):
        if uv.started or not thread.is_alive():
            break
        started.wait(0.05)
    if not uv.started:
        raise RuntimeError("voxroom server did not start")
    config.port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        yield EmbeddedServer(server, config.port, loop)
    finally:
        uv.should_exit = True
        thread.join(10)
