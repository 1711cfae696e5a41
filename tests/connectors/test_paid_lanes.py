"""Paid events as priority lanes: connectors feeding a real SpeechQueue, batching, fairness, rules."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from agent_fakes import make_cohost, running
from tests.connectors.test_twitch import login
from tests.connectors.wire import fast_backoff, wait_until, ws_server
from voxroom.agent.clock import VirtualClock
from voxroom.agent.connectors.twitch import TwitchConnector
from voxroom.agent.events import ChatEvent, EventKind
from voxroom.agent.paid_rules import PaidEventRules
from voxroom.agent.replies import ReadAloud, join_names
from voxroom.agent.speech_queue import Outcome, SpeechQueue

_ids = itertools.count()


def gift(user: str, name: str = "gift sub", usd: float = 4.99, text: str = "", **kw: Any) -> ChatEvent:
    return ChatEvent(EventKind.GIFT, user, text, "twitch", 0.0, f"g{next(_ids)}", gift=name, value_usd=usd, **kw)


def chat(kind: EventKind, user: str, text: str) -> ChatEvent:
    return ChatEvent(kind, user, text, "twitch", 0.0, f"c{next(_ids)}")


async def test_a_500_bit_cheer_outranks_a_question_which_outranks_a_message() -> None:
    lines = [
        "@id=m1;display-name=Mia :mia!mia@mia.tmi.twitch.tv PRIVMSG #chan :just chatting",
        "@id=q1;display-name=Quinn :quinn!quinn@quinn.tmi.twitch.tv PRIVMSG #chan :?what is this game",
        "@id=b1;bits=500;display-name=Bea :bea!bea@bea.tmi.twitch.tv PRIVMSG #chan :cheer500 hi!",
    ]

    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        for line in lines:
            await ws.send(line)
        await ws.wait_closed()

    queue = SpeechQueue(VirtualClock(), paid_rules=PaidEventRules())
    outcomes: list[str] = []

    def submit(event: ChatEvent) -> str:
        outcomes.append(str(queue.put(event)))
        return outcomes[-1]

    async with ws_server(handler) as url:
        connector = TwitchConnector(submit, channel="chan", url=url, backoff=fast_backoff(), question_prefixes=["?"])
        connector.start()
        await wait_until(lambda: len(outcomes) == 3)
        await connector.stop()
    order = []
    while (item := queue.get_nowait()) is not None:
        order.append((item.event.kind, item.event.user, item.meta.get("lane", "")))
    assert order == [(EventKind.GIFT, "Bea", "paid"), (EventKind.QUESTION, "Quinn", ""),
                     (EventKind.MESSAGE, "Mia", "")]


async def test_small_gifts_are_thanked_together_after_the_window() -> None:
    clock = VirtualClock()
    queue = SpeechQueue(clock, paid_rules=PaidEventRules(batch_window_s=10.0))
    for user in ("Ann", "Ben", "Cat", "Dan", "Eve", "Ann"):
        assert queue.put(gift(user)) is Outcome.BATCHED
    question = chat(EventKind.QUESTION, "Quinn", "how are you?")
    queue.put(question)
    assert queue.get_nowait().event == question  # type: ignore[union-attr]
    assert queue.get_nowait() is None and queue.batched == 6

    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    await clock.advance(10.0)
    thanks = (await asyncio.wait_for(getter, 1)).event
    assert thanks.user == "Ann" and thanks.others == ("Ben", "Cat", "Dan", "Eve") and thanks.count == 6
    assert thanks.value_usd == pytest.approx(6 * 4.99)
    reader = ReadAloud()
    reader.apply_rules(PaidEventRules())
    assert reader.render(thanks) == "Thank you Ann, Ben and 3 others for the gift subs!"
    assert queue.batched == 0


async def test_a_flood_of_small_gifts_never_starves_questions_and_messages() -> None:
    clock = VirtualClock()
    queue = SpeechQueue(clock, paid_rules=PaidEventRules(batch_window_s=5.0, max_thanks_in_row=2))
    for name in ("rose", "heart", "star", "lollipop", "rocket"):
        queue.put(gift("fan", name=name, usd=0.01))
    queue.put(chat(EventKind.QUESTION, "q", "a question?"))
    queue.put(chat(EventKind.MESSAGE, "m", "a message"))
    await clock.advance(5.0)
    served = []
    while (item := queue.get_nowait()) is not None:
        served.append(item.meta.get("lane") or str(item.event.kind))
    assert served == ["thanks", "thanks", "question", "thanks", "thanks", "message", "thanks"]


def test_big_paid_events_are_read_in_full_and_tiers_have_their_own_words() -> None:
    rules = PaidEventRules(read_in_full_usd=5.0)
    reader = ReadAloud()
    reader.apply_rules(rules)
    superchat = gift("Carol", "superchat", usd=6.7, text="love the stream", amount=1000.0, currency="JPY")
    assert rules.reads_in_full(superchat) and not rules.batches(superchat)
    assert reader.render(superchat) == "Carol sent 1000 JPY: love the stream"
    captain = gift("小明", "舰长", usd=27.7, tier="舰长")
    assert reader.render(captain) == "欢迎新舰长小明上船！"
    assert ReadAloud().render(superchat) == "Thank you so much Carol for the 1000 JPY!"  # no rules: as before


def test_names_are_joined_per_language() -> None:
    assert join_names(["A"], "en") == "A"
    assert join_names(["A", "B"], "en") == "A and B"
    assert join_names(["A", "B", "C"], "en") == "A, B and 1 other"
    assert join_names(["甲", "乙", "丙", "丁"], "zh") == "甲、乙等4位"


def test_rules_round_trip_and_validation() -> None:
    rules = PaidEventRules.from_dict({"read_in_full_usd": 10, "batch_window_s": 30, "max_thanks_in_row": 3,
                                      "tier_templates": {"en": {"Gold": "Welcome to Gold, {user}!"}}})
    assert rules.read_in_full_usd == 10.0 and rules.batch_names == 2
    assert PaidEventRules.from_dict(rules.as_dict()) == rules
    assert PaidEventRules.from_dict({"batch_names": 3}, base=rules).read_in_full_usd == 10.0
    for bad, message in [
        ({"read_in_full_usd": -1}, "read_in_full_usd"), ({"batch_window_s": "soon"}, "batch_window_s"),
        ({"max_thanks_in_row": 0}, "max_thanks_in_row"), ({"batch_names": 1.5}, "integer"),
        ({"read_in_full_usd": float("nan")}, "read_in_full_usd"), ({"surprise": 1}, "unknown"),
        ({"tier_templates": {"fr": {}}}, "languages"), ({"tier_templates": {"en": {"x": "{secret}"}}}, "braces"),
        ([], "object"),
    ]:
        with pytest.raises(ValueError, match=message):
            PaidEventRules.from_dict(bad)  # type: ignore[arg-type]


async def test_a_connector_wired_to_a_cohost_is_spoken_in_lane_order() -> None:
    """`submit=cohost.submit` is the whole wiring: moderation, the queue's lanes, read-aloud rules."""
    lines = [
        "@id=m1;display-name=Mia :mia!mia@mia.tmi.twitch.tv PRIVMSG #chan :just chatting",
        "@id=q1;display-name=Quinn :quinn!quinn@quinn.tmi.twitch.tv PRIVMSG #chan :?what is this game",
        "@id=b1;bits=500;display-name=Bea :bea!bea@bea.tmi.twitch.tv PRIVMSG #chan :cheer500 hi!",
        "@id=b2;bits=10;display-name=Tim :tim!tim@tim.tmi.twitch.tv PRIVMSG #chan :cheer10",
    ]

    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        await ws.send("\r\n".join(lines))
        await ws.wait_closed()

    clock = VirtualClock()
    rules = PaidEventRules(batch_window_s=5.0)
    reader = ReadAloud()
    reader.apply_rules(rules)
    setup = make_cohost(clock, replies=reader, queue=SpeechQueue(clock, paid_rules=rules), question_prefixes=["?"])
    cohost = setup.cohost
    async with ws_server(handler) as url:
        connector = TwitchConnector(cohost.submit, channel="chan", url=url, backoff=fast_backoff(),
                                    cohost_names=cohost.cohost_names, question_prefixes=cohost.question_prefixes)
        connector.start()
        await wait_until(lambda: connector.counters.submitted == 4)
        await connector.stop()
    async with running(setup):
        await clock.advance(30.0)
    assert setup.air.texts() == ["Bea sent 500 bits: cheer500 hi!", "Quinn asks: what is this game",
                            "Mia says: just chatting", "Thank you so much Tim for the 10 bits!"]
