"""Decode any uploaded recording to mono float32 at one sample rate, or say clearly why not.

Uploads come from browsers and phones in every container (WAV, MP3, M4A, Opus/WebM, FLAC...)
and with names that often lie, so the container is detected from the bytes (PyAV/FFmpeg probes
the content) and the file name is only used to tell the user when it did not match. Limits are
checked as early as possible: the byte size before anything is parsed, the duration from the
container header before decoding, and again while decoding (headers can be missing or wrong).

Headers are checked before any decoding: a sample rate or channel count no recording has is a
damaged or hostile file (a WAV declaring 1 Hz once cost 15-30 s of CPU and 1.3 GB to resample), and
decoding has a work budget in source samples (rate x channels x seconds), so a small file that
unpacks into hours of 192 kHz multichannel audio stops early. Messages never carry FFmpeg's or
Python's own error text: the person uploading cannot act on it.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from voxroom.models.pcm import Resampler, to_pcm16_bytes

# Container names FFmpeg reports, and the extensions a user would expect for each.
_EXTENSIONS_BY_FORMAT: dict[str, tuple[str, ...]] = {
    "wav": (".wav", ".wave"),
    "mp3": (".mp3",),
    "ogg": (".ogg", ".oga", ".opus"),
    "flac": (".flac",),
    "mov,mp4,m4a,3gp,3g2,mj2": (".m4a", ".mp4", ".aac", ".mov", ".3gp"),
    "matroska,webm": (".webm", ".mka", ".mkv"),
    "aac": (".aac",),
    "aiff": (".aif", ".aiff"),
    "amr": (".amr",),
}


class AudioDecodeError(ValueError):
    """An upload that cannot become enrollment audio.

    `code` is stable for programs (not_audio, bad_header, truncated, empty, too_short, too_long,
    too_big); `message` is a sentence for the person who uploaded the file.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Telephone audio is 8 kHz and studio audio at most 192 kHz; 4 kHz still leaves old voice memos in.
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8  # 7.1; a voice recording with more is not a voice recording


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 100 * 1024 * 1024
    max_seconds: float = 15 * 60.0
    min_seconds: float = 1.0
    # Decoding work, in source samples over all channels: 15 min of 48 kHz stereo. A 192 kHz 7.1 file
    # reaches it after 56 s of audio, whatever its (compressible) size on disk.
    max_source_samples: int = int(15 * 60 * 48_000 * 2)


@dataclass
class DecodedAudio:
    samples: np.ndarray  # float32 mono in [-1, 1] at `sample_rate`
    sample_rate: int
    source_rate: int  # the stream's own rate (8000 means telephone-band audio, whatever we resample to)
    source_channels: int
    container: str  # FFmpeg's format name, e.g. "wav", "mp3", "ogg"
    codec: str
    notes: list[str] = field(default_factory=list)  # things worth telling the user that are not errors

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def _human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def decode_audio(
    upload: bytes | str | os.PathLike[str],
    *,
    sample_rate: int = 16000,
    limits: DecodeLimits = DecodeLimits(),
    filename: str | None = None,
) -> DecodedAudio:
    """Decode `upload` (bytes or a path) to mono float32 at `sample_rate`.

    Raises AudioDecodeError with a code and a human message for anything that is not usable audio.
    `filename` (the name the user gave) only feeds the extension check; a path's own name is used
    when no filename is given.
    """
    if isinstance(upload, bytes | bytearray | memoryview):
        raw = bytes(upload)
        data: bytes | None = raw
        size = len(raw)
        source: io.BytesIO | str = io.BytesIO(raw)
    else:
        path = Path(upload)
        size = path.stat().st_size
        with open(path, "rb") as head:
            data = head.read() if size <= limits.max_bytes else None
        source = str(path)
        filename = filename or path.name
    if size == 0:
        raise AudioDecodeError("empty", "The file is empty. Please record again or choose another file.")
    if size > limits.max_bytes:
        raise AudioDecodeError(
            "too_big",
            f"The file is {_human_size(size)}; the limit is {_human_size(limits.max_bytes)}. "
            "Upload a shorter recording (one or two minutes is plenty).",
        )
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        # FFmpeg's own text ("Invalid data found when processing input") helps nobody who uploads a file.
        raise AudioDecodeError(
            "not_audio", "This file is not a recording we can read (no audio found in it)."
        ) from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("not_audio", "This file has no audio track.")
        stream = container.streams.audio[0]
        source_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        _check_header(source_rate, channels)
        header_seconds = _header_duration(container, stream)
        if header_seconds is not None and header_seconds > limits.max_seconds:
            raise AudioDecodeError(
                "too_long",
                f"The recording is {_human_duration(header_seconds)} long; the limit is "
                f"{_human_duration(limits.max_seconds)}. About one minute of reading is enough.",
            )
        if header_seconds is not None and header_seconds * source_rate * channels > limits.max_source_samples:
            raise _too_much_audio(source_rate, channels)
        notes = _extension_notes(filename, container.format.name)
        samples, decode_failed = _decode_stream(container, stream, sample_rate, limits)
        fmt, codec = container.format.name, stream.codec_context.name
    seconds = len(samples) / sample_rate
    if seconds == 0:
        if decode_failed:
            raise AudioDecodeError(
                "truncated", "The file is damaged or cut off: no audio could be decoded from it."
            )
        raise AudioDecodeError("empty", "The file contains no audio samples.")
    if data is not None and _wav_is_cut_off(data):
        header_seconds = None  # FFmpeg trims a WAV's duration to the bytes present; the RIFF header does not
        decode_failed = True
    truncated_by_header = header_seconds is not None and header_seconds - seconds > max(0.5, 0.05 * header_seconds)
    if decode_failed or truncated_by_header:
        # A cut-off upload still decodes up to the cut; rejecting it avoids enrolling half a sentence
        # the user never meant to end there.
        expected = f" (the header says {_human_duration(header_seconds)}, only " \
            f"{_human_duration(seconds)} is there)" if truncated_by_header and header_seconds else ""
        raise AudioDecodeError(
            "truncated", f"The file is cut off or damaged{expected}. Please upload the complete recording."
        )
    if seconds < limits.min_seconds:
        raise AudioDecodeError(
            "too_short",
            f"The recording is only {_human_duration(seconds)}; at least "
            f"{_human_duration(limits.min_seconds)} is needed (about one minute of reading is best).",
        )
    return DecodedAudio(samples, sample_rate, source_rate, channels, fmt, codec, notes)


