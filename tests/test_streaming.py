"""Streamed answers through the fake Bot API: drafts, edits, fallbacks, and the finished answer once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from actors import texts
from actors.protocol import Reply, ReplyTarget
from channels.telegram import split_message, to_telegram_html
from channels.telegram._html import parse_html
from channels.telegram.sender import Rate, TelegramSender
from channels.telegram.streaming import StreamTiming, TelegramReplyStream, TelegramStreams
from conf.settings import BackoffSettings
from ops.backoff import Backoff
from tests.fakes.telegram_server import FakeTelegramServer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

FAST = Backoff(BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0))
TIMING = StreamTiming(first_delay_s=0.01, draft_interval_s=0.03, edit_interval_s=0.06, draft_refresh_s=30.0)
PRIVATE = ReplyTarget(42)
GROUP = ReplyTarget(-100_42, reply_to_message_id=None)


class Answer:
    """The text a model has written so far, pushed into a stream piece by piece."""

    def __init__(self) -> None:
        self.text = ""
        self.recorded: list[tuple[int, ...]] = []
        self.visible = 0

    async def record(self, message_ids: tuple[int, ...]) -> None:
        self.recorded.append(message_ids)

    def seen(self) -> None:
        self.visible += 1

    async def write(self, stream: TelegramReplyStream, pieces: list[str], gap: float = 0.004) -> None:
        for piece in pieces:
            self.text += piece
            stream.changed()
            await asyncio.sleep(gap)


@pytest.fixture
async def streams(bot: Bot) -> AsyncIterator[TelegramStreams]:
    sender = TelegramSender(bot, FAST, overall_rate=None, max_concurrent_sends=4)
    streams = TelegramStreams(sender, bot, TIMING)
    yield streams
    await streams.aclose()


def open_stream(streams: TelegramStreams, target: ReplyTarget, answer: Answer, **kwargs: object) -> TelegramReplyStream:
    return streams.open(target, lambda: answer.text, on_messages=answer.record, on_visible=answer.seen, **kwargs)  # type: ignore[arg-type]


def words(count: int, start: int = 0) -> list[str]:
    return [f"word{index} " for index in range(start, start + count)]


def reply(text: str, target: ReplyTarget, kind: str = "answer") -> Reply:
    return Reply(str(target.chat_id), text, target, 7, kind=kind)  # type: ignore[arg-type]


# -- private chats: drafts --------------------------------------------------------------------------


async def test_a_private_answer_grows_as_drafts_and_is_then_sent_once(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, words(60))
    await stream.finish(reply(answer.text, PRIVATE))

    drafts = tg.drafts(42)
    [message] = tg.sent_to(42)
    assert message.text == answer.text.strip()
    assert len(drafts) >= 3
    assert all(draft.time < message.time for draft in drafts)  # no preview lands after the answer
    assert all(answer.text.startswith(draft.visible_text) for draft in drafts)
    lengths = [len(draft.visible_text) for draft in drafts]
    assert lengths == sorted(lengths)
    assert len(set(lengths)) == len(lengths)
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(drafts)]
    assert min(gaps) >= TIMING.draft_interval_s * 0.9
    assert answer.visible == 1
    assert answer.recorded == []


async def test_an_answer_finished_before_the_first_preview_costs_no_draft(tg: FakeTelegramServer, bot: Bot) -> None:
    streams = TelegramStreams(TelegramSender(bot, FAST), bot, StreamTiming(first_delay_s=0.5))
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, words(5), gap=0)
    # With the real clock the first delay is a timer: a quick answer (most of them) costs no task.
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("telegram-preview")]
    await stream.finish(reply(answer.text, PRIVATE))
    assert tg.drafts() == []
    assert [m.text for m in tg.sent_to(42)] == [answer.text.strip()]


async def test_a_finished_answer_waiting_to_be_recorded_costs_no_draft(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    # A busy process records the answer after its last words came: however long that takes, the
    # preview does not send the finished text as a draft just before the answer itself.
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, words(5), gap=0)
    stream.answered()
    await asyncio.sleep(TIMING.first_delay_s * 10)  # the time a draft would have gone out
    assert tg.drafts() == []
    await stream.finish(reply(answer.text, PRIVATE))
    assert [m.text for m in tg.sent_to(42)] == [answer.text.strip()]


async def test_an_unchanged_draft_is_sent_again_before_telegram_drops_it(tg: FakeTelegramServer, bot: Bot) -> None:
    timing = StreamTiming(first_delay_s=0.0, draft_interval_s=0.01, draft_refresh_s=0.05)
    streams = TelegramStreams(TelegramSender(bot, FAST), bot, timing)
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    stream.tool_boundary()  # a tool call: nothing new is written while it runs
    await answer.write(stream, ["Let me look that up."])
    drafts = await tg.await_drafts(42, count=3)
    await stream.finish(reply("Found it.", PRIVATE))
    assert {draft.visible_text for draft in drafts} == {"Let me look that up."}


async def test_partial_markdown_never_makes_telegram_refuse_a_preview(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    pieces = ["Here is **some", " bold** text", " and `co", "de`.\n\n", "```python\n", "if a < b:\n", "    print(a)\n"]
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    for piece in pieces:
        await answer.write(stream, [piece])
        await asyncio.sleep(TIMING.draft_interval_s * 1.5)
    drafts = tg.drafts(42)
    await stream.finish(reply(answer.text + "```", PRIVATE))
    assert len(drafts) >= 4
    assert all(draft.parse_mode == "HTML" for draft in drafts)  # the fake refuses what Telegram would
    assert "<pre>" in drafts[-1].text or "<pre><code" in drafts[-1].text
    assert "if a &lt; b:" in drafts[-1].text


async def test_a_preview_telegram_refuses_as_html_goes_plain(tg: FakeTelegramServer, streams: TelegramStreams) -> None:
    tg.fail_next("sendMessageDraft", 400, "Bad Request: can't parse entities: unsupported start tag", chat_id=42)
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, ["Some **bold** words ", *words(30)])
    await stream.finish(reply(answer.text, PRIVATE))
    drafts = tg.drafts(42)
    assert drafts
    assert all(draft.parse_mode is None for draft in drafts)
    assert "**" not in drafts[-1].text
    assert "bold" in drafts[-1].text
    [message] = tg.sent_to(42)
    assert message.parse_mode == "HTML"  # only the preview went plain


async def test_a_chat_that_refuses_drafts_gets_edits_then_whole_answers(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    tg.refuse_drafts(chat_id=42)
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, words(40), gap=0.01)
    await stream.finish(reply(answer.text, PRIVATE))
    assert tg.calls.count("sendMessageDraft") == 1
    [preview] = tg.sent_to(42)  # the preview message, which became the answer
    assert tg.chat_view(42) == [answer.text.strip()]
    assert answer.recorded == [(preview.message_id,)]
    assert streams.mode_for(42) == "edit"

    # The next answer in that chat starts with edits at once; one whose edits are refused comes whole.
    tg.fail_next("sendMessage", 400, "Bad Request: not enough rights to send text messages", chat_id=42)
    second = Answer()
    stream = open_stream(streams, PRIVATE, second)
    await second.write(stream, words(40, 100), gap=0.01)
    await stream.finish(reply(second.text, PRIVATE))
    assert tg.calls.count("sendMessageDraft") == 1
    assert tg.chat_view(42) == [answer.text.strip(), second.text.strip()]
    assert streams.mode_for(42) == "off"
    third = Answer()
    stream = open_stream(streams, PRIVATE, third)
    await third.write(stream, words(10, 200), gap=0.01)
    await stream.finish(reply(third.text, PRIVATE))
    assert tg.chat_view(42)[-1] == third.text.strip()
    assert third.recorded == []


async def test_a_server_without_drafts_switches_every_chat_to_edits(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    tg.fail_next("sendMessageDraft", 404, "Not Found: method not found")
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    await answer.write(stream, words(30), gap=0.01)
    await stream.finish(reply(answer.text, PRIVATE))
    assert tg.chat_view(42) == [answer.text.strip()]
    assert streams.mode_for(43) == "edit"


# -- groups: edits ----------------------------------------------------------------------------------


async def test_a_group_answer_is_one_message_edited_as_it_grows(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    target = ReplyTarget(-100_42, reply_to_message_id=None)
    answer = Answer()
    stream = open_stream(streams, target, answer)
    await answer.write(stream, words(80), gap=0.005)
    await stream.finish(reply(answer.text, target))

    [message] = tg.sent_to(-100_42)
    edits = tg.edits_to(-100_42)
    assert len(edits) >= 2
    assert min(tg.edit_intervals(-100_42)) >= TIMING.edit_interval_s * 0.9
    assert edits[0].time - message.time >= TIMING.edit_interval_s * 0.9  # the first message is no edit
    assert edits[-1].text == answer.text.strip()
    assert tg.chat_view(-100_42) == [answer.text.strip()]
    assert answer.recorded == [(message.message_id,)]
    assert tg.drafts() == []


async def test_a_group_answer_past_4096_characters_continues_in_a_new_message(tg: FakeTelegramServer, bot: Bot) -> None:
    streams = TelegramStreams(TelegramSender(bot, FAST), bot, StreamTiming(first_delay_s=0.0, edit_interval_s=0.01))
    paragraphs = [f"Paragraph {index}: " + "lorem ipsum " * 60 + "\n\n" for index in range(14)]
    answer = Answer()
    stream = open_stream(streams, GROUP, answer)
    await answer.write(stream, paragraphs, gap=0.03)
    await tg.await_sent(chat_id=GROUP.chat_id, count=2)
    await stream.finish(reply(answer.text, GROUP))

    chunks = split_message(to_telegram_html(answer.text))
    previews = len(answer.recorded)  # each preview message is recorded when it is sent (a busy test may send more)
    assert 2 <= previews <= len(chunks)
    assert tg.chat_view(GROUP.chat_id) == chunks  # the same split as an answer sent whole
    assert len(tg.sent_to(GROUP.chat_id)) == len(chunks)  # the previews became its first chunks: none extra
    assert answer.recorded[-1] == tuple(message.message_id for message in tg.sent_to(GROUP.chat_id)[:previews])
    assert all(len(parse_html(text)) <= 4096 for text in tg.chat_view(GROUP.chat_id))


async def test_preview_messages_the_answer_does_not_need_are_deleted(tg: FakeTelegramServer, bot: Bot) -> None:
    streams = TelegramStreams(TelegramSender(bot, FAST), bot, StreamTiming(first_delay_s=0.0, edit_interval_s=0.01))
    answer = Answer()
    stream = open_stream(streams, GROUP, answer)
    # A long text before a tool call, then the short answer the turn ends with.
    await answer.write(stream, [f"Step {index}: " + "thinking aloud " * 50 + "\n\n" for index in range(8)], gap=0.03)
    await tg.await_sent(chat_id=GROUP.chat_id, count=2)
    await stream.finish(reply("The short answer.", GROUP))
    assert tg.chat_view(GROUP.chat_id) == ["The short answer."]
    assert len(tg.deleted(GROUP.chat_id)) == len(tg.sent_to(GROUP.chat_id)) - 1


async def test_an_error_replaces_the_preview_it_would_leave_dangling(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    answer = Answer()
    stream = open_stream(streams, GROUP, answer)
    await answer.write(stream, words(20), gap=0.01)
    await tg.await_sent(chat_id=GROUP.chat_id)
    await stream.finish(reply(texts.MODEL_UNAVAILABLE, GROUP, kind="error"))
    assert tg.chat_view(GROUP.chat_id) == [to_telegram_html(texts.MODEL_UNAVAILABLE)]


async def test_a_preview_left_by_a_crash_is_finished_by_an_edit(
    tg: FakeTelegramServer, bot: Bot, streams: TelegramStreams
) -> None:
    left = await bot.send_message(GROUP.chat_id, "word0 word1")  # shown before the crash
    answer = Answer()
    stream = open_stream(streams, GROUP, answer, shown=(left.message_id,))
    await answer.write(stream, words(30), gap=0.005)
    await stream.finish(reply(answer.text, GROUP))
    assert len(tg.sent_to(GROUP.chat_id)) == 1
    assert tg.chat_view(GROUP.chat_id) == [answer.text.strip()]

    # Redelivering a recorded answer: the same text again changes nothing, and sends nothing.
    again = open_stream(streams, GROUP, Answer(), shown=(left.message_id,))
    await again.finish(reply(answer.text, GROUP))
    assert tg.chat_view(GROUP.chat_id) == [answer.text.strip()]
    assert len(tg.sent_to(GROUP.chat_id)) == 1


async def test_a_deleted_preview_is_replaced_by_the_answer_sent_anew(
    tg: FakeTelegramServer, bot: Bot, streams: TelegramStreams
) -> None:
    left = await bot.send_message(GROUP.chat_id, "partial")
    await bot.delete_message(GROUP.chat_id, left.message_id)
    stream = open_stream(streams, GROUP, Answer(), shown=(left.message_id,))
    await stream.finish(reply("The whole answer.", GROUP))
    assert tg.chat_view(GROUP.chat_id) == ["The whole answer."]


async def test_flood_control_on_a_preview_pauses_previews_not_the_answer(
    tg: FakeTelegramServer, streams: TelegramStreams
) -> None:
    tg.fail_next("editMessageText", 429, retry_after=1, chat_id=GROUP.chat_id)
    answer = Answer()
    stream = open_stream(streams, GROUP, answer)
    await answer.write(stream, words(60), gap=0.01)
    await stream.finish(reply(answer.text, GROUP))
    assert tg.chat_view(GROUP.chat_id) == [answer.text.strip()]
    edits = tg.edits_to(GROUP.chat_id)
    assert edits[-1].time - tg.sent_to(GROUP.chat_id)[0].time >= 1.0  # nothing edited during the wait


# -- previews never delay an answer -----------------------------------------------------------------


async def test_a_preview_waiting_for_a_connection_is_dropped_when_the_answer_goes(
    tg: FakeTelegramServer, bot: Bot
) -> None:
    streams = TelegramStreams(TelegramSender(bot, FAST), bot, StreamTiming(first_delay_s=0.0, connections=1))
    answer = Answer()
    stream = open_stream(streams, PRIVATE, answer)
    async with streams.lane:  # every preview connection is busy (other chats' previews)
        await answer.write(stream, words(10))
        async with asyncio.timeout(2):
            await stream.finish(reply(answer.text, PRIVATE))  # does not wait for a preview connection
    assert tg.drafts() == []
    assert [m.text for m in tg.sent_to(42)] == [answer.text.strip()]


async def test_previews_leave_room_in_a_groups_rate_window_for_answers(tg: FakeTelegramServer, bot: Bot) -> None:
    sender = TelegramSender(bot, FAST, group_rate=Rate(5, 60.0))
    assert [sender.preview_room(-5, reserve=3) for _ in range(3)] == [True, True, False]
    await sender.send_text(-5, "an answer still fits")
    assert [m.text for m in tg.sent_to(-5)] == ["an answer still fits"]
