"""Reference clips read from the server's disk for GPT-SoVITS api_v2 callers, off unless the operator
turns it on.

api_v2 names its reference clip by a path on the server (`ref_audio_path` + `prompt_text`). voxroom
normally reads that path as the name of one of the caller's voices and never opens a file. An
operator who keeps reference clips on the server (a migration from GPT-SoVITS, a tool that only
knows paths) may name one directory, `api_v2_reference_dir`: a `ref_audio_path` that names no voice
is then looked up inside it — relative to it, or absolute but inside it; nothing outside it (`..`,
symbolic links out of it) is ever opened. The clip (3-10 s, as api_v2 asks) and its transcript
become a voice prompt once; later calls with the same file, transcript and language reuse it until
the file changes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from voxroom.models.audio_decode import AudioDecodeError, DecodeLimits, decode_audio
from voxroom.models.engine import Engine, Voice

CACHED_PROMPTS = 16
REFERENCE_LIMITS = DecodeLimits(max_bytes=20 * 1024 * 1024, max_seconds=30.0, min_seconds=1.0,
                                max_source_samples=30 * 48_000 * 2)


class ReferenceFileError(LookupError):
    """A reference path that may not or cannot be used (api_v2 answers such with 400)."""


def cloning_engine(engine: Engine) -> Engine | None:
    """The engine that can clone from a reference clip, if the server runs one."""
    engines = getattr(engine, "engines", None)  # an EngineRouter, or something wrapping one
    candidates = list(engines.values()) if isinstance(engines, dict) else [engine]
    return next((e for e in candidates if e.can_clone), None)


class ReferenceFiles:
    def __init__(self, directory: Path, engine: Engine) -> None:
        self.directory = directory.expanduser().resolve()
        self.engine = engine
        self._prompts: OrderedDict[tuple[str, int, int, str, str], Voice] = OrderedDict()

    def resolve(self, ref_audio_path: str) -> Path:
        """The file `ref_audio_path` names inside the directory; ReferenceFileError for anything else."""
        raw = ref_audio_path.strip().replace("\\", "/")
        if not raw or "\x00" in raw:
            raise ReferenceFileError("ref_audio_path is empty")
        candidate = Path(raw)
        path = (candidate if candidate.is_absolute() else self.directory / candidate).resolve()
        if not path.is_relative_to(self.directory):
            raise ReferenceFileError(f"{ref_audio_path[:200]!r} is outside the reference directory")
        if not path.is_file():
            raise ReferenceFileError(f"no reference file {ref_audio_path[:200]!r} in the reference directory")
        return path

    async def voice(self, ref_audio_path: str, prompt_text: str, prompt_lang: str) -> Voice:
        """A voice made from the clip at `ref_audio_path` and what it says (blocking work in a thread)."""
        cloning = cloning_engine(self.engine)
        prepare = getattr(cloning, "prepare_voice", None)
        if cloning is None or prepare is None:
            raise ReferenceFileError("reference files need GPT-SoVITS: start the server with --models DIR")
        path = self.resolve(ref_audio_path)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, prompt_text.strip(), prompt_lang)
        if (cached := self._prompts.get(key)) is not None:
            self._prompts.move_to_end(key)
            return cached
        try:
            clip = await asyncio.to_thread(decode_audio, path, sample_rate=32_000, limits=REFERENCE_LIMITS)
        except AudioDecodeError as exc:
            raise ReferenceFileError(f"{path.name}: {exc}") from None
        prompt = await asyncio.to_thread(prepare, clip.samples, clip.sample_rate, prompt_text, prompt_lang)
        relative = path.relative_to(self.directory).as_posix()
        voice = Voice(id=f"file:{relative}", name=relative, engine=cloning.name, prompt=prompt,
                      meta={"lang": prompt_lang, "source": "api_v2_reference_dir"})
        self._prompts[key] = voice
        while len(self._prompts) > CACHED_PROMPTS:
            self._prompts.popitem(last=False)
        return voice
