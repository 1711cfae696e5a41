"""GPT-SoVITS api_v2 (`/tts`) and SillyTavern's GPT-SoVITS-V2 provider (`/speakers`, `POST /`) on a real
server, called the way those clients call it: token in the query or the path, no headers."""

from __future__ import annotations

import io
import json
import urllib.parse
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import numpy as np
import pytest

from conftest import RunningServer
from speech_check import as_sent, noise_ratio, transcribe, word_error_rate
from test_compat_openai import add_voice
from voxroom.streaming.audio_encoding import PcmEncoder

TEXT = "Good evening chat, the raid is on its way."
BASE = {"text": TEXT, "text_lang": "en", "ref_audio_path": "stock.wav", "prompt_lang": "en",
        "prompt_text": "", "text_split_method": "cut5", "batch_size": 1}


def get_tts(server: RunningServer, **fields: Any) -> tuple[int, dict[str, str], bytes]:
    query = urllib.parse.urlencode({**BASE, "token": server.token, **fields})
    return server.request("GET", f"/tts?{query}", token="")


def post(server: RunningServer, path: str, body: dict[str, Any], token: str | None = "") -> tuple[int, dict[str, str], bytes]:
    return server.request("POST", path, body, token=token)


def decode(body: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(body)) as container:
        frames = list(container.decode(audio=0))
    samples = np.concatenate([f.to_ndarray().astype(np.float32).mean(axis=0) for f in frames])
    if frames[0].format.name.startswith("s16"):
        samples /= 32768.0
    return samples, frames[0].sample_rate


def made_seconds(server: RunningServer, text: str) -> float:
    return server.engine.produced[text] / server.engine.sample_rate


