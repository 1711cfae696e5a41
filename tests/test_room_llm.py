"""Each room may have its own LLM endpoint (base URL, model, API key), set over REST as the console does,
against real local OpenAI-compatible servers (tests/fake_openai.py): the model list, Test's time to first
token, replies made with that room's model and key while other rooms keep the account's, a dead endpoint
(plain error, one log line naming the room, the room's view says it is failing), a wrong key (the 401
said), and the key in no response, log line or database file in clear. The room's setting survives a
restart and goes with the room."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import start_server
from fake_openai import FakeOpenAIServer, ScriptedReply
from test_llm_settings import closed_port, wait_for

SECRET = "sk-room-7f3a9c1e-secret"


def test_a_room_answers_with_its_own_endpoint_model_and_key(tmp_path: Path, stock_engine: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    running = contextlib.contextmanager(start_server)
    bodies: list[str] = []

    def call(srv: Any, method: str, path: str, body: Any = None) -> Any:
        status, headers, raw = srv.request(method, path, body)
        bodies.append(raw.decode(errors="replace") + str(headers))
        assert status < 300, (status, raw)
        import json
        return json.loads(raw) if raw else None

    caplog.set_level(logging.DEBUG)
    with running(tmp_path, stock_engine) as srv:
        account_llm = srv.call(FakeOpenAIServer().start())
        room_llm = srv.call(FakeOpenAIServer(api_key=SECRET, models=["small", "big"],
                                             default=ScriptedReply("Hi from the big model.", first_token_delay=0.05))
                            .start())
        try:
            call(srv, "PUT", "/api/llm", {"base_url": account_llm.base_url, "model": "fake"})
            own = call(srv, "POST", "/api/rooms", {"name": "own llm"})
            other = call(srv, "POST", "/api/rooms", {"name": "account llm"})
            path = f"/api/rooms/{own['id']}/llm"
            assert call(srv, "GET", path)["source"] == "account"

            # The model list, before saving (the key typed in the form goes with it).
            listed = call(srv, "POST", path + "/models", {"base_url": room_llm.base_url, "api_key": SECRET})
            assert listed == {"models": ["small", "big"], "error": ""}
            view = call(srv, "PUT", path, {"base_url": room_llm.base_url, "model": "big", "api_key": SECRET})
            assert view["source"] == "room" and view["model"] == "big" and view["has_api_key"]
            assert not view["failing"]
            # Stored, the key is used without being sent again (the page never has it).
            assert call(srv, "POST", path + "/models", {"base_url": room_llm.base_url})["models"] == ["small", "big"]
            result = call(srv, "POST", path + "/test", {})
            assert result["ok"] and result["model_listed"] and result["error"] == "", result
            assert isinstance(result["first_token_ms"], int) and result["first_token_ms"] >= 0
            assert room_llm.requests[-1]["stream"] is True and room_llm.requests[-1]["model"] == "big"

            before = len(room_llm.requests)
            call(srv, "POST", f"/api/rooms/{own['id']}/chat", {"type": "message", "user": "ana", "text": "hello?"})
            call(srv, "POST", f"/api/rooms/{other['id']}/chat", {"type": "message", "user": "bo", "text": "hi!"})
            wait_for(lambda: len(room_llm.requests) > before and account_llm.requests)
            assert room_llm.requests[-1]["model"] == "big"
            assert room_llm.request_headers[-1]["authorization"] == f"Bearer {SECRET}"
            assert "hello?" in str(room_llm.requests[-1]["messages"])
            assert account_llm.requests[-1]["model"] == "fake" and "hi!" in str(account_llm.requests[-1]["messages"])
            assert "hello?" not in str(account_llm.requests)
            assert call(srv, "GET", f"/api/rooms/{own['id']}/cohost")["settings"]["mode"] == "llm"
            # The account's setting changes its other rooms, not one with its own.
            call(srv, "PUT", "/api/llm", {"base_url": account_llm.base_url, "model": "fake-2"})
            assert srv.server.rooms.get(own["id"]).cohost.llm.model == "big"
            assert srv.server.rooms.get(other["id"]).cohost.llm.model == "fake-2"
            call(srv, "PUT", "/api/llm", {"base_url": account_llm.base_url, "model": "fake"})
            # A different address never gets the stored key unless it is given again.
            moved = call(srv, "POST", path + "/test", {"base_url": account_llm.base_url + "/", "model": "fake"})
            assert moved["ok"] and account_llm.request_headers[-1]["authorization"] != f"Bearer {SECRET}"
        finally:
            srv.call(room_llm.close())
            srv.call(account_llm.close())

    with running(tmp_path, stock_engine) as srv:  # kept over a restart, and the start-up banner says so
        banner = srv.server.replies_banner().splitlines()
        assert banner == [f"Replies: LLM at {account_llm.base_url}, model fake",
                          f"  room 'own llm' ({own['id']}): LLM at {room_llm.base_url}, model big"]
        view = call(srv, "GET", f"/api/rooms/{own['id']}/llm")
        assert (view["source"], view["model"], view["base_url"]) == ("room", "big", room_llm.base_url)
        assert srv.server.rooms.get(own["id"]).cohost.llm.model == "big"
        assert call(srv, "GET", f"/api/rooms/{other['id']}/llm")["source"] == "account"
        cleared = call(srv, "PUT", f"/api/rooms/{own['id']}/llm", {"base_url": None})
        assert cleared["source"] == "account" and cleared["model"] == "fake"
        assert srv.server.rooms.get(own["id"]).cohost.llm.model == "fake"
        call(srv, "PUT", f"/api/rooms/{own['id']}/llm", {"base_url": room_llm.base_url, "model": "big", "api_key": SECRET})
        call(srv, "DELETE", f"/api/rooms/{own['id']}")

    # The key is in no answer, no log line and no database file in clear; the deleted room's row is gone.
    assert not [b for b in bodies if SECRET in b]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
    for name in ("voxroom.sqlite3", "voxroom.sqlite3-wal"):
        if (tmp_path / name).exists():
            assert SECRET.encode() not in (tmp_path / name).read_bytes(), name
    db = sqlite3.connect(tmp_path / "voxroom.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM room_llm_settings").fetchone() == (0,)


def test_a_dead_endpoint_or_a_wrong_key_is_said_plainly_and_logged_once(
        tmp_path: Path, stock_engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as srv:
        locked = srv.call(FakeOpenAIServer(api_key=SECRET).start())
        try:
            _, room = srv.json("POST", "/api/rooms", {"name": "dead llm"})
            path = f"/api/rooms/{room['id']}/llm"

            status, wrong = srv.json("POST", path + "/test", {"base_url": locked.base_url, "model": "fake",
                                                              "api_key": "sk-wrong"})
            assert status == 200 and not wrong["ok"]
            assert wrong["error"] == f"{locked.base_url} refused the API key (HTTP 401)", wrong
            status, listed = srv.json("POST", path + "/models", {"base_url": locked.base_url, "api_key": "sk-wrong"})
            assert listed["models"] == [] and "HTTP 401" in listed["error"]

            dead = f"http://127.0.0.1:{closed_port()}/v1"
            status, result = srv.json("POST", path + "/test", {"base_url": dead, "model": "m"})
            assert status == 200 and not result["ok"] and result["first_token_ms"] is None
            assert result["error"].startswith(f"cannot connect to {dead}"), result

            assert srv.json("PUT", path, {"base_url": dead, "model": "m"})[0] == 200
            with caplog.at_level(logging.WARNING, logger="voxroom.agent.replies"):
                for text in ("first message", "second message", "third message"):
                    srv.json("POST", f"/api/rooms/{room['id']}/chat", {"type": "message", "user": "bo", "text": text})
                wait_for(lambda: srv.server.rooms.get(room["id"]).cohost.llm.stats.fallbacks >= 3, timeout=30)
            warnings = [r.getMessage() for r in caplog.records if r.name == "voxroom.agent.replies"]
            assert len(warnings) == 1, warnings
            assert dead in warnings[0] and f"room {room['id']}" in warnings[0] and "read-aloud" in warnings[0]
            view = srv.json("GET", path)[1]
            assert view["failing"] and view["last_error"], view
            # The room reads chat aloud meanwhile: the messages were said.
            said = [e for e in srv.server.rooms.get(room["id"]).history if e["type"] == "speech.started"]
            assert any("first message" in e["text"] for e in said), said
            assert srv.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200
        finally:
            srv.call(locked.close())


def test_room_llm_routes_refuse_bad_input_and_other_accounts(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "bad llm input"})
    path = f"/api/rooms/{room['id']}/llm"
    try:
        for bad in ({"base_url": "ftp://x", "model": "m"}, {"base_url": "http://127.0.0.1:9/v1", "model": ""},
                    {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": 5}):
            status, body = live_server.json("PUT", path, bad)
            assert status == 400 and body["code"] == "bad_request", (bad, body)
        assert live_server.json("GET", path, token=room["listener_grant"])[1]["code"] == "forbidden"
        assert live_server.json("GET", "/api/rooms/nope/llm")[1]["code"] == "not_found"
        assert live_server.json("POST", "/api/rooms/nope/llm/test", {})[1]["code"] == "not_found"
    finally:
        assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200
