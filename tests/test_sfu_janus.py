"""A room publishes into a real SFU: WHIP to simple-whip-server, which publishes into a Janus VideoRoom;
aiortc subscribers join that room through Janus' HTTP API and hear the co-host. Janus is killed and
restarted mid-stream: voxroom publishes again by itself and a new subscriber hears it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import RunningServer, start_server
from janus_sfu import (
    JANUS_ROOM,
    PRIVATE_ADDRESS,
    SECOND_JANUS_ROOM,
    WHIP_TOKEN,
    JanusSfu,
    free_port,
    inside_private_network,
    require_janus,
    rerun_in_private_network,
    subscribe,
    write_janus_config,
)
from test_webrtc import mono

needs_private_network = pytest.mark.skipif(
    not inside_private_network(), reason="runs inside a private network namespace, through "
                                         "test_sfu_tests_pass_in_a_private_network")


def test_sfu_tests_pass_in_a_private_network() -> None:
    if inside_private_network():
        return  # this is the runner, rerun inside: nothing more to do here
    rerun_in_private_network(f"{__file__}")


@pytest.fixture
def sfu_server(tmp_path: Path, stock_engine: Any) -> Iterator[RunningServer]:
    """A voxroom server whose WebRTC may use the namespace's private address as well as 127.0.0.1."""
    yield from start_server(tmp_path / "voxroom", stock_engine, ice_addresses=["127.0.0.1", PRIVATE_ADDRESS])


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[JanusSfu]:
    require_janus()
    sfu = JanusSfu(tmp_path / "janus", free_port(), free_port(), free_port())
    write_janus_config(sfu.folder, sfu.http_port, sfu.ws_port)
    try:
        sfu.start_janus()
        sfu.start_whip_server()
        yield sfu
    except BaseException:
        print(sfu.logs())
        raise
    finally:
        sfu.close()


async def hears_speech(server: Any, room_id: str, frames: asyncio.Queue[Any]) -> int:
    """Ask the co-host to speak; count the 20 ms frames that arrive loud (RMS over each frame)."""
    status, _ = await asyncio.to_thread(server.json, "POST", f"/api/rooms/{room_id}/say",
                                        {"text": "Hello from the co-host, through the SFU."})
    assert status == 202
    loud = 0
    async with asyncio.timeout(20):
        while loud < 25:
            chunk = mono(await frames.get())
            loud += float(np.sqrt(np.mean(chunk**2))) > 0.01
    return loud


@needs_private_network
async def test_cohost_reaches_janus_subscribers_and_comes_back_after_janus_restarts(
        sfu_server: RunningServer, janus: JanusSfu) -> None:
    live_server = sfu_server
    endpoint = await asyncio.to_thread(janus.create_endpoint, "voxroom-test")
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "through-janus"})
    server_room = live_server.server.rooms.get(room["id"])
    status, view = await asyncio.to_thread(live_server.json, "PUT", f"/api/rooms/{room['id']}/sfu",
                                           {"endpoints": [{"url": endpoint, "token": WHIP_TOKEN}]})
    assert status == 200, view
    async with asyncio.timeout(30):
        while server_room.sfu[0].state != "publishing":
            await asyncio.sleep(0.1)
    assert server_room.sfu[0].resource == f"{janus.whip_base}/resource/voxroom-test"  # relative Location, resolved

    pc, frames = await subscribe(janus)
    try:
        assert await hears_speech(live_server, room["id"], frames) >= 25
    finally:
        await pc.close()

    janus.stop_janus()
    async with asyncio.timeout(60):  # ICE consent expires (30 s): voxroom notices
        while server_room.sfu[0].state == "publishing":
            await asyncio.sleep(0.1)
    _, summary = await asyncio.to_thread(live_server.json, "GET", f"/api/rooms/{room['id']}")
    assert summary["sfu"][0]["state"] in ("connecting", "retrying") and summary["sfu"][0]["error"]
    await asyncio.to_thread(janus.start_janus)
    async with asyncio.timeout(60):  # simple-whip-server reconnects to Janus; voxroom publishes again
        while server_room.sfu[0].publishes < 2 or server_room.sfu[0].state != "publishing":
            await asyncio.sleep(0.2)

    pc, frames = await subscribe(janus)
    try:
        assert await hears_speech(live_server, room["id"], frames) >= 25
    finally:
        await pc.close()
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room['id']}")
    assert server_room.sfu == []


PAGES = 3
CONCEALED_AT_MOST = 0.10  # of the samples a page played while the co-host spoke


