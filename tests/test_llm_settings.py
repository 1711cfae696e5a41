"""The LLM endpoint set from the console: GET/PUT /api/llm per account, the key write-only and sealed at
rest, a test action with plain errors, rooms switching at once and after a restart, one warning line
for a dead endpoint, and the start-up banner saying which mode is on."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import start_server
from fake_openai import FakeOpenAIServer
from test_cli_signals import serving

SECRET = "sk-test-0123456789-secret"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_llm_set_from_the_console_switches_rooms_and_survives_a_restart(tmp_path: Path, stock_engine: Any) -> None:
    running = contextlib.contextmanager(start_server)
    with running(tmp_path, stock_engine) as srv:
        fake = srv.call(FakeOpenAIServer().start())
        try:
            assert srv.json("GET", "/api/llm")[1] == {"source": "none", "mode": "read_aloud", "base_url": None,
                                                      "model": None, "has_api_key": False}
            _, room = srv.json("POST", "/api/rooms", {"name": "llm room"})
            assert srv.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["mode"] == "read_aloud"

            status, view = srv.json("PUT", "/api/llm", {"base_url": fake.base_url, "model": "fake", "api_key": SECRET})
            assert status == 200 and view["mode"] == "llm" and view["source"] == "console" and view["has_api_key"]
            assert SECRET not in str(view)
            assert srv.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["mode"] == "llm"
            assert srv.json("PATCH", f"/api/rooms/{room['id']}/cohost", {"persona": "Calm and kind."})[0] == 200

            srv.json("POST", f"/api/rooms/{room['id']}/chat", {"type": "message", "user": "ana", "text": "hello?"})
            wait_for(lambda: fake.requests)
            assert fake.request_headers[0]["authorization"] == f"Bearer {SECRET}"
            assert fake.requests[0]["model"] == "fake"

            status, result = srv.json("POST", "/api/llm/test")
            assert status == 200 and result["ok"] and result["model_listed"] and result["models"] == ["fake"]
            # A PUT without api_key keeps the stored key (the page never sees it).
            srv.json("PUT", "/api/llm", {"base_url": fake.base_url, "model": "fake"})
            assert srv.json("GET", "/api/llm")[1]["has_api_key"]
        finally:
            srv.call(fake.close())

    db = sqlite3.connect(tmp_path / "voxroom.sqlite3")
    [(sealed,)] = db.execute("SELECT api_key FROM llm_settings").fetchall()
    assert SECRET.encode() not in bytes(sealed)
    assert stat.S_IMODE((tmp_path / "llm.key").stat().st_mode) == 0o600

    with running(tmp_path, stock_engine) as srv:
        assert srv.json("GET", "/api/llm")[1]["source"] == "console"
        settings = srv.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]
        assert settings["mode"] == "llm" and settings["persona"] == "Calm and kind."
        status, view = srv.json("PUT", "/api/llm", {"base_url": None})
        assert status == 200 and view["mode"] == "read_aloud"
        assert srv.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["mode"] == "read_aloud"


def test_testing_a_dead_or_wrong_endpoint_says_what_is_wrong(live_server: Any) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    status, result = live_server.json("POST", "/api/llm/test", {"base_url": dead, "model": "m"})
    assert status == 200 and not result["ok"]
    assert result["error"].startswith(f"cannot connect to {dead}")
    for bad in ({"base_url": "ftp://x", "model": "m"}, {"base_url": dead, "model": ""}, {"base_url": dead}):
        status, body = live_server.json("PUT", "/api/llm", bad)
        assert status == 400 and body["code"] == "bad_request", bad
    status, body = live_server.json("GET", "/api/llm", token="")
    assert status == 401 and body["code"] == "unauthorized"


def test_a_dead_endpoint_logs_one_warning_line_and_the_room_reads_aloud(
        tmp_path: Path, stock_engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as srv:
        _, room = srv.json("POST", "/api/rooms", {"name": "dead llm"})
        dead = f"http://127.0.0.1:{closed_port()}/v1"
        srv.json("PUT", "/api/llm", {"base_url": dead, "model": "m"})
        with caplog.at_level(logging.WARNING, logger="voxroom.agent.replies"):
            for text in ("first message", "second message"):
                srv.json("POST", f"/api/rooms/{room['id']}/chat", {"type": "message", "user": "bo", "text": text})
            wait_for(lambda: srv.server.rooms.get(room["id"]).cohost.llm.stats.fallbacks >= 2, timeout=30)
        warnings = [r for r in caplog.records if r.name == "voxroom.agent.replies"]
        assert len(warnings) == 1
        assert dead in warnings[0].getMessage() and "read-aloud" in warnings[0].getMessage()
        assert warnings[0].exc_info is None


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:9/v1"])
def test_the_start_up_banner_says_how_replies_are_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       base_url: str | None) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if base_url:
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("VOXROOM_LLM_MODEL", "tiny")
    with serving(tmp_path) as (proc, _, _):
        assert proc.stdout is not None
        banner = proc.stdout.readline().strip()
    want = "Replies: read-aloud (no LLM set)" if base_url is None else f"Replies: LLM at {base_url}, model tiny"
    assert banner == want
    assert "OPENAI_API_KEY" not in os.environ or os.environ["OPENAI_API_KEY"] not in banner
