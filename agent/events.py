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
from dataclasses import dataclass, replace
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
    # Filled in by platform connectors (agent/connectors/); events from the console and the bot
    # protocol keep the defaults.
    badges: frozenset[str] = frozenset()  # "moderator", "subscriber", "vip", "first" (first-time chatter)
    tier: str = ""  # the platform's tier: "1000"/"2000"/"3000"/"prime" (Twitch subs), "1".."7" (YouTube)...
    value_usd: float = 0.0  # what a paid event is worth in US dollars (connectors/value.py's table)
    count: int = 1  # how many gifts one event stands for (a gift combo, five gifted subs)
    others: tuple[str, ...] = ()  # further gifters thanked together with `user` (a batch of small gifts)


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
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: it could never be shown, logged or sent on
        raise EventError(f"{name!r} is not valid Unicode (a lone surrogate)") from None
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
    elif isinstance(event_id, str):
        event_id = _text_field(data, "id", required=True)[:200]
    timestamp = data.get("timestamp", now)
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        raise EventError("'timestamp' must be a number")
    amount = data.get("amount", 0.0)
    if not isinstance(amount, int | float) or isinstance(amount, bool) or not 0 <= amount <= 1e9 \
            or amount != amount:
        raise EventError("'amount' must be a number from 0 to 1,000,000,000")
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


# IRC with IRCv3 tags, as Twitch speaks it: "@tags :nick!nick@nick.tmi.twitch.tv COMMAND #channel :text"
_IRC_LINE = re.compile(r"^(?:@(?P<tags>\S+) +)?(?::(?P<prefix>\S+) +)?(?P<command>[A-Za-z]+|\d{3})(?P<params>.*)$")
TWITCH_BADGES = {"moderator": "moderator", "broadcaster": "moderator", "subscriber": "subscriber",
                 "founder": "subscriber", "vip": "vip"}


@dataclass(frozen=True)
class IrcLine:
    tags: dict[str, str]
    nick: str  # the prefix up to "!" ("" when the line has no prefix)
    command: str
    params: list[str]  # the trailing parameter (after " :") is the last one


def _unescape_tag(value: str) -> str:
    escapes = {"\\s": " ", "\\:": ";", "\\\\": "\\", "\\r": "\r", "\\n": "\n"}
    return re.sub(r"\\[s:\\rn]", lambda m: escapes[m.group(0)], value)


def parse_irc_line(line: str) -> IrcLine | None:
    """One IRC line split into tags, nick, command and parameters; None if it is not IRC."""
    match = _IRC_LINE.match(line.rstrip("\r\n"))
    if not match:
        return None
    tags: dict[str, str] = {}
    for pair in (match.group("tags") or "").split(";"):
        if pair:
            key, _, value = pair.partition("=")
            tags[key] = _unescape_tag(value)
    params_text = match.group("params")
    if params_text and not params_text.startswith(" "):
        return None  # "PRIVMSGX": the command ran into other characters
    middle, sep, trailing = params_text.partition(" :")
    params = middle.split()
    if sep:
        params.append(trailing)
    nick = (match.group("prefix") or "").split("!", 1)[0]
    return IrcLine(tags=tags, nick=nick, command=match.group("command").upper(), params=params)


def twitch_badges(tags: Mapping[str, str]) -> frozenset[str]:
    """Our badge names from Twitch's `badges` tag ("moderator/1,subscriber/12") and `first-msg`."""
    found = set()
    for badge in tags.get("badges", "").split(","):
        name = TWITCH_BADGES.get(badge.partition("/")[0])
        if name:
            found.add(name)
    if tags.get("mod") == "1":
        found.add("moderator")
    if tags.get("first-msg") == "1":
        found.add("first")
    return frozenset(found)


def parse_twitch_privmsg(
    line: str, *, now: float, cohost_names: Sequence[str] = (), question_prefixes: Sequence[str] = ()
) -> ChatEvent | None:
    """A chat event from one Twitch IRC line, or None for lines that are not chat (PING, JOIN...).

    Cheering (the `bits` tag) is a gift of that many bits, worth 0.01 USD each. A channel-point
    redemption with a message (`custom-reward-id`) is chat with the gift name "channel points".
    """
    irc = parse_irc_line(line)
    if irc is None or irc.command != "PRIVMSG" or len(irc.params) < 2 or not irc.nick:
        return None
    tags = irc.tags
    data: dict[str, Any] = {
        "type": "message",
        "user": tags.get("display-name") or irc.nick,
        "text": irc.params[-1],
        "platform": "twitch",
    }
    if tags.get("id"):
        data["id"] = tags["id"]
    if tags.get("tmi-sent-ts", "").isdigit():
        data["timestamp"] = int(tags["tmi-sent-ts"]) / 1000.0
    if tags.get("bits", "").isdigit():
        data.update(type="gift", amount=float(tags["bits"]), currency="bits", gift="bits")
    elif tags.get("custom-reward-id"):
        data["gift"] = "channel points"
    event = parse_event(data, now=now, cohost_names=cohost_names, question_prefixes=question_prefixes)
    value = event.amount * 0.01 if event.kind is EventKind.GIFT else 0.0
    return replace(event, badges=twitch_badges(tags), value_usd=value,
                   count=int(event.amount) if event.kind is EventKind.GIFT else 1)
