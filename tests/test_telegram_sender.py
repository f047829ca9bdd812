"""TelegramSender against the fake Bot API with a real python-telegram-bot `Bot`."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs
from telegram import Bot
from telegram.request import BaseRequest, HTTPXRequest

from channels.telegram import DeliveryError, Rate, TelegramSender, html_to_plain, split_message, to_telegram_html
from channels.telegram._html import parse_html
from channels.telegram.aiohttp_request import AiohttpRequest
from conf.settings import BackoffSettings
from ops.backoff import Backoff
from tests.fakes.telegram_server import FakeTelegramServer

# PTB 22 warns when RetryAfter.retry_after is read as an int (inside its own constructor too).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

NO_JITTER = Backoff(BackoffSettings(initial_seconds=0.5, max_seconds=8, multiplier=2, jitter_seconds=0))


class FakeTime:
    """A clock that only moves when the code under test sleeps; chosen waits can be held open."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.held: dict[float, asyncio.Event] = {}
        self.parked: dict[float, asyncio.Event] = {}

    def clock(self) -> float:
        return self.now

    def hold(self, seconds: float) -> asyncio.Event:
        """Sleeps of exactly `seconds` wait until the returned event is set."""
        self.held[seconds] = asyncio.Event()
        self.parked[seconds] = asyncio.Event()
        return self.held[seconds]

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds in self.held:
            self.parked[seconds].set()
            await self.held[seconds].wait()
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sender(bot: Bot, fake_time: FakeTime) -> TelegramSender:
    return TelegramSender(bot, NO_JITTER, clock=fake_time.clock, sleep=fake_time.sleep)


def _long_markdown() -> str:
    paragraphs = [f"**Part {i}.** " + "Some words here. " * 40 for i in range(12)]
    code = "\n".join(f"print({i})  # <{i}>" for i in range(150))
    return "\n\n".join(paragraphs) + f"\n\n```python\n{code}\n```\n\nThe end."


async def test_a_long_reply_arrives_as_ordered_valid_chunks(tg: FakeTelegramServer, sender: TelegramSender) -> None:
    markdown = _long_markdown()
    ids = await sender.send_text(42, markdown, reply_to_message_id=7, message_thread_id=None)
    sent = tg.sent_to(42)
    assert len(sent) >= 3
    assert ids == [m.message_id for m in sent]
    assert ids == sorted(ids)
    assert [m.reply_to for m in sent] == [7] + [None] * (len(sent) - 1)
    assert all(m.parse_mode == "HTML" and len(m.visible_text) <= 4096 for m in sent)
    assert [m.text for m in sent] == split_message(to_telegram_html(markdown))
    assert "".join("".join(m.visible_text for m in sent).split()) == "".join(
        html_to_plain(to_telegram_html(markdown)).split()
    )


async def test_html_telegram_refuses_is_sent_again_as_plain_text(
    tg: FakeTelegramServer, sender: TelegramSender
) -> None:
    tg.fail_next("sendMessage", 400, 'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0')
    with capture_logs() as logs:
        await sender.send_text(42, "**bold** & <stuff>", message_thread_id=5)
    [sent] = tg.sent
    assert (sent.parse_mode, sent.text, sent.message_thread_id) == (None, "bold & <stuff>", 5)
    assert [e["event"] for e in logs] == ["telegram_html_rejected"]
    assert logs[0]["chat_id"] == 42


async def test_flood_control_in_one_chat_does_not_stall_another(
    tg: FakeTelegramServer, sender: TelegramSender, fake_time: FakeTime
) -> None:
    release = fake_time.hold(5.0)
    tg.fail_next("sendMessage", 429, retry_after=5, chat_id=1)
    with capture_logs() as logs:
        flooded = asyncio.create_task(sender.send_text(1, "to the flooded chat"), name="flooded")
        await fake_time.parked[5.0].wait()  # chat 1 is now waiting out its retry_after
        await sender.send_text(2, "other chat, first")
        await sender.send_text(2, "other chat, second")
        assert [m.text for m in tg.sent] == ["other chat, first", "other chat, second"]
        assert not flooded.done()
        release.set()
        await flooded
    assert [m.chat_id for m in tg.sent] == [2, 2, 1]
    retry = [e for e in logs if e["event"] == "telegram_retry_after"]
    assert retry == [{"event": "telegram_retry_after", "log_level": "warning", "chat_id": 1, "wait_s": 5.0}]