@needs_private_network
def test_three_listener_pages_play_from_janus_fall_back_and_return_without_a_reload(
        sfu_server: RunningServer, janus: JanusSfu) -> None:
    """Three Chromium listener pages (one of them the OBS overlay) play the co-host from Janus and measure it (samples, no concealment,
    level while it speaks, the caption offset: from `speech.started` to its first loud audio on the
    page). Janus is killed: the pages play from voxroom's WHEP; Janus comes back and voxroom publishes
    again: the pages return to Janus by themselves, no reload."""
    from conftest import chromium

    endpoint = janus.create_endpoint("voxroom-page")
    _, room = sfu_server.json("POST", "/api/rooms", {"name": "pages-through-janus"})
    server_room = sfu_server.server.rooms.get(room["id"])
    status, view = sfu_server.json("PUT", f"/api/rooms/{room['id']}/sfu", {"endpoints": [{
        "url": endpoint, "token": WHIP_TOKEN, "playback": {"janus": janus.janus_url, "room": JANUS_ROOM}}]})
    assert status == 200, view

    def until(condition: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, server_room.sfu[0].status()
            time.sleep(0.1)

    def publishing(times: int) -> None:
        until(lambda: server_room.sfu[0].state == "publishing" and server_room.sfu[0].publishes >= times, 90)

    def on_all(pages: list[Any], condition: str, timeout: float = 30000) -> None:
        for page in pages:
            page.wait_for_function(condition, timeout=timeout)

    def say_and_hear(pages: list[Any], text: str) -> list[dict[str, Any]]:
        """Each page hears the line (over half a second of loud meter windows) and its caption."""
        counts = "(s => [s.loudFrames, s.captionOffsets.length, s.samplesReceived, s.concealedSamples])(window.voxroomStats)"
        before = [page.evaluate(counts) for page in pages]
        assert sfu_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": text})[0] == 202
        for page, (loud, offsets, _, _) in zip(pages, before, strict=True):
            page.wait_for_function(f"window.voxroomStats.loudFrames > {loud + 10} && "
                                   f"window.voxroomStats.captionOffsets.length > {offsets}", timeout=30000)
            page.wait_for_function(f"window.voxroomStats.captions.some(c => c.type === 'speech.ended' && "
                                   f"c.text === {text!r})", timeout=30000)
        heard = []
        for page, (_, _, samples, concealed) in zip(pages, before, strict=True):
            stats = page.evaluate("window.voxroomStats")
            stats["speechSamples"] = stats["samplesReceived"] - samples
            stats["speechConcealed"] = stats["concealedSamples"] - concealed
            print({k: stats[k] for k in ("source", "samplesReceived", "concealedSamples", "packetsLost",
                                         "speechSamples", "speechConcealed", "captionOffsetMs")})
            heard.append(stats)
        return heard

    publishing(1)
    with chromium() as browser:
        pages = [browser.new_page() for _ in range(PAGES)]
        errors: list[str] = []
        links = [room["listen_url"] + "&autojoin=1"] * (PAGES - 1) + [room["overlay_url"]]  # and one OBS overlay
        for page, link in zip(pages, links, strict=True):
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(sfu_server.base + link)
        on_all(pages, "window.voxroomStats.state === 'connected' && window.voxroomStats.source === 'janus'")
        assert not server_room.listeners  # nobody listens to voxroom directly: Janus serves the pages
        # Settled: each page has played two seconds (of the room's silence) before the co-host speaks.
        on_all(pages, "window.voxroomStats.samplesReceived > 48000 * 2")

        heard = say_and_hear(pages, "Hello through Janus, three browsers are listening now.")
        offsets = {"janus": [s["captionOffsetMs"] for s in heard]}
        for stats in heard:
            assert stats["source"] == "janus" and stats["captionOffsets"][-1]["source"] == "janus", stats
            assert stats["speechSamples"] > 48000 * 2  # over two seconds of audio reached each page
            # Concealment while the co-host spoke: none on a quiet machine (docs/scaling.md); a few per cent
            # when others' work starves this shared 2-core machine; nearly all of it when no stream plays.
            assert stats["speechConcealed"] <= stats["speechSamples"] * CONCEALED_AT_MOST
            assert stats["peakRms"] > 0.05 and stats["error"] is None

        janus.stop_janus()  # the pages notice, ask where to play from again, and land on voxroom's WHEP
        on_all(pages, "window.voxroomStats.rejoins >= 1 && window.voxroomStats.source === 'whep' && "
                      "window.voxroomStats.state === 'connected'")
        assert len(server_room.listeners) == PAGES
        on_all(pages, "window.voxroomStats.samplesReceived > 48000 * 2")
        heard = say_and_hear(pages, "Still here while Janus is down, three browsers on the fallback.")
        offsets["whep"] = [s["captionOffsetMs"] for s in heard]
        # Heard on the fallback; its concealment is printed, not judged: there voxroom itself packetizes and
        # encrypts for each page, which on this shared 2-core machine stretches when others' work runs.
        assert all(s["source"] == "whep" and s["speechSamples"] > 48000 * 2 for s in heard)

        until(lambda: server_room.sfu[0].state != "publishing", 60)  # ICE consent expires (30 s)
        janus.start_janus()
        publishing(2)
        on_all(pages, "window.voxroomStats.janusReturns >= 1 && window.voxroomStats.source === 'janus' && "
                      "window.voxroomStats.state === 'connected'", timeout=60000)
        on_all(pages, "window.voxroomStats.samplesReceived > 48000 * 2")
        heard = say_and_hear(pages, "Back through Janus after it restarted, three browsers again.")
        offsets["janus again"] = [s["captionOffsetMs"] for s in heard]
        for stats in heard:
            assert stats["captionOffsets"][-1]["source"] == "janus" and stats["speechSamples"] > 48000 * 2
            assert stats["speechConcealed"] <= stats["speechSamples"] * CONCEALED_AT_MOST
        assert not server_room.listeners  # each page left voxroom's WHEP once Janus played
        assert not errors, errors
        print(f"caption offset per page (ms, speech.started to its first loud audio): {offsets}")
    sfu_server.json("DELETE", f"/api/rooms/{room['id']}")


@needs_private_network
async def test_a_room_publishes_to_two_endpoints_and_listeners_are_handed_each_in_turn(
        sfu_server: RunningServer, janus: JanusSfu, tmp_path: Path) -> None:
    """Two SFUs: a second Janus (its own process, ports and simple-whip-server) beside the first."""
    live_server = sfu_server
    second = JanusSfu(tmp_path / "janus-2", free_port(), free_port(), free_port())
    write_janus_config(second.folder, second.http_port, second.ws_port)
    try:
        second.start_janus()
        second.start_whip_server()
        await publish_to_two_sfus_and_hand_listeners_each(live_server, (janus, second))
    finally:
        second.close()


async def publish_to_two_sfus_and_hand_listeners_each(live_server: RunningServer, sfus: tuple[JanusSfu, JanusSfu]) -> None:
    stun = f"stun:{PRIVATE_ADDRESS}:3478"
    endpoints = [await asyncio.to_thread(sfu.create_endpoint, f"two-{i}", WHIP_TOKEN, JANUS_ROOM, [stun] if i else None)
                 for i, sfu in enumerate(sfus)]
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "two-sfus"})
    server_room = live_server.server.rooms.get(room["id"])
    status, view = await asyncio.to_thread(live_server.json, "PUT", f"/api/rooms/{room['id']}/sfu", {"endpoints": [
        {"url": url, "token": WHIP_TOKEN, "playback": {"janus": sfu.janus_url, "room": JANUS_ROOM}}
        for url, sfu in zip(endpoints, sfus, strict=True)]})
    assert status == 200, view
    async with asyncio.timeout(30):
        while any(p.state != "publishing" for p in server_room.sfu):
            await asyncio.sleep(0.1)
    assert len(server_room.fanout.tracks) == 2  # two publishes, still one encoder
    assert [[s.urls for s in p.ice_servers] for p in server_room.sfu] == [[], [stun]]  # from Link headers

    plans = [(await asyncio.to_thread(live_server.json, "GET", f"/rooms/{room['id']}/playback", None,
                                      room["listener_grant"]))[1] for _ in range(4)]
    first, other = (sfu.janus_url for sfu in sfus)
    assert [p["janus"] for p in plans] == [first, other, first, other]  # each listener the next SFU
    for sfu in sfus:
        pc, frames = await subscribe(sfu, JANUS_ROOM)
        try:
            assert await hears_speech(live_server, room["id"], frames) >= 25
        finally:
            await pc.close()
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room['id']}")


