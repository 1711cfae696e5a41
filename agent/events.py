"""Typed chat events: what the co-host can react to, parsed from whatever a platform connector sends.

A connector (Twitch IRC, Bilibili danmaku, the WebSocket protocol, the host console) turns its
own wire format into a plain dict and calls `parse_event`; `parse_twitch_privmsg` shows that a
connector is one small function. A message addressed to the co-host (`@name ...` or a configured
prefix such as `?`) becomes a question, which the speech queue ranks above ordinary chat.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_FIELD_CHARS = 2000  # far above what any platform sends; moderation applies the room's own limit


class EventKind(StrEnum):
    MESSAGE = "message"
    QUESTION = "question"
    GIFT = "gift"  # gifts, superchats, bits: anything that carries an amount
    FOLLOW = "follow"
    JOIN = "join"
    IDLE = "idle"  # made by the co-host itself when chat is quiet, never parsed from outside
    HOST = "host"  # a line the host typed for the co-host to say word for word (console only)


class EventError(ValueError):
    """A chat event dict that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class ChatEvent:
    kind: EventKind
    user: str
    text: str
    platform: str
    timestamp: float
    id: str
    amount: float = 0.0
    currency: str = ""
    gift: str = ""  # the gift's name ("rose", "superchat", "bits")


_ids = itertools.count(1)


def _text_field(data: Mapping[str, Any], name: str, *, required: bool, default: str = "") -> str:
    value = data.get(name, None)
    if value is None:
        if required:
            raise EventError(f"{name!r} is required")
        return default
    if not isinstance(value, str):
        raise EventError(f"{name!r} must be a string, not {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise EventError(f"{name!r} is longer than {MAX_FIELD_CHARS} characters")
    return value


def addressed_question(text: str, names: Sequence[str], prefixes: Sequence[str]) -> str | None:
    """The question text if `text` is addressed to the co-host, else None."""
    stripped = text.strip()
    for name in names:
        match = re.match(rf"@{re.escape(name)}\b[\s,:，：]*", stripped, flags=re.IGNORECASE)
        if match:
            return stripped[match.end():].strip()
    for prefix in prefixes:
        if prefix and stripped.startswith(prefix):
            return stripped[len(prefix):].strip()
    return None


def parse_event(
    data: Mapping[str, Any],
    *,
    now: float,
    cohost_names: Sequence[str] = (),
    question_prefixes: Sequence[str] = (),
) -> ChatEvent:
    """Validate a dict into a `ChatEvent`; raises `EventError` with a clear message.

    Fields: type (message|question|gift|superchat|follow|join), user, text, platform, timestamp,
    id, amount, currency, gift. Missing id and timestamp are filled in (`now` is the timestamp).
    """
    if not isinstance(data, Mapping):
        raise EventError("an event must be a JSON object")
    raw_type = _text_field(data, "type", required=True).lower()
    aliases = {"superchat": EventKind.GIFT, "chat": EventKind.MESSAGE, "danmaku": EventKind.MESSAGE}
    try:
        kind = aliases.get(raw_type) or EventKind(raw_type)
    except ValueError:
        raise EventError(f"unknown event type {raw_type!r}") from None
    if kind in (EventKind.IDLE, EventKind.HOST):
        raise EventError(f"{raw_type!r} events are made by the co-host and its console, not sent to it")
    user = _text_field(data, "user", required=True).strip()
    if not user:
        raise EventError("'user' must not be empty")
    text = _text_field(data, "text", required=kind in (EventKind.MESSAGE, EventKind.QUESTION))
    if kind in (EventKind.MESSAGE, EventKind.QUESTION) and not text.strip():
        raise EventError("'text' must not be empty")
    platform = _text_field(data, "platform", required=False, default="web")
    event_id = data.get("id")
    if event_id is None:
        event_id = f"ev{next(_ids)}"
    elif not isinstance(event_id, str | int) or isinstance(event_id, bool):
        raise EventError("'id' must be a string or an integer")
    timestamp = data.get("timestamp", now)
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise EventError("'timestamp' must be a number")
    amount = data.get("amount", 0.0)
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
        raise EventError("'amount' must be a non-negative number")
    currency = _text_field(data, "currency", required=False)
    gift = _text_field(data, "gift", required=False, default="superchat" if raw_type == "superchat" else "")
    if kind is EventKind.MESSAGE:
        question = addressed_question(text, cohost_names, question_prefixes)
        if question:
            kind, text = EventKind.QUESTION, question
    return ChatEvent(
        kind=kind, user=user, text=text.strip(), platform=platform, timestamp=float(timestamp),
        id=str(event_id), amount=float(amount), currency=currency, gift=gift,
    )


# Twitch IRC: "@tags :nick!nick@nick.tmi.twitch.tv PRIVMSG #channel :text"
_PRIVMSG = re.compile(r"^(?:@(?P<tags>\S+) )?:(?P<nick>[^!\s]+)!\S* PRIVMSG #\S+ :(?P<text>.*)$")


def _unescape_tag(value: str) -> str:
    escapes = {"\\s": " ", "\\:": ";", "\\\\": "\\", "\\r": "\r", "\\n": "\n"}
    return re.sub(r"\\[s:\\rn]", lambda m: escapes[m.group(0)], value)


def parse_twitch_privmsg(
    line: str, *, now: float, cohost_names: Sequence[str] = (), question_prefixes: Sequence[str] = ()
) -> ChatEvent | None:
    """A chat event from one Twitch IRC line, or None for lines that are not chat (PING, JOIN...).

    Cheering (the `bits` tag) is a gift of that many bits.
    """
    match = _PRIVMSG.match(line.rstrip("\r\n"))
    if not match:
        return None
    tags: dict[str, str] = {}
    for pair in (match.group("tags") or "").split(";"):
        if pair:
            key, _, value = pair.partition("=")
            tags[key] = _unescape_tag(value)
    data: dict[str, Any] = {
        "type": "message",
        "user": tags.get("display-name") or match.group("nick"),
        "text": match.group("text"),
        "platform": "twitch",
    }
    if tags.get("id"):
        data["id"] = tags["id"]
    if tags.get("tmi-sent-ts", "").isdigit():
        data["timestamp"] = int(tags["tmi-sent-ts"]) / 1000.0
    if tags.get("bits", "").isdigit():
        data.update(type="gift", amount=float(tags["bits"]), currency="bits", gift="bits")
    return parse_event(data, now=now, cohost_names=cohost_names, question_prefixes=question_prefixes)
