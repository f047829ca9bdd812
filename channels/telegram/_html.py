"""Telegram's HTML parse mode, as Telegram's own parser (tdlib `parse_html`) reads it.

One tokenizer serves three users: the fake Bot API server (which must reject what Telegram
rejects), the splitter in `format.py` (which must never cut a tag or an entity) and the
plain-text fallback. Keeping them on one reading of the format is the point of this module.

Rules followed (https://core.telegram.org/bots/api#html-style and tdlib):
- supported tags: b strong i em u ins s strike del span(class="tg-spoiler") tg-spoiler a code pre
  blockquote tg-emoji; tag names are case-insensitive; anything else is an error;
- every start tag needs its end tag, in nesting order; `</>`-less or unknown end tags are errors;
- `&lt; &gt; &amp; &quot;` and numeric `&#NN;` / `&#xHH;` are entities; any other `&` is a
  literal character (tdlib keeps it as typed);
- a `<` that does not open a well-formed tag is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SUPPORTED_TAGS",
    "Atom",
    "EndTag",
    "StartTag",
    "TelegramHtmlError",
    "Token",
    "parse_html",
    "plain_text",
    "tokenize",
    "unescape",
]

SUPPORTED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)

_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#(?P<dec>[0-9]{1,7})|#[xX](?P<hex>[0-9a-fA-F]{1,6})|(?P<name>lt|gt|amp|quot));")
_ATTRIBUTE_RE = re.compile(
    r"""\s*(?P<name>[a-zA-Z][a-zA-Z0-9_-]*)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s"'>]+)))?"""
)


class TelegramHtmlError(ValueError):
    """Text Telegram would refuse with "can't parse entities". `reason` is Telegram's wording."""

    def __init__(self, reason: str, byte_offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.byte_offset = byte_offset


@dataclass(frozen=True, slots=True)
class StartTag:
    """An opening tag: `name` lower-cased, `raw` exactly as written (attributes included)."""

    name: str
    raw: str
    attributes: tuple[tuple[str, str], ...]
    kind: Literal["start"] = "start"


@dataclass(frozen=True, slots=True)
class EndTag:
    """A closing tag."""

    name: str
    raw: str
    kind: Literal["end"] = "end"


@dataclass(frozen=True, slots=True)
class Atom:
    """One visible character: `raw` is how it is written (a char or an entity), `char` what it shows."""

    raw: str
    char: str
    kind: Literal["atom"] = "atom"


Token = StartTag | EndTag | Atom


def unescape(text: str) -> str:
    """Decode the entities Telegram decodes; leave every other `&` as it is."""
    return _ENTITY_RE.sub(lambda match: _decode_entity(match) or match.group(0), text)


def _decode_entity(match: re.Match[str]) -> str | None:
    if match.group("name"):
        return _NAMED_ENTITIES[match.group("name")]
    code = int(match.group("dec")) if match.group("dec") else int(match.group("hex"), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def tokenize(text: str) -> list[Token]:
    """Split Telegram HTML into tags and visible characters; raise TelegramHtmlError like Telegram.

    Checks tag names, attributes that Telegram requires, and nesting, so a token list that comes
    back describes valid HTML.
    """
    tokens: list[Token] = []
    stack: list[str] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "&":
            match = _ENTITY_RE.match(text, i)
            decoded = _decode_entity(match) if match else None
            if match and decoded is not None:
                tokens.append(Atom(match.group(0), decoded))
                i = match.end()
                continue
            tokens.append(Atom("&", "&"))
            i += 1
            continue
        if char != "<":
            tokens.append(Atom(char, char))
            i += 1
            continue
        end = text.find(">", i + 1)
        if end < 0:
            raise TelegramHtmlError(f"Unclosed start tag at byte offset {_byte_offset(text, i)}", _byte_offset(text, i))
        raw = text[i : end + 1]
        if raw.startswith("</"):
            tokens.append(_end_tag(text, i, raw, stack))
        else:
            tag = _start_tag(text, i, raw)
            stack.append(tag.name)
            tokens.append(tag)
        i = end + 1
    if stack:
        raise TelegramHtmlError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1]}"', _byte_offset(text, length)
        )
    return tokens


def _start_tag(text: str, start: int, raw: str) -> StartTag:
    offset = _byte_offset(text, start)
    body = raw[1:-1]
    name_match = re.match(r"[^\s>/]*", body)
    name = (name_match.group(0) if name_match else "").lower()
    if name not in SUPPORTED_TAGS:
        raise TelegramHtmlError(f'Unsupported start tag "{name}" at byte offset {offset}', offset)
    rest = body[len(name) :]
    attributes: list[tuple[str, str]] = []
    position = 0
    while rest[position:].strip():
        match = _ATTRIBUTE_RE.match(rest, position)
        if not match or match.end() == position:
            raise TelegramHtmlError(
                f"Expected equal sign in declaration of an attribute of the tag at byte offset {offset}", offset
            )
        value = match.group("dq") if match.group("dq") is not None else match.group("sq")
        if value is None:
            value = match.group("bare") or ""
        attributes.append((match.group("name").lower(), unescape(value)))
        position = match.end()
    attrs = dict(attributes)
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise TelegramHtmlError('Tag "span" must have class "tg-spoiler" at byte offset ' + str(offset), offset)
    if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
        raise TelegramHtmlError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {offset}', offset)
    return StartTag(name, raw, tuple(attributes))


def _end_tag(text: str, start: int, raw: str, stack: list[str]) -> EndTag:
    offset = _byte_offset(text, start)
    name = raw[2:-1].strip().lower()
    if not stack:
        raise TelegramHtmlError(f"Unexpected end tag at byte offset {offset}", offset)
    if name and name != stack[-1]:
        raise TelegramHtmlError(
            f'Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", found "</{name}>"', offset
        )
    return EndTag(stack.pop(), raw)


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def parse_html(text: str) -> str:
    """Validate Telegram HTML and return its visible text; raise TelegramHtmlError if Telegram would not."""
    return "".join(token.char for token in tokenize(text) if isinstance(token, Atom))


def plain_text(text: str) -> str:
    """Visible text of possibly broken HTML: tag-like runs removed, Telegram's entities decoded.

    Never raises: this is the fallback for HTML that Telegram refused.
    """
    try:
        return parse_html(text)
    except TelegramHtmlError:
        return unescape(re.sub(r"</?[a-zA-Z][^<>]*>", "", text))
