"""What was actually said in an enrollment take, against what should have been said.

The take is recognised once, VAD segment by VAD segment (speech_recognition.py), giving words with
times. Against the script sentences (or the user's typed transcript, cut into sentences) that
gives two answers: which sentences were not heard as written (skipped, ad-libbed, another
language), and whether a candidate reference clip's words match the transcript the chooser gave
it. A reference transcript is "verified" only when they match; without a recognizer for the
language it stays "unverified", and it is "mismatch" when no clip matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxroom.models.speech_recognition import Recognizer, Word, alignment, tokens, word_error_rate
from voxroom.models.vad import SAMPLE_RATE, SpeechSegment

# Word error rate of a clip's recognised words against its transcript under which they match.
# pocketsphinx on clean read English: 0-0.4 per sentence (0.2 on average); unrelated speech 0.8-1.0.
MATCH_WER = 0.5
# Share of a sentence's words heard, in order, under which the sentence counts as not read.
READ_MIN = 0.4
_PAD_S = 0.15  # around each segment, so a word on its edge is heard whole


@dataclass(frozen=True)
class HeardTake:
    """The words a recognizer heard in a take, with times in seconds from the start of the take."""

    words: list[Word]
    engine: str
    lang: str

    def heard(self, start: float, end: float) -> str:
        """The words whose middle lies between `start` and `end` seconds."""
        inside = [w.text for w in self.words if start <= (w.start + w.end) / 2 < end]
        return ("" if self.lang in ("zh", "ja", "yue") else " ").join(inside)

    def matches(self, transcript: str, start: float, end: float) -> bool:
        """Whether the words heard between `start` and `end` are `transcript` (within MATCH_WER)."""
        if not tokens(transcript, self.lang):
            return False
        return word_error_rate(transcript, self.heard(start, end), self.lang) <= MATCH_WER


def hear_take(samples: np.ndarray, segments: list[SpeechSegment], recognizer: Recognizer, lang: str) -> HeardTake:
    """Recognise each VAD segment of a 16 kHz take (segments are separated by silence, so no word is cut)."""
    pad = int(_PAD_S * SAMPLE_RATE)
    words: list[Word] = []
    for s in segments:
        a, b = max(0, s.start - pad), min(len(samples), s.end + pad)
        offset = a / SAMPLE_RATE
        words += [Word(w.text, w.start + offset, w.end + offset) for w in recognizer.words(samples[a:b])]
    return HeardTake(words, recognizer.name, lang.split("-")[0].lower())


def unread_sentences(sentences: list[str], take: HeardTake) -> list[int]:
    """Indices of the sentences of which less than READ_MIN of the words were heard, in order."""
    per_sentence = [tokens(s, take.lang) for s in sentences]
    flat = [t for toks in per_sentence for t in toks]
    heard = [t for w in take.words for t in tokens(w.text, take.lang)]
    matched = alignment(flat, heard)
    out, at = [], 0
    for i, toks in enumerate(per_sentence):
        found = sum(m is not None for m in matched[at : at + len(toks)])
        at += len(toks)
        if toks and found / len(toks) < READ_MIN:
            out.append(i)
    return out
