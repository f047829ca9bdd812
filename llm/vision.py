"""Images the user sent, made fit for a model's image input with Pillow: decoded (so that a file that is
not an image, or a broken one, is never sent), scaled to fit `max_side`, and re-encoded when needed.

`normalise_image` is CPU work: run it off the event loop (a thread). Its cost is bounded whatever the
bytes: the pixel count is read from the header and checked before anything is decoded (and Pillow's
`MAX_IMAGE_PIXELS` refuses a header of over ~179 megapixels at once), and a JPEG is decoded at the
smallest scale that still covers `max_side` (libjpeg's DCT scaling), so a 12-megapixel photo costs a
quarter of its pixels. Importing this module does not import Pillow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MAX_DECODED_PIXELS",
    "MAX_IMAGE_BYTES",
    "MAX_SIDE",
    "ImageError",
    "ImageProblem",
    "NormalisedImage",
    "normalise_image",
]

MAX_SIDE = 1568
"""The long side both providers recommend: Anthropic scales anything larger down, OpenAI tiles it."""

MAX_IMAGE_BYTES = 3_750_000
"""The most bytes an image may keep: Anthropic limits an image's base64 to 5 MB (4/3 of this)."""

MAX_DECODED_PIXELS = 16_000_000
"""The most pixels decoded at once (64 MB as RGBA): a larger PNG, GIF or WebP is refused. A JPEG is
decoded scaled down, so only a JPEG larger than eight times this many pixels on a side is refused."""

_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""The formats we decode: what phones, screenshots and the web produce. Fewer decoders, less to attack."""

_PASS_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
"""Formats both providers take as they are: such an image that needs no scaling is sent unchanged."""

ImageProblem = Literal["not_an_image", "corrupt", "too_large"]


class ImageError(ValueError):
    """The bytes are no image we can send. `problem`: `not_an_image` (no format Pillow knows), `corrupt`
    (a known format that does not decode), `too_large` (more pixels than may be decoded: a bomb)."""

    def __init__(self, problem: ImageProblem, detail: str = "") -> None:
        super().__init__(f"{problem}: {detail}" if detail else problem)
        self.problem: ImageProblem = problem


@dataclass(frozen=True, slots=True)
class NormalisedImage:
    """An image ready for a model: JPEG, PNG or WebP bytes within `MAX_SIDE` and `MAX_IMAGE_BYTES`."""

    data: bytes
    mime_type: str
    width: int
    height: int


def normalise_image(data: bytes, *, max_side: int = MAX_SIDE, max_pixels: int = MAX_DECODED_PIXELS) -> NormalisedImage:
    """Decode `data`, scale it to fit `max_side`, re-encode it as JPEG unless it can be sent as it is.

    Raises ImageError. Blocking CPU work (tens of milliseconds): call it from a thread.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow's own guard (MAX_IMAGE_PIXELS, left at its default: it is process-wide) warns about a
        # header of more pixels and refuses twice that; ours, before anything is decoded, is tighter.
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            return _normalise(image, data, max_side, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning, where it is an error
        raise ImageError("too_large", str(exc)) from exc
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        # Pillow reports truncated or damaged data as OSError / SyntaxError / ValueError / EOFError.
        raise ImageError("corrupt", type(exc).__name__) from exc


def _normalise(image: PILImage, data: bytes, max_side: int, max_pixels: int) -> NormalisedImage:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("corrupt", "no pixels")
    scale = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.format == "JPEG" and scale < 1.0:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: the smallest that still covers the target.
        image.draft("RGB", target)
    decoded_width, decoded_height = image.size
    if decoded_width * decoded_height > max_pixels:
        raise ImageError("too_large", f"{width}x{height}")
    image.load()
    mime = _PASS_FORMATS.get(image.format or "")
    animated = bool(getattr(image, "is_animated", False))
    rotated = image.getexif().get(0x0112, 1) not in (1, None)
    if mime and scale == 1.0 and not animated and not rotated and len(data) <= MAX_IMAGE_BYTES:
        return NormalisedImage(data, mime, width, height)
    return _reencode(image, max_side, rotated)


def _reencode(image: PILImage, max_side: int, rotated: bool) -> NormalisedImage:
    from PIL import Image, ImageOps

    # Each step below copies the image only when it must: a 12 MP photo's decoded pixels are ~9 MB.
    if rotated:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # JPEG has no alpha: transparent parts go white, as a viewer would show them on a page.
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    # Never enlarges. Bilinear (antialiased when shrinking) costs a third of Lanczos, and the draft
    # decode already did the coarse part; reducing_gap shrinks by whole factors first when far off.
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return NormalisedImage(out.getvalue(), "image/jpeg", image.width, image.height)