@needs_private_network
def test_the_console_publishes_a_room_to_janus_and_shows_each_endpoints_state(sfu_server: RunningServer,
                                                                               janus: JanusSfu) -> None:
    """The console's SFU card: an endpoint added there publishes (its token never comes back, and stays
    stored when the list is saved again); one with a wrong token shows the SFU's refusal; removing and
    stopping work."""
    from conftest import chromium

    good = janus.create_endpoint("from-console")
    wrong = janus.create_endpoint("wrong-token", "another-token", SECOND_JANUS_ROOM)
    _, room = sfu_server.json("POST", "/api/rooms", {"name": "console-sfu"})
    endpoint_li = "#sfu-endpoints li.sfu-endpoint"
    with chromium() as browser:
        console = browser.new_page()
        errors: list[str] = []
        console.on("pageerror", lambda e: errors.append(str(e)))
        console.goto(f"{sfu_server.base}/console#token={sfu_server.token}")
        console.click(f"#rooms li[data-room='{room['id']}'] button.open-room")
        console.wait_for_selector("#sfu-panel:not([hidden])")
        assert "none" in console.inner_text("#sfu-endpoints")
        console.fill("#sfu-url", good)
        console.fill("#sfu-token", WHIP_TOKEN)
        console.fill("#sfu-janus", janus.janus_url)
        console.fill("#sfu-janus-room", str(JANUS_ROOM))
        console.click("#sfu-form button[type=submit]")
        console.wait_for_selector(f"{endpoint_li}[data-state='publishing']", timeout=30000)
        assert console.input_value("#sfu-token") == ""  # write-only: gone from the page once saved
        text = console.inner_text(endpoint_li)
        assert good in text and "🔒" in text and f"#{JANUS_ROOM}" in text and WHIP_TOKEN not in console.content()

        console.fill("#sfu-url", wrong)
        console.fill("#sfu-token", "not-the-token")
        console.click("#sfu-form button[type=submit]")
        console.wait_for_selector(f"{endpoint_li}:nth-child(2)[data-state='error']", timeout=30000)
        assert "403" in console.inner_text(f"{endpoint_li}:nth-child(2)")
        # the first endpoint was sent back with "token": null and publishes again with its stored token
        console.wait_for_selector(f"{endpoint_li}:nth-child(1)[data-state='publishing']", timeout=30000)
        server_room = sfu_server.server.rooms.get(room["id"])
        assert [p.endpoint.token for p in server_room.sfu] == [WHIP_TOKEN, "not-the-token"]
        _, plan = sfu_server.json("GET", f"/rooms/{room['id']}/playback", None, room["listener_grant"])
        assert plan["kind"] == "janus" and plan["room"] == JANUS_ROOM

        console.click(f"{endpoint_li}:nth-child(2) button")
        console.wait_for_function(f"document.querySelectorAll('{endpoint_li}').length === 1")
        console.click("#sfu-stop")
        console.wait_for_function(f"document.querySelectorAll('{endpoint_li}').length === 0")
        assert server_room.sfu == [] and not errors, errors
    sfu_server.json("DELETE", f"/api/rooms/{room['id']}")


