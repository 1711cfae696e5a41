"""WebSocket protocol v1 for bot developers, sans I/O: messages in -> events, send_* -> messages out.

Text frames carry JSON control messages; binary frames carry audio. `BotConnection` holds one
connection's whole protocol state in both directions — authentication, the speeches it has open
and their sequence numbers — like the `websockets` library's own `protocol.py`: the server's
`bot_session.py` only moves messages between the socket and this object and acts on the events.
Every client message is validated: a bad one becomes an `error` message and the connection, its
speeches and every room keep working. The schema is documented in docs/protocol.md and served as JSON Schema
at /protocol.json (protocol_schema.py, built from CLIENT_FIELDS and the bounds here);
tests/test_protocol.py checks each rule without a network.

Binary audio frame (server -> client), little-endian:
    u8 version (=1) | u8 kind (=1 audio) | u16 id_len | id (utf-8) | u32 seq | PCM16 mono 48 kHz
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from voxroom.models.engine import VoiceRef

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024  # a control message; 10 MB of text gets `message_too_large`
MAX_TEXT_CHARS = 2000  # one `say`: about two minutes of speech
MAX_ID_CHARS = 64
MAX_ACTIVE_SPEECHES = 8  # queued or speaking, per connection
MIN_SPEED, MAX_SPEED = 0.5, 2.0

AUDIO_FORMAT = {"sample_rate": 48000, "channels": 1, "frame_ms": 20, "encoding": "pcm16le"}

_FRAME_VERSION = 1
_KIND_AUDIO = 1
_HEADER = struct.Struct("<BBH")
_SEQ = struct.Struct("<I")


class ProtocolError(Exception):
    """A client message we refuse; becomes an `error` message, never a closed connection."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.ref is not None:
            msg["ref"] = self.ref
        return msg


@dataclass(frozen=True)
class Hello:
    version: int
    token: str


@dataclass(frozen=True)
class Say:
    id: str
    text: str
    voice: VoiceRef | None = None  # None: not given (a room's co-host voice; the stock voice without a room)
    room: str | None = None
    lang: str = "auto"
    speed: float = 1.0


@dataclass(frozen=True)
class Cancel:
    id: str


@dataclass(frozen=True)
class Ping:
    id: str | None = None


@dataclass(frozen=True)
class Chat:
    """A chat event forwarded by a bot (any platform) into a room the co-host answers."""

    room: str
    event: dict[str, Any]


ClientMessage = Hello | Say | Cancel | Ping | Chat

