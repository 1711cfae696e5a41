"""The console's "Replies in this room" card in a real Chromium, against a real local OpenAI-compatible
server: the model field lists the endpoint's models, saving shows the room's mode without ever putting the
key back on the page, Test shows the time to first token or the 401 of a wrong key, and a dead endpoint
shows a notice for the room once its replies fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import chromium
from fake_openai import FakeOpenAIServer
from test_llm_settings import closed_port

SECRET = "sk-console-5b1e-secret"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def status_has(text: str) -> str:
    return f"document.querySelector('#room-llm-status').innerText.includes({text!r})"


def test_room_llm_card(live_server: Any, browser: Any) -> None:
    fake = live_server.call(FakeOpenAIServer(api_key=SECRET, models=["small", "big"]).start())
    _, room = live_server.json("POST", "/api/rooms", {"name": "LLM card"})
    rid = room["id"]
    console = browser.new_page()
    try:
        console.goto(f"{live_server.base}/console#token={live_server.token}")
        console.click(f"#rooms li[data-room='{rid}'] button.open-room")
        console.wait_for_selector("#room-llm-panel:not([hidden])")

        console.fill("#room-llm-url", fake.base_url)
        console.fill("#room-llm-key", SECRET)
        console.dispatch_event("#room-llm-key", "change")
        console.wait_for_function("document.querySelectorAll('#room-llm-models option').length === 2")
        assert console.eval_on_selector_all("#room-llm-models option", "os => os.map(o => o.value)") == ["small", "big"]
        console.fill("#room-llm-model", "big")
        console.click("#room-llm-save")
        console.wait_for_function(status_has("saved"))
        assert "big" in console.inner_text("#room-llm-mode") and "own" in console.inner_text("#room-llm-mode")
        assert console.input_value("#room-llm-key") == ""

        console.fill("#room-llm-url", "")  # Test with an empty form tests what the room uses
        console.click("#room-llm-test")
        console.wait_for_function(status_has("first token in"), timeout=15000)
        assert fake.requests[-1]["model"] == "big"

        console.fill("#room-llm-url", fake.base_url)
        console.fill("#room-llm-model", "big")
        console.fill("#room-llm-key", "sk-wrong")
        console.click("#room-llm-test")
        console.wait_for_function(status_has("HTTP 401"), timeout=15000)
        assert "refused the API key" in console.inner_text("#room-llm-status")

        dead = f"http://127.0.0.1:{closed_port()}/v1"
        console.fill("#room-llm-url", dead)
        console.fill("#room-llm-model", "m")
        console.fill("#room-llm-key", "")
        console.click("#room-llm-save")
        console.wait_for_function(status_has("saved"))
        assert console.is_hidden("#room-llm-notice")
        live_server.json("POST", f"/api/rooms/{rid}/chat", {"type": "message", "user": "ana", "text": "anyone?"})
        console.wait_for_selector("#room-llm-notice:not([hidden])", timeout=20000)
        notice = console.inner_text("#room-llm-notice")
        assert "failing for this room" in notice and "connection error" in notice.lower(), notice
        assert SECRET not in console.content()
    finally:
        console.close()
        live_server.call(fake.close())
        assert live_server.json("DELETE", f"/api/rooms/{rid}")[0] == 200  # the shared server caps rooms
