"""Bounded fuzzing of the real server on 127.0.0.1: the bot protocol, the REST bodies and chat events.

A module-scoped server of its own (what these tests break stays here). Invariants: every bad bot
message gets an `error` with a documented `code` and the connection keeps answering `ping`; a
well-behaved connection keeps speaking; no REST call answers 5xx, every 4xx is JSON `{error, code}`;
and nothing the fuzzer sends makes the server log a traceback or grow the process by RSS_BOUND_MB.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conftest import RunningServer, start_server
from log_capture import LogCapture, capturing_logs, described
from voxroom.streaming import protocol
from voxroom.streaming.native_memory import release_free_memory, resident_bytes

T = TypeVar("T")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
ERROR_CODES = {"bad_json", "bad_message", "unknown_type", "invalid_field", "invalid_text", "message_too_large",
               "text_too_long", "binary_not_accepted", "not_authenticated", "already_authenticated",
               "unsupported_version", "unauthorized", "duplicate_id", "busy", "unknown_speech", "unknown_voice",
               "unknown_room", "invalid_event", "not_supported"}
REPLY_TIMEOUT_S = 15.0
LONG_LINE = " ".join(["The co-host keeps talking while somebody throws garbage at the server."] * 6)


# -- the server, its log, and a client event loop ---------------------------------------------------
@pytest.fixture(scope="module")
def log_capture() -> Iterator[LogCapture]:
    with capturing_logs() as handler:
        yield handler


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, stock_engine: Any,
                log_capture: LogCapture) -> Iterator[RunningServer]:
    yield from start_server(tmp_path_factory.mktemp("voxroom-fuzz"), stock_engine)


# What the whole fuzz run may add to the resident memory of this process (server and client both;
# measured: 30 MB on a 2-core Zen 4): a leak per message would exceed it after a few thousand messages.
RSS_BOUND_MB = 150


@pytest.fixture(scope="module", autouse=True)
def rss_at_start(fuzz_server: RunningServer, client: ClientLoop, rooms: dict[str, dict[str, Any]]) -> float | None:
    """Measured before the first fuzz test (autouse), once the server has made its rooms and spoken
    (a first room loads the VAD, ~185 MB once: not growth), compared after the last."""
    for _ in range(2):  # lines in parallel: every stock-voice session has made audio once
        say_everything_still_works(fuzz_server, client, "warm-up", parallel=4)
    release_free_memory()
    resident = resident_bytes()
    return resident / 2**20 if resident is not None else None


@pytest.fixture(autouse=True)
def no_tracebacks(log_capture: LogCapture) -> Iterator[None]:
    start = len(log_capture.records)
    yield
    found = log_capture.tracebacks(start)
    assert not found, "the server logged tracebacks:\n" + "\n".join(described(r) for r in found[:5])


class ClientLoop:
    """An event loop in its own thread, so connections can live across hypothesis examples."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fuzz-client")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def client() -> Iterator[ClientLoop]:
    loop = ClientLoop()
    yield loop
    loop.close()


def make_room(server: RunningServer, name: str) -> dict[str, Any]:
    status, room = server.json("POST", "/api/rooms", {"name": name})
    assert status == 201, room
    return dict(room)


@pytest.fixture(scope="module")
def rooms(fuzz_server: RunningServer) -> dict[str, dict[str, Any]]:
    """Made before any fuzzing (a fuzzed POST /api/rooms may use up the account's 20 rooms)."""
    return {name: make_room(fuzz_server, name) for name in ("bot", "rest", "chat")}


