"""API speech fair use: per account 4 speeches at once and a request rate, server-wide 8 (half the engine's
places), 429 with Retry-After beyond, in each API's error shape; one account saturating blocks neither
another account nor a live room; a caller that goes away frees its place. The engine holds texts that
start with "Hold" at a gate, so the test decides when their speech comes."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from conftest import RunningServer, start_server
from voxroom.streaming import api_speech
from voxroom.streaming.api_speech import MAX_API_SPEECHES, ApiSpeaker


class GatedEngine:
    """The stock voice, but no audio of a text starting with "Hold" leaves until `gate` is set."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name, self.sample_rate, self.can_clone = engine.name, engine.sample_rate, engine.can_clone
        self.engines = {engine.name: engine}
        self.gate = threading.Event()

    async def stream(self, text: str, voice: Any = None, **options: Any) -> Any:

        while text.startswith("Hold") and not self.gate.is_set():
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


def speak(server: RunningServer, text: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    return server.request("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": text,
                                                       "response_format": "pcm"}, token=token)


def tts(server: RunningServer, text: str, token: str) -> tuple[int, dict[str, str], bytes]:
    query = urllib.parse.urlencode({"text": text, "text_lang": "en", "ref_audio_path": "stock", "prompt_lang": "en",
                                    "token": token})
    return server.request("GET", f"/tts?{query}", token="")


def new_account(server: RunningServer, name: str) -> str:
    async def create() -> str:
        return server.server.accounts.create(name)[1]
    return str(server.call(create()))


def retry_after(headers: dict[str, str]) -> int:
    return int({k.lower(): v for k, v in headers.items()}["retry-after"])


def test_ninth_speech_is_refused_with_retry_after_then_all_eight_are_said(
        gated: tuple[RunningServer, GatedEngine]) -> None:
    server, engine = gated
    speaker = speaker_of(server)
    assert speaker.max_speeches == MAX_API_SPEECHES == 8 and speaker.fair.max_per_account == 4
    tokens = [server.token, new_account(server, "second"), new_account(server, "third")]
    pool = ThreadPoolExecutor(MAX_API_SPEECHES)
    try:  # four each from two accounts fill the server
        waiting = [pool.submit(speak, server, f"Hold speech number {i}.", tokens[i % 2])
                   for i in range(MAX_API_SPEECHES)]
        wait_until(lambda: speaker.active == MAX_API_SPEECHES)
        status, headers, raw = speak(server, "Hold one too many.", tokens[2])  # a third account, within its share
        assert status == 429 and retry_after(headers) == 2
        assert json.loads(raw)["error"]["type"] == "rate_limit_error"
        status, headers, raw = tts(server, "Hold one too many.", tokens[2])
        assert status == 429 and retry_after(headers) == 2 and json.loads(raw)["message"]
    finally:
        engine.gate.set()  # whatever happened above, let the waiting callers finish
        pool.shutdown()
    results = [w.result(60) for w in waiting]
    assert [r[0] for r in results] == [200] * MAX_API_SPEECHES
    assert all(len(r[2]) > 24000 for r in results)
    wait_until(lambda: speaker.active == 0)
    assert speak(server, "Room again.")[0] == 200


