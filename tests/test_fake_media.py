"""The media builders make real files of their formats, hostile ones included."""

from __future__ import annotations

import io
import zlib

import pypdf
import pytest
from PIL import Image

from tests.fakes import media


def test_images_are_what_they_claim() -> None:
    assert media.image_size(media.png(64, 48)) == (64, 48)
    photo = media.jpeg()
    assert media.image_size(photo) == (4000, 3000)
    assert len(photo) > 2_000_000  # camera-sized, not a flat colour
    assert media.image_size(media.gif()) == (32, 32)
    assert media.image_size(media.webp()) == (32, 32)


def test_the_corrupt_png_does_not_decode() -> None:
    data = media.corrupt_png()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(OSError, match=r"broken|truncated|corrupt"), Image.open(io.BytesIO(data)) as image:
        image.load()


def test_the_pixel_bomb_is_small_on_disk_and_huge_decoded() -> None:
    data = media.decompression_bomb_png()
    assert len(data) < 20_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(io.BytesIO(data)) as image:
        assert image.size == (10_000, 10_000)


def test_pdfs_have_a_text_layer_or_none() -> None:
    reader = pypdf.PdfReader(io.BytesIO(media.pdf_with_text(["Hello (PDF) world", "Seite zwei: Grüße"])))
    assert [page.extract_text().strip() for page in reader.pages] == ["Hello (PDF) world", "Seite zwei: Grüße"]
    scanned = pypdf.PdfReader(io.BytesIO(media.scanned_pdf(pages=3)))
    assert len(scanned.pages) == 3
    assert all(not page.extract_text().strip() for page in scanned.pages)


def test_the_pdf_bomb_is_a_valid_pdf_whose_stream_inflates_hugely() -> None:
    data = media.pdf_bomb(64)
    assert len(data) < 200_000
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    start = data.index(b"stream\n") + len(b"stream\n")
    end = data.index(b"\nendstream")
    inflated = zlib.decompress(data[start:end])  # 64 MiB here; pdf_bomb() defaults to 1 GiB
    assert len(inflated) == 64 << 20


def test_voice_notes_are_valid_ogg_opus() -> None:
    fixture = media.opus_info(media.voice_ogg())
    assert (fixture.channels, fixture.duration) == (1, 2.0)
    long = media.opus_info(media.voice_note(30))
    assert long.duration == pytest.approx(30.0)
    assert len(media.voice_note(30)) < 60_000
    assert not media.is_ogg_opus(media.speech_mp3())
    damaged = bytearray(media.voice_note(3))
    damaged[100] ^= 0xFF
    with pytest.raises(media.OggError, match="bad CRC"):
        media.ogg_pages(bytes(damaged))


def test_text_files_come_in_the_encoding_asked() -> None:
    latin = media.text_file(400, encoding="latin-1")
    assert len(latin) == 400
    with pytest.raises(UnicodeDecodeError):
        latin.decode("utf-8")
    assert media.text_file(400).decode("utf-8")
