"""The examples in docs/examples/ run as they are, as a reader would run them, against a real server
(with an account of their own, so what they set stays theirs)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from conftest import RunningServer

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.fixture(scope="module")
def account_token(live_server: RunningServer) -> str:
    async def create() -> str:
        return live_server.server.accounts.create("docs examples")[1]
    return str(live_server.call(create()))


def run_example(server: RunningServer, token: str, name: str, *args: str, cwd: Path) -> list[str]:
    env = {**os.environ, "VOXROOM_URL": server.base, "VOXROOM_TOKEN": token}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["bot_audio.py", "gpt_sovits_tts.py",
                                                             "openai_speech.py", "room_bot.py"]


def test_room_bot(live_server: RunningServer, account_token: str, tmp_path: Path) -> None:
    out = run_example(live_server, account_token, "room_bot.py", cwd=tmp_path)
    assert out[0].startswith("joined ") and out[1].startswith("chat: ")
    assert out.index("speech.started") < out.index("speech.ended") == len(out) - 1
    assert live_server.json("GET", "/api/rooms", token=account_token)[1]["rooms"] == []  # it cleaned up


def test_bot_audio(live_server: RunningServer, account_token: str, tmp_path: Path) -> None:
    out = run_example(live_server, account_token, "bot_audio.py", "hello.wav", cwd=tmp_path)
    assert out[0].startswith("done: ") and out[1] == "long line: cancelled"
    with wave.open(str(tmp_path / "hello.wav")) as wav:
        assert wav.getframerate() == 48000 and wav.getnframes() > 48000 * 0.5


def test_openai_speech(live_server: RunningServer, account_token: str, tmp_path: Path) -> None:
    out = run_example(live_server, account_token, "openai_speech.py", cwd=tmp_path)
    seconds = float(out[0].split()[0])
    assert seconds > 0.5


def test_gpt_sovits_tts(live_server: RunningServer, account_token: str, tmp_path: Path) -> None:
    out = run_example(live_server, account_token, "gpt_sovits_tts.py", cwd=tmp_path)
    assert out[0].startswith("GET /tts: audio/wav") and out[1].startswith("POST /tts: audio/raw")
    assert out[2] == "set_refer_audio: success"