def test_get_wav_is_a_complete_32k_file_that_says_the_words(live_server: RunningServer) -> None:
    status, headers, body = get_tts(live_server)
    assert status == 200 and headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(body)) as wav:  # real sizes in the header: the stdlib reads it whole
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (32000, 1, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    assert abs(len(samples) / 32000 - made_seconds(live_server, TEXT)) < 0.05
    # The caller gets exactly the engine's audio, through the server's frames and one resample to 32 kHz
    # (PCM16 rounding aside) ...
    engine = live_server.engine
    encoder = PcmEncoder(32000)
    pcm = encoder.push(as_sent(engine.chunks(TEXT), engine.sample_rate)) + encoder.close()
    want = np.frombuffer(pcm, "<i2") / 32768
    assert samples.size == want.size and noise_ratio(samples, want) < 1e-4, noise_ratio(samples, want)
    # ... and it says the words. The stock voice draws fresh noise on every call and pocketsphinx hears
    # it a little differently on every CPU: a WER between about 0.3 and 0.55.
    assert word_error_rate(TEXT, transcribe(samples, 32000)) <= 0.6


@pytest.mark.parametrize("mode", ["true", "1", "2", "3"])
def test_streaming_wav_is_a_header_then_raw_pcm(live_server: RunningServer, mode: str) -> None:
    text = f"Streaming mode {mode} is here."
    status, headers, body = get_tts(live_server, text=text, streaming_mode=mode)
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    assert body[:4] == b"RIFF" and body[36:40] == b"data"
    pcm = body[44:]
    assert abs(len(pcm) / 2 / 32000 - made_seconds(live_server, text)) < 0.05


@pytest.mark.parametrize("media_type", ["ogg", "aac", "raw"])
@pytest.mark.parametrize("streaming", [False, True])
def test_media_types(live_server: RunningServer, media_type: str, streaming: bool) -> None:
    text = f"Media type {media_type}, streaming {streaming}."
    status, headers, body = post(live_server, f"/tts?token={live_server.token}",
                                 {**BASE, "text": text, "media_type": media_type, "streaming_mode": streaming})
    assert status == 200 and headers["content-type"] == f"audio/{media_type}"
    if media_type == "raw":
        samples, rate = np.frombuffer(body, "<i2").astype(np.float32) / 32768, 32000
    else:
        samples, rate = decode(body)
    assert abs(len(samples) / rate - made_seconds(live_server, text)) < 0.15
    assert np.sqrt(np.mean(samples**2)) > 0.02


def test_ref_audio_path_names_a_voice_by_file_name(live_server: RunningServer) -> None:
    voice_id = add_voice(live_server, "Kiko")
    for ref in ("voices/Kiko.wav", "C:\\refs\\kiko.WAV", f"{voice_id}", f"./参考音频/{voice_id}.wav"):
        status, headers, _ = post(live_server, "/tts", {**BASE, "ref_audio_path": ref, "text": "Hello."},
                                  token=live_server.token)
        assert status == 200, ref
    status, _, body = get_tts(live_server, ref_audio_path="voices/nobody.wav")
    assert status == 400 and "no such voice" in json.loads(body)["message"]


@pytest.mark.parametrize(("fields", "words"), [
    ({"ref_audio_path": ""}, "ref_audio_path is required"),
    ({"text": ""}, "text is required"),
    ({"text_lang": "xx"}, "text_lang: xx is not supported"),
    ({"prompt_lang": None}, "prompt_lang is required"),
    ({"media_type": "mp3"}, "media_type: mp3 is not supported"),
    ({"text_split_method": "cut9"}, "text_split_method:cut9 is not supported"),
    ({"streaming_mode": 7}, "streaming_mode must be"),
    ({"speed_factor": "fast"}, "speed_factor"),
])
def test_refusals_are_api_v2s(live_server: RunningServer, fields: dict[str, Any], words: str) -> None:
    body = {k: v for k, v in {**BASE, **fields}.items() if v is not None}
    status, headers, raw = post(live_server, f"/tts?token={live_server.token}", body)
    assert status == 400
    assert words in json.loads(raw)["message"]


def test_no_token_or_a_grant_is_refused(live_server: RunningServer) -> None:
    status, _, raw = live_server.request("GET", "/tts?" + urllib.parse.urlencode(BASE), token="")
    assert status == 401 and "token" in json.loads(raw)["message"]
    status, _, raw = get_tts(live_server, token="vxr_wrong")
    assert status == 401
    _, room = live_server.json("POST", "/api/rooms", {"name": "grant test"})
    status, _, raw = get_tts(live_server, token=room["listener_grant"])
    assert status == 403 and "grant" in json.loads(raw)["message"]
    live_server.json("DELETE", f"/api/rooms/{room['id']}")


def test_sillytavern_speakers_and_post_with_the_token_in_the_path(live_server: RunningServer) -> None:
    voice_id = add_voice(live_server, "Aster")
    base = f"/st/{live_server.token}"
    status, headers, raw = live_server.request("GET", f"{base}/speakers", token="")
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    speakers = json.loads(raw)
    assert speakers[0]["voice_id"] == "stock"
    assert {"name": "Aster", "voice_id": voice_id} in [{k: s[k] for k in ("name", "voice_id")} for s in speakers]
    # exactly what the provider sends: prompt_text is the voice id, the path is made from it, streaming 'true'
    body = {"text": "The tavern is open.", "prompt_text": voice_id, "ref_audio_path": f"./参考音频/{voice_id}.wav",
            "text_lang": "en", "prompt_lang": "en", "text_split_method": "cut5", "batch_size": 1,
            "media_type": "ogg", "streaming_mode": "true"}
    status, headers, raw = post(live_server, f"{base}/", body)
    assert status == 200 and headers["content-type"] == "audio/ogg"
    samples, rate = decode(raw)
    assert len(samples) / rate > 0.5
    status, headers, _ = live_server.request("OPTIONS", f"{base}/", token="")
    assert status == 204 and "POST" in headers["access-control-allow-methods"]


def test_sillytavern_plain_routes_take_the_token_as_a_query(live_server: RunningServer) -> None:
    status, _, raw = live_server.request("GET", f"/speakers?token={live_server.token}", token="")
    assert status == 200 and json.loads(raw)[0]["name"] == "stock"
    status, _, _ = live_server.request("GET", "/speakers", token="")
    assert status == 401
    status, _, raw = post(live_server, f"/?token={live_server.token}", {**BASE, "media_type": "raw"})
    assert status == 200 and len(raw) > 32000
    status, headers, _ = live_server.request("GET", "/", token="")
    assert status == 200  # the console redirect still answers GET /


def test_web_ui_language_names_and_the_ai_vtuber_body(live_server: RunningServer) -> None:
    # AI-Vtuber's api_0322 body: no media_type, typed numbers, the web UI's language names
    body = {"text": "Hello from the other app.", "text_lang": "英文", "ref_audio_path": "stock", "prompt_text": "",
            "prompt_lang": "中文", "top_k": 5, "top_p": 0.8, "temperature": 0.8, "text_split_method": "cut5",
            "batch_size": 1, "speed_factor": 1.0, "split_bucket": True, "return_fragment": False,
            "fragment_interval": 0.3}
    status, headers, raw = post(live_server, f"/tts?token={live_server.token}", body)
    assert status == 200 and raw[:4] == b"RIFF"


def test_a_token_in_the_base_urls_user_info_is_accepted(live_server: RunningServer) -> None:
    """AI-Vtuber's api_v2 mode joins '/tts' to its base URL, which drops a '?token=' query; a base URL
    written http://any:TOKEN@host:port keeps it, sent as HTTP Basic auth by the HTTP client."""
    import httpx2

    host = live_server.base.removeprefix("http://")
    body = {"text": "Hello from the other app.", "text_lang": "en", "ref_audio_path": "stock", "prompt_lang": "en"}
    good = httpx2.post(urllib.parse.urljoin(f"http://voxroom:{live_server.token}@{host}", "/tts"), json=body, timeout=60)
    assert good.status_code == 200 and good.content[:4] == b"RIFF"
    assert good.request.headers["authorization"].startswith("Basic ")
    wrong = httpx2.post(f"http://voxroom:vxr_not-a-token@{host}/tts", json=body, timeout=60)
    garbled = httpx2.post(f"http://{host}/tts", json=body, headers={"Authorization": "Basic %%%"}, timeout=60)
    assert wrong.status_code == 401 and garbled.status_code == 401


def test_a_token_in_the_path_is_kept_out_of_the_logs() -> None:
    from voxroom.streaming.embedded import RedactCredentials

    clean = RedactCredentials()._clean
    assert clean("POST /st/vxr_abc-DEF_123/ HTTP/1.1") == "POST /st/[redacted] HTTP/1.1"
    assert "vxr_" not in clean("GET /st/vxr_abc/speakers") and "/speakers" not in clean("GET /st/vxr_abc/speakers")


def new_caller(server: RunningServer, name: str) -> tuple[str, str]:
    """A second account: its API token and the id of a voice of its own."""
    async def create() -> str:
        return server.server.accounts.create(name)[1]
    token = str(server.call(create()))
    return token, add_voice(server, f"{name} voice", token)


def set_call(server: RunningServer, path: str, token: str, **query: str) -> tuple[int, dict[str, Any]]:
    status, _, raw = server.request("GET", f"{path}?{urllib.parse.urlencode({**query, 'token': token})}", token="")
    return status, json.loads(raw)


def test_set_refer_audio_is_remembered_per_caller(live_server: RunningServer) -> None:
    (alice, alice_voice), (bob, _) = new_caller(live_server, "alice"), new_caller(live_server, "bob")
    without_ref = {k: v for k, v in BASE.items() if k != "ref_audio_path"}

    def tts_of(token: str) -> tuple[int, dict[str, str], bytes]:
        return post(live_server, f"/tts?token={token}", {**without_ref, "text": "Whose voice is this?"})

    status, _, raw = tts_of(alice)  # nothing set yet: api_v2's refusal
    assert status == 400 and json.loads(raw)["message"] == "ref_audio_path is required"
    assert set_call(live_server, "/set_refer_audio", alice, refer_audio_path=f"refs/{alice_voice}.wav") == (
        200, {"message": "success"})
    assert set_call(live_server, "/set_refer_audio", bob, refer_audio_path="stock.wav")[0] == 200
    status, answer = set_call(live_server, "/set_refer_audio", bob, refer_audio_path=f"{alice_voice}.wav")
    assert status == 400 and answer["message"] == "set refer audio failed" and "no such voice" in answer["Exception"]
    status, answer = set_call(live_server, "/set_refer_audio", bob)
    assert status == 400 and answer["message"] == "refer_audio_path is required"
    with ThreadPoolExecutor(2) as pool:  # at once: each hears its own
        a, b = pool.map(tts_of, (alice, bob))
    # both answered from their own choice (which voice each hears: tests/test_compat_cloned_voices.py)
    assert a[0] == b[0] == 200 and a[2][:4] == b[2][:4] == b"RIFF"
    status, _, raw = post(live_server, f"/tts?token={live_server.token}", {**without_ref, "text": "Owner."})
    assert status == 400  # the owner set nothing: other callers' choices are not theirs


def test_set_weights_without_models_says_what_is_possible(live_server: RunningServer) -> None:
    for path, label in (("/set_gpt_weights", "gpt"), ("/set_sovits_weights", "sovits")):
        status, answer = set_call(live_server, path, live_server.token, weights_path="GPT_weights_v2/mine-e15.ckpt")
        assert status == 400 and answer["message"] == f"change {label} weight failed"
        assert "--models" in answer["Exception"]
        status, answer = set_call(live_server, path, live_server.token)
        assert status == 400 and answer["message"] == "weights_path is required"
    status, _, _ = live_server.request("GET", "/set_gpt_weights?weights_path=x.ckpt", token="")
    assert status == 401