async def test_retry_after_as_timedelta_is_honoured(
    tg: FakeTelegramServer, sender: TelegramSender, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    tg.fail_next("sendMessage", 429, retry_after=3, chat_id=1)
    await sender.send_text(1, "hi")
    assert fake_time.sleeps == [3.0]
    assert len(tg.sent) == 1


async def test_network_errors_are_retried_with_capped_backoff(
    tg: FakeTelegramServer, sender: TelegramSender, fake_time: FakeTime
) -> None:
    tg.fail_next("sendMessage", 502, count=6)
    with capture_logs() as logs:
        [message_id] = await sender.send_text(42, "eventually")
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [e["wait_s"] for e in logs if e["event"] == "telegram_send_retry"] == fake_time.sleeps
    assert [m.message_id for m in tg.sent] == [message_id]


async def test_backoff_jitter_stays_within_its_bound(tg: FakeTelegramServer, bot: Bot, fake_time: FakeTime) -> None:
    jittery = TelegramSender(
        bot, Backoff(BackoffSettings(jitter_seconds=0.5)), clock=fake_time.clock, sleep=fake_time.sleep
    )
    tg.fail_next("sendMessage", 500, count=3)
    await jittery.send_text(42, "x")
    assert all(base <= wait <= base + 0.5 for base, wait in zip([0.5, 1.0, 2.0], fake_time.sleeps, strict=True))


async def test_a_blocked_chat_is_a_delivery_error(tg: FakeTelegramServer, sender: TelegramSender) -> None:
    tg.block_chat(9)
    with capture_logs() as logs, pytest.raises(DeliveryError) as caught:
        await sender.send_text(9, "hello?")
    assert caught.value.chat_id == 9
    assert "blocked" in caught.value.reason
    assert [e["event"] for e in logs] == ["telegram_send_failed"]


async def test_a_chunk_telegram_finds_too_long_is_sent_in_halves(
    tg: FakeTelegramServer, sender: TelegramSender
) -> None:
    tg.fail_next("sendMessage", 400, "Bad Request: message is too long")
    text = " ".join(f"word{i}" for i in range(400))
    await sender.send_text(42, text)
    assert len(tg.sent) >= 2
    assert all(len(m.text) <= 3089 // 2 for m in tg.sent)
    assert " ".join(m.visible_text for m in tg.sent) == text


async def test_groups_are_paced_per_chat_and_private_chats_are_not(
    bot: Bot, tg: FakeTelegramServer, fake_time: FakeTime
) -> None:
    sender = TelegramSender(bot, NO_JITTER, group_rate=Rate(3, 60.0), clock=fake_time.clock, sleep=fake_time.sleep)
    for i in range(4):
        await sender.send_text(-100, f"group a {i}")
    assert fake_time.sleeps == [60.0]  # the 4th waited for the window
    for i in range(3):
        await sender.send_text(-200, f"group b {i}")
        await sender.send_text(5, f"private {i}")
    assert fake_time.sleeps == [60.0]  # another group's window and private chats are unaffected
    assert len(tg.sent) == 10


async def test_the_overall_rate_applies_across_chats(bot: Bot, tg: FakeTelegramServer, fake_time: FakeTime) -> None:
    sender = TelegramSender(bot, NO_JITTER, overall_rate=Rate(2, 1.0), clock=fake_time.clock, sleep=fake_time.sleep)
    for chat_id in (1, 2, 3, 4, 5):
        await sender.send_text(chat_id, "hi")
    assert fake_time.sleeps == [1.0, 1.0]
    assert [m.chat_id for m in tg.sent] == [1, 2, 3, 4, 5]


async def test_the_overall_rate_can_be_left_to_telegram(bot: Bot, tg: FakeTelegramServer, fake_time: FakeTime) -> None:
    sender = TelegramSender(bot, NO_JITTER, overall_rate=None, clock=fake_time.clock, sleep=fake_time.sleep)
    for chat_id in range(1, 41):
        await sender.send_text(chat_id, "hi")
    assert fake_time.sleeps == []
    assert len(tg.sent) == 40


@pytest.mark.parametrize("request_class", [HTTPXRequest, AiohttpRequest])
@pytest.mark.parametrize("max_concurrent_sends", [2, 50])
async def test_a_busy_connection_pool_delays_sends_without_backoff(
    tg: FakeTelegramServer, fake_time: FakeTime, max_concurrent_sends: int, request_class: type[BaseRequest]
) -> None:
    tg.send_latency = 0.02
    request = request_class(connection_pool_size=2, pool_timeout=0.01)  # type: ignore[call-arg]
    async with Bot(tg.token, base_url=tg.base_url, request=request) as small_pool:
        sender = TelegramSender(
            small_pool,
            NO_JITTER,
            max_concurrent_sends=max_concurrent_sends,
            overall_rate=None,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
        )
        with capture_logs() as logs:
            await asyncio.gather(*(sender.send_text(chat_id, f"to {chat_id}") for chat_id in range(1, 21)))
    assert sorted(m.chat_id for m in tg.sent) == list(range(1, 21))
    assert fake_time.sleeps == []
    assert not [e for e in logs if e["event"] == "telegram_send_retry"]


async def test_replies_to_one_chat_never_interleave(tg: FakeTelegramServer, sender: TelegramSender) -> None:
    tg.send_latency = 0.005
    first = "\n\n".join(f"first {i} " + "a " * 1500 for i in range(3))
    second = "\n\n".join(f"second {i} " + "b " * 1500 for i in range(3))
    await asyncio.gather(sender.send_text(42, first), sender.send_text(42, second))
    labels = [m.visible_text.split()[0] for m in tg.sent]
    assert labels in (["first"] * 3 + ["second"] * 3, ["second"] * 3 + ["first"] * 3)


async def test_cancelling_a_send_waiting_out_flood_control_propagates(
    tg: FakeTelegramServer, sender: TelegramSender, fake_time: FakeTime
) -> None:
    fake_time.hold(30.0)
    tg.fail_next("sendMessage", 429, retry_after=30)
    task = asyncio.create_task(sender.send_text(1, "hi"), name="waiting")
    await fake_time.parked[30.0].wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tg.sent == []


async def test_typing_is_sent_at_once_then_every_interval_until_the_block_ends(
    tg: FakeTelegramServer, sender: TelegramSender, fake_time: FakeTime
) -> None:
    release = fake_time.hold(4.0)
    async with sender.typing_while(42, 3):
        await tg.await_chat_actions(42, count=1)
        await fake_time.parked[4.0].wait()
        fake_time.parked[4.0].clear()
        release.set()  # the interval elapses: a second action follows
        await tg.await_chat_actions(42, count=2)
        release.clear()
        await fake_time.parked[4.0].wait()
    assert [(a.chat_id, a.action, a.message_thread_id) for a in tg.chat_actions] == [(42, "typing", 3)] * 2
    assert fake_time.sleeps == [4.0, 4.0]
    await sender.aclose()  # the keeper was told to stop; the sender owns it until it has
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("telegram-typing")]
    assert len(tg.chat_actions) == 2


async def test_typing_failures_are_swallowed(tg: FakeTelegramServer, sender: TelegramSender) -> None:
    tg.fail_next("sendChatAction", 403)
    tg.fail_next("sendChatAction", 429, retry_after=5)
    await sender.send_typing(42)
    await sender.send_typing(42)
    assert tg.calls.count("sendChatAction") == 2
    assert tg.chat_actions == []


async def test_empty_replies_send_nothing(tg: FakeTelegramServer, sender: TelegramSender) -> None:
    assert await sender.send_text(42, "   \n ") == []
    assert "sendMessage" not in tg.calls


def test_every_chunk_of_a_long_reply_passes_the_fake_s_validator() -> None:
    for chunk in split_message(to_telegram_html(_long_markdown())):
        assert len(parse_html(chunk)) <= 4096


async def test_a_block_shorter_than_the_typing_delay_starts_no_keeper_and_sends_nothing(
    tg: FakeTelegramServer, bot: Bot
) -> None:
    # With the real clock, the delay is a timer: a quick turn (most of them) costs no task at all.
    sender = TelegramSender(bot, NO_JITTER, typing_delay_s=30.0)
    async with sender.typing_while(42):
        await asyncio.sleep(0)
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("telegram-typing")]
    await sender.aclose()
    assert tg.chat_actions == []


async def test_a_block_longer_than_the_typing_delay_shows_typing_once_it_is_due(
    tg: FakeTelegramServer, bot: Bot
) -> None:
    sender = TelegramSender(bot, NO_JITTER, typing_delay_s=0.05)
    async with sender.typing_while(42):
        await tg.await_chat_actions(42, count=1, timeout=5)
    await sender.aclose()
    assert [(a.chat_id, a.action) for a in tg.chat_actions][:1] == [(42, "typing")]
