"""Rotating a room's links in a real Chromium: the console's "Rotate links" (with its confirmation) shows
the new links; a listener page and an OBS overlay left open on the old link say at once that it was
replaced (and stop playing), and a page loaded later with the old link says so too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


REPLACED = ("(() => { const p = document.querySelector('#problem'); "
            "return p && !p.hidden && p.innerText.includes('replaced this room') "
            "&& window.voxroomStats.refusedCode === 'link_revoked'; })()")


def test_rotate_links_from_the_console_revokes_open_pages(live_server: Any, browser: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "Rotating"})
    rid = room["id"]
    pages = []
    try:
        console = browser.new_page()
        pages.append(console)
        console.goto(f"{live_server.base}/console#token={live_server.token}")
        console.click(f"#rooms li[data-room='{rid}'] button.open-room")
        console.wait_for_function("document.querySelector('#overlay-link').href.includes('/obs/')")
        old_overlay = console.get_attribute("#overlay-link", "href")
        assert old_overlay == live_server.base + room["overlay_url"]
        assert "until you rotate" in console.inner_text("#overlay-note")

        listener = browser.new_page()
        pages.append(listener)
        listener.goto(live_server.base + room["listen_url"])
        listener.click("#join")
        listener.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
        overlay = browser.new_page()
        pages.append(overlay)
        overlay.goto(old_overlay)
        overlay.wait_for_function("window.voxroomStats.captionConnects >= 1", timeout=15000)

        dialogs: list[str] = []
        console.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        console.click("#rotate-links")
        console.wait_for_function(f"document.querySelector('#overlay-link').href !== {old_overlay!r}", timeout=10000)
        assert dialogs and "stop working" in dialogs[0]
        new_overlay = console.get_attribute("#overlay-link", "href")
        assert new_overlay == live_server.base + live_server.json("GET", f"/api/rooms/{rid}/links")[1]["overlay_url"]
        assert "OBS" in console.inner_text("#links-status")

        for page in (listener, overlay):
            page.wait_for_function(REPLACED, timeout=15000)
            assert page.is_visible("#problem")
        listener.wait_for_function("window.voxroomStats.state === 'refused'")
        # The listener page stopped playing: the server no longer has its WHEP listener.
        assert live_server.json("GET", f"/api/rooms/{rid}")[1]["listeners"] == 0

        late = browser.new_page()  # an OBS source reloaded later with the old link
        pages.append(late)
        late.goto(old_overlay)
        late.wait_for_function(REPLACED, timeout=15000)
        fresh = browser.new_page()  # and the new link plays
        pages.append(fresh)
        fresh.goto(new_overlay)
        fresh.wait_for_function("window.voxroomStats.state === 'connected'", timeout=15000)
        assert fresh.is_hidden("#problem")
    finally:
        for page in pages:
            page.close()
        assert live_server.json("DELETE", f"/api/rooms/{rid}")[0] == 200  # the shared server caps rooms