# -- bot protocol -------------------------------------------------------------------------------------
async def open_bot(server: RunningServer) -> ClientConnection:
    ws = await connect(server.ws_url, max_size=2**24, open_timeout=REPLY_TIMEOUT_S)
    await ws.send(json.dumps({"type": "hello", "version": 1, "token": server.token}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
    assert welcome["type"] == "welcome", welcome
    return ws


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    """The next control message (audio frames skipped; at most 5,000 of them)."""
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        for _ in range(5000):
            data = await ws.recv()
            if isinstance(data, str):
                msg = json.loads(data)
                assert isinstance(msg, dict)
                return msg
    raise AssertionError("no control message among 5000 frames")


async def assert_pings(ws: ClientConnection, ping_id: str = "alive") -> None:
    await ws.send(json.dumps({"type": "ping", "id": ping_id}))
    assert await next_message(ws) == {"type": "pong", "id": ping_id}


def assert_error(msg: dict[str, Any], sent: str | bytes) -> None:
    assert msg.get("type") == "error", (msg, sent[:300])
    assert msg.get("code") in ERROR_CODES and isinstance(msg.get("message"), str), (msg, sent[:300])


class GoodBot:
    """A well-behaved client reading everything it is sent, in the background."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.frames: dict[str, int] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            for _ in range(200_000):  # ~an hour of audio frames: far more than any test here sends
                data = await self.ws.recv()
                if isinstance(data, bytes):
                    frame = protocol.decode_audio(data)
                    self.frames[frame.speech_id] = self.frames.get(frame.speech_id, 0) + 1
                else:
                    self.messages.append(json.loads(data))
        except ConnectionClosed:
            return

    async def wait(self, kind: str, speech_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The `kind` message about `speech_id` (an `error` about it fails the test)."""
        async with asyncio.timeout(timeout):
            for _ in range(int(timeout / 0.05)):
                for msg in self.messages:
                    if msg.get("type") == kind and msg.get("id") == speech_id:
                        return msg
                    assert not (msg.get("type") == "error" and msg.get("ref") == speech_id), msg
                await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} for {speech_id}: {self.messages[-5:]}")

    async def ended(self, speech_id: str, timeout: float = 60.0) -> dict[str, Any]:
        return await self.wait("speech.ended", speech_id, timeout)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def accepted_silently(text: str) -> bool:
    """Would this (authenticated) message be accepted without an `error`? Those are not fuzz cases."""
    try:
        msg = protocol.parse_client_message(text)
    except protocol.ProtocolError:
        return False
    return isinstance(msg, protocol.Ping) or (
        isinstance(msg, protocol.Say) and msg.room is None and (msg.voice is None or msg.voice.is_stock))


json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=16)
FIELD_NAMES = sorted({name for spec in protocol.CLIENT_FIELDS.values() for name in spec} | {"type"})


def _wrong_for(types: type | tuple[type, ...]) -> st.SearchStrategy[Any]:
    return json_values.filter(lambda v: v is not None and (isinstance(v, bool) or not isinstance(v, types)))


@st.composite
def wrong_typed_messages(draw: st.DrawFn) -> str:
    """A message of a real type whose fields come from the protocol, one of them of the wrong type."""
    kind = draw(st.sampled_from(sorted(protocol.CLIENT_FIELDS)))
    spec = protocol.CLIENT_FIELDS[kind]
    msg: dict[str, Any] = {"type": kind}
    for name in draw(st.lists(st.sampled_from(FIELD_NAMES), max_size=5, unique=True)):
        if name != "type":
            msg[name] = draw(json_values)
    wrong = draw(st.sampled_from(sorted(spec)))
    msg[wrong] = draw(_wrong_for(spec[wrong][0]))
    return json.dumps(msg)


NUMBER_LITERALS = st.one_of(
    st.integers(31, 3000).map(lambda n: "9" * n), st.integers(31, 3000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "1E400", "0e99999",
                     "123456789012345678901234567890.5e308"]))
LONE_SURROGATES = st.sampled_from(["\\ud800", "\\udfff", "\\udbff", "a\\ud83dz", "\\ud83d\\ud83d", "\\udc00x"])
TEMPLATES = [
    '{"type":"say","id":"n","text":"hi","speed":%s}', '{"type":"hello","version":%s,"token":"t"}',
    '{"type":"ping","id":%s}', '{"type":"chat","room":"r","event":{"amount":%s}}', '[%s]', '%s',
]
STRING_TEMPLATES = [
    '{"type":"say","id":"s","text":"%s"}', '{"type":"say","id":"%s","text":"hi"}', '{"type":"%s"}',
    '{"type":"ping","id":"%s"}', '{"type":"cancel","id":"%s"}', '{"%s":1,"type":"ping"}',
    '{"type":"chat","room":"r","event":{"text":"%s"}}', '{"type":"say","id":"v","text":"hi","voice":"%s"}',
]


@st.composite
def spliced_messages(draw: st.DrawFn) -> str:
    """Raw JSON text: huge or NaN-like numbers and lone surrogates where the parser meets them."""
    if draw(st.booleans()):
        return draw(st.sampled_from(TEMPLATES)) % draw(NUMBER_LITERALS)
    return draw(st.sampled_from(STRING_TEMPLATES)) % draw(LONE_SURROGATES)


