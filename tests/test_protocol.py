"""Protocol v1 without a network: every malformed message gets a clear error, state rules hold, and the
connection object produces every byte the server sends (sans I/O, both directions)."""

from __future__ import annotations

import json

import pytest

from voxroom.models.engine import VoiceRef
from voxroom.streaming import protocol
from voxroom.streaming.protocol import BotConnection, ProtocolError, parse_client_message


def authed() -> BotConnection:
    conn = BotConnection()
    assert isinstance(conn.receive(json.dumps({"type": "hello", "version": 1, "token": "t"})), protocol.Hello)
    conn.send_welcome("sess", "acct")
    conn.data_to_send()
    return conn


def sent(conn: BotConnection) -> list[dict]:
    return [json.loads(m) for m in conn.data_to_send() if isinstance(m, str)]


def error_code(data: str | bytes, conn: BotConnection | None = None) -> str:
    conn = conn or authed()
    assert conn.receive(data) is None
    error = sent(conn)[-1]
    assert error["type"] == "error" and error["message"]  # every error explains itself
    return str(error["code"])


@pytest.mark.parametrize(
    "data, code",
    [
        ("{not json", "bad_json"),
        ("", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"hello"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 5}', "bad_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "say", "text": "hi"}', "invalid_field"),
        ('{"type": "say", "id": "a"}', "invalid_field"),
        ('{"type": "say", "id": 7, "text": "hi"}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": ["hi"]}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "   "}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "hi", "speed": "fast"}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "hi", "speed": true}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "hi", "speed": 9}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "hi", "lang": "xx"}', "invalid_field"),
        ('{"type": "say", "id": "a", "text": "hi", "colour": "red"}', "invalid_field"),
        ('{"type": "say", "id": "", "text": "hi"}', "invalid_field"),
        ('{"type": "say", "id": "a\\nb", "text": "hi"}', "invalid_field"),
        ('{"type": "cancel"}', "invalid_field"),
        ('{"type": "chat", "room": "r", "event": "hi"}', "invalid_field"),
        (b"\x01\x02binary", "binary_not_accepted"),
    ],
)
def test_malformed_messages_get_an_error(data: str | bytes, code: str) -> None:
    assert error_code(data) == code


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    assert error_code("[" * 100_000 + "]" * 100_000) in ("bad_json", "message_too_large")
    assert error_code('{"type":"ping","id":' + "[" * 5000 + "]" * 5000 + "}") in ("bad_json", "invalid_field")


def test_oversized_text_and_messages() -> None:
    long_text = "a" * (protocol.MAX_TEXT_CHARS + 1)
    assert error_code(json.dumps({"type": "say", "id": "a", "text": long_text})) == "text_too_long"
    ten_mb = json.dumps({"type": "say", "id": "a", "text": "x" * 10_000_000})
    assert error_code(ten_mb) == "message_too_large"
    # multi-byte characters count as bytes
    wide = json.dumps({"type": "say", "id": "a", "text": "語" * 30_000}, ensure_ascii=False)
    assert len(wide) < protocol.MAX_MESSAGE_BYTES < len(wide.encode())
    assert error_code(wide) == "message_too_large"


def test_error_message_carries_the_speech_id() -> None:
    conn = authed()
    assert conn.receive(json.dumps({"type": "say", "id": "s9", "text": "x" * 3000})) is None
    [msg] = sent(conn)
    assert msg == {"type": "error", "code": "text_too_long", "message": msg["message"], "ref": "s9"}


@pytest.mark.parametrize("data, code", [
    ('{"type": "say", "id": "a", "text": "hi", "speed": ' + "9" * 400 + "}", "bad_json"),
    ('{"type": "say", "id": "a", "text": "hi", "speed": 1' + "0" * 400 + ".5}", "bad_json"),
    ('{"type": "say", "id": "a", "text": "hi", "speed": 1e400}', "bad_json"),
    ('{"type": "say", "id": "a", "text": "hi", "speed": NaN}', "bad_json"),
    ('{"type": "ping", "id": "p", "n": ' + "1" * 5000 + "}", "bad_json"),
    ('{"type": "say", "id": "\\ud800", "text": "hi"}', "invalid_text"),
    ('{"type": "say", "id": "\ud800", "text": "hi"}', "invalid_text"),
    ('{"type": "say", "id": "a", "text": "hi \udc00 there"}', "invalid_text"),
])
def test_hostile_numbers_and_lone_surrogates_are_clear_errors(data: str, code: str) -> None:
    conn = authed()
    assert error_code(data, conn) == code
    for message in conn.data_to_send():  # whatever was queued can be sent as UTF-8
        assert isinstance(message, bytes) or message.encode("utf-8")
    assert isinstance(conn.receive('{"type": "ping", "id": "still"}'), protocol.Ping)  # and it keeps working


