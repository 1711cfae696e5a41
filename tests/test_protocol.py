"""Protocol v1 without a network: every malformed message gets a clear error, state rules hold."""

from __future__ import annotations

import json

import pytest

from voxroom.streaming import protocol
from voxroom.streaming.protocol import ConnectionState, ProtocolError, parse_client_message


def authed() -> ConnectionState:
    state = ConnectionState()
    state.receive(json.dumps({"type": "hello", "version": 1, "token": "t"}))
    state.accept_hello()
    return state


def error_code(data: str | bytes, state: ConnectionState | None = None) -> str:
    with pytest.raises(ProtocolError) as info:
        (state or authed()).receive(data)
    assert info.value.message  # every error explains itself
    return info.value.code


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
    with pytest.raises(ProtocolError) as info:
        authed().receive(json.dumps({"type": "say", "id": "s9", "text": "x" * 3000}))
    msg = info.value.to_message()
    assert msg == {"type": "error", "code": "text_too_long", "message": info.value.message, "ref": "s9"}


def test_hello_must_come_first_and_once() -> None:
    fresh = ConnectionState()
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
    state.speech_finished("a")
    assert isinstance(state.receive(json.dumps(say)), protocol.Say)  # reusable once ended
    for i in range(protocol.MAX_ACTIVE_SPEECHES - 1):
        state.receive(json.dumps({**say, "id": f"n{i}"}))
    assert error_code(json.dumps({**say, "id": "over"}), state) == "busy"
    assert error_code(json.dumps({"type": "cancel", "id": "nope"}), state) == "unknown_speech"
    assert state.receive(json.dumps({"type": "cancel", "id": "a"})) == protocol.Cancel("a")


def test_valid_messages_parse_to_typed_values() -> None:
    msg = parse_client_message(json.dumps({"type": "say", "id": "s1", "text": "Hello", "room": "r1",
                                           "voice": "stock", "lang": "en", "speed": 1.25}))
    assert msg == protocol.Say(id="s1", text="Hello", voice="stock", room="r1", lang="en", speed=1.25)
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
