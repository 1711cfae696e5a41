"""The host console in a real Chromium: a live listener count, deleting a room, the room cap said
plainly, "Listen here" playing the co-host in the console, and no "Create room" without a token."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import chromium, start_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def open_console(server: Any, browser: Any) -> Any:
    page = browser.new_page()
    page.goto(f"{server.base}/console#token={server.token}")
    page.wait_for_selector("#rooms li")
    return page


def room_button(room_id: str) -> str:
    return f"#rooms li[data-room='{room_id}'] button.open-room"


def test_listener_count_follows_listeners_coming_and_going(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Counted"})
    console = open_console(live_server, browser)
    console.click(room_button(room["id"]))
    console.wait_for_function("document.querySelector('#room-title').innerText === 'Counted'")
    assert console.inner_text(room_button(room["id"])) == "Counted (0 listening)"
    listener = browser.new_page()
    listener.goto(live_server.base + room["listen_url"])
    listener.click("#join")
    listener.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
    console.wait_for_function(f"document.querySelector(\"{room_button(room['id'])}\").innerText === 'Counted (1 listening)'",
                              timeout=15000)
    console.wait_for_function("document.querySelector('#listener-count').innerText === '1'")
    listener.click("#leave")
    console.wait_for_function(f"document.querySelector(\"{room_button(room['id'])}\").innerText === 'Counted (0 listening)'",
                              timeout=15000)
    listener.close()
    console.close()
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200  # the shared server caps rooms


def test_deleting_a_room_from_the_console(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Doomed"})
    console = open_console(live_server, browser)
    console.click(room_button(room["id"]))
    console.on("dialog", lambda dialog: dialog.accept())
    console.click(f"#rooms li[data-room='{room['id']}'] button.delete-room")
    console.wait_for_function(f"!document.querySelector(\"#rooms li[data-room='{room['id']}']\")")
    assert console.is_hidden("#room-panel")
    status, body = live_server.json("GET", f"/api/rooms/{room['id']}")
    assert status == 404 and body["code"] == "not_found"
    console.close()


def test_the_room_cap_is_said_plainly(tmp_path: Path, stock_engine: Any, browser: Any) -> None:
    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as server:
        for n in range(20):
            assert server.json("POST", "/api/rooms", {"name": f"room {n}"})[0] == 201
        status, headers, raw = server.request("POST", "/api/rooms", {"name": "one too many"})
        assert status == 429 and json.loads(raw)["code"] == "room_limit"
        assert "Retry-After" not in headers  # waiting does not lift it: deleting a room does
        console = open_console(server, browser)
        console.click("#create-room button[type=submit]")
        console.wait_for_function("document.querySelector('#create-status').innerText.includes('Delete one')")
        assert "20" in console.inner_text("#create-status")
        assert len(server.json("GET", "/api/rooms")[1]["rooms"]) == 20
        console.close()


def test_listen_here_plays_the_cohost_in_the_console(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Heard here"})
    console = open_console(live_server, browser)
    console.click(room_button(room["id"]))
    console.wait_for_function("document.querySelector('#room-title').innerText === 'Heard here'")
    console.click("#listen-here")
    console.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
    live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "You can hear me in the console now."})
    console.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=15000)
    assert console.evaluate("window.voxroomStats.source") == "whep"  # the room publishes to no SFU
    # The monitor's volume: the player follows the slider (and the slider is kept for the next visit).
    assert console.evaluate("document.querySelector('#listen-player').volume") == 0.8
    console.evaluate("(() => { const s = document.querySelector('#monitor-volume'); s.value = '25'; "
                     "s.dispatchEvent(new Event('input')); })()")
    assert console.evaluate("[document.querySelector('#listen-player').volume, window.voxroomStats.volume, "
                            "localStorage.getItem('voxroom-monitor-volume')]") == [0.25, 0.25, "25"]
    console.evaluate("(() => { const s = document.querySelector('#monitor-volume'); s.value = '0'; "
                     "s.dispatchEvent(new Event('input')); })()")
    assert console.evaluate("document.querySelector('#listen-player').muted") is True
    loud = console.evaluate("window.voxroomStats.loudFrames")  # muted for the host, still measured
    live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "Quiet for the host, still on air."})
    console.wait_for_function(f"window.voxroomStats.loudFrames > {loud + 10}", timeout=15000)
    console.click("#listen-here")
    console.wait_for_function("!window.voxroomStats.listening")
    assert console.inner_text("#listen-here") == "Listen here"
    console.close()
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200


def test_no_create_room_without_a_token(live_server: Any, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{live_server.base}/console")
    page.wait_for_selector("#auth-error", state="visible")
    assert page.is_hidden("#create-room")
    page.close()


def test_llm_card_saves_and_tests_the_endpoint(tmp_path: Path, stock_engine: Any, browser: Any) -> None:
    from fake_openai import FakeOpenAIServer

    with contextlib.contextmanager(start_server)(tmp_path, stock_engine) as server:
        fake = server.call(FakeOpenAIServer().start())
        try:
            console = browser.new_page()
            console.goto(f"{server.base}/console#token={server.token}")
            console.wait_for_selector("#llm-panel", state="visible")
            assert "Read-aloud mode" in console.inner_text("#llm-mode")
            console.fill("#llm-url", "http://127.0.0.1:9/v1")
            console.fill("#llm-model", "fake")
            console.click("#llm-test")
            console.wait_for_function("document.querySelector('#llm-status').innerText.startsWith('does not work: cannot connect')",
                                      timeout=15000)
            console.fill("#llm-url", fake.base_url)
            console.fill("#llm-key", "sk-typed-in-console")
            console.click("#llm-save")
            console.wait_for_function("document.querySelector('#llm-status').innerText === 'saved'")
            assert f"fake at {fake.base_url}" in console.inner_text("#llm-mode")
            assert console.input_value("#llm-key") == ""  # write-only: never shown again
            console.click("#llm-test")
            console.wait_for_function("document.querySelector('#llm-status').innerText.startsWith('works: first token in ')", timeout=15000)
            console.close()
        finally:
            server.call(fake.close())


def test_console_says_why_a_chinese_line_was_not_spoken(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Chinese line"})
    console = open_console(live_server, browser)
    console.click(room_button(room["id"]))
    console.wait_for_function("document.querySelector('#room-title').innerText === 'Chinese line'")
    console.wait_for_selector("#voice-lang-note", state="visible")
    console.fill("#say-text", "大家好，欢迎来到直播间")
    console.click("#say-form button[type=submit]")
    console.wait_for_function("document.querySelector('#say-status').innerText.includes('speaks English only')",
                              timeout=15000)
    console.close()
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200


def test_a_twitch_chat_is_connected_and_its_paid_rules_set_from_the_console(live_server: Any, browser: Any) -> None:
    """The console's chat panel against a local server speaking Twitch's IRC over WebSocket: connect,
    see it live, its chat spoken, paid-event rules saved, remove it."""
    import threading

    from websockets.sync.server import ServerConnection, serve

    logins: list[str] = []

    def twitch(ws: ServerConnection) -> None:
        got: list[str] = []
        while not any(line.startswith("JOIN") for line in got):
            got.extend(str(ws.recv()).split("\r\n"))
        logins.extend(line for line in got if line.startswith(("PASS", "NICK")))
        ws.send(":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!")
        ws.send("@id=m-1;display-name=Mia :mia!mia@mia.tmi.twitch.tv PRIVMSG #show :hello from twitch chat")
        with contextlib.suppress(Exception):
            ws.recv()  # hold the connection until the client leaves

    with serve(twitch, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        _, room = live_server.json("POST", "/api/rooms", {"name": "Twitch show"})
        console = open_console(live_server, browser)
        console.evaluate(f"window.voxroomConnectorUrl = {url!r}")
        console.click(room_button(room["id"]))
        console.wait_for_selector("#connectors-panel:not([hidden])")
        console.select_option("#connector-platform", "youtube")
        assert not console.is_visible("#connector-nick")  # only Twitch asks for an account name
        console.select_option("#connector-platform", "twitch")
        assert console.is_visible("#connector-nick")
        console.fill("#connector-channel", "show")
        console.fill("#connector-secret", "oauth:abc123")
        console.click("#connector-form button[type=submit]")  # a token without its account: refused, clearly
        console.wait_for_function("document.querySelector('#connector-status').innerText.includes(\"needs 'nick'\")")
        console.fill("#connector-nick", "mybot")
        console.click("#connector-form button[type=submit]")
        console.wait_for_selector("#connectors li.connector[data-state='live']", timeout=15000)
        assert "twitch · show" in console.inner_text("#connectors")
        assert logins == ["PASS oauth:abc123", "NICK mybot"], logins
        server_room = live_server.server.rooms.get(room["id"])
        for _ in range(300):
            if any(e["type"] == "cohost.reply_started" and "hello from twitch chat" in e["text"]
                   for e in server_room.history):
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the Twitch message was not answered")
        console.fill("#paid-full", "2.5")
        console.fill("#paid-window", "12")
        console.click("#paid-save")
        console.wait_for_function("document.querySelector('#paid-status').innerText === 'saved'")
        rules = live_server.json("GET", f"/api/rooms/{room['id']}/cohost")[1]["settings"]["paid_rules"]
        assert (rules["read_in_full_usd"], rules["batch_window_s"]) == (2.5, 12.0)
        console.click("#connectors li.connector button")
        console.wait_for_function("!document.querySelector('#connectors li.connector')")
        assert live_server.json("GET", f"/api/rooms/{room['id']}/connectors")[1]["connectors"] == []
        console.close()
        assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200
        server.shutdown()
