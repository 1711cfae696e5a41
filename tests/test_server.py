"""The real server on 127.0.0.1: REST, auth, and WebSocket protocol v1 with the stock voice."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from speech_check import as_sent, noise_ratio, transcribe, word_error_rate
from speech_check import collect_frames as collect_speech
from voxroom.streaming.audio import FRAME_SAMPLES, output_length

SENTENCE = "The quick brown fox jumps over the lazy dog."


async def hello(url: str, token: str) -> ClientConnection:
    ws = await connect(url, max_size=2**24)
    await ws.send(json.dumps({"type": "hello", "version": 1, "token": token}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def test_say_streams_speech_that_matches_the_engine_and_is_intelligible(live_server: Any, stock_engine: Any) -> None:
    ws = await hello(live_server.ws_url, live_server.token)
    await ws.send(json.dumps({"type": "say", "id": "s1", "text": SENTENCE}))
    messages, audio = await collect_speech(ws, "s1")
    kinds = [m["type"] for m in messages]
    assert kinds == ["speech.queued", "speech.started", "speech.ended"]
    assert messages[-1]["reason"] == "done" and messages[-1]["frames"] == audio.size // FRAME_SAMPLES

    expected = output_length(live_server.engine.produced[SENTENCE], stock_engine.sample_rate)
    assert expected <= audio.size < expected + FRAME_SAMPLES + 64  # whole frames, plus resampler tail
    assert np.sqrt(np.mean(audio**2)) > 0.02
    # What the server can be blamed for is the way from the engine to the listener: the listener gets
    # exactly the engine's audio through the one resampler (`FrameMaker`), sample for sample.
    sent = as_sent(live_server.engine.chunks(SENTENCE), stock_engine.sample_rate)
    assert sent.size == audio.size
    assert noise_ratio(audio, sent) < 1e-4, noise_ratio(audio, sent)  # better than 40 dB SNR: nothing lost, clipped, doubled or shifted
    # ... and it still says the words. pocketsphinx hears the voice a little differently on every CPU
    # (the voice's float kernels differ), so the words are judged on the engine's own output.
    made = live_server.engine.audio(SENTENCE)
    heard, own = await asyncio.gather(asyncio.to_thread(transcribe, audio, 48000),
                                      asyncio.to_thread(transcribe, made, stock_engine.sample_rate))
    assert word_error_rate(SENTENCE, own) <= 0.5, own
    assert word_error_rate(SENTENCE, heard) <= 0.5, heard
    await ws.close()


async def test_bad_messages_get_errors_and_the_connection_keeps_working(live_server: Any) -> None:
    ws = await hello(live_server.ws_url, live_server.token)
    other = await hello(live_server.ws_url, live_server.token)
    bad = [
        "{nope",
        json.dumps({"type": "teleport"}),
        json.dumps({"type": "say", "id": 3, "text": "hi"}),
        json.dumps({"type": "say", "id": "big", "text": "x" * 10_000_000}),  # 10 MB
        json.dumps({"type": "say", "id": "long", "text": "word " * 1000}),
        json.dumps({"type": "say", "id": "v", "text": "hi", "voice": "someone-elses"}),
        json.dumps({"type": "say", "id": "r", "text": "hi", "room": "no-such-room"}),
        json.dumps({"type": "cancel", "id": "never"}),
    ]
    codes = []
    for data in bad:
        await ws.send(data)
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert msg["type"] == "error" and msg["message"], msg
        codes.append(msg["code"])
    await ws.send(b"\x00binary")
    codes.append(json.loads(await ws.recv())["code"])
    assert codes == ["bad_json", "unknown_type", "invalid_field", "message_too_large", "text_too_long",
                     "unknown_voice", "unknown_room", "unknown_speech", "binary_not_accepted"]
    # the same connection, and everyone else's, still work
    await ws.send(json.dumps({"type": "ping", "id": "p"}))
    assert json.loads(await ws.recv()) == {"type": "pong", "id": "p"}
    await other.send(json.dumps({"type": "say", "id": "ok", "text": "Still here."}))
    messages, audio = await collect_speech(other, "ok")
    assert messages[-1]["reason"] == "done" and audio.size > 0
    await ws.close()
    await other.close()


async def test_wrong_token_is_refused_without_closing(live_server: Any) -> None:
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "say", "id": "a", "text": "hi"}))
        assert json.loads(await ws.recv())["code"] == "not_authenticated"
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": "vxr_wrong"}))
        assert json.loads(await ws.recv())["code"] == "unauthorized"
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": live_server.token}))
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_cancel_stops_a_direct_speech(live_server: Any) -> None:
    ws = await hello(live_server.ws_url, live_server.token)
    text = " ".join(["This is a long sentence that keeps going."] * 12)
    await ws.send(json.dumps({"type": "say", "id": "c", "text": text}))
    while True:
        data = await ws.recv()
        if isinstance(data, bytes):
            break
    await ws.send(json.dumps({"type": "cancel", "id": "c"}))
    messages, _ = await collect_speech(ws, "c")
    assert messages[-1]["reason"] == "cancelled"
    await ws.close()


async def test_say_into_a_room_plays_in_real_time(live_server: Any) -> None:
    status, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "ws room"})
    assert status == 201
    ws = await hello(live_server.ws_url, live_server.token)
    loop = asyncio.get_running_loop()
    await ws.send(json.dumps({"type": "say", "id": "r1", "text": "Hello room.", "room": room["id"]}))
    start = loop.time()
    messages, audio = await collect_speech(ws, "r1")
    elapsed = loop.time() - start
    assert [m["type"] for m in messages] == ["speech.queued", "speech.started", "speech.ended"]
    assert elapsed >= audio.size / 48000 * 0.8  # paced, not dumped
    await ws.close()


async def test_vanished_client_cancels_its_room_speech_and_others_continue(live_server: Any) -> None:
    status, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "vanish"})
    ws = await hello(live_server.ws_url, live_server.token)
    long_text = " ".join(["Nobody will hear the end of this sentence."] * 10)
    await ws.send(json.dumps({"type": "say", "id": "gone", "text": long_text, "room": room["id"]}))
    while not isinstance(await ws.recv(), bytes):
        pass
    ws.transport.abort()  # no close handshake: the client just disappears
    server_room = live_server.server.rooms.get(room["id"])
    for _ in range(100):
        if not server_room.playout.queued():
            break
        await asyncio.sleep(0.05)
    assert server_room.playout.queued() == []
    other = await hello(live_server.ws_url, live_server.token)
    await other.send(json.dumps({"type": "say", "id": "after", "text": "Room is fine.", "room": room["id"]}))
    messages, audio = await collect_speech(other, "after")
    assert messages[-1]["reason"] == "done" and audio.size > 0
    await other.close()


def test_rest_checks_tokens_and_ownership(live_server: Any) -> None:
    assert live_server.json("GET", "/api/rooms", token="")[0] == 401
    assert live_server.json("GET", "/api/rooms", token="vxr_bogus")[0] == 401
    assert live_server.json("GET", "/api/health", token="")[0] == 200
    status, room = live_server.json("POST", "/api/rooms", {"name": "mine"})
    assert status == 201
    # a second account cannot see or use the owner's room
    _, other_token = live_server.server.accounts.create("intruder")
    assert live_server.json("GET", f"/api/rooms/{room['id']}", token=other_token)[0] == 404
    assert live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "hi"}, token=other_token)[0] == 404
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}", token=other_token)[0] == 404
    assert room["id"] not in [r["id"] for r in live_server.json("GET", "/api/rooms", token=other_token)[1]["rooms"]]
    # a listener grant may listen but not speak or manage
    grant = room["listener_grant"]
    assert live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "hi"}, token=grant)[0] == 403
    assert live_server.json("GET", "/api/rooms", token=grant)[0] == 403
    tampered = grant[:-3] + ("AAA" if not grant.endswith("AAA") else "BBB")
    assert live_server.json("GET", f"/api/rooms/{room['id']}", token=tampered)[0] == 401


def test_rest_say_validates_input(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "rest"})
    path = f"/api/rooms/{room['id']}/say"
    assert live_server.json("POST", path, {"text": "x" * 5000})[0] == 413
    assert live_server.json("POST", path, {"text": 12})[0] == 400
    status, _, body = live_server.request("POST", path, raw=b"{broken")
    assert status == 400 and b"JSON" in body
    status, _, body = live_server.request("POST", path, raw=b"x" * 400_000)
    assert status == 400 and b"larger than" in body
    status, speech = live_server.json("POST", path, {"text": "Fine."})
    assert status == 202 and speech["state"] == "queued"


@pytest.mark.parametrize("path", ["/console", "/r/abc", "/obs/abc", "/enroll", "/static/room.js", "/static/console.js",
                                  "/static/enroll.js", "/static/enroll-worklet.js"])
def test_pages_are_served(live_server: Any, path: str) -> None:
    status, _, body = live_server.request("GET", path, token="")
    assert status == 200 and body


async def test_credentials_in_urls_stay_out_of_the_logs(live_server: Any) -> None:
    """Pages put the token (WebSocket) or a grant (listener links) in URLs; uvicorn logs every URL."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    handler = Keep()
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        await asyncio.to_thread(live_server.request, "GET", "/r/abc?grant=vxg_secretgrant&x=1", token="")
        events = live_server.ws_url.replace("/ws", "/api/enroll/live") + f"?token={live_server.token}"
        async with connect(events) as ws:
            await ws.send(json.dumps({"type": "cancel"}))
            await ws.recv()
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
    text = "\n".join(lines)
    assert "/r/abc?grant=[redacted]&x=1" in text and "/api/enroll/live?token=[redacted]" in text
    assert "vxg_secretgrant" not in text and live_server.token not in text


async def test_a_bot_that_closes_mid_speech_gets_a_clean_close(live_server: Any) -> None:
    """Issue 9 (11): a client that read its audio as it came and then closes while a direct `say` is still
    playing gets the server's close frame (1000), not a timeout (1006) behind a backlog of unread frames."""
    ws = await hello(live_server.ws_url, live_server.token)
    await ws.send(json.dumps({"type": "say", "id": "long", "text": "And this goes on for a good while, " * 8}))
    frames = 0
    while frames < 60:  # more than a second of audio: the speech is well under way
        frames += isinstance(await asyncio.wait_for(ws.recv(), 10), bytes)
    await ws.close()
    assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
