"""Bilibili danmaku against a local WebSocket server speaking the packet protocol."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection

from tests.connectors.wire import (
    FIXTURES,
    Collected,
    LateTicker,
    fast_backoff,
    run_until,
    wait_until,
    ws_server,
)
from voxroom.agent.connectors.base import ConnectorState, MalformedFrame
from voxroom.agent.connectors.bilibili import (
    OP_AUTH,
    OP_AUTH_REPLY,
    OP_HEARTBEAT,
    OP_HEARTBEAT_REPLY,
    VER_BROTLI,
    VER_INT,
    VER_ZLIB,
    BilibiliConnector,
    command_packet,
    compressed,
    decode_packets,
    encode_packet,
)
from voxroom.agent.events import EventKind

COMMANDS: list[dict[str, Any]] = json.loads((FIXTURES / "bilibili_commands.json").read_text())


def danmu(i: int) -> dict[str, Any]:
    extra = json.dumps({"id_str": f"dm{i:06d}"})
    return {"cmd": "DANMU_MSG", "info": [[0, 1, 25, 0, 1700000000000 + i, i, 0, "", 0, 0, 0, "", 0, "{}", "{}",
                                          {"extra": extra}], f"弹幕 {i}", [1000 + i % 50, f"user{i % 50}", 0],
                                         [], [], [], 0, 0]}


async def accept(ws: ServerConnection, auth_seen: list[dict[str, Any]] | None = None) -> None:
    """Read the auth packet, check its shape, say yes; answer heartbeats in the background."""
    (packet,) = decode_packets(bytes(await ws.recv()))
    assert packet.operation == OP_AUTH
    body = json.loads(packet.body)
    assert {"uid", "roomid", "protover"} <= body.keys()
    if auth_seen is not None:
        auth_seen.append(body)
    await ws.send(encode_packet(OP_AUTH_REPLY, b'{"code":0}'))


def batch(messages: list[dict[str, Any]], version: int) -> bytes:
    return compressed(b"".join(command_packet(m) for m in messages), version)



async def test_fixture_commands_map_to_events_including_combos_and_paid_kinds() -> None:
    auth_seen: list[dict[str, Any]] = []
    heartbeats = 0

    async def handler(ws: ServerConnection, n: int) -> None:
        nonlocal heartbeats
        await accept(ws, auth_seen)
        await ws.send(batch(COMMANDS[:3], VER_BROTLI))  # brotli body holding several packets
        await ws.send(batch(COMMANDS[3:6], VER_ZLIB))
        await ws.send(b"".join(command_packet(m) for m in COMMANDS[6:]))  # plain, several in one frame
        async for frame in ws:
            for packet in decode_packets(bytes(frame)):
                if packet.operation == OP_HEARTBEAT:
                    heartbeats += 1
                    await ws.send(encode_packet(OP_HEARTBEAT_REPLY, (4321).to_bytes(4, "big")))

    got = Collected()
    async with ws_server(handler) as url:
        connector = BilibiliConnector(got, channel="398668", url=url, backoff=fast_backoff(),
                                      question_prefixes=["?"], cookie="buvid3=abc-123; SESSDATA=x")
        await run_until(connector, lambda: len(got.events) >= 8 and connector.popularity == 4321)
    assert auth_seen == [{"uid": 0, "roomid": 398668, "protover": 3, "platform": "web", "type": 2,
                          "buvid": "abc-123"}]
    assert heartbeats >= 1
    hello, question, flowers, spicy, sc, guard, joined, followed = got.events
    assert hello.kind is EventKind.MESSAGE and hello.user == "小明" and hello.text == "主播好！"
    assert hello.id == "bilibili:6fa9959ab8feabcd1b337aa5066768334027"
    assert hello.badges == {"moderator", "subscriber"} and hello.tier == "舰长"
    assert question.kind is EventKind.QUESTION and question.text == "主播今天玩什么"
    assert question.id == "bilibili:67890:1700000001000:42"
    # Three steps of one combo (1 + 2 flowers, 300 gold) arrive as one gift once COMBO_SEND ends it.
    assert flowers.kind is EventKind.GIFT and flowers.gift == "小花花" and flowers.count == 3
    assert flowers.value_usd == pytest.approx(0.3 * 0.14)
    assert spicy.gift == "辣条" and spicy.count == 10 and spicy.value_usd == 0.0  # silver: free
    assert sc.gift == "superchat" and sc.amount == 30 and sc.currency == "CNY" and sc.text == "主播唱首歌吧"
    assert sc.value_usd == pytest.approx(4.2)
    assert guard.tier == "舰长" and guard.value_usd == pytest.approx(198 * 0.14)
    assert joined.kind is EventKind.JOIN and joined.user == "Newcomer"
    assert followed.kind is EventKind.FOLLOW and followed.user == "Follower"
    assert connector.counters.malformed == 0


async def test_a_combo_without_combo_send_ends_after_a_quiet_spell() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await accept(ws)
        await ws.send(b"".join(command_packet(m) for m in COMMANDS[2:4]))
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = BilibiliConnector(got, channel="1", url=url, combo_quiet_s=0.05, backoff=fast_backoff())
        await run_until(connector, lambda: len(got.events) >= 1)
    assert [(e.gift, e.count) for e in got.events] == [("小花花", 3)]


async def test_disconnect_mid_stream_resumes_without_duplicates_or_losses() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await accept(ws)
        if n == 0:
            await ws.send(batch([danmu(i) for i in range(50)], VER_BROTLI))
            await ws.close()
            return
        await ws.send(batch([danmu(i) for i in range(40, 100)], VER_ZLIB))  # replays 40-49
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = BilibiliConnector(got, channel="1", url=url, backoff=fast_backoff())
        await run_until(connector, lambda: len(got.events) >= 100)
    assert got.ids == [f"bilibili:dm{i:06d}" for i in range(100)]
    assert connector.counters.reconnects == 1 and connector.counters.duplicates == 10


async def test_malformed_frames_are_skipped_and_reading_goes_on() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await accept(ws)
        await ws.send(command_packet(danmu(1)))
        await ws.send(b"\x00\x00\x00\x05short")  # length smaller than a header
        await ws.send(encode_packet(5, b"not brotli at all", version=VER_BROTLI))
        await ws.send(encode_packet(5, b"{not json"))
        await ws.send(command_packet({"cmd": "DANMU_MSG", "info": [[]]}))  # missing fields
        await ws.send(encode_packet(5, b"{}", version=9))
        await ws.send("a text frame")
        await ws.send(command_packet(danmu(2)))
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = BilibiliConnector(got, channel="1", url=url, backoff=fast_backoff())
        connector.start()
        await wait_until(lambda: len(got.events) >= 2)
        assert connector.status.state is ConnectorState.LIVE
        await connector.stop()
    assert got.ids == ["bilibili:dm000001", "bilibili:dm000002"]
    assert connector.counters.malformed == 6 and connector.counters.reconnects == 0


async def test_refused_auth_stops_with_an_error() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(encode_packet(OP_AUTH_REPLY, b'{"code":-101}'))
        await ws.wait_closed()

    async with ws_server(handler) as url:
        connector = BilibiliConnector(Collected(), channel="1", url=url, backoff=fast_backoff())
        await asyncio.wait_for(connector.start(), 10)
    assert connector.status.state is ConnectorState.ERROR and "-101" in connector.status.message


async def test_flood_of_1000_danmaku_a_second_loses_nothing_and_keeps_the_loop_responsive() -> None:
    seconds, per_frame, frame_every = 3, 20, 0.02

    async def handler(ws: ServerConnection, n: int) -> None:
        await accept(ws)
        for k in range(int(seconds / frame_every)):
            await ws.send(batch([danmu(i) for i in range(k * per_frame, (k + 1) * per_frame)], VER_BROTLI))
            await asyncio.sleep(frame_every)
        await ws.wait_closed()

    total = int(seconds / frame_every) * per_frame
    got = Collected()
    async with ws_server(handler) as url:
        connector = BilibiliConnector(got, channel="1", url=url, backoff=fast_backoff())
        with LateTicker() as ticker:
            await run_until(connector, lambda: connector.counters.received >= total)
    counters = connector.counters
    assert counters.received == total and counters.submitted + counters.shed == total
    assert len(set(got.ids)) == counters.submitted and counters.malformed == 0
    assert ticker.ticks > 50 and ticker.late <= 2, (ticker.ticks, ticker.late)


packets = st.lists(st.tuples(st.sampled_from([2, 3, 5, 8]), st.binary(max_size=200)), max_size=5)


@given(packets, st.sampled_from([None, VER_ZLIB, VER_BROTLI]))
def test_packets_round_trip_through_encoding_and_compression(items: list[tuple[int, bytes]], wrap: int | None) -> None:
    raw = b"".join(encode_packet(op, body, version=VER_INT) for op, body in items)
    frame = raw if wrap is None else compressed(raw, wrap)
    assert [(p.operation, p.body) for p in decode_packets(frame)] == items


@given(st.binary(max_size=300))
def test_decoder_raises_only_malformed_frame_on_garbage(data: bytes) -> None:
    try:
        list(decode_packets(data))
    except MalformedFrame:
        pass


async def test_room_init_finds_the_room_host_and_key_through_the_http_api() -> None:
    auth_seen: list[dict[str, Any]] = []
    cookies: list[str] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        await accept(ws, auth_seen)
        await ws.send(command_packet(danmu(7)))
        await ws.wait_closed()

    async with ws_server(handler) as ws_url:
        ws_port = int(ws_url.rsplit(":", 1)[1])

        async def room_init(request: Request) -> JSONResponse:
            cookies.append(request.headers.get("cookie", ""))
            assert request.query_params["id"] == "666"
            return JSONResponse({"code": 0, "msg": "ok", "data": {"room_id": 398668, "short_id": 666}})

        async def danmu_info(request: Request) -> JSONResponse:
            assert request.query_params["id"] == "398668"
            return JSONResponse({"code": 0, "data": {"token": "room-key", "host_list": [
                {"host": "127.0.0.1", "port": 2243, "wss_port": 443, "ws_port": ws_port}]}})

        app = Starlette(routes=[Route("/room/v1/Room/room_init", room_init),
                                Route("/xlive/web-room/v1/index/getDanmuInfo", danmu_info)])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started)
        api_port = server.servers[0].sockets[0].getsockname()[1]
        got = Collected()
        connector = BilibiliConnector(got, channel="666", api_url=f"http://127.0.0.1:{api_port}",
                                      cookie="SESSDATA=s; buvid3=b3", uid=42, backoff=fast_backoff())
        try:
            await run_until(connector, lambda: len(got.events) >= 1)
        finally:
            server.should_exit = True
            await task
    assert got.ids == ["bilibili:dm000007"]
    assert auth_seen == [{"uid": 42, "roomid": 398668, "protover": 3, "platform": "web", "type": 2,
                          "key": "room-key", "buvid": "b3"}]
    assert cookies == ["SESSDATA=s; buvid3=b3"]
