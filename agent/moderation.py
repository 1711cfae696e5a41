"""Moderation: a room's block list applied to chat coming in and to what the co-host is about to say.

Input: events with a blocked word are refused and over-long text is cut to the room's limit.
Output: every speakable piece is checked against the same list before synthesis, so an LLM that
repeats a blocked word never says it aloud. Every decision is written to the moderation log the
host console shows; nothing moderated is lost without a trace.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voxroom.agent.clock import Clock
from voxroom.agent.events import ChatEvent

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Characters people insert to dodge filters ("b.a.d", zero-width joiners) are removed before matching.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True)
class ModerationEntry:
    at: float
    direction: Direction
    action: str  # "blocked" or "truncated"
    reason: str
    text: str
    user: str = ""
    event_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "direction": str(self.direction)}


def _normalize(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()


class Moderator:
    def __init__(
        self,
        clock: Clock,
        *,
        blocked_words: Iterable[str] = (),
        max_input_chars: int = 300,
        log_size: int = 1000,
        on_entry: Callable[[ModerationEntry], None] | None = None,
    ) -> None:
        self.clock = clock
        self.max_input_chars = max_input_chars
        self.log: deque[ModerationEntry] = deque(maxlen=log_size)
        self.on_entry = on_entry
        self._blocked: dict[str, re.Pattern[str]] = {}
        for word in blocked_words:
            self.block(word)

    @property
    def blocked_words(self) -> list[str]:
        return sorted(self._blocked)

    def block(self, word: str) -> None:
        key = _normalize(word.strip())
        if not key:
            return
        if _CJK.search(key):
            pattern = re.compile(re.escape(key))  # CJK has no word boundaries: match anywhere
        else:
            pattern = re.compile(rf"(?<!\w){re.escape(key)}(?!\w)")
        self._blocked[key] = pattern

    def unblock(self, word: str) -> bool:
        return self._blocked.pop(_normalize(word.strip()), None) is not None

    def blocked_word_in(self, text: str) -> str | None:
        normalized = _normalize(text)
        for word, pattern in self._blocked.items():
            if pattern.search(normalized):
                return word
        return None

    def _record(self, entry: ModerationEntry) -> None:
        self.log.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def check_input(self, event: ChatEvent) -> ChatEvent | None:
        """The event to queue (perhaps with its text cut), or None when it is refused."""
        for field_name, value in (("text", event.text), ("user", event.user)):
            word = self.blocked_word_in(value)
            if word is not None:
                self._record(ModerationEntry(
                    self.clock.now(), Direction.INPUT, "blocked", f"blocked word {word!r} in {field_name}",
                    event.text, event.user, event.id,
                ))
                return None
        if len(event.text) > self.max_input_chars:
            self._record(ModerationEntry(
                self.clock.now(), Direction.INPUT, "truncated",
                f"longer than {self.max_input_chars} characters", event.text, event.user, event.id,
            ))
            event = dataclasses.replace(event, text=event.text[: self.max_input_chars].rstrip() + "…")
        return event

    def check_output(self, piece: str, *, event_id: str = "") -> str | None:
        """The piece to speak, or None when it must not be said."""
        word = self.blocked_word_in(piece)
        if word is None:
            return piece
        self._record(ModerationEntry(
            self.clock.now(), Direction.OUTPUT, "blocked", f"blocked word {word!r}", piece, "", event_id,
        ))
        return None

    def snapshot(self, limit: int = 100) -> list[dict[str, Any]]:
        return [entry.as_dict() for entry in list(self.log)[-limit:]]