@needs_private_network
def test_a_listener_page_follows_the_room_when_it_publishes_anew(sfu_server: RunningServer, janus: JanusSfu) -> None:
    """The room's SFU settings are saved again (a new publish, a new feed in the VideoRoom): a page that
    played from Janus notices its feed end, and plays the new one without a reload."""
    from conftest import chromium

    endpoint = janus.create_endpoint("republish")
    _, room = sfu_server.json("POST", "/api/rooms", {"name": "republished"})
    server_room = sfu_server.server.rooms.get(room["id"])
    body = {"endpoints": [{"url": endpoint, "token": WHIP_TOKEN, "playback": {"janus": janus.janus_url, "room": JANUS_ROOM}}]}

    def publishing() -> None:
        deadline = time.monotonic() + 30
        while not (server_room.sfu and server_room.sfu[0].state == "publishing"):
            assert time.monotonic() < deadline, [p.status() for p in server_room.sfu]
            time.sleep(0.1)

    assert sfu_server.json("PUT", f"/api/rooms/{room['id']}/sfu", body)[0] == 200
    publishing()
    with chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(sfu_server.base + room["listen_url"] + "&autojoin=1")
        page.wait_for_function("window.voxroomStats.state === 'connected' && window.voxroomStats.source === 'janus'",
                               timeout=30000)
        assert sfu_server.json("PUT", f"/api/rooms/{room['id']}/sfu", body)[0] == 200  # publishes anew
        publishing()
        page.wait_for_function("window.voxroomStats.rejoins >= 1 && window.voxroomStats.source === 'janus' && "
                               "window.voxroomStats.state === 'connected'", timeout=30000)
        loud = page.evaluate("window.voxroomStats.loudFrames")
        assert sfu_server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "The new feed is heard."})[0] == 202
        page.wait_for_function(f"window.voxroomStats.loudFrames > {loud + 10}", timeout=20000)
        assert not errors, errors
    sfu_server.json("DELETE", f"/api/rooms/{room['id']}")
