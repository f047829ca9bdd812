"""Real media bytes for tests: images, voice notes, PDFs, text, and hostile files.

Everything here is a real file of its format (Pillow, pypdf, an Ogg/Opus decoder read it), made at
test time or read from tests/fixtures/ (audio encoded once by tests/fixtures/build_audio.py).
Builders are cached where they are costly; the bytes are immutable, so sharing them is safe.

    png(64, 48)                   a small PNG
    jpeg(4000, 3000)              a ~12 MP photo (noise, so it is photo-sized: several MB)
    voice_ogg()                   a 2 s Ogg Opus voice note (as Telegram's voice messages are)
    voice_note(30)                an Ogg Opus stream of any length (the fixture's packets, re-muxed)
    pdf_with_text(["page one", "page two"])   a PDF whose text layer pypdf extracts
    decompression_bomb_png()      100 megapixels, ~15 kB on disk
    pdf_bomb(1024)                a PDF whose content stream inflates to 1 GiB
    corrupt_png(), scanned_pdf(), text_file(), wav(), speech_mp3(), speech_flac()

`ogg_pages`, `ogg_packets` and `opus_info` parse Ogg (checking every page's CRC), so fakes and
tests can verify that bytes someone produced are a valid Ogg Opus stream.
"""

from __future__ import annotations

import functools
import io
import math
import random
import struct
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FIXTURES",
    "OggError",
    "OggPage",
    "OpusInfo",
    "corrupt_png",
    "decompression_bomb_png",
    "gif",
    "image_size",
    "is_ogg_opus",
    "jpeg",
    "ogg_packets",
    "ogg_pages",
    "opus_info",
    "pdf_bomb",
    "pdf_with_text",
    "png",
    "scanned_pdf",
    "speech_flac",
    "speech_mp3",
    "text_file",
    "voice_note",
    "voice_ogg",
    "wav",
    "webp",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


# ------------------------------------------------------------------------------------------ images


