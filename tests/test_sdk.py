"""The Python SDK (`voxroom.streaming.sdk`) against a real server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from conftest import RunningServer
from speech_check import transcribe, word_error_rate
from voxroom.models.pcm import from_pcm16
from voxroom.streaming.sdk import BotClient, Voxroom, VoxroomError


def sdk(server: RunningServer, token: str | None = None) -> Voxroom:
    return Voxroom(server.base, token or server.token)


def test_rooms_say_cancel_chat(live_server: RunningServer) -> None:
    client = sdk(live_server)
    room = client.create_room("sdk room")
    try:
        assert room.listen_url and room.listener_grant
        assert room.id in [r.id for r in client.rooms()]
        speech_id = client.say(room.id, " ".join(["A long line from the SDK that we will cut short."] * 10),
                               speech_id="sdk-line")
        assert speech_id == "sdk-line"
        client.cancel(room.id, speech_id)
        assert client.chat(room.id, "viewer1", "hello from the sdk")
        with pytest.raises(VoxroomError) as err:
            client.cancel(room.id, "no-such-speech")
        assert err.value.status == 404
    finally:
        client.delete_room(room.id)
    assert room.id not in [r.id for r in client.rooms()]
    with pytest.raises(VoxroomError) as err:
        client.say(room.id, "gone")
    assert err.value.status == 404 and err.value.code


def test_voices_and_direct_speech(live_server: RunningServer) -> None:
    client = sdk(live_server)
    voices = client.voices()
    assert voices[0].id == "stock"
    pcm = client.speech("Hello from the SDK.")
    assert len(pcm) / 2 / 24000 > 0.5
    with pytest.raises(VoxroomError) as err:
        client.speech("x", voice="nobody")
    assert err.value.status == 404 and err.value.code == "voice_not_found"


def test_a_bad_token_is_a_clear_error(live_server: RunningServer) -> None:
    with pytest.raises(VoxroomError) as err:
        sdk(live_server, token="vxr_nope").rooms()
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


async def test_two_speeches_on_one_connection(live_server: RunningServer) -> None:
    async with BotClient(live_server.ws_url, live_server.token) as bot:
        first, second = await bot.say("First one."), await bot.say("Second one.")
        a, b = await asyncio.gather(first.audio(), second.audio())
        assert first.reason == second.reason == "done"
        assert np.abs(from_pcm16(a)).max() > 0.05 and np.abs(from_pcm16(b)).max() > 0.05
