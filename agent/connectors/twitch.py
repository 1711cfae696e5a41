"""Twitch chat over IRC-on-WebSocket (wss://irc-ws.chat.twitch.tv), read anonymously or with a token.

Twitch chat is plain IRC with IRCv3 tags; one WebSocket text frame carries one or more
CRLF-separated lines. We ask for tags and commands (`CAP REQ`), log in as `justinfan12345` (read-only,
no credentials) unless a user name and OAuth token are given, join `#channel` and read:

- PRIVMSG: chat; a `bits` tag is a cheer; `custom-reward-id` a channel-point redemption;
  `first-msg=1` a first-time chatter (events.parse_twitch_privmsg).
- USERNOTICE (`msg-id`): sub, resub, subgift, submysterygift, raid.
- PING (answered with PONG), RECONNECT (Twitch is about to restart the server: reconnect now).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import websockets

from voxroom.agent.connectors.base import Connector, FatalError, RetryableError
from voxroom.agent.connectors.value import TWITCH_SUB_USD
from voxroom.agent.events import (
    ChatEvent,
    EventError,
    IrcLine,
    parse_irc_line,
    parse_twitch_privmsg,
    twitch_badges,
)

TWITCH_IRC_URL = "wss://irc-ws.chat.twitch.tv:443"
ANONYMOUS_NICK = "justinfan12345"


def sub_plan(tags: Mapping[str, str]) -> str:
    plan = tags.get("msg-param-sub-plan", "1000")
    return "prime" if plan.lower() == "prime" else plan


def usernotice_event(irc: IrcLine) -> dict[str, Any] | None:
    """The event dict and extra fields for one USERNOTICE, or None for kinds we do not read."""
    tags = irc.tags
    kind = tags.get("msg-id", "")
    user = tags.get("display-name") or tags.get("login") or irc.nick
    text = irc.params[-1] if len(irc.params) > 1 else ""
    base: dict[str, Any] = {"user": user, "text": text, "id": f"twitch:{tags.get('id', '')}"}
    if tags.get("tmi-sent-ts", "").isdigit():
        base["timestamp"] = int(tags["tmi-sent-ts"]) / 1000.0
    tier = sub_plan(tags)
    price = TWITCH_SUB_USD.get(tier, TWITCH_SUB_USD["1000"])
    if kind in ("sub", "resub"):
        months = tags.get("msg-param-cumulative-months", "1")
        return {**base, "type": "gift", "gift": "sub", "amount": float(months) if months.isdigit() else 1.0,
                "currency": "months", "_tier": tier, "_value": price, "_count": 1}
    if kind == "subgift":
        if tags.get("msg-param-community-gift-id"):
            return None  # one of the subs a submysterygift announced already: not counted twice
        recipient = tags.get("msg-param-recipient-display-name", "")
        return {**base, "type": "gift", "gift": "gift sub", "text": recipient, "_tier": tier,
                "_value": price, "_count": 1}
    if kind == "submysterygift":
        count = tags.get("msg-param-mass-gift-count", "1")
        n = int(count) if count.isdigit() else 1
        return {**base, "type": "gift", "gift": "gift subs", "amount": float(n), "currency": "subs",
                "_tier": tier, "_value": round(price * n, 2), "_count": n}
    if kind == "raid":
        viewers = tags.get("msg-param-viewerCount", "0")
        return {**base, "type": "join", "gift": "raid", "text": "",
                "_count": int(viewers) if viewers.isdigit() else 0}
    return None


class TwitchConnector(Connector):
    platform = "twitch"

    def __init__(self, submit: Any, *, channel: str, url: str = TWITCH_IRC_URL, nick: str = "",
                 token: str = "", **kwargs: Any) -> None:
        super().__init__(submit, name=channel, **kwargs)
        self.channel = channel.lower().lstrip("#")
        self.url = url
        self.nick = nick.lower() if nick and token else ANONYMOUS_NICK
        self.token = token

    async def session(self) -> None:
        async with websockets.connect(self.url, open_timeout=15, max_size=2**20,
                                      ping_interval=None) as ws:
            await ws.send("CAP REQ :twitch.tv/tags twitch.tv/commands")
            if self.token:
                token = self.token if self.token.startswith("oauth:") else f"oauth:{self.token}"
                await ws.send(f"PASS {token}")
            await ws.send(f"NICK {self.nick}")
            await ws.send(f"JOIN #{self.channel}")
            async for frame in ws:
                if isinstance(frame, bytes):
                    self.malformed("binary frame", frame)
                    continue
                for line in frame.split("\r\n"):
                    if line:
                        reply = self.handle_line(line)
                        if reply:
                            await ws.send(reply)
                        await self.pause()

    def handle_line(self, line: str) -> str | None:
        """Read one IRC line; returns a line to send back (PONG) or None."""
        irc = parse_irc_line(line)
        if irc is None:
            self.malformed("not an IRC line", line)
            return None
        command = irc.command
        if command == "PING":
            return f"PONG :{irc.params[-1] if irc.params else 'tmi.twitch.tv'}"
        if command == "001" or (command == "JOIN" and irc.nick == self.nick):
            self.mark_live(f"joined #{self.channel}")
        elif command == "RECONNECT":
            raise RetryableError("Twitch asked us to reconnect")
        elif command == "NOTICE" and irc.params and "authentication failed" in irc.params[-1].lower():
            raise FatalError(f"Twitch refused the login: {irc.params[-1]}")
        elif command == "PRIVMSG":
            self._emit_privmsg(irc, line)
        elif command == "USERNOTICE":
            self._emit_usernotice(irc, line)
        return None

    def _emit_privmsg(self, irc: IrcLine, line: str) -> None:
        try:
            event = parse_twitch_privmsg(line, now=self.clock.now(), cohost_names=self.cohost_names,
                                         question_prefixes=self.question_prefixes)
        except EventError as exc:
            self.malformed(str(exc), line)
            return
        if event is None:
            self.malformed("PRIVMSG without a channel or text", line)
            return
        if irc.tags.get("id"):  # else the id parse_event made up, unique in this process
            event = replace(event, id=f"twitch:{irc.tags['id']}")
        self.emit(event)

    def _emit_usernotice(self, irc: IrcLine, line: str) -> None:
        if not irc.tags.get("id"):
            self.malformed("USERNOTICE without an id tag", line)
            return
        data = usernotice_event(irc)
        if data is None:
            return
        extra = {"badges": twitch_badges(irc.tags), "tier": data.pop("_tier", ""),
                 "value_usd": data.pop("_value", 0.0), "count": data.pop("_count", 1)}
        try:
            event: ChatEvent = self.make_event(data, **extra)
        except EventError as exc:
            self.malformed(str(exc), line)
            return
        self.emit(event)
