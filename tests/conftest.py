"""Shared fixtures: the real stock voice, and a real voxroom server on 127.0.0.1 in its own thread."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Golden vectors and recordings live in ../shared (not in this repo). Tests that need them skip
    when they are absent; CI sets VOXROOM_REQUIRE_SHARED so that absence fails instead."""
    if os.environ.get("VOXROOM_REQUIRE_SHARED"):
        for needed in (SHARED / "golden" / "manifest.json", SHARED / "speech" / "README.md"):
            if not needed.is_file():
                raise pytest.UsageError(f"{needed} is missing (VOXROOM_REQUIRE_SHARED is set)")


def needs_shared(*parts: str) -> pytest.MarkDecorator:
    """Skip (with the reason) when a file from ../shared is absent, as in a fresh clone on its own; CI
    sets VOXROOM_REQUIRE_SHARED, and pytest_sessionstart fails the run there instead."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not found (../shared is not beside this clone)")


CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's real binary; /usr/bin/chromium is a wrapper
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


@contextmanager
def chromium(*extra_flags: str) -> Iterator[Any]:
    """A real headless Chromium (TESTING.md's flags). Skipped without Debian's chromium, unless
    VOXROOM_REQUIRE_BROWSER is set (CI sets it, so a missing browser fails instead of passing quietly)."""
    if not CHROMIUM.exists():
        if os.environ.get("VOXROOM_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_FLAGS, *extra_flags], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def stock_engine() -> Any:
    from voxroom.models.piper_voice import PiperVoiceEngine

    return PiperVoiceEngine()


class RecordingEngine:
    """Wraps a real engine and records what it produced for each text it spoke: the sample count
    (`produced`) and the audio itself (`audio`), so tests can compare what a listener got with it."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name, self.sample_rate, self.can_clone = engine.name, engine.sample_rate, engine.can_clone
        self.engines = getattr(engine, "engines", {engine.name: engine})
        self.produced: dict[str, int] = {}
        self._chunks: dict[str, list[np.ndarray]] = {}

    async def stream(self, text: str, voice: Any = None, **options: Any) -> Any:
        self.produced[text] = 0
        self._chunks[text] = []
        async for chunk in self.engine.stream(text, voice, **options):
            self.produced[text] += len(chunk.samples)
            self._chunks[text].append(np.asarray(chunk.samples, np.float32).reshape(-1))
            yield chunk

    def chunks(self, text: str) -> list[np.ndarray]:
        """The chunks the engine yielded for `text` the last time it spoke it, as it yielded them."""
        return list(self._chunks.get(text, []))

    def audio(self, text: str) -> np.ndarray:
        """The audio the engine made for `text` the last time it spoke it, at its own sample rate."""
        return np.concatenate(self._chunks[text]) if self._chunks.get(text) else np.zeros(0, np.float32)


@dataclass
class RunningServer:
    base: str
    ws_url: str
    token: str
    server: Any  # VoxroomServer
    engine: RecordingEngine
    loop: asyncio.AbstractEventLoop

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                content_type: str = "application/json", raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """A blocking HTTP call (run it with asyncio.to_thread from async tests)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        auth = self.token if token is None else token
        if auth:
            req.add_header("Authorization", f"Bearer {auth}")
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body, token)
        return status, json.loads(raw) if raw else None

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's own loop (to inspect server state safely)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


def start_server(tmp: Path, engine: Any, **settings: Any) -> Iterator[RunningServer]:
    from voxroom.streaming.config import ServerConfig
    from voxroom.streaming.embedded import serve_in_thread

    settings = {"port": 0, **settings}  # a fixed port: a restart on the same address (tests of durability)
    settings.setdefault("ice_addresses", ["127.0.0.1"])
    config = ServerConfig(host="127.0.0.1", data_dir=tmp, **settings)
    recording = RecordingEngine(engine)
    with serve_in_thread(config, recording) as running:
        yield RunningServer(running.base_url, f"ws://127.0.0.1:{running.port}/ws", running.server.owner_token,
                            running.server, recording, running.loop)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, stock_engine: Any) -> Iterator[RunningServer]:
    yield from start_server(tmp_path_factory.mktemp("voxroom-data"), stock_engine)


@pytest.fixture(autouse=True)
def _rooms_left_behind_are_deleted(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's one server caps an account at 20 rooms: whatever rooms a test made (also one that
    failed half-way) are deleted after it, so no later test meets the cap."""
    if "live_server" not in request.fixturenames:
        yield
        return
    running: RunningServer = request.getfixturevalue("live_server")

    async def room_ids() -> set[str]:
        return {room.id for room in running.server.rooms.all()}

    before = running.call(room_ids())
    yield

    async def delete_new() -> None:
        for room in running.server.rooms.all():
            if room.id not in before:
                await running.server.delete_room(room)

    running.call(delete_new())
