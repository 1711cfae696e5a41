"""/protocol.json, the bot protocol's JSON Schema, in step with the codec (`streaming/protocol.py`):
every message type the codec takes or the server sends is in it, what the codec accepts validates,
what it refuses for a reason a schema can say is refused by the schema too, and the server serves it."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from conftest import RunningServer
from voxroom.streaming import protocol
from voxroom.streaming.protocol import BotConnection, ProtocolError, parse_client_message
from voxroom.streaming.protocol_schema import protocol_schema

SCHEMA = protocol_schema()
Draft202012Validator.check_schema(SCHEMA)
CLIENT = Draft202012Validator({**SCHEMA, "$ref": "#/$defs/client"})
SERVER = Draft202012Validator({**SCHEMA, "$ref": "#/$defs/server"})
ANY = Draft202012Validator(SCHEMA)


def codec_accepts(message: dict[str, Any]) -> bool:
    """What the codec takes from a client, state aside (hello is checked as a first message)."""
    try:
        msg = parse_client_message(json.dumps(message))
    except ProtocolError:
        return False
    return not isinstance(msg, protocol.Hello) or msg.version == protocol.PROTOCOL_VERSION


def server_messages() -> list[dict[str, Any]]:
    """Every kind of message BotConnection sends, with and without its optional fields."""
    conn = BotConnection()
    conn.receive(json.dumps({"type": "hello", "version": 1, "token": "t"}))
    conn.send_welcome("sess", "acct")
    conn.receive("{nope")
    for speech_id in ("a", "b"):
        conn.receive(json.dumps({"type": "say", "id": speech_id, "text": "hi"}))
    conn.receive(json.dumps({"type": "say", "id": "a", "text": "again"}))  # duplicate_id, with a ref
    conn.send_pong(None)
    conn.send_pong("p1")
    conn.send_queued("a")
    conn.send_queued("b", room="room-1")
    conn.send_started("a")
    conn.send_audio("a", b"\x00\x00" * 960)
    conn.send_ended("a", "done", 1)
    conn.send_ended("b", "failed", 0, error="the engine failed")
    conn.send_refused("c", ProtocolError("unknown_voice", "no such voice", "c"))
    return [json.loads(m) for m in conn.data_to_send() if isinstance(m, str)]


def test_every_message_type_is_in_the_schema() -> None:
    defs = SCHEMA["$defs"]
    assert {k.removeprefix("client.") for k in defs if k.startswith("client.")} == set(protocol.CLIENT_FIELDS)
    for kind, spec in protocol.CLIENT_FIELDS.items():
        assert set(defs[f"client.{kind}"]["properties"]) == {"type", *spec}
        assert set(defs[f"client.{kind}"]["required"]) == {"type", *(n for n, (_, req) in spec.items() if req)}
    sent = server_messages()
    assert {m["type"] for m in sent} == {k.removeprefix("server.") for k in defs if k.startswith("server.")}
    for message in sent:
        SERVER.validate(message)
        ANY.validate(message)
    assert SCHEMA["x-audio-frame"]["audio"] == protocol.AUDIO_FORMAT
    assert SCHEMA["x-limits"]["max_text_chars"] == protocol.MAX_TEXT_CHARS


@pytest.mark.parametrize("message", [
    {"type": "hello", "version": 1, "token": "vxr_x"},
    {"type": "say", "id": "a", "text": "Hello there."},
    {"type": "say", "id": "a" * 64, "text": "x" * protocol.MAX_TEXT_CHARS, "voice": "stock", "room": "r1",
     "lang": "zh", "speed": 2},
    {"type": "say", "id": "a", "text": "hi", "voice": None, "speed": 0.5},
    {"type": "cancel", "id": "a"},
    {"type": "ping"},
    {"type": "ping", "id": "p"},
    {"type": "chat", "room": "r1", "event": {"type": "message", "user": "u", "text": "hi"}},
])
def test_what_the_codec_accepts_validates(message: dict[str, Any]) -> None:
    assert codec_accepts(message)
    CLIENT.validate(message)


@pytest.mark.parametrize("message", [
    {}, {"type": 5}, {"type": "dance"},
    {"type": "hello", "version": 2, "token": "t"}, {"type": "hello", "version": True, "token": "t"},
    {"type": "say", "text": "hi"}, {"type": "say", "id": "a"}, {"type": "say", "id": 7, "text": "hi"},
    {"type": "say", "id": "a", "text": "   "}, {"type": "say", "id": "a", "text": "x" * (protocol.MAX_TEXT_CHARS + 1)},
    {"type": "say", "id": "a", "text": "hi", "speed": "fast"}, {"type": "say", "id": "a", "text": "hi", "speed": 9},
    {"type": "say", "id": "a", "text": "hi", "speed": True}, {"type": "say", "id": "a", "text": "hi", "lang": "xx"},
    {"type": "say", "id": "a", "text": "hi", "colour": "red"}, {"type": "say", "id": "", "text": "hi"},
    {"type": "say", "id": "a\nb", "text": "hi"}, {"type": "say", "id": "a" * 65, "text": "hi"},
    {"type": "cancel"}, {"type": "chat", "room": "r", "event": "hi"}, {"type": "ping", "id": 3},
])
def test_what_the_codec_refuses_the_schema_refuses(message: dict[str, Any]) -> None:
    assert not codec_accepts(message)
    assert not CLIENT.is_valid(message)


OTHER = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(-3, 3), st.lists(st.integers(), max_size=2))
IDS = st.one_of(st.text(string.printable + "\x00\x7f", max_size=70), st.sampled_from(["a" * 64, "a" * 65, "stock"]))
FIELD_VALUES = {  # per field: mostly the right type, near its bounds, sometimes anything
    "id": IDS, "room": IDS, "voice": IDS, "token": st.text(max_size=10),
    "text": st.one_of(st.text(string.printable, max_size=20), st.sampled_from([" ", " \t\n", "x" * 2000, "x" * 2001])),
    "lang": st.sampled_from([*sorted(protocol.LANGS), "xx", "", "EN"]),
    "speed": st.one_of(st.floats(0, 3), st.integers(0, 3)),
    "version": st.integers(0, 3),
    "event": st.one_of(st.dictionaries(st.sampled_from(["type", "user", "text"]), st.text(max_size=5), max_size=3),
                       st.text(max_size=3)),
}


@st.composite
def client_messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(protocol.CLIENT_FIELDS)))
    message: dict[str, Any] = {"type": kind}
    for name in protocol.CLIENT_FIELDS[kind]:
        presence = draw(st.integers(0, 9))
        if presence >= 2:
            message[name] = draw(FIELD_VALUES[name])
        elif presence == 1:
            message[name] = draw(OTHER)
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["colour", "ref", "type2"]))] = 1
    return message


@settings(max_examples=400, deadline=None)
@given(client_messages())
def test_the_schema_and_the_codec_agree(message: dict[str, Any]) -> None:
    """On ASCII (where the codec's isprintable() and the schema's pattern mean the same), a message
    validates exactly when the codec takes it."""
    assert CLIENT.is_valid(message) == codec_accepts(message), message


def test_the_server_serves_it(live_server: RunningServer) -> None:
    status, headers, raw = live_server.request("GET", "/protocol.json", token="")
    assert status == 200 and headers["content-type"].startswith("application/schema+json")
    assert json.loads(raw) == SCHEMA
