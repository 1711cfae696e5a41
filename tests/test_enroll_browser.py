"""The enrollment page in a real headless Chromium whose fake microphone plays a real recording.

The page records through an AudioWorklet, streams PCM16 to the server over WebSocket, shows the
server's meter and advice while recording, and lists the voice it made; a file upload goes through
the same page. Then the voice is renamed, its sample played (the page says honestly that the stock
voice speaks it) and deleted in one click.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SHARED, RunningServer, chromium
from tests.enrollment.recordings import script_reading
from voxroom.models.audio_decode import decode_audio, encode_wav
from voxroom.models.enrollment.scripts import script_for

SPEECH = SHARED / "speech"
pytestmark = pytest.mark.skipif(not (SPEECH / "README.md").is_file(), reason="../shared/speech is not here")
CLEAN_S, CLIPPED_S = 6.0, 4.0
READ = 6  # script sentences read in the clean take


def take(seconds: float) -> np.ndarray:
    """One real speaker read again and again with pauses (16 kHz)."""
    clip = decode_audio(SPEECH / "pysptk__cmu_arctic_awb_a0007.wav", sample_rate=16000).samples
    gap = np.zeros(8000, np.float32)
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < seconds * 16000:
        parts += [clip, gap]
    return np.concatenate(parts)[: int(seconds * 16000)]


def microphone(path: Path, audio: np.ndarray) -> Iterator[Any]:
    """A browser whose fake microphone plays `audio` (looping) while the page records."""
    path.write_bytes(encode_wav(audio, 16000))
    with chromium(f"--use-file-for-fake-audio-capture={path}") as browser:
        yield browser


@pytest.fixture
def clipping_microphone(tmp_path: Path) -> Iterator[Any]:
    """Clean speech, then the same speech driven hard into clipping."""
    clean = take(30)
    split = int(CLEAN_S * 16000)
    clipped = np.clip(clean[split : split + int(CLIPPED_S * 16000)] * 8, -1, 1)
    yield from microphone(tmp_path / "clipping.wav", np.concatenate([clean[:split], clipped, clean[split:]]))


@pytest.fixture
def clean_microphone(tmp_path: Path) -> Iterator[Any]:
    yield from microphone(tmp_path / "clean.wav", take(40))


@pytest.fixture
def script_microphone(tmp_path: Path) -> Iterator[Any]:
    """The first READ sentences of the English script read aloud (the stock voice: known words), then silence."""
    audio, spans = script_reading(list(range(READ)), gap_s=1.0)
    ends = [end / 16000 + 0.5 for _, _, end in spans]  # the middle of the pause after each sentence
    yield from ((browser, ends) for browser in microphone(tmp_path / "script.wav",
                                                          np.concatenate([audio, np.zeros(16000 * 30, np.float32)])))


def open_enroll(server: RunningServer, browser: Any) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.base}/enroll#token={server.token}")
    page.wait_for_function("document.querySelectorAll('#script li').length > 3")
    return page, errors


def start_recording(page: Any, name: str) -> None:
    page.fill("#name", name)
    page.click("#record")
    assert "consent" in page.inner_text("#record-status")  # no recording without consent
    page.check("#consent")
    page.click("#record")
    page.wait_for_function("window.voxroomEnroll.state === 'recording' && window.voxroomEnroll.levels >= 10",
                           timeout=15000)
    assert page.get_attribute("#script li:nth-child(1)", "class") == "reading"


def finish_recording(page: Any) -> dict[str, Any]:
    page.click("#finish")
    page.wait_for_function("window.voxroomEnroll.state === 'done'", timeout=60000)
    return page.evaluate("window.voxroomEnroll")


def test_clipping_is_called_out_while_recording_and_the_take_is_refused(
        live_server: RunningServer, clipping_microphone: Any) -> None:
    page, errors = open_enroll(live_server, clipping_microphone)
    before = [v["id"] for v in live_server.json("GET", "/api/voices")[1]["voices"]]
    start_recording(page, "clipped take")
    page.keyboard.press("Space")  # space moves to the next sentence
    assert page.get_attribute("#script li:nth-child(2)", "class") == "reading"
    # The clipped stretch starts 6 s into the fake microphone's file.
    page.wait_for_function("window.voxroomEnroll.advice.some(a => a.code === 'clipping')", timeout=20000)
    page.wait_for_function("window.voxroomEnroll.levels >= 80", timeout=20000)  # past the clipped stretch
    stats = page.evaluate("window.voxroomEnroll")
    assert stats["levels"] >= 80  # the server's meter, ten values a second
    assert stats["bytesSent"] >= 16000 * 2 * 8  # PCM16 went up as it was recorded
    clip = next(a for a in stats["advice"] if a["code"] == "clipping")
    assert CLEAN_S - 0.5 <= clip["time"] <= CLEAN_S + 1.0  # advice about the clipped part, within a second of it
    assert page.locator("#advice li[data-code='clipping']").count() == 1
    stats = finish_recording(page)
    report = stats["result"]["report"]
    assert stats["result"]["voice"] is None and report["verdict"] == "rerecord"
    assert page.inner_text("#verdict") == "please record again"
    assert page.locator("#problems li[data-code='clipping']").count() == 1
    assert "record again" in page.inner_text("#record-status")
    assert [v["id"] for v in live_server.json("GET", "/api/voices")[1]["voices"]] == before  # nothing kept
    assert stats["errors"] == [] and not errors
    page.close()


def test_a_clean_take_recorded_in_the_browser_becomes_a_voice(
        live_server: RunningServer, script_microphone: Any) -> None:
    browser, ends = script_microphone
    page, errors = open_enroll(live_server, browser)
    start_recording(page, "browser take")
    sent = "window.voxroomEnroll.bytesSent >= {}"  # the microphone's own clock: PCM16 at 16 kHz went up
    for end in ends[:-1]:  # the reader moves on after each sentence
        page.wait_for_function(sent.format(int(end * 32000)), timeout=20000)
        page.click("#next")
    page.wait_for_function(sent.format(int(ends[-1] * 32000)), timeout=20000)
    stats = finish_recording(page)
    assert [a["code"] for a in stats["advice"] if a["code"] != "too_fast"] == []  # no false alarms on clean speech
    voice, report = stats["result"]["voice"], stats["result"]["report"]
    assert voice is not None and voice["name"] == "browser take", report
    assert report["verdict"] in ("usable", "usable_with_warnings")
    assert not [p for p in report["problems"] if p["severity"] == "severe"], report["problems"]
    assert report["reference"]["transcript_check"] == "verified"  # pocketsphinx heard the script's words in it
    assert "reference words checked" in page.inner_text("#measures")
    assert report["reference"]["main"]["transcript"] in " ".join(script_for("en").sentences[:READ])
    for code in {a["code"] for a in stats["advice"]}:  # the verdict and the advice given on the way agree
        assert page.locator(f"#problems li[data-code='{code}']").count() == 1
        assert "said during the take" in page.inner_text(f"#problems li[data-code='{code}']")
    assert ends[-1] - 1 <= voice["duration"] <= ends[-1] + 5
    page.wait_for_selector(f"#voices li[data-voice='{voice['id']}']")
    assert "Saved" in page.inner_text("#record-status")
    assert stats["errors"] == [] and not errors
    page.close()


def test_upload_play_rename_and_delete_in_one_click(
        live_server: RunningServer, clean_microphone: Any, tmp_path: Path) -> None:
    upload = tmp_path / "my take.flac.wav"
    upload.write_bytes(encode_wav(take(20), 16000))
    page, errors = open_enroll(live_server, clean_microphone)
    page.fill("#name", "uploaded voice")
    page.set_input_files("#file", str(upload))
    page.check("#upload-consent")
    page.click("#upload-form button")
    page.wait_for_function("document.querySelector('#upload-status').innerText.startsWith('Saved')", timeout=60000)
    voice_id = page.evaluate("window.voxroomEnroll.result.voice.id")
    item = f"#voices li[data-voice='{voice_id}']"
    page.wait_for_selector(item)
    assert "usable" in page.inner_text("#verdict")

    page.click(f"{item} .clips button")  # the reference clip plays
    page.wait_for_function("document.querySelector('#player').dataset.playing?.includes('reference.wav')")
    page.click(f"{item} button:has-text('Play sample')")
    page.wait_for_function("document.querySelector('#player-note').innerText.includes('stock voice')", timeout=30000)
    duration = page.evaluate("""new Promise(r => { const p = document.querySelector('#player');
        if (p.readyState >= 1) r(p.duration); else p.onloadedmetadata = () => r(p.duration); })""")
    assert duration > 2.0  # a real sample came back and the browser decoded it

    owner = live_server.server.accounts.by_token(live_server.token).id
    page.fill(f"{item} .voice-name", "renamed voice")
    page.click(f"{item} button:has-text('Rename')")
    page.wait_for_function(f"document.querySelector(\"{item} .voice-name\")?.value === 'renamed voice'")
    assert live_server.server.voices.store.get(owner, voice_id).name == "renamed voice"

    page.click(f"{item} button:has-text('Delete')")
    page.wait_for_selector(item, state="detached")
    assert voice_id not in [v["id"] for v in live_server.json("GET", "/api/voices")[1]["voices"]]
    voice_dir = live_server.server.config.data_dir / "voices" / voice_id
    assert not voice_dir.exists()
    assert page.evaluate("window.voxroomEnroll.errors") == [] and not errors
    page.close()


def test_a_wrong_token_is_told_plainly(live_server: RunningServer, clean_microphone: Any) -> None:
    page = clean_microphone.new_page()
    page.goto(f"{live_server.base}/enroll#token=vxr_not_a_token")
    page.wait_for_selector("#auth-error:not([hidden])")
    assert "Cannot use this page" in page.inner_text("#auth-error")
    page.close()


def test_a_chinese_browser_gets_the_page_script_and_report_in_chinese(
        live_server: RunningServer, clean_microphone: Any, tmp_path: Path) -> None:
    upload = tmp_path / "take.wav"
    upload.write_bytes(encode_wav(take(12), 16000))
    context = clean_microphone.new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live_server.base}/enroll#token={live_server.token}")
    page.wait_for_function("document.querySelectorAll('#script li').length > 3")
    assert page.inner_text("h1") == "你的副主播声音" and page.input_value("#lang") == "zh"
    assert re.search("[\u4e00-\u9fff]", page.inner_text("#script li:first-child"))  # the Chinese script
    assert "无法克隆" in page.inner_text("#voice-notice")
    page.set_input_files("#file", str(upload))
    page.check("#upload-consent")
    page.click("#upload-form button")
    page.wait_for_function("document.querySelector('#upload-status').innerText.startsWith('已保存')", timeout=60000)
    assert page.inner_text("#verdict") == "可以使用，但有提醒"  # 12 s is too little speech: a warning
    assert re.search("[\u4e00-\u9fff]", page.inner_text("#problems"))  # the report's own words, in Chinese
    voice_id = page.evaluate("window.voxroomEnroll.result.voice.id")
    page.click(f"#voices li[data-voice='{voice_id}'] button:has-text('删除')")
    page.wait_for_selector(f"#voices li[data-voice='{voice_id}']", state="detached")
    assert not errors
    context.close()
