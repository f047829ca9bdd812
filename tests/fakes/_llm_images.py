"""Image input of the fake model server: found in requests, checked as each provider checks it.

Anthropic (`{"type": "image", "source": {"type": "base64", "media_type", "data"}}`, in user
messages and tool results): media_type one of image/jpeg, image/png, image/gif, image/webp; the
base64 string at most 5 MB (5,242,880 characters: the API limits the encoded payload, not the
decoded bytes); at most 8000 px a side (2000 px when a request has more than 20 images); at most
100 images; bytes that match the declared media type and decode.

OpenAI (`{"type": "image_url", "image_url": {"url": "data:image/png;base64,...", "detail"}}`, in
user messages only): PNG, JPEG, WebP or non-animated GIF, at most 20 MB decoded, and decodable.

Errors carry the providers' wording where it is known (see the module's messages).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import struct
from dataclasses import dataclass
from typing import Any

ANTHROPIC_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ANTHROPIC_MAX_BASE64 = 5 * 1024 * 1024
OPENAI_MAX_BYTES = 20 * 1024 * 1024
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*);base64,(?P<data>.*)", re.DOTALL)
_FORMAT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


class ImageRejected(ValueError):
    """An image the provider refuses: `message` in its wording, `param`/`code` for OpenAI's error body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class FakeImage:
    """An image a request carried: where (message and content index), its declared type, bytes and size."""

    provider: str
    message_index: int
    content_index: int
    media_type: str
    data: bytes
    width: int
    height: int
    format: str
    detail: str | None = None

    @property
    def digest(self) -> str:
        """A short hash of the bytes (stable identity for tests and the prompt cache)."""
        return hashlib.sha256(self.data).hexdigest()[:16]


def image_format(data: bytes) -> str:
    """png / jpeg / gif / webp / "" by signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return ""


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read from the file header, without decoding (so a pixel bomb costs nothing)."""
    try:
        if fmt == "png":
            return struct.unpack(">II", data[16:24])
        if fmt == "gif":
            return struct.unpack("<HH", data[6:10])
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def _decodes(data: bytes, pixels: int) -> bool:
    """True if Pillow decodes the image (images over 80 megapixels are taken on their header's word,
    so the fake never holds a pixel bomb in memory)."""
    if pixels > 80_000_000:
        return True
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def anthropic_images(messages: list[Any]) -> list[tuple[dict[str, Any], str]]:
    """Every image block of an Anthropic request with its JSON path (`messages.0.content.1`)."""
    found: list[tuple[dict[str, Any], str]] = []
    for m_index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for c_index, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            path = f"messages.{m_index}.content.{c_index}"
            if block.get("type") == "image":
                found.append((block, path))
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                for n_index, inner in enumerate(block["content"]):
                    if isinstance(inner, dict) and inner.get("type") == "image":
                        found.append((inner, f"{path}.content.{n_index}"))
    return found


