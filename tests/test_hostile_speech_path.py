"""Hostile input on the speech path (the reproductions that live there), in the real server: deleting a
room mid-speech, a 2,000-character say without punctuation, emoji floods, lone surrogates, absurd
numbers. Each gets a clear answer, and no other room or socket is affected."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import connect

from conftest import RunningServer
from voxroom.agent.lifecycle import LifecycleEvent, SpeechEnded, SpeechStarted


def create(server: RunningServer, name: str) -> tuple[str, Any]:
    status, room = server.json("POST", "/api/rooms", {"name": name})
    assert status == 201, room
    return room["id"], server.server.rooms.get(room["id"])


async def on_air(server_room: Any, speech_id: str, limit: float = 20.0) -> None:
    for _ in range(int(limit / 0.02)):
        handle = server_room.playout.find(speech_id)
        if handle is not None and handle.started_at is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{speech_id} never went on air")


async def test_deleting_a_room_while_it_speaks_answers_at_once(live_server: RunningServer) -> None:
    room_id, server_room = create(live_server, "doomed")
    text = " ".join(["This room is about to be deleted while it talks."] * 10)
    status, line = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say", {"text": text})
    assert status == 202
    await on_air(server_room, line["id"])
    handle = server_room.playout.find(line["id"])
    started = time.monotonic()
    status, body = await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")
    assert status == 200 and body == {"deleted": room_id}
    assert time.monotonic() - started < 5.0  # it answers (it used to hang for ever)
    assert handle.finished and handle.state == "cancelled"
    assert (await asyncio.to_thread(live_server.json, "GET", f"/api/rooms/{room_id}"))[0] == 404


async def test_a_long_text_without_punctuation_is_cut_and_other_rooms_keep_speaking(
        live_server: RunningServer) -> None:
    long_id, long_room = create(live_server, "long")
    other_id, other_room = create(live_server, "other")
    words = "and so the story goes on without any punctuation at all "
    text = (words * 40)[:2000]
    before = set(live_server.engine.produced)
    status, long_line = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{long_id}/say",
                                                {"text": text})
    assert status == 202
    await on_air(long_room, long_line["id"])
    long_handle = long_room.playout.find(long_line["id"])
    events: list[LifecycleEvent] = []
    other_room.events.subscribe(events.append)
    status, other_line = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{other_id}/say",
                                                 {"text": "Meanwhile, in another room."})
    assert status == 202
    await on_air(other_room, other_line["id"])
    # The other room is on air while the long text is still being said: no room holds the engine.
    assert not long_handle.finished and long_handle.pending_pieces + 1 >= 2
    pieces = [t for t in live_server.engine.produced if t not in before and t.startswith("and so")]
    assert pieces and max(len(p) for p in pieces) <= 220
    for room_id in (long_id, other_id):
        await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")
    assert any(isinstance(e, SpeechStarted) for e in events)


async def test_emoji_are_not_read_out(live_server: RunningServer) -> None:
    room_id, server_room = create(live_server, "emoji")
    ended: list[SpeechEnded] = []
    server_room.events.subscribe(lambda e: ended.append(e) if isinstance(e, SpeechEnded) else None)
    status, line = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                           {"text": "😀" * 40 + " Hi."})
    assert status == 202
    for _ in range(500):
        if ended:
            break
        await asyncio.sleep(0.02)
    assert ended and ended[0].state == "done" and ended[0].played_text == "Hi."
    assert ended[0].frames < 100  # well under 2 s: the emoji took no time at all
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")


async def test_lone_surrogates_are_refused_and_caption_sockets_live_on(live_server: RunningServer) -> None:
    room_id, server_room = create(live_server, "surrogates")
    status, grant = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/grants",
                                            {"role": "listener"})
    captions = f"{live_server.ws_url[:-3]}/rooms/{room_id}/events?token={grant['grant']}"
    async with connect(captions) as ws:
        assert json.loads(await ws.recv())["type"] == "room"
        bad = b'{"type": "message", "user": "eve", "text": "hi \\ud800"}'
        status, headers, body = await asyncio.to_thread(
            live_server.request, "POST", f"/api/rooms/{room_id}/chat", None, grant["grant"], raw=bad)
        assert status == 400 and json.loads(body)["code"] == "invalid_text"
        status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/chat",
                                            {"type": "message", "user": "ann", "text": "a real message"})
        assert status == 202
        seen = []
        while not any(m.get("type") == "cohost.reply_started" for m in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 20)))
    bad_name = b'{"name": "room \\udfff"}'
    status, _, body = await asyncio.to_thread(live_server.request, "POST", "/api/rooms", None, None, raw=bad_name)
    assert status == 400 and json.loads(body)["code"] == "invalid_text"
    assert (await asyncio.to_thread(live_server.json, "GET", "/api/rooms"))[0] == 200
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")


async def test_absurd_numbers_in_rest_bodies_are_400_with_a_code(live_server: RunningServer) -> None:
    room_id, _ = create(live_server, "numbers")
    for path, raw in [
        (f"/api/rooms/{room_id}/say", b'{"text": "hi", "speed": ' + b"9" * 400 + b"}"),
        (f"/api/rooms/{room_id}/say", b'{"text": "hi", "speed": 1e400}'),
        (f"/api/rooms/{room_id}/say", b'{"text": "hi", "speed": NaN}'),
        (f"/api/rooms/{room_id}/chat", b'{"type": "gift", "user": "x", "amount": ' + b"9" * 5000 + b"}"),
        (f"/api/rooms/{room_id}/chat", b'{"type": "gift", "user": "x", "amount": 1e300}'),
    ]:
        status, _, body = await asyncio.to_thread(live_server.request, "POST", path, None, None, raw=raw)
        assert status == 400, (path, raw[:60], body)
        assert json.loads(body)["code"], body
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")


def test_what_the_fuzzer_found_is_answered_clearly(live_server: RunningServer) -> None:
    room_id, _ = create(live_server, "fuzzed")
    # A template with a stray brace used to be accepted and then silently drop every reply using it.
    for template in ("{user} says {text}{", "}{", "{user says"):
        status, body = live_server.json("PATCH", f"/api/rooms/{room_id}/cohost",
                                        {"templates": {"en": {"message": template}}})
        assert status == 400 and body["code"] == "bad_request", (template, body)
    assert live_server.json("PATCH", f"/api/rooms/{room_id}/cohost",
                            {"templates": {"en": {"message": "{user}: {text} {{braces}}"}}})[0] == 200
    # Routes that do not exist answer in the same JSON shape as every other error.
    for method, path in (("GET", "/api/nope"), ("POST", f"/api/rooms/{room_id}/queue/0/%2F"),
                         ("PUT", "/api/rooms")):
        status, headers, body = live_server.request(method, path)
        assert status in (404, 405) and headers["content-type"].startswith("application/json"), (path, body)
        assert json.loads(body)["code"] in ("not_found", "method_not_allowed")
    # 1e999 is out of range where it is parsed, like a huge integer.
    status, _, body = live_server.request("POST", f"/api/rooms/{room_id}/say",
                                          raw=b'{"text": "hi", "speed": 1e999}')
    assert status == 400 and "out of range" in json.loads(body)["error"]
    status, _, body = live_server.request("POST", f"/api/rooms/{room_id}/chat",
                                          raw=b'{"type": "message", "user": "a", "text": "x", "timestamp": 1e999}')
    assert status == 400
    live_server.json("DELETE", f"/api/rooms/{room_id}")


async def test_chinese_to_the_stock_voice_is_language_not_supported(live_server: RunningServer) -> None:
    room_id, _ = create(live_server, "stock chinese")
    status, body = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                           {"text": "大家好，欢迎来到直播间！"})
    assert status == 422 and body["code"] == "language_not_supported", body
    status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                        {"text": "Hello 大家 everyone."})  # mostly English: said without the CJK
    assert status == 202
    status, body = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                           {"text": "Hello 大家 everyone.", "lang": "zh"})  # asked for Chinese
    assert status == 422 and body["code"] == "language_not_supported", body
    status, body = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room_id}/say",
                                           {"text": "Привет всем, как дела?"})  # not read as letter names
    assert status == 422 and body["code"] == "language_not_supported", body
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": live_server.token}))
        await ws.recv()
        for room in (None, room_id):
            say = {"type": "say", "id": f"zh-{room}", "text": "今日はいい天気ですね。", **({"room": room} if room else {})}
            await ws.send(json.dumps(say))
            error = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert error["type"] == "error" and error["code"] == "language_not_supported", error
            say = {"type": "say", "id": f"mixed-{room}", "text": "Hello 大家 everyone.", "lang": "ja",
                   **({"room": room} if room else {})}
            await ws.send(json.dumps(say))
            error = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert error["type"] == "error" and error["code"] == "language_not_supported", error
            assert error["ref"] == say["id"]
    await asyncio.to_thread(live_server.json, "DELETE", f"/api/rooms/{room_id}")
