"""API speech shares one server-wide limit: 8 queued or speaking, 429 with Retry-After beyond; a caller
that goes away frees its place. The engine is held at a gate, so the test decides when speech comes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningServer, start_server
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


def test_a_caller_that_goes_away_frees_its_place(gated: tuple[RunningServer, GatedEngine]) -> None:
    server, engine = gated
    speaker = speaker_of(server)
    engine.gate.set()
    body = json.dumps({"model": "tts-1", "voice": "alloy", "response_format": "pcm",
                       "input": " ".join(["A long line for a listener who leaves early."] * 40)}).encode()
    req = urllib.request.Request(server.base + "/v1/audio/speech", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {server.token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        assert res.read(4800)  # the first 100 ms, then hang up
    wait_until(lambda: speaker.active == 0)
    assert speak(server, "Still here.")[0] == 200
