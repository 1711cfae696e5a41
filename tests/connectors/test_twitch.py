"""Twitch IRC over WebSocket against a local server speaking the same protocol."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection

from tests.connectors.wire import (
    FIXTURES,
    Collected,
    LateTicker,
    fast_backoff,
    run_until,
    wait_until,
    ws_server,
)
from voxroom.agent.connectors.base import ConnectorState
from voxroom.agent.connectors.twitch import TwitchConnector
from voxroom.agent.events import EventKind, parse_irc_line

FIXTURE_LINES = (FIXTURES / "twitch_irc.txt").read_text().splitlines()


def privmsg(i: int, text: str = "", user: str = "viewer") -> str:
    return (f"@badges=;display-name={user}{i % 50};id=msg-{i:06d};tmi-sent-ts=1700000000000 "
            f":{user}!{user}@{user}.tmi.twitch.tv PRIVMSG #chan :{text or f'message number {i}'}")


async def login(ws: ServerConnection) -> list[str]:
    """Read the client's login lines up to JOIN and welcome it, as Twitch does."""
    got: list[str] = []
    while not any(line.startswith("JOIN") for line in got):
        got.append(str(await ws.recv()))
    await ws.send(":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!\r\n"
                  ":justinfan12345!justinfan12345@justinfan12345.tmi.twitch.tv JOIN #chan")
    return got



async def test_every_fixture_line_maps_to_the_right_event() -> None:
    sent_login: list[str] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        sent_login.extend(await login(ws))
        await ws.send("\r\n".join(FIXTURE_LINES[:4]))
        for line in FIXTURE_LINES[4:]:
            await ws.send(line + "\r\n")
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = TwitchConnector(got, channel="Chan", url=url, backoff=fast_backoff(),
                                    cohost_names=["cohost"])
        await run_until(connector, lambda: len(got.events) >= 10)
    assert sent_login[0] == "CAP REQ :twitch.tv/tags twitch.tv/commands"
    assert "NICK justinfan12345" in sent_login and "JOIN #chan" in sent_login
    by_user = {(e.user, e.gift): e for e in got.events}
    plain, question, cheer, first, reward = got.events[:5]
    assert plain.kind is EventKind.MESSAGE and plain.text == "Kappa Keepo Kappa"
    assert plain.id == "twitch:b34ccfc7-4977-403a-8a94-33c6bac34fb8" and "moderator" in plain.badges
    assert question.kind is EventKind.QUESTION and question.text == "what game is next?"
    assert question.badges == {"subscriber", "vip"}
    assert cheer.kind is EventKind.GIFT and cheer.amount == 500 and cheer.value_usd == 5.0
    assert first.badges == {"moderator", "first"}
    assert reward.kind is EventKind.MESSAGE and reward.gift == "channel points"
    resub = by_user[("ronni", "sub")]
    assert resub.tier == "prime" and resub.amount == 6 and resub.text == "Great stream -- keep it up!"
    assert by_user[("NewSub", "sub")].tier == "2000" and by_user[("NewSub", "sub")].value_usd == 9.99
    gift = by_user[("TWW2", "gift sub")]
    assert gift.text == "Mr_Woodchuck" and gift.value_usd == 4.99
    mystery = by_user[("Generous", "gift subs")]
    assert mystery.count == 5 and mystery.value_usd == 24.95
    assert ("Generous", "gift sub") not in by_user  # the mystery gift's single subs are not counted twice
    raid = by_user[("TestChannel", "raid")]
    assert raid.kind is EventKind.JOIN and raid.count == 15
    assert connector.counters.malformed == 0


async def test_disconnect_mid_stream_resumes_without_duplicates_or_losses() -> None:
    pongs: list[str] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        if n == 0:
            await ws.send("\r\n".join(privmsg(i) for i in range(50)))
            await ws.close()  # mid-stream
            return
        if n == 1:
            await ws.send("PING :tmi.twitch.tv")
            pongs.append(str(await ws.recv()))
            # A relay replays the last ten lines after a reconnect; then Twitch restarts.
            await ws.send("\r\n".join(privmsg(i) for i in range(40, 80)))
            await ws.send(":tmi.twitch.tv RECONNECT")
            await ws.wait_closed()
        await ws.send("\r\n".join(privmsg(i) for i in range(80, 100)))
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = TwitchConnector(got, channel="chan", url=url, backoff=fast_backoff())
        await run_until(connector, lambda: len(got.events) >= 100)
    assert got.ids == [f"twitch:msg-{i:06d}" for i in range(100)]
    assert pongs == ["PONG :tmi.twitch.tv"]
    assert connector.counters.reconnects == 2 and connector.counters.duplicates == 10


