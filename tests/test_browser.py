"""A real headless Chromium opens the listener page, joins over WHEP and measures the speech itself.

Needs Debian's chromium (TESTING.md); without it the test is skipped, unless VOXROOM_REQUIRE_BROWSER
is set (CI sets it, so a missing browser fails CI instead of passing quietly).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def test_listener_page_receives_and_measures_speech(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Browser room"})
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.base + room["listen_url"])
    page.click("#join")
    page.wait_for_function("window.voxroomStats.state === 'connected' && window.voxroomStats.meterFrames > 5",
                           timeout=15000)
    quiet = page.evaluate("window.voxroomStats.loudFrames")
    status, _ = live_server.json("POST", f"/api/rooms/{room['id']}/say",
                                 {"text": "Hello listeners, thanks for tuning in to the stream tonight."})
    assert status == 202
    page.wait_for_function("window.voxroomStats.captions.some(c => c.type === 'speech.ended')", timeout=20000)
    page.wait_for_timeout(500)
    stats = page.evaluate("window.voxroomStats")
    assert quiet == 0  # silence before the co-host spoke
    assert stats["samplesReceived"] > 48000 * 2  # at least two seconds of audio reached the page
    assert stats["concealedSamples"] <= stats["samplesReceived"] * 0.01
    assert stats["loudFrames"] * 0.05 > 1.0  # over a second of 50 ms meter windows above silence
    assert stats["peakRms"] > 0.05
    assert "thanks for tuning in" in page.inner_text("#captions")
    assert stats["error"] is None and not errors
    page.click("#leave")
    page.wait_for_function("window.voxroomStats.state === 'left'")
    server_room = live_server.server.rooms.get(room["id"])
    for _ in range(50):
        if not server_room.listeners:
            break
        page.wait_for_timeout(100)
    assert not server_room.listeners
    page.close()


def test_console_creates_a_room_and_the_cohost_says_a_line(live_server: Any, browser: Any) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.base}/console#token={live_server.token}")
    assert "cannot clone" in page.inner_text("#voice-notice")
    page.fill("#room-name", "Console room")
    page.click("#create-room button")
    page.wait_for_selector("#room-panel:not([hidden])")
    page.fill("#say-text", "Good evening, chat.")
    page.click("#say-form button")
    page.wait_for_function("document.querySelector('#captions').innerText.includes('Good evening, chat.')",
                           timeout=20000)
    assert "✓" in page.inner_text("#captions")
    page.wait_for_selector("#cohost-panel:not([hidden])")
    assert page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")[0] == "stock"
    page.select_option("#voice", "stock")
    page.select_option("#policy", "drop")
    page.click("#save-cohost")
    page.wait_for_function("document.querySelector('#cohost-saved').innerText === 'saved'")
    listen = page.get_attribute("#listen-link", "href")
    assert listen and "/r/" in listen and "grant=vxg_" in listen
    room_id = listen.split("/r/")[1].split("?")[0]
    _, state = live_server.json("GET", f"/api/rooms/{room_id}/cohost")
    assert state["settings"]["policy"] == "drop" and state["settings"]["voice"] == "stock"
    assert live_server.json("DELETE", f"/api/rooms/{room_id}")[0] == 200  # the shared server caps rooms per account
    assert not errors
    page.close()


def test_obs_overlay_joins_by_itself_and_shows_the_current_line(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "OBS"})
    page = browser.new_page()
    page.goto(live_server.base + room["overlay_url"])
    page.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
    live_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "Overlay caption check, one two three."})
    page.wait_for_selector("#captions p.speaking", timeout=15000)
    assert "Overlay caption check" in page.inner_text("#captions")
    page.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=15000)
    page.close()


def test_listener_chats_and_the_cohost_answers_in_the_room(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Chat room"})
    console = browser.new_page()
    console.goto(f"{live_server.base}/console#token={live_server.token}")
    console.wait_for_selector("#rooms button")
    console.click("#rooms button:has-text('Chat room')")
    console.wait_for_selector("#cohost-panel:not([hidden])")
    assert "Read-aloud mode" in console.inner_text("#cohost-mode")
    assert console.input_value("#template") == "{user} says: {text}"
    console.fill("#template", "{user} wonders: {text}")
    console.click("#save-cohost")
    console.wait_for_function("document.querySelector('#cohost-saved').innerText === 'saved'")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(live_server.base + room["listen_url"])
    page.click("#join")
    page.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
    page.fill("#chat-user", "Dana")
    page.fill("#chat-text", "what game are we playing tonight")
    page.click("#chat-form button")
    page.wait_for_function("document.querySelector('#chat-status').innerText === 'sent'")
    page.wait_for_function("window.voxroomStats.captions.some(c => c.type === 'speech.piece' && "
                           "c.text.includes('Dana wonders'))", timeout=20000)
    page.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=15000)
    console.wait_for_function("document.querySelectorAll('#reply-metrics tr').length > 1", timeout=20000)
    assert "spoken" in console.inner_text("#reply-metrics")
    assert not errors
    page.close()
    console.close()


def test_console_without_token_says_how_to_get_in(live_server: Any, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{live_server.base}/console")
    assert page.is_visible("#auth-error")
    page.close()


def test_console_speaks_chinese_to_a_chinese_browser(live_server: Any, browser: Any) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.base}/console#token={live_server.token}")
    assert page.inner_text("h1") == "voxroom 主播控制台"
    page.wait_for_function("document.querySelector('#voice-notice').innerText.includes('无法克隆')")
    page.fill("#room-name", "中文直播间")
    page.click("#create-room button")
    page.wait_for_selector("#cohost-panel:not([hidden])")
    assert page.inner_text("#cohost-mode").startswith("朗读模式")
    assert page.inner_text("#voice option[value='stock']") == "Joe（内置声音，美式英语）"
    assert page.input_value("#template-kind") == "message"  # the option's value, not its Chinese label
    page.click("#save-cohost")
    page.wait_for_function("document.querySelector('#cohost-saved').innerText === '已保存'")
    room_id = (page.get_attribute("#listen-link", "href") or "").split("/r/")[1].split("?")[0]
    assert live_server.json("DELETE", f"/api/rooms/{room_id}")[0] == 200  # the shared server caps rooms per account
    assert not errors
    context.close()
