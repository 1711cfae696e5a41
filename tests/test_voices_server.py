"""Voices through the real server: upload enrollment, bad uploads, isolation between accounts by
every route, deletion that leaves no trace on disk, and (with GPT-SoVITS models) a cloned voice
speaking into a room."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import SHARED, RunningServer, start_server
from voxroom.models.audio_decode import encode_wav as wav_bytes

SPEECH = SHARED / "speech"
pytestmark = pytest.mark.skipif(not (SPEECH / "README.md").is_file(), reason="../shared/speech is not here")


AWB = "pysptk__cmu_arctic_awb_a0007.wav"  # "And you always want to see it in the superlative degree."


def recording(seconds: float = 30.0, clip_name: str = AWB) -> tuple[bytes, np.ndarray]:
    """One speaker (CMU arctic 'awb', 4 s, unless `clip_name` names another clip in ../shared/speech)
    read again and again with pauses: a clean enrollment upload."""
    from voxroom.models.audio_decode import decode_audio

    clip = decode_audio(SPEECH / clip_name, sample_rate=16000).samples
    gap = np.zeros(8000, np.float32)
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < seconds * 16000:
        parts += [clip, gap]
    audio = np.concatenate(parts)
    return wav_bytes(audio, 16000), audio


AWB_TEXT = "And you always want to see it in the superlative degree."


def said(audio: np.ndarray) -> str:
    """The words of `recording`'s audio: the awb sentence once per reading (4.0 s and a 0.5 s pause)."""
    return " ".join([AWB_TEXT] * round(len(audio) / 16000 / 4.5))