async def test_malformed_frames_are_skipped_and_the_connector_keeps_reading() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        await ws.send(privmsg(1))
        await ws.send(b"\x00\x01binary")
        await ws.send("@@@ !!! ??? not irc")
        await ws.send("@id=x :nick!nick@nick PRIVMSG #chan")  # no text
        await ws.send("@id=y;display-name=" + "n" * 3000 + " :nick!n@n PRIVMSG #chan :too long a name")
        await ws.send(privmsg(2))
        await ws.wait_closed()

    got = Collected()
    async with ws_server(handler) as url:
        connector = TwitchConnector(got, channel="chan", url=url, backoff=fast_backoff())
        connector.start()
        await wait_until(lambda: len(got.events) >= 2)
        assert connector.status.state is ConnectorState.LIVE
        await connector.stop()
    assert got.ids == ["twitch:msg-000001", "twitch:msg-000002"]
    assert connector.counters.malformed == 4 and connector.counters.reconnects == 0


async def test_refused_login_stops_with_an_error() -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.recv()
        await ws.send(":tmi.twitch.tv NOTICE * :Login authentication failed")
        await ws.wait_closed()

    async with ws_server(handler) as url:
        connector = TwitchConnector(Collected(), channel="chan", url=url, nick="me", token="bad",
                                    backoff=fast_backoff())
        task = connector.start()
        await asyncio.wait_for(task, 10)
    assert connector.status.state is ConnectorState.ERROR
    assert "authentication failed" in connector.status.message


async def test_unreachable_server_reports_reconnecting_with_the_next_retry_time() -> None:
    connector = TwitchConnector(Collected(), channel="chan", url="ws://127.0.0.1:9", backoff=fast_backoff())
    connector.start()
    try:
        await wait_until(lambda: connector.counters.reconnects >= 2)
        status = connector.status.as_dict()
        assert status["state"] == "reconnecting" and status["next_retry_at"] is not None
        assert status["message"]
    finally:
        await connector.stop()


async def test_flood_of_1000_messages_a_second_loses_nothing_and_keeps_the_loop_responsive() -> None:
    seconds, per_frame, frame_every = 3, 20, 0.02  # 1,000 messages/s

    async def handler(ws: ServerConnection, n: int) -> None:
        await login(ws)
        i = 0
        for _ in range(int(seconds / frame_every)):
            await ws.send("\r\n".join(privmsg(j) for j in range(i, i + per_frame)))
            i += per_frame
            await asyncio.sleep(frame_every)
        await ws.wait_closed()

    total = int(seconds / frame_every) * per_frame
    got = Collected()
    async with ws_server(handler) as url:
        connector = TwitchConnector(got, channel="chan", url=url, backoff=fast_backoff())
        with LateTicker() as ticker:
            await run_until(connector, lambda: connector.counters.received >= total)
    counters = connector.counters
    assert counters.received == total
    assert counters.submitted + counters.shed == total and counters.malformed == 0
    assert len(set(got.ids)) == len(got.ids) == counters.submitted
    assert ticker.ticks > 50 and ticker.late <= 2, (ticker.ticks, ticker.late)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_irc_parser_never_raises(line: str) -> None:
    parsed = parse_irc_line(line)
    if parsed is not None:
        assert parsed.command


@given(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), max_size=20),
                    max_size=5),
    st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=100),
)
def test_irc_tags_and_trailing_text_round_trip(tags: dict[str, str], nick: str, text: str) -> None:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")

    tag_text = ";".join(f"{k}={escape(v)}" for k, v in tags.items())
    line = (f"@{tag_text} " if tags else "") + f":{nick}!{nick}@{nick}.tmi.twitch.tv PRIVMSG #chan :{text}"
    parsed = parse_irc_line(line)
    assert parsed is not None
    assert parsed.tags == tags and parsed.nick == nick and parsed.command == "PRIVMSG"
    assert parsed.params == ["#chan", text.rstrip("\r\n")]