long_messages = st.one_of(
    st.integers(2001, 20_000).map(lambda n: json.dumps({"type": "say", "id": "l", "text": "a" * n})),
    st.integers(65, 500).map(lambda n: json.dumps({"type": "say", "id": "x" * n, "text": "hi"})),
    st.integers(65_537, 300_000).map(lambda n: json.dumps({"type": "ping", "id": "p" * n})),
    st.integers(100, 60_000).map(lambda n: "[" * n),
    st.integers(1, 60_000).map(lambda n: '{"type":"ping","id":"' + "\\u0000" * min(n, 10_000) + '"}'),
)
bad_texts = st.one_of(json_values.map(json.dumps), wrong_typed_messages(), spliced_messages(), long_messages,
                      st.text(max_size=200)).filter(lambda t: not accepted_silently(t))
bad_messages: st.SearchStrategy[str | bytes] = bad_texts | st.binary(max_size=2000)


async def exchange(server: RunningServer, messages: list[str | bytes]) -> None:
    ws = await open_bot(server)
    try:
        for data in messages:
            await ws.send(data)
            assert_error(await next_message(ws), data)
        await assert_pings(ws)
    finally:
        await ws.close()


def test_bot_protocol_fuzz_errors_and_keeps_working(fuzz_server: RunningServer, client: ClientLoop,
                                                     rooms: dict[str, dict[str, Any]]) -> None:
    room = rooms["bot"]
    good: GoodBot = client.run(_open_good(fuzz_server))
    client.run(good.ws.send(json.dumps({"type": "say", "id": "long", "text": LONG_LINE, "room": room["id"]})))
    client.run(good.wait("speech.started", "long"))  # on air in its room while the fuzzing runs

    @FUZZ
    @given(messages=st.lists(bad_messages, min_size=1, max_size=6))
    def fuzz(messages: list[str | bytes]) -> None:
        client.run(exchange(fuzz_server, messages))

    fuzz()

    async def still_speaking() -> None:
        await good.ws.send(json.dumps({"type": "say", "id": "after", "text": "Still here after the storm."}))
        ended = await good.ended("after")
        assert ended["reason"] == "done" and ended["frames"] > 0 and good.frames.get("after") == ended["frames"]
        assert good.frames.get("long", 0) > 0  # the room line went on air meanwhile
        await good.ws.send(json.dumps({"type": "cancel", "id": "long"}))
        assert (await good.ended("long"))["reason"] in ("cancelled", "done")
        await good.close()

    client.run(still_speaking(), timeout=120)


async def _open_good(server: RunningServer) -> GoodBot:
    return GoodBot(await open_bot(server))


def test_unauthenticated_fuzz_gets_errors(fuzz_server: RunningServer, client: ClientLoop) -> None:
    async def unauthenticated(messages: list[str | bytes]) -> None:
        async with connect(fuzz_server.ws_url, max_size=2**24) as ws:
            for data in messages:
                await ws.send(data)
                assert_error(await next_message(ws), data)

    @FEW
    @given(messages=st.lists(bad_messages, min_size=1, max_size=4))
    def fuzz(messages: list[str | bytes]) -> None:
        client.run(unauthenticated(messages))

    fuzz()


def test_invalid_utf8_text_frames_close_with_1007_quietly(fuzz_server: RunningServer, client: ClientLoop) -> None:
    invalid = st.tuples(st.binary(max_size=200), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88"]),
                        st.binary(max_size=200)).map(b"".join).filter(_not_utf8)

    async def send_invalid(data: bytes) -> None:
        ws = await open_bot(fuzz_server)
        await ws.send(data, text=True)
        with pytest.raises(ConnectionClosed):
            await next_message(ws)
        assert ws.close_code == 1007, ws.close_code
        again = await open_bot(fuzz_server)
        await assert_pings(again)
        await again.close()

    @FEW
    @given(data=invalid)
    def fuzz(data: bytes) -> None:
        client.run(send_invalid(data))

    fuzz()


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- REST bodies --------------------------------------------------------------------------------------
# path segments that still match the route ("/" or "%2F" would make another path: Starlette's plain 404)
segment = st.text(st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1, max_size=30).map(
    lambda s: urllib.parse.quote(s, safe="")) | st.sampled_from(["%FF", "%ED%A0%80", "%00", "..", "%2e%2e", "%C3"])
