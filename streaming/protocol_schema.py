"""The bot protocol's JSON Schema (draft 2020-12), served at `GET /protocol.json`.

Built from the codec's own tables and bounds in `protocol.py` (the message types and fields it
accepts, MAX_ID_CHARS, MAX_TEXT_CHARS, the languages, the speed range), so adding a field there adds
it here. `#/$defs/client` is what a client may send, `#/$defs/server` what the server sends; the
binary audio frame is described in `x-audio-frame` (JSON Schema cannot describe bytes).
`tests/test_protocol_schema.py` keeps the schema and the codec in step: every sample the codec takes
validates, every refusal the schema can express is refused by it too, every message the server
emits validates.
"""

from __future__ import annotations

import copy
from typing import Any

from voxroom.agent.speech import ENDED
from voxroom.streaming import protocol

Json = dict[str, Any]

SPEED = {"type": "number", "minimum": protocol.MIN_SPEED, "maximum": protocol.MAX_SPEED}
# printable: no control characters (a `not` of an unanchored pattern: `$` differs between regex dialects)
ID = {"type": "string", "minLength": 1, "maxLength": protocol.MAX_ID_CHARS, "not": {"pattern": r"[\x00-\x1f\x7f]"}}
# What the codec checks beyond a field's JSON type (types come from protocol.CLIENT_FIELDS).
_BOUNDS: dict[tuple[str, str], Json] = {
    ("hello", "version"): {"const": protocol.PROTOCOL_VERSION},
    ("say", "id"): ID,
    ("say", "text"): {"type": "string", "minLength": 1, "maxLength": protocol.MAX_TEXT_CHARS, "pattern": r"\S"},
    ("say", "voice"): {**ID, "description": "\"stock\" or one of the account's voice ids"},
    ("say", "room"): ID,
    ("say", "lang"): {"enum": sorted(protocol.LANGS)},
    ("say", "speed"): SPEED,
    ("cancel", "id"): ID,
    ("chat", "room"): ID,
    ("chat", "event"): {"type": "object", "description": "a chat event: `type` (message, question, gift, follow, "
                                                         "join), `user`, `text`, … (docs/protocol.md)"},
}
_PY_TYPES = {str: "string", int: "integer", float: "number", dict: "object"}
REASONS = sorted({str(state) for state in ENDED} | {"moderated"})


def _json_type(types: type | tuple[type, ...]) -> Json:
    kinds = [types] if isinstance(types, type) else list(types)
    names = sorted({_PY_TYPES[t] for t in kinds} - ({"integer"} if float in kinds else set()))
    return {"type": names[0] if len(names) == 1 else names}


def _message(kind: str, fields: dict[str, Json], required: list[str], description: str = "") -> Json:
    out: Json = {"type": "object", "properties": {"type": {"const": kind}, **fields},
                 "required": ["type", *required], "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def _client_messages() -> dict[str, Json]:
    """From the codec's table; an optional field may also be null, which the codec reads as absent."""
    out = {}
    for kind, spec in protocol.CLIENT_FIELDS.items():
        fields = {}
        for name, (types, required) in spec.items():
            field = _BOUNDS.get((kind, name), _json_type(types))
            fields[name] = field if required else {"anyOf": [field, {"type": "null"}]}
        out[kind] = _message(kind, fields, [name for name, (_, required) in spec.items() if required])
    return out


def _server_messages() -> dict[str, Json]:
    counts = {"type": "integer", "minimum": 1}
    return {
        "welcome": _message("welcome", {
            "version": {"const": protocol.PROTOCOL_VERSION}, "session": {"type": "string"},
            "account": {"type": "string"},
            "audio": {"type": "object", "properties": {k: {"const": v} for k, v in protocol.AUDIO_FORMAT.items()},
                      "required": sorted(protocol.AUDIO_FORMAT), "additionalProperties": False},
            "limits": {"type": "object", "properties": {"max_message_bytes": counts, "max_text_chars": counts,
                                                        "max_active_speeches": counts},
                       "required": ["max_message_bytes", "max_text_chars", "max_active_speeches"],
                       "additionalProperties": False},
        }, ["version", "session", "account", "audio", "limits"], "the answer to an accepted hello"),
        "error": _message("error", {"code": {"type": "string", "pattern": "^[a-z_]+$"}, "message": {"type": "string"},
                                    "ref": {"type": "string"}},
                          ["code", "message"], "a refused message; `ref` is the id of the say/cancel it was about"),
        "pong": _message("pong", {"id": {"type": "string"}}, []),
        "speech.queued": _message("speech.queued", {"id": ID, "room": ID}, ["id"]),
        "speech.started": _message("speech.started", {"id": ID}, ["id"]),
        "speech.ended": _message("speech.ended", {"id": ID, "reason": {"enum": REASONS},
                                                  "frames": {"type": "integer", "minimum": 0},
                                                  "error": {"type": "string"}}, ["id", "reason", "frames"]),
    }


def _schema() -> Json:
    client, server = _client_messages(), _server_messages()
    defs: Json = {**{f"client.{k}": v for k, v in client.items()}, **{f"server.{k}": v for k, v in server.items()}}
    defs["client"] = {"oneOf": [{"$ref": f"#/$defs/client.{k}"} for k in client]}
    defs["server"] = {"oneOf": [{"$ref": f"#/$defs/server.{k}"} for k in server]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "/protocol.json",
        "title": f"voxroom bot protocol v{protocol.PROTOCOL_VERSION} (WebSocket /ws)",
        "description": "JSON text frames, one message each, at most "
                       f"{protocol.MAX_MESSAGE_BYTES} bytes; a client sends `#/$defs/client` (hello first), the "
                       "server sends `#/$defs/server` and binary audio frames (`x-audio-frame`). docs/protocol.md "
                       "says what each message does.",
        "oneOf": [{"$ref": "#/$defs/client"}, {"$ref": "#/$defs/server"}],
        "$defs": defs,
        "x-audio-frame": {
            "direction": "server to client, binary WebSocket frames",
            "layout": "little-endian: u8 version (1) | u8 kind (1 = audio) | u16 id_len | id (UTF-8) | u32 seq | PCM",
            "audio": protocol.AUDIO_FORMAT,
        },
        "x-limits": {"max_message_bytes": protocol.MAX_MESSAGE_BYTES, "max_text_chars": protocol.MAX_TEXT_CHARS,
                     "max_id_chars": protocol.MAX_ID_CHARS, "max_active_speeches": protocol.MAX_ACTIVE_SPEECHES},
    }


_SCHEMA = _schema()


def protocol_schema() -> Json:
    """A fresh copy of the schema (callers may change theirs)."""
    return copy.deepcopy(_SCHEMA)
