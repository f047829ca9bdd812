"""Images as a provider takes them: checked (type, bytes, dimensions) and, when they do not fit,
converted with Pillow; and a chat model that leaves out, from then on, images a provider refused.

`fit_image(image, limits)` is what the providers call where they build image blocks; the turn loop
fits tool images off the event loop before they are recorded (`fit_images`), so what is stored,
and every later request, is already acceptable and the providers' check is a header read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from llm.base import ChatModel, LLMRejected, ModelReply, ModelRequest
from llm.records import Image, ModelMessage, ToolResultRecord

if TYPE_CHECKING:
    from PIL.Image import Image as PillowImage

__all__ = [
    "ANTHROPIC_IMAGES",
    "COMMON_IMAGES",
    "OPENAI_IMAGES",
    "REFUSED_IMAGE_NOTE",
    "ImageLimits",
    "ImageRefusalGuard",
    "fit_image",
    "fit_images",
    "left_out_note",
]

log = structlog.get_logger(__name__)

_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_FORMAT_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
_HEADER_CHARS = 256 * 1024  # base64 characters decoded to read a header: far past any image's header


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What a provider takes: media types, the size of the base64 text or of the bytes, the longest
    side in pixels (None: no limit). `max_pixels` bounds what we are willing to decode at all."""

    media_types: frozenset[str] = _MEDIA_TYPES
    max_encoded_chars: int | None = None
    max_bytes: int | None = None
    max_side: int | None = None
    max_pixels: int = 50_000_000

    def fits(self, mime: str, encoded_chars: int, size: tuple[int, int]) -> bool:
        """True if an image of this type, base64 length and size is taken as it is."""
        byte_count = encoded_chars * 3 // 4
        return (
            mime in self.media_types
            and (self.max_encoded_chars is None or encoded_chars <= self.max_encoded_chars)
            and (self.max_bytes is None or byte_count <= self.max_bytes)
            and (self.max_side is None or max(size) <= self.max_side)
        )


ANTHROPIC_IMAGES = ImageLimits(max_encoded_chars=5 * 1024 * 1024, max_side=8000)
"""Anthropic: JPEG, PNG, GIF or WebP; at most 5 MB of base64; at most 8000 px a side."""
OPENAI_IMAGES = ImageLimits(max_bytes=20 * 1024 * 1024)
"""OpenAI: JPEG, PNG, GIF or WebP; at most 20 MB."""
COMMON_IMAGES = ImageLimits(max_encoded_chars=5 * 1024 * 1024, max_side=8000)
"""What every provider takes: images fitted to it are stored as they are sent."""


def left_out_note(image: Image) -> str:
    """The text the model reads in place of an image that could not be sent."""
    return f"[an image ({image.mime_type or 'unknown type'}) was left out: it could not be read as an image]"


REFUSED_IMAGE_NOTE = "[an image was left out: the model's provider refused it]"


