"""The speech-engine interface every synthesizer implements (DESIGN.md: Speech engines).

An engine turns text into PCM as soon as each piece exists. Model code is synchronous, so each
implementation runs it in a worker thread and hands chunks back to the event loop; the caller
cancels by closing the async iterator (or cancelling the task that drives it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """Mono PCM at the engine's sample rate: float32 in [-1, 1], shape (n,)."""

    samples: np.ndarray
    sample_rate: int
    text: str = ""  # the piece of text this chunk belongs to (captions, memory of what was said)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Voice:
    """A voice an engine can speak with.

    `prompt` holds whatever the engine derived from the reference once (for GPT-SoVITS: semantic
    tokens, spectrogram, speaker embedding, reference phones); the stock voice needs none.
    """

    id: str
    name: str
    engine: str
    prompt: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VoiceRef:
    """Which voice to speak with, as callers name it: the stock voice or a stored voice, by id.

    Parsed once where a name comes in (REST bodies, the bot protocol, room settings), so the rest of
    the code never guesses what None, "", "stock" or a dict meant. Resolving a reference to a `Voice`
    (with its prompt) is the voice store's job, for one owner.
    """

    id: str | None = None  # None: the stock voice

    STOCK_NAME: ClassVar[str] = "stock"

    @classmethod
    def parse(cls, value: object) -> VoiceRef:
        """"stock" or a voice id (ValueError for anything else; None means the stock voice)."""
        if value is None or value == cls.STOCK_NAME:
            return cls()
        if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
            raise ValueError("'voice' must be 'stock' or a voice id (1-64 printable characters)")
        return cls(value)

    @classmethod
    def of(cls, voice: Voice | None) -> VoiceRef:
        return cls() if voice is None or voice.id == cls.STOCK_NAME else cls(voice.id)

    @property
    def is_stock(self) -> bool:
        return self.id is None

    def __str__(self) -> str:
        return self.id if self.id is not None else self.STOCK_NAME


STOCK_VOICE = VoiceRef()


@runtime_checkable
class Engine(Protocol):
    name: str
    sample_rate: int
    can_clone: bool

    def stream(
        self, text: str, voice: Voice | None = None, *, lang: str = "auto", speed: float = 1.0,
        queued_s: float = 0.0,
    ) -> AsyncIterator[AudioChunk]:
        """Yield audio for `text` as soon as each part of it is synthesized. `queued_s`: seconds of
        the same listener's audio still waiting to play before this text (a reply's earlier pieces),
        which an engine that paces its start may count as cushion."""
        ...


class SynthesisError(RuntimeError):
    """An engine could not speak a text (bad input, model failure); the message is for humans."""


class LanguageNotSupported(SynthesisError):
    """The voice cannot speak this language (the stock voice and Chinese or Japanese text)."""

    code = "language_not_supported"


class Busy(SynthesisError):
    """At capacity right now (an engine's batch or queue, a speaker's queue): try again shortly."""


class EngineRouter:
    """One `Engine` over several: each speech goes to the engine its voice belongs to.

    A room speaks with whichever voice it is given; the stock voice (`voice=None` or a voice of the
    default engine) needs no cloning engine, a cloned voice needs the engine that made its prompt.
    """

    def __init__(self, default: Engine, *others: Engine) -> None:
        self.default = default
        self.engines: dict[str, Engine] = {e.name: e for e in (default, *others)}
        self.name = default.name
        self.sample_rate = default.sample_rate
        self.can_clone = any(e.can_clone for e in self.engines.values())

    def close(self) -> None:
        """Close every engine that holds threads (speeches still running end with a SynthesisError)."""
        for engine in self.engines.values():
            close = getattr(engine, "close", None)
            if close is not None:
                close()

    def engine_for(self, voice: Voice | None) -> Engine:
        if voice is None:
            return self.default
        engine = self.engines.get(voice.engine)
        if engine is None:
            raise SynthesisError(
                f"voice {voice.name!r} needs the {voice.engine} engine; start the server with --models DIR"
            )
        return engine

    def stream(
        self, text: str, voice: Voice | None = None, *, lang: str = "auto", speed: float = 1.0,
        queued_s: float = 0.0,
    ) -> AsyncIterator[AudioChunk]:
        return self.engine_for(voice).stream(text, voice, lang=lang, speed=speed, queued_s=queued_s)
