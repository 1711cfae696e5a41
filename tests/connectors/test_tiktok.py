"""TikTok LIVE: the mapping of TikTokLive's own event classes, and the connector's lifecycle around a
stand-in client (TikTokLive cannot be pointed at a local server: it scrapes tiktok.com and needs a
signing service)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

pytest.importorskip("TikTokLive")

from TikTokLive.events import (  # noqa: E402
    CommentEvent,
    ConnectEvent,
    DisconnectEvent,
    FollowEvent,
    GiftEvent,
    LikeEvent,
    LiveEndEvent,
)
from TikTokLive.proto.custom_proto import ExtendedGift, ExtendedUser  # noqa: E402
from TikTokLiveProto.v3.webcast.shared.message import CommonMessageData  # noqa: E402

from tests.connectors.wire import Collected, fast_backoff, run_until  # noqa: E402
from voxroom.agent.connectors.base import ConnectorState  # noqa: E402
from voxroom.agent.connectors.tiktok import TikTokConnector  # noqa: E402
from voxroom.agent.events import EventKind  # noqa: E402

_msg_ids = itertools.count(7_000_000_000_000_000_001)


def common(msg_id: int | None = None) -> CommonMessageData:
    return CommonMessageData(msg_id=msg_id if msg_id is not None else next(_msg_ids), create_time=1700000000000)


def user(name: str) -> ExtendedUser:
    return ExtendedUser(nickname=name, display_id=name.lower())


def comment(name: str, text: str, msg_id: int | None = None) -> CommentEvent:
    return CommentEvent(common=common(msg_id), user=user(name), content=text)


def gift_step(name: str, gift: str, diamonds: int, count: int, end: bool, streakable: bool = True,
              msg_id: int | None = None) -> GiftEvent:
    return GiftEvent(common=common(msg_id), user=user(name),
                     gift=ExtendedGift(name=gift, diamond_count=diamonds, type=1 if streakable else 2),
                     repeat_count=count, repeat_end=1 if end else 0)


def like(name: str, count: int) -> LikeEvent:
    return LikeEvent(common=common(), user=user(name), count=count, total=count)


class FakeClient:
    """Fires scripted TikTokLive events at the listeners, as TikTokLiveClient does after `start()`."""

    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = scripts
        self.starts = 0
        self.disconnects = 0
        self.listeners: list[tuple[type, Any]] = []

    def __call__(self, unique_id: str) -> FakeClient:
        self.unique_id = unique_id
        self.listeners = []
        return self

    def add_listener(self, event: type, f: Any) -> None:
        self.listeners.append((event, f))

    def fire(self, event: Any) -> None:
        for kind, handler in self.listeners:
            if type(event) is kind:
                handler(event)

    async def start(self, **kwargs: Any) -> asyncio.Task[None]:
        script = self.scripts[min(self.starts, len(self.scripts) - 1)]
        self.starts += 1

        async def run() -> None:
            self.fire(ConnectEvent(unique_id=self.unique_id, room_id=1))
            for event in script:
                if event == "drop":
                    self.fire(DisconnectEvent())
                    return
                self.fire(event)
                await asyncio.sleep(0)
            await asyncio.Future()

        return asyncio.create_task(run())

    async def disconnect(self) -> None:
        self.disconnects += 1



async def test_comments_gifts_at_streak_end_follows_and_aggregated_likes() -> None:
    script = [
        comment("Tom", "hello tiktok"),
        comment("Ann", "@cohost what song is this?"),
        gift_step("Ann", "Rose", 1, 1, end=False), gift_step("Ann", "Rose", 1, 2, end=False),
        gift_step("Ann", "Rose", 1, 3, end=False), gift_step("Ann", "Rose", 1, 3, end=True),
        gift_step("Rich", "Lion", 29999, 1, end=False, streakable=False),  # not streakable: one event
        FollowEvent(common=common(), user=user("Fan")),
        like("Tom", 40), like("Ann", 15), like("Tom", 50),  # 105 likes: one likes event
    ]
    client = FakeClient([script])
    got = Collected()
    connector = TikTokConnector(got, channel="streamer", client_factory=client, backoff=fast_backoff(),
                                cohost_names=["cohost"], like_every=100)
    await run_until(connector, lambda: len(got.events) >= 6)
    assert client.unique_id == "@streamer"
    hello, question, roses, lion, follow, likes = got.events
    assert hello.kind is EventKind.MESSAGE and hello.user == "Tom" and hello.id.startswith("tiktok:")
    assert question.kind is EventKind.QUESTION and question.text == "what song is this?"
    assert (roses.gift, roses.count, roses.value_usd) == ("Rose", 3, 0.015)
    assert lion.gift == "Lion" and lion.value_usd == pytest.approx(149.995)
    assert follow.kind is EventKind.FOLLOW and follow.user == "Fan"
    assert (likes.gift, likes.count, likes.user, likes.others) == ("likes", 105, "Tom", ("Ann",))
    assert connector.counters.malformed == 0
    assert connector.status.state is ConnectorState.STOPPED


async def test_likes_below_the_count_are_flushed_after_the_interval() -> None:
    client = FakeClient([[like("Solo", 3)]])
    got = Collected()
    connector = TikTokConnector(got, channel="@s", client_factory=client, backoff=fast_backoff(),
                                like_interval_s=0.05)
    await run_until(connector, lambda: len(got.events) >= 1)
    assert (got.events[0].user, got.events[0].count, got.events[0].others) == ("Solo", 3, ())


async def test_a_dropped_connection_reconnects_and_replayed_events_are_not_duplicated() -> None:
    first = [comment("A", "one", 11), comment("B", "two", 12), "drop"]
    second = [comment("B", "two", 12), comment("C", "three", 13)]  # the room replays its last message
    client = FakeClient([first, second])
    got = Collected()
    connector = TikTokConnector(got, channel="@s", client_factory=client, backoff=fast_backoff())
    await run_until(connector, lambda: len(got.events) >= 3)
    assert got.ids == ["tiktok:11", "tiktok:12", "tiktok:13"]
    assert connector.counters.reconnects == 1 and connector.counters.duplicates == 1
    assert client.disconnects >= 1


async def test_malformed_events_are_skipped_and_the_end_of_the_stream_stops_the_connector() -> None:
    script = [CommentEvent(common=common(0), user=user("NoId"), content="no id"),
              CommentEvent(common=common(), user=user(""), content="no name"),
              comment("Ok", "fine"), LiveEndEvent()]
    client = FakeClient([script])
    got = Collected()
    connector = TikTokConnector(got, channel="@s", client_factory=client, backoff=fast_backoff())
    await asyncio.wait_for(connector.start(), 10)
    assert [e.user for e in got.events] == ["Ok"]
    assert connector.counters.malformed == 2
    assert connector.status.state is ConnectorState.ERROR and "ended" in connector.status.message
