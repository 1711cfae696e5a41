"""The virtual clock and chat-event parsing."""

from __future__ import annotations

import asyncio

import pytest

from voxroom.agent.clock import VirtualClock
from voxroom.agent.events import EventError, EventKind, parse_event, parse_twitch_privmsg


async def test_virtual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.ensure_future(sleeper("late", 2.0)), asyncio.ensure_future(sleeper("early", 0.5))]
    await clock.advance(1.0)
    assert woke == [("early", 0.5)]
    await clock.advance(5.0)
    assert woke == [("early", 0.5), ("late", 2.0)]
    assert clock.now() == 6.0
    await asyncio.gather(*tasks)


async def test_virtual_clock_run_until_returns_result() -> None:
    clock = VirtualClock()

    async def work() -> str:
        for _ in range(3):
            await clock.sleep(0.25)
        return "done"

    assert await clock.run_until(work(), step=0.1) == "done"
    assert 0.75 <= clock.now() < 0.9


def test_parse_message_and_question_by_name_or_prefix() -> None:
    event = parse_event({"type": "message", "user": "anna", "text": " hi all ", "id": 7}, now=10.0)
    assert (event.kind, event.text, event.id, event.timestamp, event.platform) == (
        EventKind.MESSAGE, "hi all", "7", 10.0, "web")
    q = parse_event({"type": "message", "user": "bo", "text": "@Vox, what is your name?"}, now=0,
                    cohost_names=["vox"])
    assert (q.kind, q.text) == (EventKind.QUESTION, "what is your name?")
    q2 = parse_event({"type": "chat", "user": "bo", "text": "? where are you"}, now=0, question_prefixes=["?"])
    assert (q2.kind, q2.text) == (EventKind.QUESTION, "where are you")
    not_q = parse_event({"type": "message", "user": "bo", "text": "@voxy hello"}, now=0, cohost_names=["vox"])
    assert not_q.kind is EventKind.MESSAGE


def test_parse_gift_superchat_follow() -> None:
    gift = parse_event({"type": "superchat", "user": "kim", "amount": 5, "currency": "USD", "text": "gg"}, now=0)
    assert (gift.kind, gift.amount, gift.currency, gift.gift) == (EventKind.GIFT, 5.0, "USD", "superchat")
    follow = parse_event({"type": "follow", "user": "lee"}, now=0)
    assert follow.kind is EventKind.FOLLOW and follow.text == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user": "a", "text": "x"}, "'type' is required"),
        ({"type": "shout", "user": "a", "text": "x"}, "unknown event type"),
        ({"type": "message", "user": "", "text": "x"}, "'user' must not be empty"),
        ({"type": "message", "user": "a"}, "'text' is required"),
        ({"type": "message", "user": "a", "text": 5}, "'text' must be a string"),
        ({"type": "gift", "user": "a", "amount": -1}, "'amount' must be a number from 0"),
        ({"type": "gift", "user": "a", "amount": True}, "'amount'"),
        ({"type": "message", "user": "a", "text": "x" * 5000}, "longer than"),
        ({"type": "idle", "user": "a"}, "made by the co-host"),
        ({"type": "message", "user": "a", "text": "x", "timestamp": "now"}, "'timestamp' must be a number"),
    ],
)
def test_parse_rejects_bad_events_with_clear_messages(data: dict, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_event(data, now=0)


def test_parse_event_rejects_non_objects() -> None:
    with pytest.raises(EventError, match="JSON object"):
        parse_event(["message"], now=0)  # type: ignore[arg-type]


def test_twitch_privmsg_lines() -> None:
    line = ("@badge-info=;bits=100;display-name=Cool\\sCat;id=abc-1;tmi-sent-ts=1700000000000 "
            ":coolcat!coolcat@coolcat.tmi.twitch.tv PRIVMSG #streamer :cheer100 great stream\r\n")
    event = parse_twitch_privmsg(line, now=0)
    assert event is not None
    assert (event.kind, event.user, event.amount, event.currency, event.id, event.platform) == (
        EventKind.GIFT, "Cool Cat", 100.0, "bits", "abc-1", "twitch")
    assert event.timestamp == 1700000000.0
    plain = parse_twitch_privmsg(":bob!bob@bob.tmi.twitch.tv PRIVMSG #streamer :@vox hi there", now=3,
                                 cohost_names=["vox"])
    assert plain is not None and (plain.kind, plain.user, plain.text) == (EventKind.QUESTION, "bob", "hi there")
    assert parse_twitch_privmsg("PING :tmi.twitch.tv", now=0) is None