def fit_image(image: Image, limits: ImageLimits, *, verify: bool = False) -> Image | None:
    """The image as a provider with `limits` takes it: as it is when it fits (a header read, no
    decoding; its media type corrected from its bytes), else decoded and re-encoded (in its own format
    where the provider takes it, else JPEG, or PNG for transparency), scaled down until it fits;
    None when it cannot be read as an image (SVG, damaged bytes, more than `max_pixels`). `verify`
    decodes even an image that fits, to find damage past its header. Converting (or verifying) a
    large image costs up to a second: call it off the event loop then (`fit_images` does)."""
    from PIL import Image as PIL

    unreadable: tuple[type[Exception], ...] = (*_UNREADABLE, PIL.DecompressionBombError)
    encoded = image.data_base64
    try:  # no lock here: providers call this on the event loop, for images fitted when recorded
        header = _decode(encoded[: min(len(encoded), _HEADER_CHARS) // 4 * 4])
        with PIL.open(io.BytesIO(header)) as opened:
            mime, size = _FORMAT_MIME.get(opened.format or "", ""), opened.size
    except unreadable:
        mime, size = "", (0, 0)
    fits = bool(mime) and limits.fits(mime, len(encoded), size)
    if fits and not verify:
        return image if mime == image.mime_type else Image(mime, encoded)
    with _pillow():
        try:
            with PIL.open(io.BytesIO(_decode(encoded))) as opened:
                if opened.size[0] * opened.size[1] > limits.max_pixels:
                    raise ValueError(f"{opened.size[0]}x{opened.size[1]} pixels is more than we decode")
                opened.load()
                if fits:
                    return image if mime == image.mime_type else Image(mime, encoded)
                converted = _convert(opened, limits)
        except unreadable as exc:
            log.warning("image_unreadable", mime_type=image.mime_type, error=f"{type(exc).__name__}: {exc}")
            return None
    log.info("image_converted", mime_type=image.mime_type, to=converted.mime_type, size=list(size))
    return converted


_UNREADABLE: tuple[type[Exception], ...] = (OSError, ValueError, SyntaxError, Warning)
"""What Pillow raises for bytes it cannot read (Warning: its decompression bomb warning, made an error)."""
_PILLOW_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow() -> Iterator[None]:
    """Pillow's decompression bomb warning made an error for the block (so an oversized image is
    refused, not logged to stderr). Warning filters are process-wide: one thread at a time."""
    from PIL import Image as PIL

    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", PIL.DecompressionBombWarning)
        yield


def _decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def _convert(picture: PillowImage, limits: ImageLimits) -> Image:
    """Re-encode `picture` (its first frame) within `limits`, scaling it down as far as needed."""
    from PIL import Image as PIL

    transparent = picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info)
    frame = picture.convert("RGBA" if transparent else "RGB")
    if limits.max_side is not None and max(frame.size) > limits.max_side:
        frame.thumbnail((limits.max_side, limits.max_side), PIL.Resampling.LANCZOS)
    # Its own format first (a screenshot stays a sharp PNG), then JPEG, smaller and smaller.
    own = {"PNG": "PNG", "WEBP": "WEBP", "JPEG": "JPEG"}.get(picture.format or "", "")
    fmt = own if own and _FORMAT_MIME[own] in limits.media_types else "PNG" if transparent else "JPEG"
    quality = 85
    while True:
        buffer = io.BytesIO()
        frame.save(buffer, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        mime = _FORMAT_MIME[fmt]
        if limits.fits(mime, len(encoded), frame.size) or min(frame.size) <= 16:
            return Image(mime, encoded)
        if fmt != "JPEG" and not transparent and "image/jpeg" in limits.media_types:
            fmt = "JPEG"
        elif fmt in ("JPEG", "WEBP") and quality > 55:
            quality -= 15
        else:
            frame = frame.resize((max(16, frame.size[0] * 3 // 4), max(16, frame.size[1] * 3 // 4)))


def fit_images(images: Sequence[Image], limits: ImageLimits = COMMON_IMAGES) -> tuple[tuple[Image, ...], list[str]]:
    """Each image fitted to `limits`: the ones that fit (converted where needed), and a note for
    each one left out. Blocking (Pillow): run it in a thread."""
    kept: list[Image] = []
    notes: list[str] = []
    for image in images:
        fitted = fit_image(image, limits, verify=True)
        if fitted is None:
            notes.append(left_out_note(image))
        else:
            kept.append(fitted)
    return tuple(kept), notes


class ImageRefusalGuard:
    """A ChatModel that leaves out images its provider refused, in this request and every later one.

    When the provider rejects a request that carries images (HTTP 400), the request is sent once more
    without them (each replaced by a note the model reads). If that is accepted, the images were the
    cause: they are remembered (at most `remember` of them, in this process) and left out of every
    later request, so one image the provider will not take cannot break the conversation. If it is
    refused too, the second refusal is raised: the images were not the cause.
    """

    def __init__(self, model: ChatModel, remember: int = 256) -> None:
        self._model = model
        self._remember = remember
        self._refused: OrderedDict[tuple[int, int], None] = OrderedDict()

    @property
    def model(self) -> ChatModel:
        """The wrapped model."""
        return self._model

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask the wrapped model, leaving out refused images (see the class docstring)."""
        if self._refused:
            request = _without_images(request, lambda image: _key(image) in self._refused)
        try:
            return await self._model.complete(request)
        except LLMRejected as exc:
            carried = [image for message in request.messages for image in _images_of(message)]
            if exc.status != 400 or not carried:
                raise
            reply = await self._model.complete(_without_images(request, lambda image: True))
        for image in carried:
            self._refused[_key(image)] = None
        while len(self._refused) > self._remember:
            self._refused.popitem(last=False)
        log.warning("llm_images_refused", images=len(carried))
        return reply

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self._model.aclose()


def _key(image: Image) -> tuple[int, int]:
    # Python caches a string's hash, so this costs once per image, not once per request.
    return len(image.data_base64), hash(image.data_base64)


def _images_of(message: ModelMessage) -> tuple[Image, ...]:
    return message.images if isinstance(message, ToolResultRecord) else ()


def _without_images(request: ModelRequest, leave_out: Callable[[Image], bool]) -> ModelRequest:
    """The request with the images `leave_out(image)` picks replaced by a note."""
    messages: list[ModelMessage] = []
    changed = False
    for message in request.messages:
        images = _images_of(message)
        dropped = [image for image in images if leave_out(image)]
        if isinstance(message, ToolResultRecord) and dropped:
            changed = True
            kept = tuple(image for image in images if not leave_out(image))
            content = "\n".join([message.content, *([REFUSED_IMAGE_NOTE] * len(dropped))])
            message = dataclasses.replace(message, images=kept, content=content)
        messages.append(message)
    return dataclasses.replace(request, messages=messages) if changed else request
