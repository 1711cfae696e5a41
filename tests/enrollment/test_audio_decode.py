"""Decoding uploads: every kind of bad file gets its own clear error; good ones decode by content."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from tests.enrollment.recordings import AWB, SPEECH, THORSTEN, need_speech
from voxroom.models.audio_decode import AudioDecodeError, DecodeLimits, decode_audio, encode_wav


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    return encode_wav(samples, rate)


def _tone(seconds: float, rate: int = 16000) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * rate)) / rate)


def _encode(samples: np.ndarray, fmt: str, codec: str, rate: int = 48000, channels: str = "mono") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = channels
        pcm = (samples * 32767).astype(np.int16)
        data = np.repeat(pcm[None, :], 2, axis=0).reshape(1, -1, order="F") if channels == "stereo" else pcm[None, :]
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=channels)
        frame.sample_rate, frame.pts = rate, 0
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return buf.getvalue()


def _long_ogg(seconds: float) -> bytes:
    """A compact Opus file `seconds` long: ten seconds encoded once, its packets muxed again and again."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as c:
        s = c.add_stream("libopus", rate=48000)
        s.bit_rate, s.layout = 6000, "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 480000), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        packets = [*s.encode(frame), *s.encode(None)]
        tb = packets[0].time_base
        raw = [(bytes(p), p.pts, p.duration) for p in packets if p.pts is not None and p.pts >= 0]
        step = int(10 / tb)
        for k in range(int(seconds // 10)):
            for data, pts, duration in raw:
                p = av.Packet(data)
                p.pts = p.dts = pts + k * step
                p.duration, p.time_base, p.stream = duration, tb, s
                c.mux(p)
    return buf.getvalue()


def _code(upload: bytes, **kwargs) -> str:
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(upload, **kwargs)
    assert err.value.message and err.value.message[0].isupper()  # a sentence for a person
    return err.value.code


def test_real_recording_decodes_to_mono_float_at_the_target_rate() -> None:
    need_speech()
    d = decode_audio(SPEECH / THORSTEN, sample_rate=16000)
    assert d.sample_rate == 16000 and d.source_rate == 24000 and d.container == "wav"
    assert d.samples.dtype == np.float32 and d.samples.ndim == 1
    assert d.duration == pytest.approx(7.62, abs=0.01)
    assert 0.05 < np.abs(d.samples).max() <= 1.0
    assert d.notes == []


def test_compressed_stereo_upload_decodes() -> None:
    blob = _encode(_tone(3.0, 48000), "ogg", "libopus", channels="stereo")
    d = decode_audio(blob, sample_rate=16000, filename="take1.ogg")
    assert d.codec == "opus" and d.source_channels == 2
    assert d.duration == pytest.approx(3.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(d.samples[1000:17000]))
    assert np.argmax(spectrum) == pytest.approx(220, abs=2)  # 16000 samples: one bin per Hz


def test_wrong_extension_is_read_by_content_and_said() -> None:
    need_speech()
    blob = (SPEECH / AWB).read_bytes()
    d = decode_audio(blob, filename="voice.mp3")
    assert d.duration == pytest.approx(4.0, abs=0.01)
    assert d.notes and ".mp3" in d.notes[0] and "WAV" in d.notes[0]


def test_not_audio() -> None:
    assert _code(b"This is a text file, not a recording.\n" * 50) == "not_audio"
    assert _code(b"\x89PNG\r\n\x1a\n" + bytes(200)) in ("not_audio",)


def test_empty() -> None:
    assert _code(b"") == "empty"
    assert _code(_wav(np.zeros(0))) in ("empty", "not_audio")


def test_truncated_wav() -> None:
    need_speech()
    blob = (SPEECH / AWB).read_bytes()
    assert _code(blob[: len(blob) // 2]) == "truncated"


def test_truncated_mp3() -> None:
    blob = _encode(_tone(4.0, 48000), "mp3", "libmp3lame")
    assert decode_audio(blob).duration == pytest.approx(4.0, abs=0.1)
    assert _code(blob[: len(blob) // 3]) == "truncated"


def test_too_short() -> None:
    assert _code(_wav(_tone(0.5))) == "too_short"


def test_two_hour_file_is_refused_from_its_header() -> None:
    blob = _long_ogg(7200)
    assert len(blob) < 4_000_000
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(blob)
    assert err.value.code == "too_long" and "2 h" in err.value.message


def test_too_big_is_refused_before_parsing(tmp_path: Path) -> None:
    assert _code(b"\0" * 2048, limits=DecodeLimits(max_bytes=1024)) == "too_big"
    big = tmp_path / "huge.wav"
    big.write_bytes(_wav(_tone(2.0)))
    assert _code(big, limits=DecodeLimits(max_bytes=10_000)) == "too_big"


def test_length_is_enforced_while_decoding_when_the_header_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # Browser MediaRecorder files (WebM) carry no duration: the limit must hold during decoding too.
    from voxroom.models import audio_decode

    monkeypatch.setattr(audio_decode, "_header_duration", lambda container, stream: None)
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(_wav(_tone(4.0)), limits=DecodeLimits(max_seconds=2.0))
    assert err.value.code == "too_long"


def _never_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxroom.models import audio_decode

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started before the header was checked")

    monkeypatch.setattr(audio_decode, "_decode_stream", refuse)


@pytest.mark.parametrize("name, code", [("wav_1hz", "bad_header"), ("wav_2ghz", "bad_header"),
                                        ("wav_zero_channels", "bad_header"), ("wav_255_channels", "bad_header"),
                                        ("flac_silent_7.1_192k_60s", "too_long"),
                                        ("flac_silent_mono_48k_20min", "too_long")])
def test_lying_headers_and_bombs_are_refused_before_decoding(monkeypatch: pytest.MonkeyPatch, name: str,
                                                            code: str) -> None:
    """The reported case: a 1,844-byte WAV declaring 1 Hz was resampled to 16 kHz (15-30 s, 1.3 GB)."""
    from tests.upload_corpus import corpus

    blob = corpus()[name]
    _never_decode(monkeypatch)
    error = _code(blob)
    assert error == code


def test_decoding_work_is_capped_when_the_header_hides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 channels at 96 kHz with no duration in the header: the budget in source samples stops it."""
    from tests.upload_corpus import encoded
    from voxroom.models import audio_decode

    blob = encoded("flac", "flac", 96000, 3, "7.1", silent=True)
    monkeypatch.setattr(audio_decode, "_header_duration", lambda container, stream: None)
    with pytest.raises(AudioDecodeError) as err:
        decode_audio(blob, limits=DecodeLimits(max_source_samples=96000 * 8))
    assert err.value.code == "too_long" and "8 channel" in err.value.message


def test_a_stream_that_changes_format_midway_is_damaged_not_an_exception() -> None:
    """Bit flips in an MP3 made PyAV's resampler raise ValueError, which reached the user as raw text."""
    from tests.upload_corpus import _mutated, encoded

    mp3 = encoded("mp3", "mp3", 16000, 5)
    for seed in (1, 4, 9):  # these flips change a frame's format mid-stream
        with pytest.raises(AudioDecodeError) as err:
            decode_audio(_mutated(mp3, seed, 60, len(mp3)))
        assert err.value.code == "truncated"
