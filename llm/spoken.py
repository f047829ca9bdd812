"""An answer in Markdown as text to be read aloud: code left out, markup removed, cut into parts that
each fit one text-to-speech request."""

from __future__ import annotations

import re

__all__ = ["CODE_LEFT_OUT", "SPEECH_INPUT_LIMIT", "spoken_parts"]

SPEECH_INPUT_LIMIT = 4096
"""Characters one `/audio/speech` request takes (OpenAI's limit; Groq's and local servers' are no lower)."""

CODE_LEFT_OUT = "(There is code here; it is in the written answer.)"
"""Said in place of a code block: code read aloud helps nobody."""

_FENCED = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?(?:^ {0,3}\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", re.MULTILINE)
_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}.*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def spoken_parts(markdown: str, limit: int = SPEECH_INPUT_LIMIT, max_parts: int = 4) -> list[str]:
    """The answer as speakable text in parts of at most `limit` characters, split at paragraphs, then
    sentences, then words; at most `max_parts` of them (a longer answer is only read in part: the
    written answer has it all). Empty when nothing is left to say."""
    text = _plain(markdown)
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        joined = f"{current}\n\n{piece}" if current else piece
        if len(joined) <= limit:
            current = joined
            continue
        parts.append(current)
        current = piece
    if current:
        parts.append(current)
    return parts[:max_parts]


def _plain(markdown: str) -> str:
    text = _FENCED.sub(CODE_LEFT_OUT + "\n", markdown)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("(a link)", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _TABLE_RULE.sub("", text)
    text = _RULE.sub("", text)
    for pattern in (_HEADING, _BULLET, _QUOTE):
        text = pattern.sub("", text)
    text = text.replace("|", ", ")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _pieces(text: str, limit: int) -> list[str]:
    """Paragraphs, each cut further (sentences, then words, then characters) when longer than `limit`."""
    out: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            out.append(paragraph)
            continue
        out.extend(_split(paragraph, _SENTENCE_END.split(paragraph), " ", limit))
    return out


def _split(text: str, units: list[str], glue: str, limit: int) -> list[str]:
    """Units joined by `glue` into pieces of at most `limit`; a unit too long is cut at words, then characters."""
    pieces: list[str] = []
    current = ""
    for unit in units:
        if len(unit) > limit:
            words = unit.split()
            sub = (
                _split(unit, words, " ", limit)
                if len(words) > 1
                else [unit[i : i + limit] for i in range(0, len(unit), limit)]
            )
            pieces.extend(([current] if current else []) + sub)
            current = ""
            continue
        joined = f"{current}{glue}{unit}" if current else unit
        if len(joined) <= limit:
            current = joined
        else:
            pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return pieces or [text[:limit]]
