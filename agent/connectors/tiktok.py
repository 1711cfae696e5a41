"""TikTok LIVE chat through the TikTokLive package (an optional extra: `pip install 'voxroom[tiktok]'`).

TikTok has no public chat API: the webcast WebSocket speaks undocumented protobuf and its URL must
be signed by a signing service (TikTokLive uses Euler Stream's). That is far from a small
protocol, so here the library does the wire work and we only map its events:

- CommentEvent → message (or question); FollowEvent → follow.
- GiftEvent → gift, once per streak: a streakable gift sends an event at every combo step, and
  only the one with `repeat_end` set carries the final count. Value: diamonds × count.
- LikeEvent → likes are summed and become one "likes" gift event (value 0, the likers thanked
  together) every `like_every` likes or `like_interval_s` seconds, whichever comes first.

The client is made by `client_factory(unique_id)`; tests pass a stand-in with the same surface,
because TikTokLive cannot be pointed at a local server (it scrapes tiktok.com and calls the signer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from voxroom.agent.connectors.base import Connector, FatalError, RetryableError
from voxroom.agent.connectors.value import to_usd
from voxroom.agent.events import ChatEvent, EventError


class LiveClient(Protocol):
    """The part of `TikTokLive.TikTokLiveClient` the connector uses."""

    def add_listener(self, event: type, f: Callable[[Any], Any]) -> Any: ...

    async def start(self, **kwargs: Any) -> asyncio.Task[Any]: ...

    async def disconnect(self) -> None: ...


def default_client(unique_id: str) -> LiveClient:
    try:
        from TikTokLive import TikTokLiveClient
    except ImportError:
        raise FatalError("TikTok needs the TikTokLive package: pip install 'voxroom[tiktok]'") from None
    client: LiveClient = TikTokLiveClient(unique_id=unique_id)
    return client


def _user(event: Any) -> tuple[str, frozenset[str]]:
    user = getattr(event, "user", None)
    name = str(getattr(user, "nickname", "") or getattr(user, "unique_id", "") or "")
    badges = set()
    with contextlib.suppress(Exception):  # badge helpers walk optional protobuf fields
        if user is not None and user.is_moderator:
            badges.add("moderator")
    identity = getattr(event, "user_identity", None)
    if identity is not None and getattr(identity, "is_subscriber_of_anchor", False):
        badges.add("subscriber")
    return name, frozenset(badges)


def _msg_id(event: Any) -> str:
    common = getattr(event, "common", None)
    msg_id = getattr(common, "msg_id", 0) if common is not None else 0
    if not msg_id:
        raise ValueError("an event without common.msg_id")
    return f"tiktok:{msg_id}"


class TikTokConnector(Connector):
    platform = "tiktok"

    def __init__(self, submit: Any, *, channel: str, client_factory: Callable[[str], LiveClient] = default_client,
                 like_every: int = 100, like_interval_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(submit, name=channel, **kwargs)
        self.unique_id = channel if channel.startswith("@") else f"@{channel}"
        self.client_factory = client_factory
        self.like_every = like_every
        self.like_interval_s = like_interval_s
        self._likes: dict[str, int] = {}  # liker -> likes since the last likes event
        self._likes_since: float | None = None
        self._like_events = 0

    async def session(self) -> None:
        try:
            from TikTokLive.events import (
                CommentEvent,
                ConnectEvent,
                DisconnectEvent,
                FollowEvent,
                GiftEvent,
                LikeEvent,
                LiveEndEvent,
            )
        except ImportError:
            raise FatalError("TikTok needs the TikTokLive package: pip install 'voxroom[tiktok]'") from None

        client = self.client_factory(self.unique_id)
        ended = asyncio.Event()
        ended_reason: list[str] = []

        def on_end(event: Any) -> None:
            ended_reason.append("the stream ended")
            ended.set()

        client.add_listener(ConnectEvent, lambda event: self.mark_live(f"joined {self.unique_id}"))
        client.add_listener(DisconnectEvent, lambda event: ended.set())
        client.add_listener(LiveEndEvent, on_end)
        client.add_listener(CommentEvent, self.on_comment)
        client.add_listener(GiftEvent, self.on_gift)
        client.add_listener(FollowEvent, self.on_follow)
        client.add_listener(LikeEvent, self.on_like)
        loop = asyncio.get_running_loop()
        try:
            try:
                task = await client.start(fetch_live_check=True)
            except Exception as exc:  # TikTokLive's UserOfflineError, UserNotFoundError, signer errors...
                name = type(exc).__name__
                if name in ("UserOfflineError", "UserNotFoundError"):
                    raise RetryableError(f"{self.unique_id} is not live ({name})") from None
                raise
            while not ended.is_set() and not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended.wait()), timeout=1.0)
                self.flush_likes(loop.time())
            if ended_reason:
                raise FatalError(ended_reason[0])
        finally:
            self.flush_likes(None)
            with contextlib.suppress(Exception):
                await client.disconnect()

    def _emit(self, data: dict[str, Any], **extra: Any) -> None:
        try:
            event: ChatEvent = self.make_event(data, **extra)
        except EventError as exc:
            self.malformed(str(exc), str(data)[:80])
            return
        self.emit(event)

    # -- TikTokLive event handlers (each takes one of the package's event objects) --------------
    def on_comment(self, event: Any) -> None:
        try:
            user, badges = _user(event)
            self._emit({"type": "message", "user": user, "text": str(event.content), "id": _msg_id(event)},
                       badges=badges)
        except (AttributeError, ValueError) as exc:
            self.malformed(str(exc), repr(event)[:80])

    def on_gift(self, event: Any) -> None:
        try:
            gift = event.gift
            streakable = getattr(gift, "type", 0) == 1
            if streakable and not event.repeat_end:
                return  # a step of a streak still going: wait for its end
            count = max(1, int(event.repeat_count or 1))
            diamonds = int(getattr(gift, "diamond_count", 0) or 0) * count
            user, badges = _user(event)
            self._emit({"type": "gift", "user": user, "gift": str(gift.name), "amount": float(count),
                        "currency": str(gift.name), "id": _msg_id(event)},
                       badges=badges, count=count, value_usd=to_usd(diamonds, "diamonds"))
        except (AttributeError, ValueError, TypeError) as exc:
            self.malformed(str(exc), repr(event)[:80])

    def on_follow(self, event: Any) -> None:
        try:
            user, badges = _user(event)
            self._emit({"type": "follow", "user": user, "id": _msg_id(event)}, badges=badges)
        except (AttributeError, ValueError) as exc:
            self.malformed(str(exc), repr(event)[:80])

    def on_like(self, event: Any) -> None:
        user, _ = _user(event)
        count = int(getattr(event, "count", 0) or 0)
        if not user or count <= 0:
            self.malformed("a like without a user or count", repr(event)[:80])
            return
        self._likes[user] = self._likes.get(user, 0) + count
        if self._likes_since is None:
            self._likes_since = asyncio.get_running_loop().time()
        if sum(self._likes.values()) >= self.like_every:
            self.flush_likes(None)

    def flush_likes(self, now: float | None) -> None:
        """Emit the summed likes: at once when `now` is None, else once `like_interval_s` has passed."""
        if not self._likes or self._likes_since is None:
            return
        if now is not None and now - self._likes_since < self.like_interval_s:
            return
        likers = sorted(self._likes, key=lambda u: -self._likes[u])
        total = sum(self._likes.values())
        self._likes.clear()
        self._likes_since = None
        self._like_events += 1
        self._emit({"type": "gift", "user": likers[0], "gift": "likes", "amount": float(total),
                    "currency": "likes", "id": f"tiktok:likes:{id(self)}:{self._like_events}"},
                   count=total, others=tuple(likers[1:]))