def _check_header(rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            "bad_header",
            f"The file says its audio has {rate:,} samples per second; recordings have "
            f"{MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,}. The file is damaged or was not saved as a normal recording.",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(
            "bad_header",
            f"The file says it has {channels} audio channels; a recording has 1 to {MAX_CHANNELS}. "
            "The file is damaged or was not saved as a normal recording.",
        )


def _too_much_audio(rate: int, channels: int) -> AudioDecodeError:
    return AudioDecodeError(
        "too_long",
        f"The recording holds more audio data than we accept ({channels} channel(s) at {rate:,} Hz). "
        "Upload a mono or stereo recording of a few minutes.",
    )


def _wav_is_cut_off(data: bytes) -> bool:
    """True when a RIFF/WAVE file's data chunk declares more bytes than the file holds."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, chunk_size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF are what streaming writers put there when they do not know the size yet.
            if chunk_size in (0, 0xFFFFFFFF):
                return False
            return pos + 8 + chunk_size > len(data) + 1
        pos += 8 + chunk_size + (chunk_size & 1)
    return False


def _header_duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _extension_notes(filename: str | None, format_name: str) -> list[str]:
    if not filename:
        return []
    ext = Path(filename).suffix.lower()
    expected = _EXTENSIONS_BY_FORMAT.get(format_name)
    if expected is None or ext in expected:
        return []
    kind = format_name.split(",")[0].upper()
    shown = ext or "no extension"
    return [f"The file is named {shown} but contains {kind} audio; it was read by its content."]


def _decode_stream(
    container: av.container.InputContainer, stream: av.audio.AudioStream, sample_rate: int, limits: DecodeLimits
) -> tuple[np.ndarray, bool]:
    """Return (samples, whether decoding stopped on an error)."""
    resampler = Resampler(0, sample_rate)  # each frame says its own rate
    pieces: list[np.ndarray] = []
    total = 0
    max_samples = int(limits.max_seconds * sample_rate)
    source_samples = 0
    failed = False
    try:
        for frame in container.decode(stream):
            # Headers can lie and damaged streams change format mid-way: each frame is checked again.
            frame_channels = len(frame.layout.channels)
            _check_header(int(frame.sample_rate or 0), frame_channels)
            source_samples += frame.samples * frame_channels
            if source_samples > limits.max_source_samples:
                raise _too_much_audio(int(frame.sample_rate), frame_channels)
            pieces.append(resampler.push_frame(frame))
            total += pieces[-1].size
            if total > max_samples:
                raise AudioDecodeError(
                    "too_long",
                    f"The recording is longer than {_human_duration(limits.max_seconds)}. "
                    "About one minute of reading is enough.",
                )
        pieces.append(resampler.push(None))
    except (av.error.FFmpegError, ValueError) as exc:
        if isinstance(exc, AudioDecodeError):
            raise
        # ValueError: PyAV's resampler refuses a frame whose format differs from the stream's first
        # (a damaged stream); what decoded before it is kept and judged like a cut-off file.
        failed = True
    samples = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples, failed


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit PCM WAV file (reference clips, samples, tests)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_pcm16_bytes(samples))
    return out.getvalue()
