"""The media pipeline against the fakes: bounded work, files held a few at a time, images fetched again
for later requests, and a model that cannot see told apart from one that refuses for another reason."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from actors import texts
from actors._seeing import SeeingModel
from actors._workers import Workers, WorkTimedOut
from actors.media import Media
from actors.protocol import ReplyTarget, UserMessage
from channels.telegram.client import file_base_url
from channels.telegram.media import TelegramFiles
from conf.settings import BackoffSettings, LLMSettings, MediaSettings
from llm import LLMRejected, ModelRequest, UserRecord, build_chat_model
from llm.attachments import IMAGE_NOT_SHOWN
from llm.records import Attachment, Image
from ops.backoff import Backoff
from tests.fakes import media
from tests.fakes.llm_server import Fail, FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer

FAST = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0))


@pytest.fixture
async def bot(tg: FakeTelegramServer) -> AsyncIterator[Bot]:
    async with Bot(tg.token, base_url=tg.base_url, base_file_url=file_base_url(tg.base_url)) as client:
        yield client


async def make_media(bot: Bot, **settings: object) -> tuple[Media, TelegramFiles]:
    files = TelegramFiles(bot, FAST, timeout_seconds=5.0)
    return Media(files, MediaSettings(**settings)), files  # type: ignore[arg-type]


def photo_message(tg: FakeTelegramServer, data: bytes, *, kind: str = "photo", name: str = "") -> UserMessage:
    ref = tg.add_file(data, "image/jpeg", kind=kind, file_name=name or None)
    item = Attachment("document" if name else "photo", ref.file_id, "image/jpeg", ref.file_size, name)
    return UserMessage("42", "look", ReplyTarget(42), 1, 42, attachments=(item,))


async def test_work_past_its_timeout_is_answered_and_keeps_its_thread_until_it_ends() -> None:
    workers = Workers(1, timeout_seconds=0.05)
    release = threading.Event()
    with pytest.raises(WorkTimedOut):
        await workers.run(lambda: release.wait(5))
    started = time.monotonic()
    waiting = asyncio.ensure_future(workers.run(lambda: "next"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the only thread is still busy with the work that timed out
    release.set()
    assert await waiting == "next"
    assert time.monotonic() - started < 2
    workers.close()


async def test_an_image_is_fetched_again_for_a_later_request_and_only_the_newest_are_shown(
    tg: FakeTelegramServer, bot: Bot
) -> None:
    reader, files = await make_media(bot, max_images_per_request=2)
    messages = [photo_message(tg, media.jpeg(320, 240, seed=index)) for index in range(3)]
    prepared = [await reader.prepare(message) for message in messages]
    assert [len(tg.downloads)] == [3]
    history = [UserRecord(text=p.text, attachments=p.attachments) for p in prepared]
    shown = await reader.images(history)
    assert sorted(shown) == sorted(item.file_id for p in prepared[1:] for item in p.attachments)
    assert len(tg.downloads) == 3  # from the cache
    restarted, files_after = await make_media(bot)
    again = await restarted.images(history)
    assert len(again) == 3
    assert len(tg.downloads) == 6  # a new process fetches them again, by file_id
    for closing in (reader, restarted):
        await closing.aclose()
    for source in (files, files_after):
        await source.aclose()


async def test_large_files_are_held_a_few_at_a_time_small_ones_are_not(tg: FakeTelegramServer, bot: Bot) -> None:
    reader, files = await make_media(bot, large_downloads=2)
    big = media.text_file(2_500_000)
    messages = []
    for index in range(4):
        ref = tg.add_file(big, "text/plain", kind="document", file_name=f"log{index}.txt")
        item = Attachment("document", ref.file_id, "text/plain", ref.file_size, f"log{index}.txt")
        messages.append(UserMessage("42", "", ReplyTarget(42), index, 42, attachments=(item,)))
    tg.download_delay = 0.3
    results = await asyncio.gather(*(reader.prepare(message) for message in messages))
    assert all(result.notice is None for result in results)
    assert tg.max_concurrent_downloads == 2
    small = [photo_message(tg, media.png(seed=index)) for index in range(4)]
    tg.download_delay, tg.downloads_together = 0.0, 4  # held until all four are in flight, if they may be
    await asyncio.gather(*(reader.prepare(message) for message in small))
    assert tg.max_concurrent_downloads == 4
    await reader.aclose()
    await files.aclose()


async def test_reading_that_takes_too_long_is_explained(tg: FakeTelegramServer, bot: Bot) -> None:
    reader, files = await make_media(bot, work_timeout_seconds=0.001)
    prepared = await reader.prepare(photo_message(tg, media.jpeg(4000, 3000), name="big.jpg"))
    assert prepared.notice == texts.FILE_TOO_SLOW.format(name="“big.jpg”")
    await reader.aclose()
    await files.aclose()


async def test_a_refusal_that_is_not_about_images_stays_a_refusal(llm: FakeLLMServer) -> None:
    model = build_chat_model(
        LLMSettings(provider="openai", base_url=llm.openai_base_url, api_key="k", model="gpt-4o-mini"), FAST
    )
    image = Image("image/png", base64.b64encode(media.png()).decode())
    record = UserRecord(text="see", attachments=(Attachment("photo", "p1", width=64, height=48),))

    async def load(_messages: object) -> dict[str, Image]:
        return {"p1": image}

    seeing = SeeingModel(model, load)
    reply = await seeing.complete(ModelRequest("", [record]))
    assert reply.text == "echo: see"
    assert len(llm.requests[-1].images) == 1
    llm.script([Fail(400), Fail(400)])
    with pytest.raises(LLMRejected):
        await seeing.complete(ModelRequest("", [record]))
    assert (seeing.sees, seeing.refused) == (True, False)
    llm.refuse_images = True
    refused = await seeing.complete(ModelRequest("", [record]))
    assert refused.text.startswith(texts.CANNOT_SEE_IMAGES)  # the one line, then the answer without the image
    assert (seeing.sees, seeing.refused) == (False, True)
    assert llm.requests[-1].images == []
    again = await seeing.complete(ModelRequest("", [record]))
    assert again.text == f"echo: {IMAGE_NOT_SHOWN}\n\nsee"  # images are left out from then on, said once
    await model.aclose()
