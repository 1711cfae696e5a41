"""Cut text into speakable pieces, as early as it is safe to: the one sentence splitter.

The co-host's streamed replies, host-typed lines and the stock voice all cut text here. The first piece may be a clause ("Thanks Anna, ..." is spoken while the LLM is still writing),
later pieces are whole sentences, which a speech engine intones better. A full stop only ends a
sentence when it is followed by space and a new sentence: "3.14", "Dr. Smith", "e.g. this" and
"wait... what" stay in one piece. Chinese and Japanese sentence marks end a piece at once.
URLs are not read out and emoji are dropped; a piece with nothing left to say is dropped.
A text without punctuation is still cut into pieces of at most `max_chars` (at a space when there
is one), so no single piece holds an engine for long.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs mt no approx dept est fig inc ltd co e.g i.e a.m p.m u.s cf".split()
)
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_CLOSERS = "\"'”’)\\]」』）】"
_SENTENCE_END = re.compile(rf"(?P<cjk>[。！？｡]+)[{_CLOSERS}]*|(?P<term>[.!?…]+)[{_CLOSERS}]*(?=\s|$)")
_CLAUSE_END = re.compile(r"[，、；：]|[,;:](?=\s)")
_URL = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|dev|ai|tv|gg|cn|jp|co|me|app|xyz|uk|de|info)\b(?:/\S*)?",
    re.IGNORECASE,
)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2300-\u23ff\u2b00-\u2bff\ufe0f\u200d\u20e3\U000e0020-\U000e007f]"
)
_MARKUP = re.compile(r"[*#`~_]{1,3}")
_SPEAKABLE = re.compile(r"[^\W_]")


def speech_weight(text: str) -> int:
    """Roughly how many words a text has: Latin-script words, plus CJK characters counted two to a word."""
    cjk = len(_CJK_CHAR.findall(text)) // 2
    return cjk + len(_LATIN_WORD.findall(_CJK_CHAR.sub(" ", text)))


def clean_for_speech(text: str) -> str:
    """Drop URLs, emoji and markdown marks; '' when nothing speakable is left."""
    text = _URL.sub("", text)
    text = _EMOJI.sub("", text)
    text = _MARKUP.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.!?;:，。！？、])", r"\1", text)  # "see ." after a dropped URL
    text = text.lstrip(_CLOSERS + ",.;:，。、；： ")
    return text if _SPEAKABLE.search(text) else ""


class Segmenter:
    """Feed text deltas, get speakable pieces; `flush()` at the end of the reply for the rest."""

    def __init__(self, *, first_clause_weight: int = 3, max_chars: int = 220, clause_first: bool = False,
                 min_rest_chars: int = 12) -> None:
        self.first_clause_weight = first_clause_weight
        self.max_chars = max_chars
        # clause_first: cut the first sentence after its first clause even when the whole sentence is
        # already there (a TTS engine then starts sooner), if at least `min_rest_chars` follow.
        self.clause_first = clause_first
        self.min_rest_chars = min_rest_chars
        self._buffer = ""
        self._emitted = 0
        self._final = False  # the buffer holds the whole rest of the text: its end is an end

    def _is_sentence_end(self, match: re.Match[str]) -> bool:
        if match.group("cjk"):
            return True
        term = match.group("term")
        if term[-1] not in ".…":
            return True  # ! and ? followed by space
        rest = self._buffer[match.end():].lstrip()
        if not rest:
            return self._final  # else wait for the next word: it tells "Dr. Smith" from "the end. Next"
        if rest[0].islower() or rest[0].isdigit():
            return False
        if term != ".":
            return True  # an ellipsis before a capital
        before = self._buffer[: match.start()].rsplit(None, 1)
        word = before[-1].lower() if before else ""
        word = word.lstrip(_CLOSERS + "(\"'")
        if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
        return True

    def _boundary(self) -> int | None:
        sentence_end = next((m.end() for m in _SENTENCE_END.finditer(self._buffer) if self._is_sentence_end(m)),
                            None)
        if self._emitted == 0 and (self.clause_first or (sentence_end is None and not self._final)):
            # The first piece may be a clause, if it is long enough to say alone.
            limit = len(self._buffer) if sentence_end is None else sentence_end
            for match in _CLAUSE_END.finditer(self._buffer, 0, limit):
                if speech_weight(self._buffer[: match.end()]) < self.first_clause_weight:
                    continue
                if sentence_end is None and not self._final:
                    return match.end()
                if len(self._buffer[match.end():limit].strip()) >= self.min_rest_chars:
                    return match.end()
                break
        if sentence_end is not None:
            return sentence_end
        if len(self._buffer) > self.max_chars:
            # No sentence end in sight: cut at the last clause mark or space rather than wait.
            head = self._buffer[: self.max_chars]
            cut = max(head.rfind(c) for c in ",;:，、； ")
            return cut + 1 if cut > 0 else self.max_chars
        return None

    def _take(self, end: int) -> str:
        piece, self._buffer = self._buffer[:end], self._buffer[end:].lstrip()
        return clean_for_speech(piece)

    def feed(self, delta: str, *, final: bool = False) -> list[str]:
        """Pieces that are ready; `final=True` says no more text follows (a whole text at once),
        so sentences are kept whole instead of cutting a first clause for speed."""
        self._buffer += delta
        self._final = final
        pieces: list[str] = []
        while (end := self._boundary()) is not None:
            piece = self._take(end)
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        piece = self._take(len(self._buffer))
        if piece:
            self._emitted += 1
            return [piece]
        return []


def split_text(text: str, **options: int | bool) -> list[str]:
    """All speakable pieces of a finished text (read-aloud lines, host-typed lines)."""
    segmenter = Segmenter(**options)  # type: ignore[arg-type]
    return segmenter.feed(text, final=True) + segmenter.flush()
