"""The fake Bot API's files, media updates, drafts, sent files and edits, through python-telegram-bot."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import httpx
import pypdf
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, RetryAfter

from tests.fakes import media
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture
async def files_bot(tg: FakeTelegramServer) -> AsyncIterator[Bot]:
    """A Bot whose file downloads go to the fake server too."""
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url) as client:
        yield client


async def _only_update(bot: Bot) -> Update:
    [update] = await bot.get_updates()
    return update


# -- files ----------------------------------------------------------------------------------------


async def test_a_registered_file_is_fetched_and_downloaded_byte_for_byte(
    tg: FakeTelegramServer, files_bot: Bot
) -> None:
    data = media.png(120, 80)
    ref = tg.add_file(data, "image/png", kind="photo")
    file = await files_bot.get_file(ref.file_id)
    assert file.file_size == len(data)
    assert file.file_unique_id == ref.file_unique_id
    assert file.file_path is not None
    assert file.file_path.endswith(ref.file_path)
    assert ref.file_path.startswith("photos/file_")
    assert bytes(await file.download_as_bytearray()) == data
    assert [d.file_id for d in tg.downloads] == [ref.file_id]


async def test_files_over_twenty_megabytes_are_too_big(tg: FakeTelegramServer, files_bot: Bot) -> None:
    ref = tg.add_file(b"%PDF-1.7 tiny stand-in", "application/pdf", file_name="big.pdf", file_size=20 * 2**20 + 1)
    with pytest.raises(BadRequest, match="File is too big"):
        await files_bot.get_file(ref.file_id)
    with pytest.raises(BadRequest, match="Invalid file_id"):
        await files_bot.get_file("AgACAgIAAxkBAAInot-a-file")
    exactly = tg.add_file(b"x", file_size=20 * 2**20)
    assert (await files_bot.get_file(exactly.file_id)).file_size == 20 * 2**20


async def test_a_download_needs_getfile_first_and_the_right_token(tg: FakeTelegramServer, files_bot: Bot) -> None:
    ref = tg.add_file(b"hello", "text/plain", file_name="a.txt")
    url = f"{tg.base_file_url}{tg.token}/{ref.file_path}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 404
        await files_bot.get_file(ref.file_id)
        ok = await client.get(url)
        wrong = await client.get(f"{tg.base_file_url}999:other/{ref.file_path}")
        tg.expire_file_links()
        expired = await client.get(url)
        tg.fail_next("download", 502)
        await files_bot.get_file(ref.file_id)
        faulted = await client.get(url)
    assert ok.content == b"hello"
    assert (wrong.status_code, expired.status_code, faulted.status_code) == (404, 404, 502)


async def test_downloads_run_concurrently(tg: FakeTelegramServer, files_bot: Bot) -> None:
    tg.download_delay = 0.2
    refs = [tg.add_file(bytes([i]) * 10, kind="document", file_name=f"{i}.bin") for i in range(3)]
    files = [await files_bot.get_file(ref.file_id) for ref in refs]
    results = await asyncio.gather(*(f.download_as_bytearray() for f in files))
    assert [bytes(r) for r in results] == [bytes([i]) * 10 for i in range(3)]
    assert tg.max_concurrent_downloads == 3


# -- media updates --------------------------------------------------------------------------------


async def test_a_voice_message_carries_a_real_ogg_opus_note(tg: FakeTelegramServer, files_bot: Bot) -> None:
    tg.add_voice(42, media.voice_note(5))
    message = (await _only_update(files_bot)).message
    assert message is not None
    assert message.voice is not None
    assert (message.voice.duration.total_seconds(), message.voice.mime_type) == (5, "audio/ogg")
    data = bytes(await (await files_bot.get_file(message.voice.file_id)).download_as_bytearray())
    assert media.opus_info(data).duration == pytest.approx(5.0)
    assert (await files_bot.get_file(message.voice.file_id)).file_path.endswith(".oga")  # type: ignore[union-attr]


async def test_a_photo_comes_as_telegram_sizes_up_to_2560_pixels(tg: FakeTelegramServer, files_bot: Bot) -> None:
    tg.add_photo(42, "what is this?", media.jpeg(4000, 3000))
    message = (await _only_update(files_bot)).message
    assert message is not None
    assert message.caption == "what is this?"
    sizes = [(p.width, p.height) for p in message.photo]
    assert sizes == [(90, 68), (320, 240), (800, 600), (1280, 960), (2560, 1920)]
    largest = message.photo[-1]
    data = bytes(await (await files_bot.get_file(largest.file_id)).download_as_bytearray())
    assert media.image_size(data) == (2560, 1920)
    assert data.startswith(b"\xff\xd8\xff")
    assert largest.file_size == len(data)


async def test_a_small_photo_is_not_enlarged(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.add_photo(42, data=media.png(300, 200))
    message = (await _only_update(bot)).message
    assert message is not None
    assert [(p.width, p.height) for p in message.photo] == [(90, 60), (300, 200)]


async def test_an_album_is_several_updates_sharing_a_media_group(tg: FakeTelegramServer, bot: Bot) -> None:
    ids = tg.add_album(42, [media.png(200, 100, seed=1), media.png(100, 200, seed=2), media.png(50, 50)], "trip")
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == ids
    messages = [u.message for u in updates if u.message]
    assert len({m.media_group_id for m in messages}) == 1
    assert messages[0].media_group_id
    assert [m.caption for m in messages] == ["trip", None, None]
    assert [m.photo[-1].width for m in messages] == [200, 100, 50]


async def test_a_pdf_document_has_a_text_layer(tg: FakeTelegramServer, files_bot: Bot) -> None:
    pdf = media.pdf_with_text(["Invoice 17", "Total: 42 EUR"])
    tg.add_document(42, "invoice.pdf", pdf, caption="please check")
    message = (await _only_update(files_bot)).message
    assert message is not None
    assert message.document is not None
    assert (message.document.file_name, message.document.mime_type) == ("invoice.pdf", "application/pdf")
    data = bytes(await (await files_bot.get_file(message.document.file_id)).download_as_bytearray())
    assert [page.extract_text().strip() for page in pypdf.PdfReader(io.BytesIO(data)).pages] == [
        "Invoice 17",
        "Total: 42 EUR",
    ]


async def test_a_document_may_lie_about_its_type(tg: FakeTelegramServer, files_bot: Bot) -> None:
    tg.add_document(42, "cat.png", media.decompression_bomb_png(), "image/png")
    tg.add_document(42, "notes.txt", media.text_file(300, encoding="latin-1"))
    bomb, text = (u.message for u in await files_bot.get_updates())
    assert bomb is not None
    assert bomb.document is not None
    assert bomb.document.mime_type == "image/png"
    assert text is not None
    assert text.document is not None
    assert text.document.mime_type == "text/plain"
    raw = bytes(await (await files_bot.get_file(bomb.document.file_id)).download_as_bytearray())
    assert len(raw) < 50_000
    assert raw.startswith(b"\x89PNG")


async def test_stickers_videos_locations_and_audio_parse(tg: FakeTelegramServer, files_bot: Bot) -> None:
    tg.add_sticker(1)
    tg.add_video(1, caption="look")
    tg.add_location(1, 48.85, 2.35)
    tg.add_audio(1, title="Talk")
    sticker, video, location, audio = (u.message for u in await files_bot.get_updates())
    assert sticker is not None
    assert sticker.sticker is not None
    assert sticker.sticker.width == 512
    sticker_bytes = bytes(await (await files_bot.get_file(sticker.sticker.file_id)).download_as_bytearray())
    assert media.image_size(sticker_bytes) == (512, 512)
    assert video is not None
    assert video.video is not None
    assert video.caption == "look"
    assert location is not None
    assert location.location is not None
    assert location.location.latitude == 48.85
    assert audio is not None
    assert audio.audio is not None
    assert audio.audio.title == "Talk"
    assert audio.audio.mime_type == "audio/mpeg"


# -- sending files --------------------------------------------------------------------------------


async def test_send_voice_takes_an_ogg_opus_upload_and_records_it(tg: FakeTelegramServer, files_bot: Bot) -> None:
    note = media.voice_note(3)
    sent = await files_bot.send_voice(42, note, caption="<b>answer</b>", parse_mode="HTML", duration=3)
    [voice] = tg.voices(42)
    assert voice.data == note
    assert (voice.format, voice.duration, voice.caption) == ("ogg", pytest.approx(3.0), "answer")
    assert sent.voice is not None
    assert sent.voice.file_id == voice.file_id
    assert bytes(await (await files_bot.get_file(sent.voice.file_id)).download_as_bytearray()) == note
    # Resending by file_id works, as on Telegram.
    await files_bot.send_voice(43, sent.voice.file_id)
    assert tg.voices(43)[0].data == note


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "must be ogg/opus, mp3 or m4a"),
        (media.voice_note(2)[:-30], "truncated page"),
        (b"OggS" + bytes(40), "bad crc"),
    ],
)
async def test_send_voice_refuses_what_is_not_a_voice_note(
    tg: FakeTelegramServer, bot: Bot, payload: bytes, reason: str
) -> None:
    with pytest.raises(BadRequest, match=reason):
        await bot.send_voice(42, payload)
    assert tg.voices() == []


async def test_send_photo_and_document_check_and_record_bytes(tg: FakeTelegramServer, bot: Bot) -> None:
    photo = await bot.send_photo(42, media.png(400, 300), caption="chart")
    assert photo.photo[-1].width == 400
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(42, media.corrupt_png())
    with pytest.raises(BadRequest, match="Photo_invalid_dimensions"):
        await bot.send_photo(42, media.decompression_bomb_png())
    document = await bot.send_document(42, b"a,b\n1,2\n", filename="table.csv")
    assert document.document is not None
    assert document.document.file_name == "table.csv"
    assert [(f.method, f.format) for f in tg.sent_files] == [("sendPhoto", "png"), ("sendDocument", "")]
    assert tg.sent_files[1].data == b"a,b\n1,2\n"


# -- drafts ---------------------------------------------------------------------------------------


async def test_drafts_are_recorded_in_private_chats(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.add_text_message(42, "hi")
    assert await bot.send_message_draft(42, 7, "The answer <b>grows</b>", parse_mode="HTML") is True
    assert await bot.send_message_draft(42, 7, "") is True  # the "Thinking..." placeholder
    drafts = await tg.await_drafts(42, 2)
    assert [(d.draft_id, d.visible_text) for d in drafts] == [(7, "The answer grows"), (7, "")]
    assert tg.sent_to(42) == []


@pytest.mark.parametrize(
    ("chat_id", "draft_id", "text", "error"),
    [
        (-100500, 1, "group", "Textdraft_peer_invalid"),
        (42, 0, "zero", "Draft_id must be non-zero"),
        (42, 1, "<b>open", "Can't parse entities"),
        (42, 1, "x" * 4097, "Message is too long"),
    ],
)
async def test_drafts_follow_telegrams_rules(
    tg: FakeTelegramServer, bot: Bot, chat_id: int, draft_id: int, text: str, error: str
) -> None:
    tg.add_text_message(-100500, "@test_assistant_bot hi", chat_type="supergroup")
    with pytest.raises(BadRequest, match=error):
        await bot.send_message_draft(chat_id, draft_id, text, parse_mode="HTML")
    assert tg.drafts() == []


async def test_drafts_can_be_refused_to_test_fallbacks(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.refuse_drafts(chat_id=42)
    with pytest.raises(BadRequest, match="Textdraft_peer_invalid"):
        await bot.send_message_draft(42, 1, "no")
    assert await bot.send_message_draft(43, 1, "yes")
    tg.refuse_drafts(False, chat_id=42)
    tg.refuse_drafts(description="Bad Request: method is unavailable")
    with pytest.raises(BadRequest, match="Method is unavailable"):
        await bot.send_message_draft(43, 1, "no")
    assert [d.chat_id for d in tg.drafts()] == [43]


# -- edits ----------------------------------------------------------------------------------------


async def test_edits_follow_telegrams_rules(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.add_text_message(42, "hi")
    [user_message] = [u["message"]["message_id"] for u in tg.pending_updates]
    sent = await bot.send_message(42, "<b>draft</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message can't be edited"):
        await bot.edit_message_text("mine", 42, user_message)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("gone", 42, 999_999)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("<strong>draft</strong>", 42, sent.message_id, parse_mode="HTML")
    # Same visible text without the bold entity is a change; so is a new keyboard.
    await bot.edit_message_text("draft", 42, sent.message_id)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="ok")]])
    await bot.edit_message_text("draft", 42, sent.message_id, reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.edit_message_text("y" * 4097, 42, sent.message_id)
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.edit_message_text("<i>x", 42, sent.message_id, parse_mode="HTML")
    assert [m.text for m in tg.edits_to(42)] == ["draft", "draft"]
    assert tg.message_text(42, sent.message_id) == "draft"


async def test_edit_times_are_recorded_and_flood_control_can_be_enforced(tg: FakeTelegramServer, bot: Bot) -> None:
    sent = await bot.send_message(-100500, "one")
    await bot.edit_message_text("two", -100500, sent.message_id)
    tg.edit_flood_interval = 2.0
    with pytest.raises(RetryAfter) as caught:
        await bot.edit_message_text("three", -100500, sent.message_id)
    assert caught.value.retry_after.total_seconds() == 2  # type: ignore[union-attr]
    other = await bot.send_message(-100600, "elsewhere")
    await bot.edit_message_text("fine", -100600, other.message_id)  # the limit is per chat
    tg.edit_flood_interval = 0.0
    await bot.edit_message_text("three", -100500, sent.message_id)
    [interval] = tg.edit_intervals(-100500)
    assert interval >= 0
    assert [m.text for m in await tg.await_edits(-100500, 2)] == ["two", "three"]
