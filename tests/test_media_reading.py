"""Reading files: images made fit for a model (Pillow), documents' text (charsets, PDF text layers), and
hostile files (decompression bombs, corrupt data, lying names) refused in bounded time and memory."""

from __future__ import annotations

import io
import time
import tracemalloc

import pytest

from llm.documents import MAX_CHARS, DocumentError, read_document, sniff
from llm.vision import MAX_SIDE, ImageError, normalise_image
from tests.fakes import media


def test_a_small_image_is_sent_as_it_is() -> None:
    data = media.png(64, 48)
    image = normalise_image(data)
    assert (image.data, image.mime_type, image.width, image.height) == (data, "image/png", 64, 48)


def test_a_12_megapixel_photo_is_scaled_to_fit_the_long_side_and_reencoded_as_jpeg() -> None:
    image = normalise_image(media.jpeg(4000, 3000))
    assert (image.mime_type, image.width, image.height) == ("image/jpeg", MAX_SIDE, 1176)
    assert media.image_size(image.data) == (MAX_SIDE, 1176)
    assert len(image.data) < 1_000_000


def test_transparency_becomes_white_and_an_animated_gif_its_first_frame() -> None:
    from PIL import Image

    clear = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    out = io.BytesIO()
    clear.save(out, "PNG")
    wide = io.BytesIO()
    clear.resize((3000, 30)).save(wide, "PNG")
    image = normalise_image(wide.getvalue())
    assert (image.mime_type, image.width, image.height) == ("image/jpeg", MAX_SIDE, 16)
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.convert("RGB").getpixel((5, 5)) == (255, 255, 255)
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    assert normalise_image(animated.getvalue()).mime_type == "image/jpeg"


def test_a_photo_with_an_exif_rotation_is_turned_upright() -> None:
    from PIL import Image

    photo = Image.new("RGB", (200, 100), "green")
    exif = photo.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: a camera held upright
    out = io.BytesIO()
    photo.save(out, "JPEG", exif=exif)
    image = normalise_image(out.getvalue())
    assert (image.width, image.height) == (100, 200)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (media.decompression_bomb_png(), "too_large"),
        (media.decompression_bomb_png(rgb=True), "too_large"),
        (media.decompression_bomb_png(30), "too_large"),  # under Pillow's own limit, over ours
        (media.corrupt_png(), "corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not_an_image"),  # a PNG signature, then nothing Pillow knows
        (media.pdf_with_text("I am a PDF named photo.jpg"), "not_an_image"),
        (b"hello, I am text", "not_an_image"),
    ],
)
def test_hostile_images_are_refused_quickly_without_decoding(data: bytes, problem: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        normalise_image(data)
    assert caught.value.problem == problem
    assert time.perf_counter() - started < 1.0


def test_text_is_decoded_by_its_bom_then_utf8_then_windows_1252() -> None:
    assert read_document("naïve café".encode()).text == "naïve café"
    assert read_document("naïve café".encode("utf-16")).text == "naïve café"
    assert read_document("“smart” quotes — and a dash".encode("cp1252")).text == "“smart” quotes — and a dash"
    assert read_document(b"\x81\x8d odd bytes \xe9").text == "\x81\x8d odd bytes é"  # Latin-1, the last resort
    assert read_document(media.text_file(3000, encoding="latin-1")).text == media.text_file(3000).decode().strip()


def test_markdown_csv_json_and_source_code_are_text() -> None:
    for data in (b"# Title\n\n- item\n", b"a,b\n1,2\n", b'{"a": [1, 2]}', b"def f():\n\treturn 1\n"):
        assert sniff(data) == "text"
        assert read_document(data).text == data.decode().strip()


def test_a_long_text_is_cut_with_a_note() -> None:
    document = read_document(media.text_file(250_000))
    assert document.truncated
    assert document.text.endswith("[The document is longer: it was cut here, at 100,000 characters.]")
    assert len(document.text) < MAX_CHARS + 200


def test_a_pdf_is_read_page_by_page_and_a_long_one_is_cut_saying_where() -> None:
    document = read_document(media.pdf_with_text(["First page.", "Second page."]))
    assert (document.text, document.pages, document.truncated) == ("First page.\n\nSecond page.", 2, False)
    long = read_document(media.pdf_with_text([("Line of text. " * 60 + "\n") * 6] * 40), max_chars=20_000)
    assert long.truncated
    assert "[The document is longer: it was cut here (in page " in long.text
    assert "of 40), at 20,000 characters.]" in long.text


def test_names_and_types_do_not_decide_what_a_file_is() -> None:
    assert sniff(media.pdf_with_text("x")) == "pdf"
    assert sniff(media.png()) == "image"
    assert sniff(media.jpeg(64, 48)) == "image"
    assert sniff(b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256))) == "other"
    with pytest.raises(DocumentError) as caught:
        read_document(b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256)))
    assert caught.value.problem == "unsupported"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (media.scanned_pdf(3), "scanned"),
        (media.pdf_with_text("cut short")[:300], "corrupt"),
        (b"%PDF-1.7\n" + b"\x00garbage" * 50, "corrupt"),
    ],
)
def test_pdfs_without_readable_text_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(DocumentError) as caught:
        read_document(data)
    assert caught.value.problem == problem


def test_a_pdf_that_inflates_to_a_gigabyte_is_refused_in_bounded_time_and_memory() -> None:
    bomb = media.pdf_bomb(1024)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(DocumentError) as caught:
            read_document(bomb)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.problem == "too_large"
    assert elapsed < 5.0
    assert peak < 64 * 1024 * 1024  # pypdf stops inflating at 8 MB a stream
