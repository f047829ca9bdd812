"""The text of a document the user sent: plain text (Markdown, CSV, JSON, source code, ...) or a PDF's
text layer, for the model to read.

What a file is comes from its bytes, not its name or declared MIME type (either may lie): a PDF by its
`%PDF-` header, an image by its signature (the caller shows it as an image), text by the absence of
binary bytes and a charset that decodes it (BOM, UTF-8, then Windows-1252, then Latin-1).

`read_document` is blocking work (a PDF costs milliseconds a page): run it off the event loop. Its cost
is bounded whatever the bytes: pypdf decompresses at most `_MAX_STREAM_BYTES` per stream (a PDF that
inflates to gigabytes is cut off there), reads at most `max_pages` pages and stops at `max_chars`.
Importing this module does not import pypdf.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pypdf import PdfReader

__all__ = ["MAX_CHARS", "DocumentError", "DocumentKind", "DocumentProblem", "DocumentText", "read_document", "sniff"]

MAX_CHARS = 100_000
"""A document's text is cut here (with a note), so that one file cannot fill the model's context."""

_MAX_PAGES = 500
_MAX_STREAM_BYTES = 8_000_000
"""What one PDF stream may inflate to: a page's text drawing is rarely a megabyte."""
_SNIFF_BYTES = 8192

DocumentKind = Literal["pdf", "image", "text", "other"]
DocumentProblem = Literal["unsupported", "scanned", "corrupt", "encrypted", "too_large"]

_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# Control characters that plain text does not contain (tab, newlines, form feed and escape are fine).
_BINARY_BYTES = bytes(set(range(32)) - {9, 10, 12, 13, 27})


class DocumentError(ValueError):
    """A document whose text cannot be read. `problem`: `unsupported` (not text, PDF or an image),
    `scanned` (a PDF without a text layer), `corrupt`, `encrypted` (a PDF with a password), `too_large`
    (a PDF whose streams inflate past the limit and hold no text besides)."""

    def __init__(self, problem: DocumentProblem, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem: DocumentProblem = problem


@dataclass(frozen=True, slots=True)
class DocumentText:
    """A document's text, cut at `max_chars` (then `truncated`, and the text ends with a note saying so)."""

    text: str
    truncated: bool = False
    pages: int | None = None
    """Pages of a PDF (all of them, read or not)."""


def sniff(data: bytes) -> DocumentKind:
    """What the bytes are: `pdf`, `image`, `text` or `other`."""
    head = data[:1024]
    if b"%PDF-" in head:
        return "pdf"
    if data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return "image"
    if _decode(data[:_SNIFF_BYTES], sample=True) is not None:
        return "text"
    return "other"


def read_document(data: bytes, *, max_chars: int = MAX_CHARS, max_pages: int = _MAX_PAGES) -> DocumentText:
    """The text of a text file or a PDF; raises DocumentError (an image is `unsupported` here: the
    caller shows images as images). Blocking: call it from a thread."""
    kind = sniff(data)
    if kind == "pdf":
        return _read_pdf(data, max_chars, max_pages)
    if kind == "text":
        text = _decode(data, sample=False)
        if text is not None:
            return _cut(text.replace("\r\n", "\n").strip(), max_chars)
    raise DocumentError("unsupported", kind)


def _decode(data: bytes, *, sample: bool) -> str | None:
    """The text in `data` by the first charset that decodes it, or None if it is not text. A `sample`
    (the first bytes of a file) may end inside a multi-byte character."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    if not data or data.translate(None, _BINARY_BYTES) != data:
        # Any NUL or other control byte: binary, and UTF-16 without a BOM is too rare to guess.
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if sample and exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # every byte is a Latin-1 character


def _cut(text: str, max_chars: int, pages: int | None = None, read_pages: int | None = None) -> DocumentText:
    if len(text) <= max_chars:
        return DocumentText(text, False, pages)
    where = f" (in page {read_pages} of {pages})" if pages is not None and read_pages is not None else ""
    note = f"\n\n[The document is longer: it was cut here{where}, at {max_chars:,} characters.]"
    return DocumentText(text[:max_chars] + note, True, pages)


def _read_pdf(data: bytes, max_chars: int, max_pages: int) -> DocumentText:
    import pypdf
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    limits = pypdf.apply_configuration(
        zlib_maximum_output_length=_MAX_STREAM_BYTES,
        lzw_maximum_output_length=_MAX_STREAM_BYTES,
        run_length_maximum_output_length=_MAX_STREAM_BYTES,
        stream_decoding_work_maximum_length=8 * _MAX_STREAM_BYTES,
        disable_legacy_handling=True,
    )
    try:
        with limits:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError("encrypted")
            return _pdf_text(reader, max_chars, max_pages)
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentError("encrypted") from exc
    except LimitReachedError as exc:
        raise DocumentError("too_large", "a stream inflates past the limit") from exc
    except RecursionError as exc:
        raise DocumentError("corrupt", "nested too deeply") from exc
    except Exception as exc:
        # pypdf meets hostile input with whatever its parser trips on (KeyError, TypeError, ...):
        # every one of them means the same here, a file we cannot read.
        raise DocumentError("corrupt", type(exc).__name__) from exc


def _pdf_text(reader: PdfReader, max_chars: int, max_pages: int) -> DocumentText:
    from pypdf.errors import LimitReachedError

    pages = reader.pages
    total = len(pages)
    parts: list[str] = []
    length = 0
    read = 0
    for index in range(min(total, max_pages)):
        text = (pages[index].extract_text() or "").strip()
        read = index + 1
        if text:
            parts.append(text)
            length += len(text) + 2
        if length > max_chars:
            break
    text = "\n\n".join(parts)
    if not text.strip():
        for index in range(min(total, 3)):
            try:
                pages[index].get_contents()
            except LimitReachedError as exc:
                raise DocumentError("too_large", "a page inflates past the limit") from exc
        raise DocumentError("scanned", f"{total} pages without text")
    result = _cut(text, max_chars, total, read)
    if not result.truncated and read < total:
        note = f"\n\n[Only the first {read} of {total} pages were read.]"
        return DocumentText(result.text + note, True, total)
    return result
