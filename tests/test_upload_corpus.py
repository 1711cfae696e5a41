"""Hostile uploads against the real server: each gets a clear answer with a stable `code` and a
plain message (never Python's or FFmpeg's own text), nothing is kept, and the server keeps serving."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from conftest import RunningServer
from upload_corpus import corpus
from voxroom.streaming.voices_api import MAX_ANALYSES_PER_ACCOUNT, MAX_UPLOAD_BYTES

UPLOAD_PATH = "/api/voices?name=x&lang=en&consent=true"
REFUSAL_CODES = {"not_audio", "bad_header", "truncated", "empty", "too_short", "too_long", "rerecord"}
RAW_ERROR_TEXT = re.compile(r"Error\b|Traceback|errno|Invalid data found|\[Errno|Frame does not match|0x[0-9a-f]{6}")


def _post(server: RunningServer, body: bytes | None, *, chunked: bool = False,
          content_length: int | None = None) -> tuple[int, dict[str, str], Any]:
    """POST an upload with http.client (control over Content-Length and chunking); a server that answers
    before reading everything may close the connection under the sender, which is not an error here."""
    port = int(server.base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.putrequest("POST", UPLOAD_PATH)
        conn.putheader("Authorization", f"Bearer {server.token}")
        conn.putheader("Content-Type", "application/octet-stream")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(len(body or b"") if content_length is None else content_length))
        conn.endheaders()
        try:
            if chunked:
                assert body is not None
                step = 1 << 20
                for start in range(0, len(body), step):
                    piece = body[start : start + step]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        res = conn.getresponse()
        raw = res.read()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, json.loads(raw) if raw else None
    finally:
        conn.close()


def _voice_ids(server: RunningServer) -> set[str]:
    return {v["id"] for v in server.json("GET", "/api/voices")[1]["voices"]}


@pytest.mark.parametrize("name", sorted(corpus()))
def test_each_broken_or_hostile_upload_gets_a_coded_plain_answer(live_server: RunningServer, name: str) -> None:
    before = _voice_ids(live_server)
    status, _, body = _post(live_server, corpus()[name])
    assert status in (400, 422), (status, body)
    assert body["code"] in REFUSAL_CODES, body
    assert body["error"] and not RAW_ERROR_TEXT.search(body["error"]), body["error"]
    assert _voice_ids(live_server) == before
    assert live_server.json("GET", "/api/health", token="")[0] == 200


def test_an_upload_one_byte_over_the_limit_is_413_by_its_declared_length(live_server: RunningServer) -> None:
    status, _, body = _post(live_server, b"RIFF", content_length=MAX_UPLOAD_BYTES + 1)
    assert status == 413 and body["code"] == "too_big", body


def test_an_upload_one_byte_over_the_limit_is_413_while_streaming(live_server: RunningServer) -> None:
    """No Content-Length (chunked): the size is counted as the body arrives, and the answer is 413."""
    status, _, body = _post(live_server, bytes(MAX_UPLOAD_BYTES + 1), chunked=True)
    assert status == 413 and body["code"] == "too_big", body


@contextmanager
def analyses_running(server: RunningServer) -> Iterator[None]:
    """The owner's analysis slots all taken, as if that many uploads were being analysed (entered on
    the server's loop, where the slots are counted; call from a thread, not the test's loop)."""
    account = server.server.accounts.by_token(server.token)
    holds = [server.server.voices.analyses.hold(account) for _ in range(MAX_ANALYSES_PER_ACCOUNT)]

    async def enter() -> None:
        for hold in holds:
            hold.__enter__()

    async def leave() -> None:
        for hold in holds:
            hold.__exit__(None, None, None)

    server.call(enter())
    try:
        yield
    finally:
        server.call(leave())


def test_analyses_past_the_per_account_limit_get_429_with_retry_after(live_server: RunningServer) -> None:
    with analyses_running(live_server):
        status, headers, body = _post(live_server, corpus()["wav_1hz"])
        assert status == 429 and body["code"] == "busy" and int(headers["retry-after"]) > 0, body
    status, _, body = _post(live_server, corpus()["wav_1hz"])
    assert status == 400 and body["code"] == "bad_header"


def test_every_refusal_of_the_upload_route_has_a_code(live_server: RunningServer) -> None:
    status, body = live_server.json("POST", "/api/voices?consent=true", token="vxr_wrong")
    assert status == 401 and body["code"] == "unauthorized"
    status, body = live_server.json("POST", "/api/voices?consent=false")
    assert status == 400 and body["code"] == "consent_required"
    status, body = live_server.json("POST", "/api/voices?consent=true&lang=xx")
    assert status == 400 and body["code"] == "bad_request"


async def test_a_busy_server_keeps_a_live_take_for_another_finish(live_server: RunningServer) -> None:
    pcm = np.zeros(16000 * 2, "<i2").tobytes()  # 2 s of silence: analysed, then a re-record report
    url = live_server.ws_url.replace("/ws", "/api/enroll/live") + f"?token={live_server.token}"
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "lang": "en", "name": "busy take", "consent": True}))
        await ws.send(pcm)
        slots = analyses_running(live_server)
        await asyncio.to_thread(slots.__enter__)
        try:
            await ws.send(json.dumps({"type": "finish"}))
            async with asyncio.timeout(30):
                while (msg := json.loads(await ws.recv()))["type"] != "error":
                    pass
            assert msg["code"] == "busy", msg
        finally:
            await asyncio.to_thread(slots.__exit__, None, None, None)
        await ws.send(json.dumps({"type": "finish"}))  # the same take, nothing sent again
        async with asyncio.timeout(60):
            while (msg := json.loads(await ws.recv()))["type"] not in ("result", "error"):
                pass
    assert msg["type"] == "result" and msg["report"]["duration_s"] == 2.0, msg


async def test_live_enrollment_refuses_bad_text_and_numbers_with_codes_and_carries_on(
        live_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """The live-enrollment socket reads its control messages as every other JSON input: a voice name
    with a lone surrogate (which could never be sealed or shown) or a 5,000-digit number is refused
    with a code, no traceback, and the same socket still records a take."""
    url = live_server.ws_url.replace("/ws", "/api/enroll/live") + f"?token={live_server.token}"
    async with connect(url) as ws:
        await ws.send('{"type": "start", "lang": "en", "name": "bad \\ud800 name", "consent": true}')
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert refused == {"type": "error", "code": "invalid_text", "message": refused["message"]}, refused
        await ws.send('{"type": "sentence", "index": ' + "9" * 5000 + "}")
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "bad_message"
        await ws.send(json.dumps({"type": "start", "lang": "en", "name": "good take", "consent": True}))
        await ws.send(np.zeros(16000 * 2, "<i2").tobytes())
        await ws.send(json.dumps({"type": "finish"}))
        async with asyncio.timeout(60):
            while (msg := json.loads(await ws.recv()))["type"] not in ("result", "error"):
                pass
    assert msg["type"] == "result" and msg["report"]["duration_s"] == 2.0, msg
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_an_uploader_that_goes_away_mid_body_frees_its_slot_quietly(live_server: RunningServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import socket

    port = int(live_server.base.rsplit(":", 1)[1])
    for _ in range(MAX_ANALYSES_PER_ACCOUNT + 1):  # more than the slots: each one must be given back
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall((f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live_server.token}\r\n"
                          "Content-Length: 100000\r\n\r\n").encode() + b"RIFF" * 10)
    slots = live_server.server.voices.analyses
    for _ in range(300):  # the server notices each disconnect when it next reads that body
        if not slots._running:
            break
        time.sleep(0.1)
    assert not slots._running, "an abandoned upload kept its analysis slot"
    status, _, body = _post(live_server, corpus()["wav_1hz"])
    assert status == 400 and body["code"] == "bad_header"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