def upload(server: RunningServer, data: bytes, *, token: str | None = None, name: str = "me",
           filename: str = "take1.wav", consent: str = "true", transcript: str | None = None,
           ui: str = "en") -> tuple[int, Any]:
    query = f"/api/voices?name={name}&lang=en&consent={consent}&ui={ui}"
    if transcript:
        query += "&transcript=" + transcript.replace(" ", "%20")
    req_token = server.token if token is None else token
    import urllib.request

    req = urllib.request.Request(server.base + query, data=data, method="POST",
                                 headers={"Authorization": f"Bearer {req_token}", "X-Filename": filename,
                                          "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def voice_files(server: RunningServer) -> list[Path]:
    return [p for p in (server.server.config.data_dir / "voices").rglob("*") if p.is_file()]


def test_upload_makes_a_voice_and_the_console_is_told_it_cannot_clone(live_server: RunningServer) -> None:
    data, audio = recording()
    status, body = upload(live_server, data, transcript=said(audio))
    assert status == 201, body
    voice = body["voice"]
    assert body["report"]["verdict"] in ("usable", "usable_with_warnings")
    assert 3 <= voice["reference"]["main"]["end"] / 16000 - voice["reference"]["main"]["start"] / 16000 <= 10
    assert voice["engine"] == "stock" and voice["consent"]["who"] == "owner"
    listing = live_server.json("GET", "/api/voices")[1]
    assert voice["id"] in [v["id"] for v in listing["voices"]] and "no GPT-SoVITS models" in listing["advice"]
    status, headers, wav = live_server.request("GET", f"/api/voices/{voice['id']}/reference.wav")
    assert status == 200 and headers["content-type"] == "audio/wav" and len(wav) > 32000 * 2 * 3
    status, headers, sample = live_server.request("GET", f"/api/voices/{voice['id']}/sample.wav")
    assert status == 200 and headers["x-voxroom-engine"] == "stock" and len(sample) > 22050
    status, renamed = live_server.json("PATCH", f"/api/voices/{voice['id']}", {"name": "Stream voice"})
    assert status == 200 and renamed["name"] == "Stream voice"


@pytest.mark.parametrize("data, code", [
    (b"this is not audio at all, just text" * 100, "not_audio"),
    (b"", "empty"),
    (None, "truncated"),
    ("short", "too_short"),
])
def test_bad_uploads_are_refused_and_leave_nothing_behind(live_server: RunningServer, data: Any, code: str) -> None:
    good, audio = recording(10)
    if data is None:
        data = good[: len(good) // 3][:60] + good[44:100]  # a header promising more than there is
    elif data == "short":
        data = wav_bytes(audio[:8000], 16000)  # 0.5 s
    before = ({v["id"] for v in live_server.json("GET", "/api/voices")[1]["voices"]}, set(voice_files(live_server)))
    status, body = upload(live_server, data)
    assert status == 400 and body["error"], body
    assert body["code"] == code or (code == "truncated" and body["code"] in ("truncated", "not_audio", "too_short"))
    after = ({v["id"] for v in live_server.json("GET", "/api/voices")[1]["voices"]}, set(voice_files(live_server)))
    assert after == before


def test_silence_is_a_rerecord_and_no_voice_is_kept(live_server: RunningServer) -> None:
    before = set(voice_files(live_server))
    status, body = upload(live_server, wav_bytes(np.zeros(16000 * 20, np.float32), 16000), ui="zh-CN")
    assert status == 422 and body["report"]["verdict"] == "rerecord"
    assert all(re.search("[\u4e00-\u9fff]", p["message"]) for p in body["report"]["problems"])  # the reader's language
    assert set(voice_files(live_server)) == before


def test_consent_is_required(live_server: RunningServer) -> None:
    data, _ = recording(10)
    status, body = upload(live_server, data, consent="false")
    assert status == 400 and "consent" in body["error"]


def test_wrong_extension_still_works_by_content(live_server: RunningServer) -> None:
    data, _ = recording(12)
    status, body = upload(live_server, data, filename="take.mp3")
    assert status == 201, body


async def test_another_account_cannot_touch_the_voice_by_any_route(live_server: RunningServer) -> None:
    data, _ = recording(12)
    status, body = await asyncio.to_thread(upload, live_server, data)
    voice_id = body["voice"]["id"]
    _, intruder = live_server.server.accounts.create("intruder-voices")
    _, intruder_room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "theirs"}, intruder)
    checks = [
        ("GET", f"/api/voices/{voice_id}/reference.wav", None),
        ("GET", f"/api/voices/{voice_id}/sample.wav", None),
        ("PATCH", f"/api/voices/{voice_id}", {"name": "stolen"}),
        ("DELETE", f"/api/voices/{voice_id}", None),
        ("PATCH", f"/api/rooms/{intruder_room['id']}/cohost", {"voice": voice_id}),
        ("POST", f"/api/rooms/{intruder_room['id']}/say", {"text": "hi", "voice": voice_id}),
    ]
    for method, path, payload in checks:
        status, _, raw = await asyncio.to_thread(live_server.request, method, path, payload, intruder)
        assert status == 404, (method, path, status, raw[:200])
    listing = (await asyncio.to_thread(live_server.json, "GET", "/api/voices", None, intruder))[1]
    assert voice_id not in [v["id"] for v in listing["voices"]]
    async with connect(live_server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": intruder}))
        await ws.recv()
        await ws.send(json.dumps({"type": "say", "id": "s", "text": "hello", "voice": voice_id}))
        assert json.loads(await ws.recv())["code"] == "unknown_voice"
    # and the owner still has it, untouched
    owner_listing = (await asyncio.to_thread(live_server.json, "GET", "/api/voices"))[1]
    assert any(v["id"] == voice_id and v["name"] == "me" for v in owner_listing["voices"])


def test_delete_leaves_no_trace_on_disk(live_server: RunningServer) -> None:
    data, audio = recording(15)
    status, body = upload(live_server, data)
    voice_id = body["voice"]["id"]
    data_dir = live_server.server.config.data_dir
    status, _ = live_server.json("DELETE", f"/api/voices/{voice_id}")
    assert status == 200
    assert live_server.json("DELETE", f"/api/voices/{voice_id}")[0] == 404
    assert not (data_dir / "voices" / voice_id).exists()
    # The voice's audio in any form we ever held: the upload's bytes, 16-bit and float32 PCM.
    needles = [data[1000:1064], (audio[20000:20016] * 32767).astype("<i2").tobytes(),
               audio[20000:20016].astype("<f4").tobytes(), voice_id.encode()]
    for path in data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for needle in needles:
                assert needle not in content, f"{path} still holds the deleted voice's data"


# -- with GPT-SoVITS models: a cloned voice speaks into a room --------------------------------

@pytest.fixture(scope="module")
def cloning_server(tmp_path_factory: pytest.TempPathFactory, stock_engine: Any) -> Iterator[RunningServer]:
    from gpt_sovits.model_folders import write_models_dir
    from voxroom.models.engine import EngineRouter
    from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions

    models = write_models_dir(tmp_path_factory.mktemp("models"))
    cloning = GPTSoVITSEngine.from_models_dir(models, options=SynthesisOptions(seed=5))
    yield from start_server(tmp_path_factory.mktemp("cloning-data"), EngineRouter(stock_engine, cloning),
                            models_dir=models)


async def test_cloned_voice_streams_into_a_room(cloning_server: RunningServer) -> None:
    from speech_check import collect_frames

    data, audio = recording(20)
    status, body = await asyncio.to_thread(upload, cloning_server, data, transcript=said(audio))
    assert status == 201, body
    voice = body["voice"]
    assert voice["engine"] == "gpt-sovits"
    _, room = await asyncio.to_thread(cloning_server.json, "POST", "/api/rooms", {"name": "cloned"})
    async with connect(cloning_server.ws_url, max_size=2**24) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": cloning_server.token}))
        await ws.recv()
        await ws.send(json.dumps({"type": "say", "id": "c1", "text": "Thanks for the follow, welcome in.",
                                  "voice": voice["id"], "room": room["id"]}))
        messages, audio = await collect_frames(ws, "c1")
    assert [m["type"] for m in messages] == ["speech.queued", "speech.started", "speech.ended"]
    assert messages[-1]["reason"] == "done" and audio.size > 48000 * 0.5
    assert np.sqrt(np.mean(audio**2)) > 0.005
    status, headers, _ = await asyncio.to_thread(cloning_server.request, "GET", f"/api/voices/{voice['id']}/sample.wav")
    assert status == 200 and headers["x-voxroom-engine"] == "gpt-sovits"


async def test_live_recording_gets_levels_advice_and_a_voice(live_server: RunningServer) -> None:
    """The console's live path without a browser: PCM16 frames in, meter and advice out, a voice at the end."""
    from voxroom.models.enrollment.scripts import script_for

    _, audio = recording(24)
    clipped = np.clip(audio * 8, -1, 1)  # the middle part is driven into clipping
    take = np.concatenate([audio[: 16000 * 8], clipped[16000 * 8 : 16000 * 12], audio[16000 * 12 :]])
    pcm = (take * 32767).astype("<i2").tobytes()
    url = live_server.ws_url.replace("/ws", "/api/enroll/live") + f"?token={live_server.token}"
    async with connect(url) as ws:
        await ws.send(b"\x00\x00" * 160)  # audio before start: refused, connection stays
        assert json.loads(await ws.recv())["code"] == "not_started"
        await ws.send(json.dumps({"type": "start", "lang": "en", "name": "live take", "consent": False}))
        assert json.loads(await ws.recv())["code"] == "invalid_start"
        await ws.send(json.dumps({"type": "start", "lang": "en", "name": "live take", "consent": True, "ui": "zh"}))
        await ws.send(json.dumps({"type": "sentence", "index": 0}))
        for start in range(0, len(pcm), 3200):  # 100 ms frames
            await ws.send(pcm[start : start + 3200])
        await ws.send(json.dumps({"type": "finish"}))
        levels, advice, result = 0, [], None
        async with asyncio.timeout(60):
            while result is None:
                msg = json.loads(await ws.recv())
                if msg["type"] == "level":
                    levels += 1
                    assert 0 <= msg["level"] <= 1
                elif msg["type"] == "advice":
                    advice.append(msg["code"])
                    if msg["code"] == "clipping":
                        assert "削波" in msg["message"]  # an English script, advice in the reader's Chinese
                elif msg["type"] == "result":
                    result = msg
                elif msg["type"] == "error":
                    raise AssertionError(msg)
    assert levels >= len(take) / 16000 * 10 * 0.9  # a meter value per 100 ms of audio
    assert "clipping" in advice
    assert result["report"]["verdict"] in ("usable_with_warnings", "rerecord")
    problems = {p["code"]: p for p in result["report"]["problems"]}
    assert "clipping" in problems
    assert set(advice) <= set(problems)  # every piece of live advice is part of the verdict
    assert problems["clipping"]["said_at"] and all(8 <= t <= 13 for t in problems["clipping"]["said_at"])
    assert script_for("en").sentences  # the script the console shows exists


async def test_vanished_live_recorder_leaves_nothing(live_server: RunningServer) -> None:
    before = set(voice_files(live_server))
    url = live_server.ws_url.replace("/ws", "/api/enroll/live") + f"?token={live_server.token}"
    ws = await connect(url)
    await ws.send(json.dumps({"type": "start", "lang": "zh", "name": "gone", "consent": True}))
    await ws.send(b"\x10\x00" * 16000)
    ws.transport.abort()
    await asyncio.sleep(0.5)
    assert set(voice_files(live_server)) == before
    with pytest.raises(InvalidStatus):  # a wrong token never gets a connection
        await connect(url.replace(live_server.token, "vxr_wrong"))


def test_reference_clip_can_be_replaced_and_checked(live_server: RunningServer) -> None:
    data, _ = recording(20)
    _, body = upload(live_server, data)
    voice_id = body["voice"]["id"]
    path = f"/api/voices/{voice_id}/reference"
    for bad in ({"start": 0, "end": 2}, {"start": 15, "end": 28}, {"start": "a", "end": 5}, {"start": 1, "end": 6, "transcript": 3}):
        status, err = live_server.json("PUT", path, bad)
        assert status == 400 and err["error"], bad
    status, voice = live_server.json("PUT", path, {"start": 4.5, "end": 9.0, "transcript": "And you always want"})
    assert status == 200 and voice["reference"]["main"]["start"] == 72000 and voice["transcript"] == "And you always want"
    status, _, wav = live_server.request("GET", f"/api/voices/{voice_id}/reference.wav")
    assert status == 200 and abs((len(wav) - 44) / 2 / 32000 - 4.5) < 0.01


def test_voxroom_serve_with_models_dir_turns_cloning_on(tmp_path: Path) -> None:
    """The command a user runs after `voxroom models pull`: official-format files in DIR."""
    import os
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    from gpt_sovits.model_folders import write_models_dir

    models = write_models_dir(tmp_path / "models")
    env = {**os.environ, "VOXROOM_DATA_DIR": str(tmp_path / "data")}
    bad = subprocess.run([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--port", "0", "--models",
                          str(tmp_path / "empty")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "voxroom models pull" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "voxroom.streaming.cli", "serve", "--port", "0", "--models",
                             str(models), "--precision", "int8"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = token = None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and url is None:
            lines.append(proc.stdout.readline())
            match = re.search(r"(http://127\.0\.0\.1:\d+)/console#token=(vxr_\S+)", lines[-1])
            if match:
                url, token = match.groups()
        assert url, "no console URL printed"
        assert "GPT-SoVITS v2 ready (int8)." in "".join(lines)
        with urllib.request.urlopen(url + "/api/health", timeout=10) as res:
            health = json.loads(res.read())
        assert health["can_clone"] is True
        req = urllib.request.Request(url + "/api/voices", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as res:
            assert json.loads(res.read())["advice"] is None
    finally:
        proc.terminate()
        proc.wait(10)
