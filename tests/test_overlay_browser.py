"""The OBS overlay in a real Chromium: a refused link is said on the page (not a blank overlay), and the
overlay comes back by itself, captions and audio, when the server restarts on the same data directory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import chromium, start_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


PROBLEM_SHOWN = "(() => { const p = document.querySelector('#problem'); " \
                "return p && !p.hidden && p.innerText.includes(%r); })()"


def test_overlay_with_an_expired_link_says_so(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "expired"})
    account = live_server.server.accounts.by_token(live_server.token)
    expired = live_server.server.accounts.mint_grant(account, room["id"], "listener", ttl=60, now=time.time() - 3600)
    page = browser.new_page()
    page.goto(f"{live_server.base}/obs/{room['id']}?grant={expired}")
    page.wait_for_function(PROBLEM_SHOWN % "expired", timeout=15000)
    assert page.is_visible("#problem")
    assert "Ask the host for a new one" in page.inner_text("#problem")
    page.close()
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200  # the shared server caps rooms


def test_listener_page_with_a_forged_link_says_it_was_refused(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "forged"})
    page = browser.new_page()
    page.goto(f"{live_server.base}/r/{room['id']}?grant=vxg_e30.AAAA")
    page.wait_for_function(PROBLEM_SHOWN % "refused", timeout=15000)
    assert page.is_visible("#problem")
    page.close()
    assert live_server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200


def test_overlay_comes_back_after_a_server_restart(tmp_path: Path, stock_engine: Any, browser: Any) -> None:
    running = contextlib.contextmanager(start_server)
    with running(tmp_path, stock_engine) as first:
        _, room = first.json("POST", "/api/rooms", {"name": "restarted"})
        port = int(first.base.rsplit(":", 1)[1])
        page = browser.new_page()
        page.goto(first.base + room["overlay_url"])
        page.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
        first.json("POST", f"/api/rooms/{room['id']}/say", {"text": "Before the restart, one two three."})
        page.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=15000)
    page.wait_for_function("window.voxroomStats.captionSocket.readyState !== WebSocket.OPEN", timeout=15000)
    with running(tmp_path, stock_engine, port=port) as second:
        # The caption socket reconnects with backoff and then the overlay joins WHEP again.
        page.wait_for_function("window.voxroomStats.captionConnects >= 2 && window.voxroomStats.joins >= 2 "
                               "&& window.voxroomStats.state === 'connected'", timeout=40000)
        loud = page.evaluate("window.voxroomStats.loudFrames")
        second.json("POST", f"/api/rooms/{room['id']}/say", {"text": "After the restart, four five six."})
        page.wait_for_selector("#captions p.speaking", timeout=15000)
        page.wait_for_function("document.querySelector('#captions').innerText.includes('After the restart')",
                               timeout=15000)
        page.wait_for_function(f"window.voxroomStats.loudFrames > {loud + 10}", timeout=15000)
        assert page.is_hidden("#problem")
        page.close()
