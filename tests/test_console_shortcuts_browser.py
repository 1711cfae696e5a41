"""The console's keyboard shortcuts in a real Chromium, judged by the server's state: S skips the reply
being spoken, holding T is "I'm talking" (on at keydown, off at keyup or when the tab loses focus), and
neither fires while the host types in a field."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import chromium

LONG_LINE = ("Welcome back everyone, tonight we are going to talk about a great many things, "
             "and this sentence is long on purpose so that there is time to skip it.")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_skip_and_push_to_talk_keys(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Keys"})
    rid = room["id"]
    console = browser.new_page()
    try:
        def host_speaking() -> bool:
            return bool(live_server.json("GET", f"/api/rooms/{rid}/cohost")[1]["host_speaking"])

        console.goto(f"{live_server.base}/console#token={live_server.token}")
        console.click(f"#rooms li[data-room='{rid}'] button.open-room")
        console.wait_for_function("document.querySelector('#room-title').innerText === 'Keys'")
        assert "hold T" in console.inner_text("#shortcuts")

        # Push-to-talk: on while T is held, off when it is released.
        console.keyboard.down("t")
        until(host_speaking, "host speaking after T down")
        console.wait_for_function("document.querySelector('#talking').innerText === \"I'm done talking\"")
        console.keyboard.up("t")
        until(lambda: not host_speaking(), "host not speaking after T up")
        # Held, then the tab loses focus: the key-up will never come, so it ends now.
        console.keyboard.down("t")
        until(host_speaking, "host speaking after T down again")
        console.evaluate("window.dispatchEvent(new Event('blur'))")
        until(lambda: not host_speaking(), "host not speaking after blur")
        console.keyboard.up("t")

        # Typing in a field is typing: no shortcut fires.
        console.click("#say-text")
        console.keyboard.type("ts")
        assert console.input_value("#say-text") == "ts"
        time.sleep(0.3)
        assert not host_speaking()

        # S skips the reply on air.
        server_room = live_server.server.rooms.get(rid)
        status, said = live_server.json("POST", f"/api/rooms/{rid}/say", {"text": LONG_LINE})
        assert status == 202
        until(lambda: any(e["type"] == "speech.started" and e["id"] == said["id"] for e in server_room.history),
              "the line to start")
        console.click("#room-title")  # focus leaves the text field
        console.keyboard.press("s")
        until(lambda: any(e["type"] == "speech.ended" and e["id"] == said["id"] for e in server_room.history),
              "the line to end")
        [ended] = [e for e in server_room.history if e["type"] == "speech.ended" and e["id"] == said["id"]]
        assert ended["state"] == "cancelled", ended
        assert len(ended["played_text"]) < len(LONG_LINE)
        console.wait_for_function("document.querySelector('#shortcut-status').innerText === 'skipped'")
    finally:
        console.close()
        assert live_server.json("DELETE", f"/api/rooms/{rid}")[0] == 200  # the shared server caps rooms