def test_hello_must_come_first_and_once() -> None:
    fresh = BotConnection()
    assert error_code(json.dumps({"type": "say", "id": "a", "text": "hi"}), fresh) == "not_authenticated"
    assert error_code(json.dumps({"type": "hello", "version": 2, "token": "t"}), fresh) == "unsupported_version"
    assert error_code(json.dumps({"type": "hello", "version": "1", "token": "t"}), fresh) == "invalid_field"
    state = authed()
    assert error_code(json.dumps({"type": "hello", "version": 1, "token": "t"}), state) == "already_authenticated"


def test_speech_ids_are_unique_while_active_and_capped() -> None:
    state = authed()
    say = {"type": "say", "id": "a", "text": "hi"}
    assert isinstance(state.receive(json.dumps(say)), protocol.Say)
    assert error_code(json.dumps(say), state) == "duplicate_id"
    state.send_ended("a", "done", 0)
    assert isinstance(state.receive(json.dumps(say)), protocol.Say)  # reusable once ended
    for i in range(protocol.MAX_ACTIVE_SPEECHES - 1):
        state.receive(json.dumps({**say, "id": f"n{i}"}))
    assert error_code(json.dumps({**say, "id": "over"}), state) == "busy"
    assert error_code(json.dumps({"type": "cancel", "id": "nope"}), state) == "unknown_speech"
    assert state.receive(json.dumps({"type": "cancel", "id": "a"})) == protocol.Cancel("a")
    state.data_to_send()
    state.send_refused("n0", ProtocolError("unknown_room", "no such room", "n0"))  # a say the server refused
    assert isinstance(state.receive(json.dumps({**say, "id": "again"})), protocol.Say)  # its slot is free


def test_the_connection_numbers_audio_and_closes_speeches() -> None:
    conn = authed()
    conn.receive(json.dumps({"type": "say", "id": "s", "text": "hi"}))
    conn.send_queued("s", "room1")
    conn.send_started("s")
    conn.send_audio("s", b"\x00\x00" * 960)
    conn.send_audio("s", b"\x01\x00" * 960)
    conn.send_ended("s", "cancelled", 2)
    conn.send_audio("s", b"\x00\x00" * 960)  # a late frame after the end is not sent
    conn.send_ended("s", "done", 2)  # nor a second end
    out = conn.data_to_send()
    texts = [json.loads(m) for m in out if isinstance(m, str)]
    frames = [protocol.decode_audio(m) for m in out if isinstance(m, bytes)]
    assert [t["type"] for t in texts] == ["speech.queued", "speech.started", "speech.ended"]
    assert texts[0]["room"] == "room1" and texts[2] == {"type": "speech.ended", "id": "s", "reason": "cancelled",
                                                        "frames": 2}
    assert [(f.speech_id, f.seq) for f in frames] == [("s", 0), ("s", 1)]
    assert not conn.is_open("s") and conn.data_to_send() == []


def test_valid_messages_parse_to_typed_values() -> None:
    msg = parse_client_message(json.dumps({"type": "say", "id": "s1", "text": "Hello", "room": "r1",
                                           "voice": "stock", "lang": "en", "speed": 1.25}))
    assert msg == protocol.Say(id="s1", text="Hello", voice=VoiceRef(), room="r1", lang="en", speed=1.25)
    other = parse_client_message(json.dumps({"type": "say", "id": "s2", "text": "Hi", "voice": "v_abc"}))
    assert isinstance(other, protocol.Say) and other.voice == VoiceRef("v_abc") and other.room is None
    assert parse_client_message('{"type":"ping"}') == protocol.Ping()
    chat = parse_client_message('{"type":"chat","room":"r","event":{"kind":"message","text":"hi"}}')
    assert chat == protocol.Chat(room="r", event={"kind": "message", "text": "hi"})


def test_audio_frames_round_trip_and_reject_garbage() -> None:
    pcm = bytes(range(256)) * 7 + b"\x00\x01"
    frame = protocol.encode_audio("speech-語", 41, pcm)
    decoded = protocol.decode_audio(frame)
    assert (decoded.speech_id, decoded.seq, decoded.pcm16) == ("speech-語", 41, pcm)
    for bad in (b"", b"\x01", b"\x02\x01\x00\x00", frame[:6], b"\x01\x09\x00\x00\x00\x00\x00\x00"):
        with pytest.raises(ProtocolError):
            protocol.decode_audio(bad)


def test_welcome_describes_audio_and_limits() -> None:
    msg = json.loads(protocol.encode(protocol.welcome("sess", "acct")))
    assert msg["type"] == "welcome" and msg["version"] == 1
    assert msg["audio"] == {"sample_rate": 48000, "channels": 1, "frame_ms": 20, "encoding": "pcm16le"}
    assert msg["limits"]["max_text_chars"] == protocol.MAX_TEXT_CHARS
