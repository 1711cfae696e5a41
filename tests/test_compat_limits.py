"""API speech shares one server-wide limit: 8 queued or speaking, 429 with Retry-After beyond; a caller
that goes away frees its place. The engine is held at a gate, so the test decides when speech comes."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningServer, start_server
from voxroom.streaming import api_speech
from voxroom.streaming.api_speech import MAX_API_SPEECHES, ApiSpeaker


class GatedEngine:
    """The stock voice, but no audio leaves until `gate` is set."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name, self.sample_rate, self.can_clone = engine.name, engine.sample_rate, engine.can_clone
        self.engines = {engine.name: engine}
        self.gate = threading.Event()

    async def stream(self, text: str, voice: Any = None, **options: Any) -> Any:
        import asyncio

        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        async for chunk in self.engine.stream(text, voice, **options):
            yield chunk


@pytest.fixture
def gated(tmp_path: Path, stock_engine: Any) -> Iterator[tuple[RunningServer, GatedEngine]]:
    engine = GatedEngine(stock_engine)
    for server in start_server(tmp_path, engine):
        yield server, engine


def speaker_of(server: RunningServer) -> ApiSpeaker:
    for route in server.server.app.routes:
        owner = getattr(getattr(route, "endpoint", None), "__self__", None)
        if owner is not None and isinstance(getattr(owner, "speaker", None), ApiSpeaker):
            return owner.speaker  # type: ignore[no-any-return]
    raise AssertionError("no API speaker mounted")


def wait_until(check: Any) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def speak(server: RunningServer, text: str) -> tuple[int, dict[str, str], bytes]:
    return server.request("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": text,
                                                       "response_format": "pcm"})


def test_ninth_speech_is_refused_with_retry_after_then_all_eight_are_said(
        gated: tuple[RunningServer, GatedEngine]) -> None:
    server, engine = gated
    speaker = speaker_of(server)
    assert speaker.max_speeches == MAX_API_SPEECHES == 8
    pool = ThreadPoolExecutor(MAX_API_SPEECHES)
    try:
        waiting = [pool.submit(speak, server, f"Speech number {i}.") for i in range(MAX_API_SPEECHES)]
        wait_until(lambda: speaker.active == MAX_API_SPEECHES)
        status, headers, raw = speak(server, "One too many.")
        assert status == 429 and {k.lower(): v for k, v in headers.items()}["retry-after"] == "2"
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        query = "text=One+too+many.&text_lang=en&ref_audio_path=stock&prompt_lang=en&token=" + server.token
        status, headers, raw = server.request("GET", f"/tts?{query}", token="")
        assert status == 429 and {k.lower(): v for k, v in headers.items()}["retry-after"] == "2" and json.loads(raw)["message"]
    finally:
        engine.gate.set()  # whatever happened above, let the waiting callers finish
        pool.shutdown()
    results = [w.result(60) for w in waiting]
    assert [r[0] for r in results] == [200] * MAX_API_SPEECHES
    assert all(len(r[2]) > 24000 for r in results)
    wait_until(lambda: speaker.active == 0)
    assert speak(server, "Room again.")[0] == 200


class SlowReader(http.client.HTTPConnection):
    """A client with a tiny receive window, so the server's socket fills after a few kilobytes."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(30)
        self.sock.connect((self.host, self.port))


def test_a_caller_that_hangs_up_mid_body_lets_the_next_one_through(
        gated: tuple[RunningServer, GatedEngine], monkeypatch: pytest.MonkeyPatch) -> None:
    server, engine = gated
    speaker = speaker_of(server)
    engine.gate.set()
    monkeypatch.setattr(api_speech, "BUFFER_FRAMES", 50)  # 1 s ahead of the reader, then the playout waits
    port = int(server.base.rsplit(":", 1)[1])
    conn = SlowReader("127.0.0.1", port)
    body = json.dumps({"model": "tts-1", "voice": "alloy", "response_format": "pcm",
                       "input": " ".join(["A long line for a listener who stops reading."] * 30)})
    conn.request("POST", "/v1/audio/speech", body, {"Authorization": f"Bearer {server.token}",
                                                     "Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.read(4800)
    wait_until(lambda: any(s.buffered >= 50 for s in list(speaker._open)))
    with ThreadPoolExecutor(1) as pool:
        behind = pool.submit(speak, server, "Waiting behind the stalled reader.")
        wait_until(lambda: speaker.active == 2)
        conn.close()  # and goes away: its speech is cancelled and the playout moves on to the next caller
        status, _, audio = behind.result(60)
    assert status == 200 and len(audio) > 24000
    wait_until(lambda: speaker.active == 0)


async def test_a_reader_that_stalls_then_goes_away_does_not_block_the_playout(
        stock_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The playout waits in `writable` for a reader whose buffer is full; releasing that reader must
    wake it, or every speech queued behind would wait forever."""
    import asyncio

    from voxroom.agent.clock import SystemClock

    monkeypatch.setattr(api_speech, "BUFFER_FRAMES", 50)
    speaker = ApiSpeaker(stock_engine, SystemClock())
    stalled = speaker.speak(" ".join(["Nobody reads this long line of speech."] * 10), None)
    await stalled.first_frame()
    async with asyncio.timeout(30):  # a guard against hanging, not a timing assertion
        while stalled.buffered < 50 or stalled.handle.finished:
            await asyncio.sleep(0.01)
    behind = speaker.speak("The next caller.", None)
    stalled.release()
    async with asyncio.timeout(30):
        audio = [frame async for frame in behind.frames()]
    behind.release()
    assert len(audio) > 25 and behind.handle.state == "done"
    await speaker.close()