def _image(width: int, height: int, mode: str, noise: bool, seed: int) -> object:
    from PIL import Image, ImageDraw

    image = Image.new(mode, (width, height), (40, 90, 160) if mode == "RGB" else 128)
    draw = ImageDraw.Draw(image)
    # A few shapes, so a resized or re-encoded image still shows something a test can check.
    draw.rectangle((width // 8, height // 8, width // 2, height // 2), fill=(230, 200, 40) if mode == "RGB" else 230)
    draw.ellipse(
        (width // 2, height // 3, width - width // 8, height - height // 8), fill=(200, 40, 60) if mode == "RGB" else 40
    )
    if noise:
        # Film grain makes the file as big as a camera's; a tiled patch costs a fraction of full-size noise.
        patch = Image.effect_noise((min(width, 509), min(height, 509)), 40 + seed % 7)
        grain = Image.new("L", (width, height))
        for x in range(0, width, patch.width):
            for y in range(0, height, patch.height):
                grain.paste(patch, (x, y))
        image = Image.blend(image, Image.merge("RGB", (grain, grain, grain)) if mode == "RGB" else grain, 0.35)
    return image


def _encode(image: object, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)  # type: ignore[attr-defined]
    return out.getvalue()


@functools.lru_cache(maxsize=16)
def png(width: int = 64, height: int = 48, *, noise: bool = False, seed: int = 0) -> bytes:
    """An RGB PNG of that size."""
    return _encode(_image(width, height, "RGB", noise, seed), "PNG")


@functools.lru_cache(maxsize=8)
def jpeg(width: int = 4000, height: int = 3000, *, quality: int = 85, noise: bool = True, seed: int = 0) -> bytes:
    """An RGB JPEG; the default is a 12-megapixel camera-like photo (grain makes it several MB)."""
    return _encode(_image(width, height, "RGB", noise, seed), "JPEG", quality=quality)


@functools.lru_cache(maxsize=4)
def gif(width: int = 32, height: int = 32) -> bytes:
    """A (still) GIF."""
    return _encode(_image(width, height, "RGB", False, 0).convert("P"), "GIF")  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=4)
def webp(width: int = 32, height: int = 32) -> bytes:
    """A WebP image."""
    return _encode(_image(width, height, "RGB", False, 0), "WEBP")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image, as Pillow reads it."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zeros_zlib(length: int) -> bytes:
    """A zlib stream of `length` zero bytes, built in well under a second for any size: one block of
    zeros is compressed once, fully flushed (byte-aligned, no back-references across it) and repeated."""
    block = 4 << 20
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = raw.compress(bytes(block)) + raw.flush(zlib.Z_FULL_FLUSH)
    repeats, rest = divmod(length, block)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    end = tail.compress(bytes(rest)) + tail.flush(zlib.Z_FINISH)
    # Adler-32 of n zeros: A stays 1, B adds A once per byte.
    adler = ((length % 65521) << 16) | 1
    return b"\x78\xda" + unit * repeats + end + struct.pack(">I", adler)


@functools.lru_cache(maxsize=4)
def decompression_bomb_png(megapixels: int = 100, *, rgb: bool = False) -> bytes:
    """A square PNG of `megapixels` million black pixels, a few kB on disk: decoding it costs
    width*height bytes (1-bit grey, Pillow's mode "1") or three times that (`rgb`)."""
    side = math.isqrt(megapixels * 1_000_000)
    bit_depth, colour, row = (8, 2, side * 3) if rgb else (1, 0, (side + 7) // 8)
    header = struct.pack(">IIBBBBB", side, side, bit_depth, colour, 0, 0, 0)
    data = _zeros_zlib(side * (row + 1))  # every row: filter byte 0, then zero samples
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


@functools.lru_cache(maxsize=1)
def corrupt_png() -> bytes:
    """A PNG with a valid signature and header whose image data is cut short and damaged."""
    whole = png(256, 256, noise=True)
    idat = whole.index(b"IDAT")
    cut = bytearray(whole[: idat + 200])
    for index in range(idat + 40, idat + 200, 7):
        cut[index] ^= 0x5A
    return bytes(cut)


# ------------------------------------------------------------------------------------------- audio


def voice_ogg() -> bytes:
    """A 2-second Ogg Opus voice note (48 kHz mono, 12 kbit/s), as Telegram's voice messages are."""
    return _fixture("voice.ogg")


def speech_mp3() -> bytes:
    """One second of speech-like sound as MP3 (LAME, 16 kHz mono)."""
    return _fixture("speech.mp3")


def speech_flac() -> bytes:
    """One second of speech-like sound as FLAC (16 kHz mono)."""
    return _fixture("speech.flac")


@functools.lru_cache(maxsize=8)
def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    """A 16-bit mono PCM WAV of a quiet 220 Hz tone."""
    frames = int(seconds * rate)
    samples = (int(3000 * math.sin(2 * math.pi * 220 * n / rate)) for n in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


class OggError(ValueError):
    """The bytes are not a valid Ogg (Opus) stream; the message says where."""


@dataclass(frozen=True)
class OggPage:
    """One Ogg page."""

    header_type: int
    granule: int
    serial: int
    sequence: int
    segments: tuple[int, ...]
    body: bytes


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def ogg_pages(data: bytes) -> list[OggPage]:
    """The pages of a single-stream Ogg file, each checked (capture pattern, version, CRC, order)."""
    pages: list[OggPage] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + 4] != b"OggS":
            raise OggError(f"no Ogg capture pattern at byte {offset}")
        if len(data) < offset + 27:
            raise OggError("truncated page header")
        version, header_type, granule, serial, sequence, crc, count = struct.unpack_from("<BBqIIIB", data, offset + 4)
        if version != 0:
            raise OggError(f"unsupported Ogg version {version}")
        segments = tuple(data[offset + 27 : offset + 27 + count])
        start = offset + 27 + count
        end = start + sum(segments)
        if len(segments) != count or end > len(data):
            raise OggError(f"truncated page {len(pages)}")
        unsigned = data[offset : offset + 22] + b"\0\0\0\0" + data[offset + 26 : end]
        if _ogg_crc(unsigned) != crc:
            raise OggError(f"bad CRC in page {len(pages)}")
        if pages and (serial != pages[0].serial or sequence != pages[-1].sequence + 1):
            raise OggError(f"page {len(pages)} is out of sequence")
        pages.append(OggPage(header_type, granule, serial, sequence, segments, data[start:end]))
        offset = end
    if not pages:
        raise OggError("empty stream")
    if not pages[0].header_type & 2 or not pages[-1].header_type & 4:
        raise OggError("the stream lacks its beginning or end-of-stream flag")
    return pages


def ogg_packets(data: bytes) -> list[bytes]:
    """The packets of a single-stream Ogg file (pages reassembled)."""
    packets: list[bytes] = []
    partial = b""
    for page in ogg_pages(data):
        position = 0
        for size in page.segments:
            partial += page.body[position : position + size]
            position += size
            if size < 255:
                packets.append(partial)
                partial = b""
    if partial:
        raise OggError("the last packet is unfinished")
    return packets


@dataclass(frozen=True)
class OpusInfo:
    """What an Ogg Opus stream's headers and pages say."""

    channels: int
    pre_skip: int
    input_sample_rate: int
    duration: float
    audio_packets: int


def opus_info(data: bytes) -> OpusInfo:
    """Parse and check an Ogg Opus stream (RFC 7845): OpusHead, OpusTags, audio; raises OggError."""
    pages = ogg_pages(data)
    packets = ogg_packets(data)
    if len(packets) < 3 or not packets[0].startswith(b"OpusHead") or not packets[1].startswith(b"OpusTags"):
        raise OggError("not an Opus stream: OpusHead and OpusTags must come first")
    head = packets[0]
    if len(head) < 19 or head[8] & 0xF0:
        raise OggError("bad OpusHead")
    channels = head[9]
    pre_skip, rate = struct.unpack_from("<HI", head, 10)
    samples = sum(_opus_samples(packet) for packet in packets[2:])
    final = pages[-1].granule
    if final > samples or final < 0:
        raise OggError(f"final granule {final} does not match the {samples} samples in the packets")
    return OpusInfo(channels, pre_skip, rate, max(0, final - pre_skip) / 48_000, len(packets) - 2)


def is_ogg_opus(data: bytes) -> bool:
    """True if `data` is a valid Ogg Opus stream."""
    try:
        opus_info(data)
    except OggError:
        return False
    return True


def _opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716, 3.1)."""
    if not packet:
        raise OggError("empty Opus packet")
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:
        frame = (480, 960)[config % 2]
    else:
        frame = (120, 240, 480, 960)[config % 4]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise OggError("truncated Opus packet")
        frames = packet[1] & 0x3F
    return frame * frames


def _ogg_page(header_type: int, granule: int, serial: int, sequence: int, packets: list[bytes]) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    body = b"".join(packets)
    header = b"OggS" + struct.pack("<BBqIIIB", 0, header_type, granule, serial, sequence, 0, len(lacing)) + lacing
    crc = _ogg_crc(header + body)
    return header[:22] + struct.pack("<I", crc) + header[26:] + body


@functools.lru_cache(maxsize=16)
def voice_note(seconds: float = 2.0, serial: int = 0x5EED) -> bytes:
    """An Ogg Opus voice note of about `seconds` (20 ms steps): the fixture's audio packets, cycled and
    muxed into fresh pages with the right granule positions and CRCs."""
    packets = ogg_packets(voice_ogg())
    head, tags, audio = packets[0], packets[1], packets[2:]
    pre_skip = struct.unpack_from("<H", head, 10)[0]
    wanted = max(1, round(seconds * 48_000))
    chosen: list[bytes] = []
    total = 0
    index = 0
    while total < wanted + pre_skip:
        packet = audio[index % len(audio)]
        chosen.append(packet)
        total += _opus_samples(packet)
        index += 1
    pages = [_ogg_page(2, 0, serial, 0, [head]), _ogg_page(0, 0, serial, 1, [tags])]
    granule = 0
    per_page = 50  # one second of 20 ms packets, as opusenc pages them
    for start in range(0, len(chosen), per_page):
        group = chosen[start : start + per_page]
        granule += sum(_opus_samples(p) for p in group)
        last = start + per_page >= len(chosen)
        final = min(granule, wanted + pre_skip) if last else granule
        pages.append(_ogg_page(4 if last else 0, final, serial, len(pages), group))
    return b"".join(pages)


# -------------------------------------------------------------------------------------------- PDFs


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF from its numbered objects (1..n; object 1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(data: bytes, extra: str = "", *, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data)
        extra += " /Filter /FlateDecode"
    return f"<< /Length {len(data)}{extra} >>\nstream\n".encode() + data + b"\nendstream"


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_objects(contents: list[bytes], resources: str) -> list[bytes]:
    """Catalog, page tree, then per page: the page and its content stream."""
    count = len(contents)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for index, content in enumerate(contents):
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources {resources} "
            f"/Contents {4 + 2 * index} 0 R >>"
        )
        objects += [page.encode(), content]
    return objects


def pdf_with_text(pages: list[str] | str = "Hello from a PDF.", *, compress: bool = True) -> bytes:
    """A PDF with a real text layer (Helvetica, WinAnsi): one page per string, lines split at newlines.
    Characters outside Latin-1 are replaced by '?' (the font's encoding cannot show them)."""
    texts = [pages] if isinstance(pages, str) else pages
    font = 3 + 2 * len(texts)
    contents = []
    for text in texts:
        lines = text.encode("latin-1", "replace").decode("latin-1").split("\n")
        ops = ["BT", "/F1 11 Tf", "14 TL", "56 740 Td"]
        for line in lines:
            ops.append(f"({_pdf_escape(line)}) Tj T*")
        ops.append("ET")
        contents.append(_stream("\n".join(ops).encode("latin-1"), compress=compress))
    objects = _page_objects(contents, f"<< /Font << /F1 {font} 0 R >> >>")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    return _pdf(objects)


def scanned_pdf(pages: int = 1) -> bytes:
    """A PDF of pages that only draw an image (a scan): no text layer at all."""
    side = 64
    pixels = bytes((x * 3 + y * 5) % 256 for y in range(side) for x in range(side))
    image_obj = 3 + 2 * pages
    contents = [_stream(b"q 500 0 0 700 56 46 cm /Im1 Do Q") for _ in range(pages)]
    objects = _page_objects(contents, f"<< /XObject << /Im1 {image_obj} 0 R >> >>")
    objects.append(
        _stream(
            pixels,
            f" /Type /XObject /Subtype /Image /Width {side} /Height {side} /ColorSpace /DeviceGray /BitsPerComponent 8",
            compress=True,
        )
    )
    return _pdf(objects)


@functools.lru_cache(maxsize=2)
def pdf_bomb(inflated_mb: int = 1024) -> bytes:
    """A valid one-page PDF whose FlateDecode content stream inflates to `inflated_mb` MiB of zero
    bytes (about 1 kB on disk per MiB): decoding it whole exhausts memory."""
    data = _zeros_zlib(inflated_mb << 20)
    content = b"<< /Length " + str(len(data)).encode() + b" /Filter /FlateDecode >>\nstream\n" + data + b"\nendstream"
    objects = _page_objects([content], "<< >>")
    return _pdf(objects)


# -------------------------------------------------------------------------------------------- text


def text_file(chars: int = 2_000, *, encoding: str = "utf-8", seed: int = 0) -> bytes:
    """Plain prose of about `chars` characters (with non-ASCII words), encoded as asked
    (e.g. "latin-1" or "cp1252" for charset-fallback tests)."""
    rng = random.Random(seed)
    words = ["the", "assistant", "reads", "this", "file", "café", "naïve", "résumé", "line", "of", "text", "and"]
    out: list[str] = []
    length = 0
    line = 0
    while length < chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "."
        line += 1
        if line % 4 == 0:
            sentence += "\n"
        out.append(sentence)
        length += len(sentence) + 1
    return " ".join(out)[:chars].encode(encoding)
