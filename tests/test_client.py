"""The Python client (`voxroom.client`) against a real server: REST with a token, a room bot with a
grant, the bot protocol's frames, events, chat and cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from conftest import RunningServer
from speech_check import transcribe, word_error_rate
from voxroom.client import BotClient, RoomBot, Voxroom, VoxroomError
from voxroom.models.pcm import from_pcm16


def sdk(server: RunningServer, token: str | None = None) -> Voxroom:
    return Voxroom(server.base, token or server.token)


async def test_rooms_say_cancel_chat(live_server: RunningServer) -> None:
    client = sdk(live_server)
    room = await client.create_room("sdk room")
    try:
        assert room.listen_url and room.listener_grant
        assert room.id in [r.id for r in await client.rooms()]
        speech_id = await client.say(room.id, " ".join(["A long line from the SDK that we will cut short."] * 10),
                                     speech_id="sdk-line")
        assert speech_id == "sdk-line"
        await client.cancel(room.id, speech_id)
        assert await client.chat(room.id, "viewer1", "hello from the sdk")
        with pytest.raises(VoxroomError) as err:
            await client.cancel(room.id, "no-such-speech")
        assert err.value.status == 404
    finally:
        await client.delete_room(room.id)
    assert room.id not in [r.id for r in await client.rooms()]
    with pytest.raises(VoxroomError) as err:
        await client.say(room.id, "gone")
    assert err.value.status == 404 and err.value.code


async def test_a_bot_with_a_grant_says_chats_and_reads_the_rooms_events(live_server: RunningServer) -> None:
    client = sdk(live_server)
    room = await client.create_room("bot grant room")
    try:
        grant = await client.grant(room.id, role="bot")
        assert grant.startswith("vxg_")
        bot = client.join(room.id, grant)
        assert isinstance(bot, RoomBot)
        events = bot.events()
        first = await anext(events)
        assert first["type"] == "room" and first["id"] == room.id
        speech_id = await bot.say("A line from the bot with a grant.", speech_id="granted-1")
        assert speech_id == "granted-1"
        assert await bot.chat("viewer7", "hi from a bot", platform="discord") in ("queued", "dropped", "ignored")
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(30):  # a guard against hanging, not a timing assertion
            async for event in events:
                seen.append(event)
                if event["type"] == "speech.ended" and event["id"] == speech_id:
                    break
        assert {"speech.started", "speech.ended"} <= {e["type"] for e in seen if e.get("id") == speech_id}
        await events.aclose()
        with pytest.raises(VoxroomError) as err:  # a bot grant is not the host's: no cancelling
            await Voxroom(live_server.base, grant).cancel(room.id, speech_id)
        assert err.value.status == 403
        other = await client.create_room("another room")
        with pytest.raises(VoxroomError) as err:
            await RoomBot(live_server.base, other.id, grant).say("not my room")
        assert err.value.status == 403
        await client.delete_room(other.id)
    finally:
        await client.delete_room(room.id)


async def test_voices_and_direct_speech(live_server: RunningServer) -> None:
    client = sdk(live_server)
    voices = await client.voices()
    assert voices[0].id == "stock"
    pcm = await client.speech("Hello from the SDK.")
    assert len(pcm) / 2 / 24000 > 0.5
    with pytest.raises(VoxroomError) as err:
        await client.speech("x", voice="nobody")
    assert err.value.status == 404 and err.value.code == "voice_not_found"


async def test_a_bad_token_is_a_clear_error(live_server: RunningServer) -> None:
    with pytest.raises(VoxroomError) as err:
        await sdk(live_server, token="vxr_nope").rooms()
    assert err.value.status == 401


async def test_bot_client_yields_pcm_frames_that_say_the_words(live_server: RunningServer) -> None:
    text = "Thanks for watching the stream tonight, everyone."
    async with sdk(live_server).bot() as bot:
        speech = await bot.say(text)
        frames = [frame async for frame in speech]
        assert speech.reason == "done"
        assert all(len(f) == 960 * 2 for f in frames)
        audio = from_pcm16(b"".join(frames))
        made = live_server.engine.produced[text] / live_server.engine.sample_rate
        assert abs(len(audio) / 48000 - made) < 0.03
        assert word_error_rate(text, transcribe(audio, 48000)) <= 0.5


async def test_bot_client_cancel_and_refusal(live_server: RunningServer) -> None:
    async with BotClient(live_server.ws_url, live_server.token) as bot:
        speech = await bot.say(" ".join(["This sentence goes on and on for the cancel test."] * 20))
        got = 0
        async for _ in speech:
            got += 1
            if got == 5:
                await speech.cancel()
        assert speech.reason == "cancelled"
        refused = await bot.say("hi", voice="no-such-voice")
        with pytest.raises(VoxroomError) as err:
            await refused.audio()
        assert err.value.code == "unknown_voice"
    with pytest.raises(VoxroomError):
        async with BotClient(live_server.ws_url, "vxr_nope"):
            pass


async def test_bot_client_events_and_chat(live_server: RunningServer) -> None:
    client = sdk(live_server)
    room = await client.create_room("bot chat room")
    try:
        async with client.bot() as bot:
            speech = await bot.say("Events please.", speech_id="ev-1")
            await speech.audio()
            await bot.chat(room.id, "viewer9", "hello over the socket", platform="twitch")
            await bot.chat("no-such-room", "viewer9", "lost")
            await bot.ping("p1")
            kinds: list[tuple[str, Any]] = []
            async with asyncio.timeout(30):
                async for event in bot.events():
                    kinds.append((event["type"], event.get("id") or event.get("code")))
                    if event["type"] == "pong":
                        break
        assert kinds[:3] == [("speech.queued", "ev-1"), ("speech.started", "ev-1"), ("speech.ended", "ev-1")]
        assert ("error", "unknown_room") in kinds  # the chat for a room that is not there
    finally:
        await client.delete_room(room.id)


async def test_two_speeches_on_one_connection(live_server: RunningServer) -> None:
    async with BotClient(live_server.ws_url, live_server.token) as bot:
        first, second = await bot.say("First one."), await bot.say("Second one.")
        a, b = await asyncio.gather(first.audio(), second.audio())
        assert first.reason == second.reason == "done"
        assert np.abs(from_pcm16(a)).max() > 0.05 and np.abs(from_pcm16(b)).max() > 0.05
