"""What the real server writes to its log under hostile input: credentials however they are
spelled in a URL, and WebSocket text frames that are not UTF-8."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxroom.streaming.embedded import RedactCredentials


@contextmanager
def server_log() -> Iterator[list[logging.LogRecord]]:
    """Every record uvicorn's loggers pass (after their filters), at INFO and above."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    handler = Keep()
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _text(records: list[logging.LogRecord]) -> str:
    return "\n".join(r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                     for r in records)


@pytest.mark.parametrize("query", ["%74oken", "TOKEN", "To%6Ben", "tok%65n", "%54OKEN"])
async def test_token_parameters_are_redacted_however_they_are_spelled(live_server: Any, query: str) -> None:
    """Starlette percent-decodes parameter names, so `?%74oken=` authenticates like `?token=`."""
    with server_log() as records:
        status, _, _ = await asyncio.to_thread(live_server.request, "GET", f"/api/me?{query}={live_server.token}",
                                               token="")
        await asyncio.to_thread(live_server.request, "GET", f"/r/abc?{query.replace('oken', 'rant')}=vxg_grantsecret",
                                token="")
    text = _text(records)
    assert f"/api/me?{query}=[redacted]" in text
    assert live_server.token not in text and "grantsecret" not in text
    assert status in (200, 401)


def test_credential_values_are_hidden_whatever_the_parameter() -> None:
    clean = RedactCredentials()._clean
    assert clean("/r/x?link=vxg_abc&x=1") == "/r/x?link=[redacted]&x=1"
    assert clean("/r/x?link=%76xg_abc") == "/r/x?link=[redacted]"
    assert clean("Bearer vxr_abc seen") == "Bearer [redacted] seen"
    assert clean("/r/x?q=hello&n=2") == "/r/x?q=hello&n=2"


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2), payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def _send_invalid_utf8_text(port: int, path: str) -> bytes:
    """Open a WebSocket by hand, send a text frame that is not UTF-8, return what the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        handshake = b""
        while b"\r\n\r\n" not in handshake:
            chunk = sock.recv(4096)
            assert chunk, "the server closed during the handshake"
            handshake += chunk
        assert handshake.startswith(b"HTTP/1.1 101"), handshake[:200]
        rest = handshake.split(b"\r\n\r\n", 1)[1]
        sock.sendall(_ws_frame(0x1, b'{"type": "hello", "x": "\xff\xfe"}'))
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return rest
            rest += chunk


async def test_an_invalid_utf8_text_frame_is_closed_1007_without_a_traceback(live_server: Any) -> None:
    port = int(live_server.base.rsplit(":", 1)[1])
    with server_log() as records:
        for _ in range(3):
            received = await asyncio.to_thread(_send_invalid_utf8_text, port, "/ws")
            close = received[received.rfind(b"\x88"):]  # the close frame: opcode 8, then the code
            assert close[:1] == b"\x88" and int.from_bytes(close[2:4], "big") == 1007
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], _text(records)
    # the server still answers
    status, _, _ = await asyncio.to_thread(live_server.request, "GET", "/api/health", token="")
    assert status == 200


_SPELLINGS = st.sampled_from(["token", "grant"]).flatmap(
    lambda word: st.tuples(*[st.sampled_from([c, c.upper(), f"%{ord(c):02X}", f"%{ord(c):02x}"]) for c in word])
).map("".join)
_SECRETS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=12,
                   max_size=40)


@given(name=_SPELLINGS, secret=_SECRETS, before=st.sampled_from(["", "x=1&", "a=b&c=d&"]),
       after=st.sampled_from(["", "&x=1", "&next=/r/1"]))
def test_no_spelling_of_a_credential_parameter_leaks_its_value(name: str, secret: str, before: str,
                                                               after: str) -> None:
    line = f'127.0.0.1:5000 - "GET /ws?{before}{name}={secret}{after} HTTP/1.1" 101'
    cleaned = RedactCredentials()._clean(line)
    assert isinstance(cleaned, str) and secret not in cleaned and f"{name}=[redacted]" in cleaned
