"""OpenAI's speech API on a real server, called by the real `openai` client; bodies decoded with PyAV."""

from __future__ import annotations

import io
from typing import Any

import av
import numpy as np
import openai
import pytest

from conftest import RunningServer
from speech_check import transcribe, word_error_rate
from voxroom.models.voice_store import Consent

TEXT = "Thanks for the follow, and welcome to the stream."


def client(server: RunningServer, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base + "/v1", api_key=token or server.token, max_retries=0)


def speech(server: RunningServer, *, streamed: bool = True, **params: Any) -> tuple[list[bytes], dict[str, str]]:
    """The body (its chunks as they came) and headers, through the client's streaming call or its plain
    `create()` (the whole body at once)."""
    params = {"model": "tts-1", "voice": "alloy", "input": TEXT, **params}
    if not streamed:
        whole = client(server).audio.speech.create(**params)
        return [whole.content], dict(whole.response.headers)
    with client(server).audio.speech.with_streaming_response.create(**params) as response:
        return list(response.iter_bytes()), dict(response.headers)


def decode(body: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(body)) as container:
        frames = [f for f in container.decode(audio=0)]
    rate = frames[0].sample_rate
    samples = np.concatenate([f.to_ndarray().astype(np.float32).mean(axis=0) for f in frames])
    if frames[0].format.name.startswith("s16"):
        samples /= 32768.0
    return samples, rate


def made_seconds(server: RunningServer, text: str) -> float:
    return server.engine.produced[text] / server.engine.sample_rate


def add_voice(server: RunningServer, name: str, token: str | None = None) -> str:
    """A voice for the account of `token` (the owner's by default); its id."""
    async def create() -> str:
        store = server.server.voices.store
        account = server.server.accounts.by_token(token or server.token)
        noise = (np.random.default_rng(1).standard_normal(32000) * 0.1).astype(np.float32)
        record = store.create(account.id, name, noise, 16000, {"sample_rate": 16000, "main": {"start": 0, "end": 2}},
                              "hello", Consent(who="test", statement="test"), meta={"lang": "en"})
        return str(record.id)
    return str(server.call(create()))


def test_pcm_is_24k_pcm16_as_long_as_what_the_engine_made_and_says_the_words(live_server: RunningServer) -> None:
    chunks, headers = speech(live_server, response_format="pcm")
    body = b"".join(chunks)
    assert headers["content-type"] == "audio/pcm"
    assert headers.get("transfer-encoding") == "chunked"
    assert len(body) % 2 == 0
    samples = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
    made = made_seconds(live_server, TEXT)
    assert abs(len(samples) / 24000 - made) < 0.05  # 20 ms frames: at most one frame of padding
    assert np.sqrt(np.mean(samples**2)) > 0.02
    assert word_error_rate(TEXT, transcribe(samples, 24000)) <= 0.5


@pytest.mark.parametrize("streamed", [True, False], ids=["with_streaming_response", "create"])
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_decodes_to_the_whole_speech(live_server: RunningServer, fmt: str, streamed: bool) -> None:
    text = TEXT
    chunks, headers = speech(live_server, streamed=streamed, response_format=fmt, input=text)
    body = b"".join(chunks)
    if fmt == "pcm":
        samples, rate = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0, 24000
    else:
        samples, rate = decode(body)
    assert rate == (48000 if fmt == "opus" else 24000)
    made = made_seconds(live_server, text)
    assert abs(len(samples) / rate - made) < 0.15  # codec priming and padding, a few frames at most
    assert np.sqrt(np.mean(samples**2)) > 0.02
    # The words survive every codec (pocketsphinx on the stock voice: its own output scores 0.3-0.5).
    assert word_error_rate(text, transcribe(samples, rate)) <= 0.5


def test_default_format_is_mp3_and_the_words_survive(live_server: RunningServer) -> None:
    chunks, headers = speech(live_server)
    assert headers["content-type"] == "audio/mpeg"
    samples, rate = decode(b"".join(chunks))
    assert word_error_rate(TEXT, transcribe(samples, rate)) <= 0.5


def test_long_input_streams_in_many_chunks(live_server: RunningServer) -> None:
    text = " ".join(["Here is another sentence for the stream to hear."] * 12)
    chunks, _ = speech(live_server, response_format="pcm", input=text)
    assert len(chunks) > 3
    assert abs(len(b"".join(chunks)) / 2 / 24000 - made_seconds(live_server, text)) < 0.05


def test_speed_is_clamped_to_what_the_engine_supports(live_server: RunningServer) -> None:
    _, fast = speech(live_server, response_format="pcm", speed=4.0, input="Quick as a fox today.")
    _, slow = speech(live_server, response_format="pcm", speed=0.25, input="Slow as a snail today.")
    assert fast["x-voxroom-speed"] == "2"
    assert slow["x-voxroom-speed"] == "0.5"


def test_voices_by_openai_name_by_id_and_by_name(live_server: RunningServer) -> None:
    voice_id = add_voice(live_server, "Mia Studio")
    for voice in ("nova", "shimmer", "stock", voice_id, "mia studio"):
        chunks, headers = speech(live_server, response_format="pcm", voice=voice, input="Hi there.")
        assert b"".join(chunks), voice
    with pytest.raises(openai.NotFoundError) as err:
        speech(live_server, voice="nobody-here")
    assert err.value.body["param"] == "voice"  # type: ignore[index]
    assert err.value.body["code"] == "voice_not_found"  # type: ignore[index]


def test_instructions_are_accepted(live_server: RunningServer) -> None:
    chunks, _ = speech(live_server, model="gpt-4o-mini-tts", instructions="Speak cheerfully.", response_format="pcm")
    assert b"".join(chunks)


@pytest.mark.parametrize(("params", "param"), [
    ({"model": "tts-9"}, "model"),
    ({"input": ""}, "input"),
    ({"input": "x" * 4097}, "input"),
    ({"response_format": "ogg"}, "response_format"),
    ({"speed": 5.0}, "speed"),
    ({"speed": 0.1}, "speed"),
])
def test_bad_requests_get_openai_errors(live_server: RunningServer, params: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        speech(live_server, **params)
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == param and body["type"] == "invalid_request_error"
    assert body["message"]


def test_error_shape_is_openais(live_server: RunningServer) -> None:
    status, _, raw = live_server.request("POST", "/v1/audio/speech", {"model": "tts-1", "voice": "alloy"})
    import json
    assert status == 400
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "input"
    status, _, raw = live_server.request("POST", "/v1/audio/speech", raw=b"{not json", token=live_server.token)
    assert status == 400 and set(json.loads(raw)["error"]) == {"message", "type", "param", "code"}


def test_a_wrong_key_is_an_authentication_error(live_server: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(live_server, token="vxr_not-a-token").audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert err.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        client(live_server, token="vxr_not-a-token").models.list()


def test_models_list(live_server: RunningServer) -> None:
    ids = [m.id for m in client(live_server).models.list()]
    assert "tts-1" in ids and "voxroom-tts" in ids
