"""Albums: parts gathered into one message, later messages of the chat kept behind it, and all of an
album's updates marked done together, the other parts before the first."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.protocol import ReplyTarget, UserMessage
from channels.telegram.albums import AlbumCollector
from channels.telegram.gateway import TelegramChannel
from channels.telegram.routing import Routed
from llm.records import Attachment
from stores.memory import InMemoryIngressLog


def part(update_id: int, group: str | None, caption: str = "", *, chat: int = 42, addressed: bool = True) -> Routed:
    photo = (Attachment("photo", f"photo-{update_id}"),) if group is not None else ()
    message = UserMessage(str(chat), caption, ReplyTarget(chat), update_id, 7, attachments=photo)
    return Routed(str(chat), message, group, addressed)


class Recorder:
    def __init__(self) -> None:
        self.routed: list[tuple[Routed, int]] = []
        self.albums: dict[int, tuple[int, ...]] = {}
        self.ignored: list[int] = []
        self.changed = asyncio.Event()

    def route(self, routed: Routed, update_id: int, _arrived: float, _replay: bool) -> None:
        self.routed.append((routed, update_id))
        self.changed.set()

    def add_album(self, first: int, others: tuple[int, ...]) -> None:
        self.albums[first] = others

    def ignore(self, update_id: int) -> None:
        self.ignored.append(update_id)
        self.changed.set()

    async def until(self, count: int) -> None:
        while len(self.routed) + len(self.ignored) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


def collector(recorder: Recorder, wait: float = 0.1) -> AlbumCollector:
    return AlbumCollector(recorder.route, recorder.add_album, recorder.ignore, wait)


def texts_and_files(recorder: Recorder) -> list[Any]:
    out = []
    for routed, update_id in recorder.routed:
        assert isinstance(routed.message, UserMessage)
        out.append((update_id, routed.message.text, [item.file_id for item in routed.message.attachments]))
    return out


async def test_an_albums_parts_become_one_message_under_its_first_update() -> None:
    recorder = Recorder()
    albums = collector(recorder)
    assert albums.take(part(11, "g"), 11, 0.0, False)
    assert albums.take(part(10, "g", "look at these"), 10, 0.0, False)
    assert albums.take(part(12, "g"), 12, 0.0, False)
    await recorder.until(1)
    assert texts_and_files(recorder) == [(10, "look at these", ["photo-10", "photo-11", "photo-12"])]
    assert recorder.albums == {10: (11, 12)}
    await albums.aclose()


async def test_what_the_chat_sends_during_an_album_waits_behind_it_and_other_chats_do_not() -> None:
    recorder = Recorder()
    albums = collector(recorder)
    albums.take(part(1, "g", "album"), 1, 0.0, False)
    assert albums.take(part(2, None, "after the album"), 2, 0.0, False)
    assert not albums.take(part(3, None, "another chat", chat=5), 3, 0.0, False)
    albums.take(part(4, "g"), 4, 0.0, False)
    await recorder.until(2)
    assert [update_id for _, update_id in recorder.routed] == [1, 2]
    await albums.aclose()


async def test_a_new_album_completes_the_one_before() -> None:
    recorder = Recorder()
    albums = collector(recorder, wait=5.0)
    albums.take(part(1, "first"), 1, 0.0, False)
    albums.take(part(2, "first"), 2, 0.0, False)
    albums.take(part(3, "second"), 3, 0.0, False)
    assert texts_and_files(recorder) == [(1, "", ["photo-1", "photo-2"])]
    await albums.aclose()  # the second album is left for the next start (its update stays in the log)
    assert len(recorder.routed) == 1


async def test_an_album_in_a_group_that_does_not_address_the_bot_is_ignored() -> None:
    recorder = Recorder()
    albums = collector(recorder)
    albums.take(part(1, "g", addressed=False, chat=-100), 1, 0.0, False)
    albums.take(part(2, "g", addressed=False, chat=-100), 2, 0.0, False)
    await recorder.until(2)
    assert recorder.routed == []
    assert sorted(recorder.ignored) == [1, 2]
    addressed = Recorder()
    other = collector(addressed)
    other.take(part(3, "h", "@bot compare", chat=-100), 3, 0.0, False)
    other.take(part(4, "h", addressed=False, chat=-100), 4, 0.0, False)
    await addressed.until(1)
    assert texts_and_files(addressed) == [(3, "@bot compare", ["photo-3", "photo-4"])]


class RecordingIngress(InMemoryIngressLog):
    def __init__(self) -> None:
        super().__init__()
        self.done_order: list[int] = []

    async def done(self, update_id: int) -> None:
        self.done_order.append(update_id)
        await super().done(update_id)


async def test_answering_an_album_marks_its_other_parts_done_first() -> None:
    ingress = RecordingIngress()
    await ingress.append([{"update_id": update_id, "message": {}} for update_id in (10, 11, 12, 13)])
    channel = TelegramChannel(sender=None, ingress=ingress)  # type: ignore[arg-type]
    channel.add_album(10, (11, 12))
    await channel.done(10)
    # A crash between leaves the first part, which a replay knows as answered; never the others alone.
    assert ingress.done_order == [11, 12, 10]
    assert [update["update_id"] for update in await ingress.pending()] == [13]
    await channel.done(13)
    assert ingress.done_order[-1] == 13
