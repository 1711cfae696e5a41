"""Run a voxroom server in a background thread: for tests, benchmarks and programs embedding it."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
import uvloop

from voxroom.models.engine import Engine
from voxroom.streaming.app import VoxroomServer
from voxroom.streaming.config import ServerConfig

WS_MAX_SIZE = 16 * 1024 * 1024  # larger than any sane message, so oversize ones get a protocol error


class RedactCredentials(logging.Filter):
    """Browsers cannot put headers on a WebSocket, so pages pass `?token=` / `?grant=` in its URL,
    and listener links carry a grant: uvicorn would write them into every access-log line."""

    PATTERN = re.compile(r"\b(token|grant)=[^&\s\"']+")

    def _clean(self, value: object) -> object:
        return self.PATTERN.sub(r"\1=[redacted]", value) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
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