def test_one_account_saturating_blocks_neither_another_account_nor_a_room(
        gated: tuple[RunningServer, GatedEngine]) -> None:
    from speech_check import collect_frames

    server, engine = gated
    speaker = speaker_of(server)
    other = new_account(server, "other")
    share = speaker.fair.max_per_account
    pool = ThreadPoolExecutor(share)
    try:
        held = [pool.submit(speak, server, f"Hold number {i} of the greedy caller.") for i in range(share)]
        wait_until(lambda: speaker.active == share)
        status, headers, raw = speak(server, "Hold one more from the greedy caller.")
        error = json.loads(raw)["error"]
        assert status == 429 and retry_after(headers) >= 1
        assert error["type"] == "rate_limit_error" and "this account" in error["message"]
        status, headers, raw = tts(server, "Hold one more from the greedy caller.", server.token)
        assert status == 429 and retry_after(headers) >= 1 and "this account" in json.loads(raw)["message"]
        status, _, audio = speak(server, "The other account is heard.", other)  # not held: said at once
        assert status == 200 and len(audio) > 24000
        status, _, audio = tts(server, "The other account on api v2.", other)
        assert status == 200 and len(audio) > 32000

        async def room_line() -> tuple[list[dict[str, Any]], Any]:
            async with connect(server.ws_url, max_size=2**24) as ws:
                await ws.send(json.dumps({"type": "hello", "version": 1, "token": server.token}))
                await ws.recv()
                await ws.send(json.dumps({"type": "say", "id": "r1", "text": "The room still speaks.",
                                          "room": room["id"]}))
                return await collect_frames(ws, "r1")  # type: ignore[no-any-return]

        _, room = server.json("POST", "/api/rooms", {"name": "during the flood"})
        messages, frames = asyncio.run(room_line())
        assert messages[-1]["reason"] == "done" and frames.size > 48000 * 0.5
        server.json("DELETE", f"/api/rooms/{room['id']}")
    finally:
        engine.gate.set()
        pool.shutdown()
    assert [h.result(60)[0] for h in held] == [200] * share


def test_request_rate_per_account_answers_retry_after_and_spares_the_others(
        gated: tuple[RunningServer, GatedEngine]) -> None:
    server, engine = gated
    engine.gate.set()
    speaker = speaker_of(server)
    speaker.rates.fair = speaker.fair = api_speech.FairUse(max_per_account=4, rate_per_min=6)  # bursts of 3
    other = new_account(server, "calm")
    assert [speak(server, f"Quick line {i}.")[0] for i in range(3)] == [200, 200, 200]
    status, headers, raw = speak(server, "Over the rate.")
    assert status == 429 and 1 <= retry_after(headers) <= 10
    assert json.loads(raw)["error"]["code"] == "busy"
    status, headers, raw = tts(server, "Over the rate.", server.token)
    assert status == 429 and 1 <= retry_after(headers) <= 10 and json.loads(raw)["message"]
    assert speak(server, "The calm account is fine.", other)[0] == 200


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
    from voxroom.agent.clock import SystemClock

    monkeypatch.setattr(api_speech, "BUFFER_FRAMES", 50)
    speaker = ApiSpeaker(stock_engine, SystemClock())
    stalled = speaker.speak(" ".join(["Nobody reads this long line of speech."] * 10), None, account_id="a")
    await stalled.first_frame()
    async with asyncio.timeout(30):  # a guard against hanging, not a timing assertion
        while stalled.buffered < 50 or stalled.handle.finished:
            await asyncio.sleep(0.01)
    behind = speaker.speak("The next caller.", None, account_id="b")
    stalled.release()
    async with asyncio.timeout(30):
        audio = [frame async for frame in behind.frames()]
    behind.release()
    assert len(audio) > 25 and behind.handle.state == "done"
    await speaker.close()


async def test_rate_buckets_refill_at_the_rate_and_say_when_the_next_place_frees() -> None:
    from voxroom.agent.clock import VirtualClock

    clock = VirtualClock()
    buckets = api_speech.RateBuckets(clock, api_speech.FairUse(rate_per_min=60))  # one a second, bursts of 30
    for _ in range(30):
        buckets.take("a")
    with pytest.raises(api_speech.ApiLimited) as refused:
        buckets.take("a")
    assert refused.value.retry_after == pytest.approx(1.0)
    buckets.take("b")  # another account has its own bucket
    await clock.advance(0.5)
    with pytest.raises(api_speech.ApiLimited) as refused:
        buckets.take("a")
    assert refused.value.retry_after == pytest.approx(0.5)
    await clock.advance(0.5)
    buckets.take("a")  # refilled by one
    await clock.advance(60)
    buckets.take("c")
    assert set(buckets._buckets) == {"c"}  # full buckets are forgotten
