"""A growing Markdown answer as the HTML of its preview messages, converted a block at a time.

Converting the whole answer on every preview would cost as much CPU as the answer is long, a few
times a second: a 6,000-character answer would be converted fifty times. A block (a paragraph,
or a fenced code block with the blank lines inside it) that is followed by a blank line never
changes again, so its HTML is kept, and only the block being written is converted again.
"""

from __future__ import annotations

from channels.telegram.format import MAX_MESSAGE_LENGTH, html_to_plain, split_message, to_telegram_html

__all__ = ["PreviewText"]

_FENCES = ("```", "~~~")


class PreviewText:
    """Markdown as it grows -> HTML chunks, one per preview message (see the module docstring).

    Partial Markdown never yields HTML Telegram refuses: `to_telegram_html` repairs what it makes,
    and a code fence still open is closed for the preview. Chunks are whole blocks joined by blank
    lines, each at most `limit` characters (a block longer than that is split like an answer).
    A text that does not continue the previous one (a retried step) is converted afresh. With
    `plain`, chunks are the visible text only (after Telegram refused our HTML once).
    """

    def __init__(self, limit: int = MAX_MESSAGE_LENGTH) -> None:
        self._limit = limit
        self.plain = False
        self._reset("")

    def _reset(self, source: str) -> None:
        self._source = source
        self._done: list[str] = []  # HTML of the finished blocks
        self._block_start = 0  # where the block being written starts
        self._scanned = 0  # complete lines up to here were read for fences and blank lines
        self._in_fence = False  # at `_scanned`

    def chunks(self, markdown: str) -> list[str]:
        """The preview of `markdown`, as the chunks of its messages (empty if nothing shows)."""
        if not markdown.startswith(self._source[: self._scanned]):
            self._reset(markdown)
        self._source = markdown
        self._scan()
        open_block = markdown[self._block_start :].strip("\n")
        blocks = list(self._done)
        if open_block.strip():
            blocks.append(to_telegram_html(self._closed(open_block)))
        chunks = self._pack(blocks)
        return [html_to_plain(chunk) for chunk in chunks] if self.plain else chunks

    def _scan(self) -> None:
        """Read the complete lines not read yet: a blank line outside a fence ends a block."""
        text = self._source
        end = text.rfind("\n") + 1
        position = self._scanned
        while position < end:
            line_end = text.index("\n", position) + 1
            line = text[position:line_end].strip()
            if line.startswith(_FENCES):
                self._in_fence = not self._in_fence
            elif not line and not self._in_fence:
                block = text[self._block_start : position].strip("\n")
                if block.strip():
                    self._done.append(to_telegram_html(block))
                self._block_start = line_end
            position = line_end
        self._scanned = max(position, self._scanned)

    def _closed(self, block: str) -> str:
        """The block being written, with a code fence it left open closed (its last line may open one)."""
        in_fence = self._in_fence
        last_line = self._source[self._scanned :].strip()
        if last_line.startswith(_FENCES):
            in_fence = not in_fence
        return f"{block}\n```" if in_fence else block

    def _pack(self, blocks: list[str]) -> list[str]:
        chunks: list[str] = []
        current = ""
        for block in blocks:
            if not block.strip():
                continue
            if len(block) > self._limit:
                if current:
                    chunks.append(current)
                    current = ""
                chunks.extend(split_message(block, self._limit))
                continue
            joined = f"{current}\n\n{block}" if current else block
            if len(joined) > self._limit:
                chunks.append(current)
                joined = block
            current = joined
        if current:
            chunks.append(current)
        return chunks