REST_ROUTES: list[tuple[str, str]] = [
    ("POST", "/api/rooms"), ("POST", "/api/rooms/{room}/say"), ("POST", "/api/rooms/{room}/chat"),
    ("PATCH", "/api/rooms/{room}/cohost"), ("POST", "/api/rooms/{room}/grants"),
    ("POST", "/api/rooms/{room}/host-speaking"), ("POST", "/api/rooms/{room}/queue/{a}/{b}"),
    ("POST", "/api/rooms/{room}/queue/{a}/skip"), ("POST", "/api/rooms/{room}/queue/{a}/pin"),
    ("DELETE", "/api/rooms/{room}/speeches/{a}"), ("POST", "/api/rooms/{room}/cohost/skip"),
    ("PATCH", "/api/voices/{a}"), ("PUT", "/api/voices/{a}/reference"),
    ("POST", "/api/rooms/{room}/links/rotate"), ("PUT", "/api/rooms/{room}/llm"),
    ("POST", "/api/rooms/{room}/llm/test"), ("POST", "/api/rooms/{room}/llm/models"),
]
COHOST_FIELDS = ["persona", "policy", "idle_after", "blocked_words", "templates", "voice", "name", "text", "role",
                 "ttl", "speaking", "id", "lang", "speed", "room", "type", "start", "end", "transcript",
                 "base_url", "model", "api_key"]


@st.composite
def field_dicts(draw: st.DrawFn) -> str:
    """Objects with the API's own field names and values of any type (plausible ones included)."""
    plausible = st.one_of(json_values, st.sampled_from(["resume", "drop", "duck", "stock", "host", "listener", "bot",
                                                         "en", "zh", "auto", "{user}", "}{", "{user}{", "{text!r}"]),
                          st.dictionaries(st.sampled_from(["en", "zh", "xx"]), st.dictionaries(
                              st.sampled_from(["message", "question", "gift", "follow", "join", "idle", "nope"]),
                              st.text(max_size=30) | st.sampled_from(["{user}{", "}{", "{user:>99999999}", "{0}"]),
                              max_size=3), max_size=2))
    keys = draw(st.lists(st.sampled_from(COHOST_FIELDS), max_size=5, unique=True))
    return json.dumps({key: draw(plausible) for key in keys})


@st.composite
def spliced_bodies(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(COHOST_FIELDS))
    if draw(st.booleans()):
        return '{"' + key + '":' + draw(NUMBER_LITERALS) + "}"
    return '{"' + key + '":"' + draw(LONE_SURROGATES) + '"}'


rest_bodies: st.SearchStrategy[bytes | None] = st.one_of(
    st.none(), json_values.map(lambda v: json.dumps(v).encode()), field_dicts().map(str.encode),
    spliced_bodies().map(str.encode), st.binary(max_size=300), st.just(b"x" * 300_000),
)


def check_answer(status: int, raw: bytes, what: str) -> None:
    assert status < 500, (what, status, raw[:300])
    if 400 <= status < 500:
        answer = json.loads(raw)
        assert isinstance(answer.get("error"), str) and isinstance(answer.get("code"), str), (what, answer)


def test_rest_bodies_fuzz(fuzz_server: RunningServer, rooms: dict[str, dict[str, Any]]) -> None:
    room = rooms["rest"]

    @FUZZ
    @given(route=st.sampled_from(REST_ROUTES), body=rest_bodies, a=segment, b=segment)
    def fuzz(route: tuple[str, str], body: bytes | None, a: str, b: str) -> None:
        method, template = route
        path = template.format(room=room["id"], a=a, b=b)
        status, _, raw = fuzz_server.request(method, path, raw=body)
        check_answer(status, raw, f"{method} {path} {body!r:.300}")
        assert fuzz_server.request("GET", "/api/rooms")[0] == 200
        assert fuzz_server.request("GET", f"/api/rooms/{room['id']}/cohost")[0] == 200

    try:
        fuzz()
    finally:
        fuzz_server.request("DELETE", f"/api/rooms/{room['id']}/queue")
        fuzz_server.request("POST", f"/api/rooms/{room['id']}/host-speaking", {"speaking": False})
        ours = {r["id"] for r in rooms.values()}
        for made in fuzz_server.json("GET", "/api/rooms")[1]["rooms"]:  # rooms the fuzzer created
            if made["id"] not in ours:
                assert fuzz_server.request("DELETE", f"/api/rooms/{made['id']}")[0] == 200


# -- chat events ----------------------------------------------------------------------------------------
EVENT_TYPES = ["message", "question", "gift", "superchat", "follow", "join", "chat", "danmaku", "idle", "host",
               "MESSAGE", "", "nope"]