def check_anthropic(messages: list[Any]) -> list[FakeImage]:
    """The images of an Anthropic request, checked; raises ImageRejected with Anthropic's message."""
    blocks = anthropic_images(messages)
    if len(blocks) > 100:
        raise ImageRejected(f"Too many images in request: {len(blocks)} > 100")
    max_side = 2000 if len(blocks) > 20 else 8000
    images: list[FakeImage] = []
    for block, path in blocks:
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") != "base64":
            raise ImageRejected(f"{path}.image.source: the fake server takes base64 image sources only")
        media_type = source.get("media_type")
        if media_type not in ANTHROPIC_MEDIA_TYPES:
            raise ImageRejected(
                f"{path}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' "
                "or 'image/webp'"
            )
        encoded = source.get("data")
        if not isinstance(encoded, str) or not encoded:
            raise ImageRejected(f"{path}.image.source.base64.data: image cannot be empty")
        if len(encoded) > ANTHROPIC_MAX_BASE64:
            raise ImageRejected(
                f"{path}.image.source.base64: image exceeds 5 MB maximum: {len(encoded)} bytes > "
                f"{ANTHROPIC_MAX_BASE64} bytes"
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ImageRejected(f"{path}.image.source.base64.data: invalid base64 data") from None
        fmt = image_format(data)
        if not fmt:
            raise ImageRejected("Could not process image")
        if _FORMAT_MIME[fmt] != media_type:
            raise ImageRejected(
                f"{path}.image.source.base64.data: Image does not match the provided media type {media_type}"
            )
        size = header_size(data, fmt)
        if size is None:
            raise ImageRejected("Could not process image")
        if max(size) > max_side:
            many = " for many-image requests" if max_side == 2000 else ""
            raise ImageRejected(
                f"{path}.image.source.base64.data: At least one of the image dimensions exceed max allowed size{many}: "
                f"{max_side} pixels"
            )
        if not _decodes(data, size[0] * size[1]):
            raise ImageRejected("Could not process image")
        m_index, c_index = (int(p) for p in path.split(".")[1:4:2])
        images.append(FakeImage("anthropic", m_index, c_index, media_type, data, size[0], size[1], fmt))
    return images


def check_openai(messages: list[Any]) -> list[FakeImage]:
    """The images of an OpenAI chat request, checked; raises ImageRejected with OpenAI's message."""
    images: list[FakeImage] = []
    for m_index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for c_index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            role = message.get("role")
            if role != "user":
                raise ImageRejected(
                    f"Image URLs are only allowed for messages with role 'user', but this message with role "
                    f"'{role}' contains an image URL.",
                    param=f"messages.[{m_index}].content.[{c_index}].image_url",
                )
            images.append(_openai_image(part, m_index, c_index))
    return images


def _openai_image(part: dict[str, Any], m_index: int, c_index: int) -> FakeImage:
    param = f"messages.[{m_index}].content.[{c_index}].image_url"
    image_url = part.get("image_url")
    if not isinstance(image_url, dict):
        image_url = {}
    url = image_url.get("url")
    detail = image_url.get("detail") or "auto"
    if detail not in ("low", "high", "auto"):
        raise ImageRejected(
            f"Invalid value: '{detail}'. Supported values are: 'low', 'high', and 'auto'.", param=f"{param}.detail"
        )
    if not isinstance(url, str):
        raise ImageRejected("Missing required parameter: 'image_url.url'.", param=f"{param}.url")
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise ImageRejected(
            "the fake server takes base64 data URLs only (data:image/png;base64,...)", param=f"{param}.url"
        )
    mime = match.group("mime")
    if not mime.startswith("image/"):
        raise ImageRejected(
            f"Invalid 'messages[{m_index}].content[{c_index}].image_url.url'. Expected a base64-encoded data URL with "
            f"an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got unsupported MIME type "
            f"'{mime}'.",
            param=f"{param}.url",
            code="invalid_value",
        )
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("Invalid base64 image_url.", param=f"{param}.url", code="invalid_image_url") from None
    if len(data) > OPENAI_MAX_BYTES:
        raise ImageRejected(
            f"Image size {len(data)} bytes exceeds the maximum of {OPENAI_MAX_BYTES} bytes.",
            param=f"{param}.url",
            code="image_too_large",
        )
    fmt = image_format(data)
    if not fmt:
        raise ImageRejected(
            "You uploaded an unsupported image. Please make sure your image has of one the following formats: "
            "['png', 'jpeg', 'gif', 'webp'].",
            param=f"{param}.url",
            code="invalid_image_format",
        )
    size = header_size(data, fmt)
    if size is None or not _decodes(data, size[0] * size[1]):
        raise ImageRejected(
            "You uploaded an unsupported image. Please make sure your image is valid.",
            param=f"{param}.url",
            code="image_parse_error",
        )
    return FakeImage("openai", m_index, c_index, mime, data, size[0], size[1], fmt, detail)