CLIENT_FIELDS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    # type -> field -> (accepted python types, required)
    "hello": {"version": (int, True), "token": (str, True)},
    "say": {
        "id": (str, True),
        "text": (str, True),
        "voice": (str, False),
        "room": (str, False),
        "lang": (str, False),
        "speed": ((int, float), False),
    },
    "cancel": {"id": (str, True)},
    "ping": {"id": (str, False)},
    "chat": {"room": (str, True), "event": (dict, True)},
}
LANGS = frozenset({"auto", "en", "zh", "ja", "ko", "yue"})


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Validate one client text frame and return its typed message, or raise ProtocolError."""
    if isinstance(data, bytes):
        raise ProtocolError("binary_not_accepted", "clients send JSON text frames; binary frames are server-to-client audio")
    if len(data) > MAX_MESSAGE_BYTES:  # chars <= bytes, so this is a cheap first bound
        raise ProtocolError("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES} bytes")
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message_too_large", f"a message may be at most {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = loads_bounded(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError, as are huge integers
        raise ProtocolError("bad_json", f"message is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object with a 'type' field")
    check_encodable(obj)
    kind = obj.get("type")
    ref = obj.get("id") if isinstance(obj.get("id"), str) else None
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "a message must have a string 'type' field", ref)
    spec = CLIENT_FIELDS.get(kind)
    if spec is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}; expected one of {sorted(CLIENT_FIELDS)}", ref)
    for name, (types, required) in spec.items():
        if name not in obj or obj[name] is None:
            if required:
                raise ProtocolError("invalid_field", f"'{kind}' needs the field '{name}'", ref)
            continue
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, types):
            want = types.__name__ if isinstance(types, type) else "number"
            raise ProtocolError("invalid_field", f"'{kind}.{name}' must be a {want}", ref)
    unknown = set(obj) - set(spec) - {"type"}
    if unknown:
        raise ProtocolError("invalid_field", f"'{kind}' has unknown fields: {sorted(unknown)}", ref)

    if kind == "hello":
        return Hello(version=obj["version"], token=obj["token"])
    if kind == "ping":
        return Ping(id=obj.get("id"))
    if kind == "chat":
        return Chat(room=_check_id(obj["room"], "chat.room", ref), event=obj["event"])
    speech_id = _check_id(obj["id"], f"{kind}.id", ref)
    if kind == "cancel":
        return Cancel(id=speech_id)
    text = obj["text"]
    if not text.strip():
        raise ProtocolError("invalid_field", "'say.text' is empty", ref)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError("text_too_long", f"'say.text' may be at most {MAX_TEXT_CHARS} characters (got {len(text)})", ref)
    lang = obj.get("lang") or "auto"
    if lang not in LANGS:
        raise ProtocolError("invalid_field", f"'say.lang' must be one of {sorted(LANGS)}", ref)
    speed = float(obj.get("speed", 1.0))
    if not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise ProtocolError("invalid_field", "'say.speed' must be between 0.5 and 2.0", ref)
    voice = obj.get("voice")
    room = obj.get("room")
    return Say(
        id=speech_id,
        text=text,
        voice=VoiceRef.parse(_check_id(voice, "say.voice", ref)) if voice is not None else None,
        room=_check_id(room, "say.room", ref) if room is not None else None,
        lang=lang,
        speed=speed,
    )


MAX_INT_DIGITS = 30  # no field needs more; Python refuses to parse past 4,300 digits anyway


def loads_bounded(data: str | bytes) -> Any:
    """json.loads with numbers bounded where they are parsed: at most MAX_INT_DIGITS digits, no NaN or
    Infinity (ValueError otherwise). Every JSON body voxroom reads goes through here."""
    return json.loads(data, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)


def check_encodable(obj: Any) -> None:
    """ProtocolError `invalid_text` when a parsed JSON value holds a string that is not valid Unicode
    (a lone surrogate, which JSON's \\ud800 escapes allow): it could never be stored, shown or sent on."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid_text", "strings must be valid Unicode (a lone surrogate is not)") from None


def _bounded_int(text: str) -> int | float:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_id(value: str, where: str, ref: str | None) -> str:
    if not 1 <= len(value) <= MAX_ID_CHARS or not value.isprintable():
        raise ProtocolError("invalid_field", f"'{where}' must be 1-{MAX_ID_CHARS} printable characters", ref)
    return value


class BotConnection:
    """One bot connection, both directions, no I/O.

    `receive(data)` validates a client message against the connection's state and returns it for
    the I/O layer to act on, or None when it was refused (the `error` is already queued to send).
    The `send_*` methods queue what the server says; `data_to_send()` hands the queue to the socket.
    A speech id is "open" from its accepted `say` until `send_ended`; at most MAX_ACTIVE_SPEECHES at
    once, and `send_ended` is the only thing that frees one.
    """

    def __init__(self) -> None:
        self.authenticated = False
        self.session: str | None = None
        self._open: dict[str, int] = {}  # speech id -> next audio sequence number
        self._out: list[str | bytes] = []

    # -- in ------------------------------------------------------------------------------------
    def receive(self, data: str | bytes) -> ClientMessage | None:
        try:
            return self._check(parse_client_message(data))
        except ProtocolError as exc:
            self.send_error(exc)
            return None

    def _check(self, msg: ClientMessage) -> ClientMessage:
        if isinstance(msg, Hello):
            if self.authenticated:
                raise ProtocolError("already_authenticated", "hello was already accepted on this connection")
            if msg.version != PROTOCOL_VERSION:
                raise ProtocolError(
                    "unsupported_version", f"this server speaks protocol version {PROTOCOL_VERSION}, not {msg.version}"
                )
            return msg
        if not self.authenticated:
            raise ProtocolError("not_authenticated", "send {'type': 'hello', 'version': 1, 'token': ...} first")
        if isinstance(msg, Say):
            if msg.id in self._open:
                raise ProtocolError("duplicate_id", f"speech id {msg.id!r} is already active", msg.id)
            if len(self._open) >= MAX_ACTIVE_SPEECHES:
                raise ProtocolError("busy", f"at most {MAX_ACTIVE_SPEECHES} speeches may be queued or speaking", msg.id)
            self._open[msg.id] = 0
        elif isinstance(msg, Cancel) and msg.id not in self._open:
            raise ProtocolError("unknown_speech", f"no active speech with id {msg.id!r}", msg.id)
        return msg

    def is_open(self, speech_id: str) -> bool:
        return speech_id in self._open

    @property
    def open_speeches(self) -> list[str]:
        return list(self._open)

    # -- out -----------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self._out.append(encode(message))

    def send_welcome(self, session: str, account: str) -> None:
        self.authenticated = True
        self.session = session
        self.send(welcome(session, account))

    def send_error(self, error: ProtocolError) -> None:
        self.send(error.to_message())

    def send_refused(self, speech_id: str, error: ProtocolError) -> None:
        """A `say` the server could not take (unknown room or voice, a busy room): its id is free again."""
        self._open.pop(speech_id, None)
        self.send_error(error)

    def send_pong(self, ping_id: str | None) -> None:
        self.send({"type": "pong", **({"id": ping_id} if ping_id else {})})

    def send_queued(self, speech_id: str, room: str | None = None) -> None:
        self.send({"type": "speech.queued", "id": speech_id, **({"room": room} if room else {})})

    def send_started(self, speech_id: str) -> None:
        if speech_id in self._open:
            self.send({"type": "speech.started", "id": speech_id})

    def send_audio(self, speech_id: str, pcm16: bytes) -> None:
        seq = self._open.get(speech_id)
        if seq is None:
            return  # ended already: late frames are not the client's any more
        self._open[speech_id] = seq + 1
        self._out.append(encode_audio(speech_id, seq, pcm16))

    def send_ended(self, speech_id: str, reason: str, frames: int, error: str | None = None) -> None:
        if self._open.pop(speech_id, None) is None:
            return
        msg: dict[str, Any] = {"type": "speech.ended", "id": speech_id, "reason": reason, "frames": frames}
        if error:
            msg["error"] = error
        self.send(msg)

    def data_to_send(self) -> list[str | bytes]:
        out, self._out = self._out, []
        return out


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def welcome(session: str, account: str) -> dict[str, Any]:
    return {
        "type": "welcome",
        "version": PROTOCOL_VERSION,
        "session": session,
        "account": account,
        "audio": AUDIO_FORMAT,
        "limits": {"max_message_bytes": MAX_MESSAGE_BYTES, "max_text_chars": MAX_TEXT_CHARS,
                   "max_active_speeches": MAX_ACTIVE_SPEECHES},
    }


def encode_audio(speech_id: str, seq: int, pcm16: bytes) -> bytes:
    sid = speech_id.encode("utf-8")
    return _HEADER.pack(_FRAME_VERSION, _KIND_AUDIO, len(sid)) + sid + _SEQ.pack(seq) + pcm16


@dataclass(frozen=True)
class AudioFrameMessage:
    speech_id: str
    seq: int
    pcm16: bytes


def decode_audio(data: bytes) -> AudioFrameMessage:
    if len(data) < _HEADER.size:
        raise ProtocolError("bad_frame", "audio frame shorter than its header")
    version, kind, id_len = _HEADER.unpack_from(data)
    if version != _FRAME_VERSION or kind != _KIND_AUDIO:
        raise ProtocolError("bad_frame", f"unknown frame version/kind {version}/{kind}")
    start = _HEADER.size
    end = start + id_len
    if len(data) < end + _SEQ.size:
        raise ProtocolError("bad_frame", "audio frame truncated")
    (seq,) = _SEQ.unpack_from(data, end)
    return AudioFrameMessage(data[start:end].decode("utf-8"), seq, data[end + _SEQ.size :])
