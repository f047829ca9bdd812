"""Model Markdown -> Telegram HTML, split into messages Telegram accepts.

Conversion uses chatgpt-md-converter (`telegram_format`): it targets exactly Telegram's HTML
subset (spoilers, expandable blockquotes, `pre` + `code class="language-x"`), is pure Python with
no dependencies, and is maintained. telegramify-markdown 1.x emits text + MessageEntity pairs
instead of HTML, which would not fit the HTML contract or the plain-text fallback. The
converter is regex-based, so overlapping emphasis (`**a _b** c_`) or literal tags in the text can
come out malformed; `to_telegram_html` repairs those (re-nesting tags, escaping strays) so what it
returns always passes Telegram's parser as `_html` reads it.
"""

from __future__ import annotations

import html
import re

from channels.telegram._html import (
    Atom,
    EndTag,
    StartTag,
    TelegramHtmlError,
    Token,
    parse_html,
    plain_text,
    tokenize,
)

__all__ = ["MAX_MESSAGE_LENGTH", "html_to_plain", "split_message", "to_telegram_html"]

MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit on a message's text, in characters after entity parsing."""

_TAG_CANDIDATE = re.compile(r"<[^<>]*>")
# URLs are taken out before conversion: the converter's emphasis rules would otherwise turn the
# `_b_` of `https://x/_b_/c` into <i> inside an href. The placeholder has nothing they match.
_URL = re.compile(r"https?://[^\s<>()\[\]\"'`]+")
_URL_PLACEHOLDER = re.compile(r"TGURLPLACEHOLDER([0-9]+)Z")


_MARKUP = re.compile(r"[*_`~|\[\]()<>&#\\+!-]|\n\n\n|\A\s|\s\Z")
"""What the Markdown conversion may change: markup characters, HTML's special characters, blank lines
it collapses and the white space it trims. A text without any (most short answers) is its own HTML."""


def to_telegram_html(markdown: str) -> str:
    """Convert the model's Markdown to Telegram HTML that Telegram's parser accepts."""
    if not _MARKUP.search(markdown):
        return markdown  # nothing to convert: the converter's passes would return it as it is
    return _convert(markdown)


def _convert(markdown: str) -> str:
    # Imported on the first reply, not before the first poll (its regexes compile as it loads).
    from chatgpt_md_converter import telegram_format

    urls: list[str] = []

    def _protect(match: re.Match[str]) -> str:
        urls.append(match.group(0))
        return f"TGURLPLACEHOLDER{len(urls) - 1}Z"

    protected = _URL.sub(_protect, markdown)
    converted: str = telegram_format(protected)
    if urls:
        converted = _URL_PLACEHOLDER.sub(lambda m: _restore_url(urls, m), converted)
    try:
        parse_html(converted)
    except TelegramHtmlError:
        return _repair(converted)
    return converted


def _restore_url(urls: list[str], match: re.Match[str]) -> str:
    index = int(match.group(1))
    # Escaped for both places it can land: text, and a double-quoted href.
    return html.escape(urls[index], quote=True) if index < len(urls) else match.group(0)


def html_to_plain(text_html: str) -> str:
    """The visible text of Telegram HTML (entities decoded), for sending without parse mode."""
    return plain_text(text_html)


def _repair(text: str) -> str:
    """Keep the well-formed supported tags, escape every other `<`, and fix the nesting.

    A close tag that does not match the innermost open tag closes the tags opened inside it and
    reopens them after (`<b>a<i>b</b>c</i>` -> `<b>a<i>b</i></b><i>c</i>`); a close tag with no
    open tag is shown as text.
    """
    out: list[str] = []
    stack: list[StartTag] = []
    position = 0
    for match in _TAG_CANDIDATE.finditer(text):
        out.append(_escape_text(text[position : match.start()]))
        position = match.end()
        raw = match.group(0)
        if raw.startswith("</"):
            name = raw[2:-1].strip().lower()
            depth = next((i for i in range(len(stack) - 1, -1, -1) if stack[i].name == name), None)
            if depth is None:
                out.append(html.escape(raw, quote=False))
                continue
            reopen = stack[depth + 1 :]
            out.extend(f"</{tag.name}>" for tag in reversed(stack[depth:]))
            del stack[depth:]
            out.extend(tag.raw for tag in reopen)
            stack.extend(reopen)
            continue
        try:
            tokens = tokenize(raw + f"</{raw[1:].split(maxsplit=1)[0].rstrip('>')}>")
        except (TelegramHtmlError, IndexError):
            out.append(html.escape(raw, quote=False))
            continue
        start = tokens[0]
        assert isinstance(start, StartTag)
        stack.append(start)
        out.append(raw)
    out.append(_escape_text(text[position:]))
    out.extend(f"</{tag.name}>" for tag in reversed(stack))
    return "".join(out)


def _escape_text(segment: str) -> str:
    # Text between tags is already escaped by the converter, except stray `<`.
    return segment.replace("<", "&lt;")


# -- splitting ---------------------------------------------------------------------------------

_PARAGRAPH, _LINE, _SPACE, _ANY = 3, 2, 1, 0