event_values: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(EVENT_TYPES) | json_values,
    "user": st.text(max_size=50) | json_values,
    "text": st.text(max_size=300) | st.sampled_from(["@cohost what?", "? why", "Q:", "问 什么", "{user}", "}{"]) | json_values,
    "platform": st.text(max_size=20) | json_values,
    "timestamp": st.floats(allow_nan=False).filter(lambda f: abs(f) < 1e300) | json_values,
    "id": st.text(max_size=300) | st.integers(min_value=-(10**30), max_value=10**30) | json_values,
    "amount": st.floats(min_value=-1e12, max_value=1e12) | json_values,
    "currency": st.text(max_size=10) | json_values,
    "gift": st.text(max_size=30) | json_values,
}
plausible_events = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES[:8]), "user": st.text(min_size=1, max_size=30).filter(str.strip),
     "text": st.text(min_size=1, max_size=300).filter(str.strip)},
    optional={"platform": st.text(max_size=20), "timestamp": st.floats(-1e12, 1e12), "amount": st.floats(0, 1e9),
              "id": st.text(min_size=1, max_size=300) | st.integers(min_value=-(10**30), max_value=10**30),
              "currency": st.text(max_size=10), "gift": st.text(max_size=30)})


@st.composite
def chat_events(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible event with 0-3 fields replaced by anything, or a dict of the event fields' values."""
    if draw(st.booleans()):
        event = draw(plausible_events)
        for name in draw(st.lists(st.sampled_from(sorted(event_values)), max_size=2, unique=True)):
            event[name] = draw(event_values[name])
    else:
        event = draw(st.fixed_dictionaries({}, optional=event_values))
    extra = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    return {**extra, **event}


def test_chat_events_fuzz(fuzz_server: RunningServer, client: ClientLoop,
                          rooms: dict[str, dict[str, Any]]) -> None:
    room = rooms["chat"]
    path = f"/api/rooms/{room['id']}/chat"
    tokens = {"owner": fuzz_server.token, "listener": room["listener_grant"]}

    async def bot_chat(ws: ClientConnection, event: dict[str, Any]) -> None:
        await ws.send(json.dumps({"type": "chat", "room": room["id"], "event": event}))
        await ws.send(json.dumps({"type": "ping", "id": "after-chat"}))
        for _ in range(3):
            msg = await next_message(ws)
            if msg == {"type": "pong", "id": "after-chat"}:
                return
            assert_error(msg, json.dumps(event))
        raise AssertionError("no pong after a chat event")

    bot: ClientConnection = client.run(open_bot(fuzz_server))

    @FUZZ
    @given(event=chat_events(), who=st.sampled_from(["owner", "listener", "bot"]))
    def fuzz(event: dict[str, Any], who: str) -> None:
        if who == "bot":
            client.run(bot_chat(bot, event))
        else:
            status, _, raw = fuzz_server.request("POST", path, event, token=tokens[who])
            check_answer(status, raw, f"{who} {event!r:.300}")
            assert status in (202, 400, 413, 429), (status, raw[:300])
        assert fuzz_server.request("GET", f"/api/rooms/{room['id']}/cohost")[0] == 200
        assert fuzz_server.request("GET", f"/api/rooms/{room['id']}")[0] == 200

    try:
        fuzz()
    finally:
        client.run(bot.close())
        fuzz_server.request("DELETE", f"/api/rooms/{room['id']}/queue")
        fuzz_server.request("POST", f"/api/rooms/{room['id']}/cohost/skip")
    assert fuzz_server.request("GET", "/api/rooms")[0] == 200


def say_everything_still_works(server: RunningServer, client: ClientLoop, speech_id: str, parallel: int = 1) -> None:
    async def say(n: int) -> None:
        good = GoodBot(await open_bot(server))
        await good.ws.send(json.dumps({"type": "say", "id": f"{speech_id}-{n}", "text": "Everything still works."}))
        ended = await good.ended(f"{speech_id}-{n}")
        assert ended["reason"] == "done" and ended["frames"] > 0
        await good.close()

    async def all_of_them() -> None:
        await asyncio.gather(*(say(n) for n in range(parallel)))

    client.run(all_of_them(), timeout=90)


def test_a_clean_say_still_completes_after_all_the_fuzzing(fuzz_server: RunningServer, client: ClientLoop,
                                                           rss_at_start: float | None) -> None:
    say_everything_still_works(fuzz_server, client, "last")
    if rss_at_start is not None:
        release_free_memory()
        grown = (resident_bytes() or 0) / 2**20 - rss_at_start
        assert grown < RSS_BOUND_MB, f"the fuzz run grew RSS by {grown:.0f} MB"