def split_message(text_html: str, limit: int = MAX_MESSAGE_LENGTH) -> list[str]:
    """Split valid Telegram HTML into chunks of at most `limit` raw characters each.

    Splits at the last paragraph break that fits, else the last line break, else the last space,
    else (one unbroken run of text) between two characters; never inside a tag or an entity. Tags
    open at a split are closed at the end of the chunk and reopened (with their attributes) at
    the start of the next, so every chunk is valid on its own. The whitespace at a split point is
    dropped, as are chunks with no visible text. Raw length bounds visible length, so each chunk
    is within Telegram's limit either way. Raises TelegramHtmlError if `text_html` is not valid.
    """
    if limit < 16:
        raise ValueError("limit must leave room for text and tags")
    tokens = tokenize(text_html)
    if len(text_html) <= limit:
        return [text_html] if _has_text(tokens) else []
    chunks: list[str] = []
    start = 0
    stack: list[StartTag] = []
    while start < len(tokens):
        start, stack = _skip_whitespace(tokens, start, stack)
        if start >= len(tokens):
            break
        end = _chunk_end(tokens, start, stack, limit)
        chunk_tokens = tokens[start:end]
        chunk = _render(stack, chunk_tokens)
        if len(chunk) > limit:
            # The tags to reopen leave no room for text (absurdly small limit): send it unformatted.
            end, chunk = _plain_chunk(tokens, start, limit)
            chunk_tokens = tokens[start:end]
        stack = _stack_after(stack, chunk_tokens)
        if _has_text(chunk_tokens):
            chunks.append(chunk)
        start = end
    return chunks


def _chunk_end(tokens: list[Token], start: int, stack: list[StartTag], limit: int) -> int:
    """Index after the last token of the chunk beginning at `start`."""
    opened = list(stack)
    size = sum(len(tag.raw) for tag in opened)
    best: dict[int, int] = {}
    index = start
    while index < len(tokens):
        token = tokens[index]
        closing = sum(len(tag.name) + 3 for tag in opened)
        # A start tag's end tag may have to be added to this chunk too.
        cost = len(token.raw) + (len(token.name) + 3 if isinstance(token, StartTag) else 0)
        if size + cost + closing > limit:
            break
        size += len(token.raw)
        if isinstance(token, StartTag):
            opened.append(token)
        elif isinstance(token, EndTag):
            opened.pop()
        index += 1
        if isinstance(token, Atom) and index < len(tokens):
            best[_break_kind(tokens, index)] = index
    else:
        return len(tokens)
    for kind in (_PARAGRAPH, _LINE, _SPACE, _ANY):
        if kind in best:
            return _back_over_whitespace(tokens, best[kind], start)
    # Not even one character fits beside the reopened tags: the caller sends it unformatted.
    return max(index, start + 1)


def _plain_chunk(tokens: list[Token], start: int, limit: int) -> tuple[int, str]:
    """The atoms from `start` that fit in `limit`, without any tag."""
    size = 0
    index = start
    parts: list[str] = []
    while index < len(tokens):
        token = tokens[index]
        if isinstance(token, Atom):
            if size + len(token.raw) > limit:
                break
            parts.append(token.raw)
            size += len(token.raw)
        index += 1
    return max(index, start + 1), "".join(parts)


def _break_kind(tokens: list[Token], index: int) -> int:
    """How good a split is just before `tokens[index]` (after the previous atom)."""
    previous = tokens[index - 1]
    assert isinstance(previous, Atom)
    if previous.char == "\n":
        before = _previous_atom(tokens, index - 1)
        return _PARAGRAPH if before is not None and before.char == "\n" else _LINE
    if previous.char.isspace():
        return _SPACE
    following = tokens[index]
    if isinstance(following, Atom) and following.char.isspace():
        return _SPACE if following.char != "\n" else _LINE
    return _ANY


def _previous_atom(tokens: list[Token], index: int) -> Atom | None:
    for token in reversed(tokens[:index]):
        if isinstance(token, Atom):
            return token
    return None


def _back_over_whitespace(tokens: list[Token], end: int, start: int) -> int:
    """Leave the whitespace at a split out of the chunk's end (the next chunk skips it too)."""
    cut = end
    while cut > start + 1:
        token = tokens[cut - 1]
        if not (isinstance(token, Atom) and token.char.isspace()):
            break
        cut -= 1
    return cut if any(isinstance(t, Atom) and not t.char.isspace() for t in tokens[start:cut]) else end


def _skip_whitespace(tokens: list[Token], start: int, stack: list[StartTag]) -> tuple[int, list[StartTag]]:
    """Skip whitespace atoms at a chunk's start; tags there are kept (they carry formatting)."""
    index = start
    while index < len(tokens):
        token = tokens[index]
        if isinstance(token, Atom) and token.char.isspace():
            index += 1
            continue
        break
    return index, stack


def _render(stack: list[StartTag], chunk_tokens: list[Token]) -> str:
    """A chunk: reopen the inherited tags, the tokens, then close whatever is still open."""
    after = _stack_after(stack, chunk_tokens)
    return (
        "".join(tag.raw for tag in stack)
        + "".join(token.raw for token in chunk_tokens)
        + "".join(f"</{tag.name}>" for tag in reversed(after))
    )


def _stack_after(stack: list[StartTag], chunk_tokens: list[Token]) -> list[StartTag]:
    opened = list(stack)
    for token in chunk_tokens:
        if isinstance(token, StartTag):
            opened.append(token)
        elif isinstance(token, EndTag):
            opened.pop()
    return opened


def _has_text(tokens: list[Token]) -> bool:
    return any(isinstance(token, Atom) and not token.char.isspace() for token in tokens)
