"""End to end: the built system against the fake Bot API and the fake model, over HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from actors import texts
from channels.telegram.format import split_message, to_telegram_html
from tests.e2e_support import assistant_env, fast_settings, moto_dynamodb, running
from tests.fakes.llm_server import Fail, FakeLLMRequest, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_e2e_gateway_faults import with_changes


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> dict[str, str]:
    return assistant_env(tg, llm, tmp_path / "store")


async def test_a_message_is_answered_in_its_chat(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    async with running(fast_settings(env)):
        tg.add_text_message(42, "hello there")
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == "echo: hello there"
    assert reply.parse_mode == "HTML"


async def test_chats_are_answered_in_parallel(tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]) -> None:
    # Generous times, for a loaded machine: what is checked is the order of events, not their speed.
    llm.latency = 6.0
    async with running(fast_settings(env, retry_budget_seconds=10.0)):
        for chat in range(1, 21):
            tg.add_text_message(chat, f"hi from {chat}")
        # All twenty model calls are in flight before the first answers: none waits for another.
        await llm.await_requests(20, timeout=5.5)
        assert tg.sent == []
        sent = await tg.await_sent(count=20, timeout=15)
    assert sorted(message.chat_id for message in sent) == list(range(1, 21))


async def test_polling_waits_while_max_live_chats_are_busy(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    # Room for one busy chat: a second chat's message stays at Telegram (no poll takes it) until the
    # first chat's turn is over, so a burst of chats never holds more conversations than that.
    llm.latency = 1.0
    async with running(with_changes(fast_settings(env), actors={"max_live": 1})):
        tg.add_text_message(1, "first")
        await llm.await_requests(1, timeout=10)
        polls = tg.calls.count("getUpdates")
        tg.add_text_message(2, "second")
        await asyncio.sleep(0.3)  # a poll that must not happen has no event to wait for
        assert tg.calls.count("getUpdates") == polls
        assert len(llm.requests) == 1
        first = await tg.await_sent(chat_id=1, timeout=10)
        second = await tg.await_sent(chat_id=2, timeout=10)
    assert tg.calls.count("getUpdates") > polls
    assert [message.text for message in first + second] == ["echo: first", "echo: second"]


async def test_one_chats_messages_are_handled_one_at_a_time_in_order(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(fast_settings(env)):
        for index in range(5):
            tg.add_text_message(42, f"m{index}")
        sent = await tg.await_sent(chat_id=42, count=5, timeout=10)
    assert [message.text for message in sent] == [f"echo: m{index}" for index in range(5)]
    # Each request saw every earlier exchange: the turns ran one after another.
    assert [len([m for m in request.messages if m["role"] == "user"]) for request in llm.requests] == [1, 2, 3, 4, 5]


async def test_a_long_answer_arrives_split_in_order(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    paragraphs = [f"Paragraph {index}: " + "word " * 150 for index in range(20)]
    answer = "\n\n".join(paragraphs)
    llm.script(Reply(answer))
    async with running(fast_settings(env)):
        tg.add_text_message(42, "tell me a lot")
        chunks = split_message(to_telegram_html(answer))
        sent = await tg.await_sent(chat_id=42, count=len(chunks), timeout=10)
    assert len(sent) == len(chunks) >= 2
    assert [message.text for message in sent] == chunks
    assert all(len(message.text) <= 4096 for message in sent)
    joined = " ".join(message.text for message in sent)
    assert joined.split() == answer.split()


async def test_formatting_telegram_refuses_is_sent_plain(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.script(Reply("This is **bold** & <b>brave</b>."))
    tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: unsupported start tag", chat_id=42)
    async with running(fast_settings(env)):
        tg.add_text_message(42, "format something")
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.parse_mode is None
    assert "bold" in reply.text
    assert "<b>" not in reply.text or "brave" in reply.text


async def test_flood_control_in_one_chat_does_not_stall_another(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    tg.fail_next("sendMessage", 429, retry_after=2, chat_id=1)
    async with running(fast_settings(env)):
        tg.add_text_message(1, "first chat")
        await tg.await_calls("sendMessage", count=1, timeout=10)  # chat 1 got its 429
        tg.add_text_message(2, "second chat")
        [other] = await tg.await_sent(chat_id=2, timeout=1.5)
        assert tg.sent_to(1) == []
        [delayed] = await tg.await_sent(chat_id=1, timeout=10)
    assert other.text == "echo: second chat"
    assert delayed.text == "echo: first chat"


async def test_polling_resumes_after_a_getupdates_outage(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    async with running(fast_settings(env)):
        await tg.await_calls("getUpdates", count=1, timeout=10)
        tg.getupdates_outage(True)
        calls = tg.calls.count("getUpdates")
        await tg.await_calls("getUpdates", count=calls + 3, timeout=10)  # several failed polls
        tg.add_text_message(42, "are you back?")
        tg.getupdates_outage(False)
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == "echo: are you back?"


async def test_strangers_are_refused_with_their_id_and_never_reach_the_model(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_ALLOWED_USER_IDS="42")
    async with running(fast_settings(env)):
        tg.add_text_message(5, "let me in")
        tg.add_text_message(42, "hello")
        [refusal] = await tg.await_sent(chat_id=5, timeout=10)
        await tg.await_sent(chat_id=42, timeout=10)
    assert refusal.text == texts.NOT_ALLOWED.format(user_id=5)
    assert [request.last_user_text for request in llm.requests] == ["hello"]


async def test_in_groups_only_mentions_and_replies_are_answered(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(fast_settings(env)):
        tg.add_text_message(-100, "just chatting", chat_type="group", user_id=42)
        tg.add_text_message(-100, "@test_assistant_bot what is 2+2?", chat_type="group", user_id=42)
        [reply] = await tg.await_sent(chat_id=-100, timeout=10)
        tg.add_text_message(-100, "and 3+3?", chat_type="group", user_id=42, reply_to_bot=True)
        await tg.await_sent(chat_id=-100, count=2, timeout=10)
    assert reply.text == "echo: what is 2+2?"
    assert reply.reply_to is not None
    assert [request.last_user_text for request in llm.requests] == ["what is 2+2?", "and 3+3?"]


async def test_odd_updates_are_explained_or_ignored_and_nothing_breaks(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(fast_settings(env)):
        tg.add_sticker(42)
        tg.add_edited_message(42, "edited")
        tg.add_callback_query(42, "data")
        tg.add_channel_post(-200, "news")
        tg.add_my_chat_member(42)
        tg.add_update({"message": {"message_id": 1, "chat": {"id": "not-a-number"}}})
        tg.add_update(
            {"message": {"message_id": 2, "chat": {"id": 42, "type": "private"}, "from": {"id": 42}, "text": 7}}
        )
        tg.add_text_message(42, "still fine?")
        sent = await tg.await_sent(chat_id=42, count=3, timeout=10)
    assert [message.text for message in sent] == [texts.NOT_READ["sticker"], texts.UNREADABLE, "echo: still fine?"]
    assert [request.last_user_text for request in llm.requests] == ["still fine?"]


async def test_commands_and_reset(tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]) -> None:
    async with running(fast_settings(env)):
        tg.add_text_message(42, "/start")
        tg.add_text_message(42, "remember the number 7")
        tg.add_text_message(42, "/new")
        tg.add_text_message(42, "which number?")
        tg.add_text_message(42, "/help")
        sent = await tg.await_sent(chat_id=42, count=5, timeout=10)
    assert [message.text for message in sent] == [
        texts.START,
        "echo: remember the number 7",
        texts.RESET,
        "echo: which number?",
        texts.HELP,
    ]
    assert [m["content"] for m in llm.requests[-1].messages if m["role"] == "user"] == ["which number?"]
    words = ["new", "reset", "help", "memory", "forget", "timezone", "model", "usage", "reminders", "stop"]
    assert [command["command"] for command in tg.commands()] == words


async def test_commands_are_registered_only_when_they_changed(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    for run in range(2):
        polls = tg.calls.count("getUpdates")
        async with running(fast_settings(env)):
            await tg.await_calls("getUpdates", count=polls + 1, timeout=10)  # a stop cuts a start-up short
            await tg.await_calls("getMyCommands", count=run + 1, timeout=10)
    assert tg.calls.count("setMyCommands") == 1
    assert tg.calls.count("getMyCommands") == 2


async def test_typing_is_shown_while_the_model_works(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    llm.latency = 2.0
    async with running(fast_settings(env)):
        tg.add_text_message(42, "think")
        await tg.await_chat_actions(42, count=1, timeout=10)
        assert tg.sent_to(42) == []  # shown while the model works, before the answer
        await tg.await_sent(chat_id=42, timeout=10)
    assert [action.action for action in tg.chat_actions if action.chat_id == 42][:1] == ["typing"]


async def test_a_quick_answer_needs_no_typing(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    # "Quick" is under the typing delay, made long here: a first answer on a busy test machine can
    # take longer than the shipped quarter of a second, and this is about the delay, not the speed.
    async with running(with_changes(fast_settings(env), telegram={"typing_delay_seconds": 2.0})):
        tg.add_text_message(42, "quick")
        await tg.await_sent(chat_id=42, timeout=10)
    assert tg.chat_actions == []


async def test_a_model_outage_is_told_to_the_user_and_the_chat_recovers(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    def outage(request: FakeLLMRequest) -> Fail | None:
        return Fail(503) if request.last_user_text == "during the outage" else None

    llm.script(outage)
    async with running(fast_settings(env)):
        tg.add_text_message(42, "during the outage")
        [notice] = await tg.await_sent(chat_id=42, timeout=15)
        tg.add_text_message(42, "after it")
        sent = await tg.await_sent(chat_id=42, count=2, timeout=10)
    assert notice.text == texts.MODEL_UNAVAILABLE
    assert sent[1].text == "echo: after it"
    assert len(llm.requests) >= 3  # the failing call was retried before giving up


async def test_a_blocked_chat_does_not_stop_the_others(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    tg.block_chat(7)
    async with running(fast_settings(env)):
        tg.add_text_message(7, "then blocked the bot")
        tg.add_text_message(8, "hello")
        [reply] = await tg.await_sent(chat_id=8, timeout=10)
    assert reply.text == "echo: hello"
    assert tg.sent_to(7) == []


async def test_the_store_holds_the_conversation_and_the_ingress_log_empties(
    tg: FakeTelegramServer, env: dict[str, str], tmp_path: Path
) -> None:
    async with running(fast_settings(env)) as system:
        tg.add_text_message(42, "keep this")
        await tg.await_sent(chat_id=42, timeout=10)
        registry = system.registry
        assert registry is not None
    from stores import build_stores

    store, ingress = build_stores(fast_settings(env).store)
    async with store, ingress:
        records = await store.load("42")
        assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "delivered"]
        assert await ingress.pending() == []


async def test_healthz_reports_polling(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = assistant_env(tg, llm, tmp_path / "store", HEALTH_PORT=str(port))
    async with running(fast_settings(env)):
        await tg.await_calls("getUpdates", count=1, timeout=10)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        response = await reader.read()
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    payload = json.loads(body)
    assert payload["status"] == "ok"
    assert isinstance(payload["actors"], int)
    assert payload["last_poll_s"] < 60


async def test_a_tool_turn_through_telegram_reports_turn_model_and_tool_metrics(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    from structlog.testing import capture_logs

    from conf import McpServerSettings
    from tests.fakes.llm_server import CallTools

    servers = {
        "time": McpServerSettings(command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"))
    }
    llm.script([CallTools([("time__get_current_time", {"timezone": "UTC"})]), Reply("It is time.")])
    with capture_logs() as logs:
        async with running(fast_settings(env), servers) as system:
            # The tool is offered only once the server is connected: wait for its first listing.
            connection = system.mcp_actors["time"].connection
            await asyncio.wait_for(connection.wait_until(lambda c: bool(c.tools())), 20)
            tg.add_text_message(42, "what time is it?")
            [reply] = await tg.await_sent(chat_id=42, timeout=20)
    assert reply.text == "It is time."
    tool_request = llm.requests[1]
    [result] = tool_request.tool_results
    assert not result.is_error
    assert '"timezone": "UTC"' in result.content
    metrics = [entry for entry in logs if entry["event"] == "metrics"]
    names = {
        name
        for entry in metrics
        for metric in entry["_aws"]["CloudWatchMetrics"]
        for name in [m["Name"] for m in metric["Metrics"]]
    }
    assert {"TurnLatency", "ModelLatency", "ToolLatency"} <= names
    tool_line = next(entry for entry in metrics if "ToolLatency" in entry)
    assert tool_line["Server"] == "time"
    assert tool_line["ToolErrors"] == [0]  # the values of a minute, written when the system stopped


async def test_flood_control_waits_are_reported_as_metrics(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    from structlog.testing import capture_logs

    tg.fail_next("sendMessage", 429, retry_after=1, chat_id=42)
    with capture_logs() as logs:
        async with running(fast_settings(env)):
            tg.add_text_message(42, "hello")
            await tg.await_sent(chat_id=42, timeout=10)
    [retry] = [entry for entry in logs if entry["event"] == "metrics" and "TelegramRetries" in entry]
    assert retry["TelegramRetryWait"] == [1.0]
    assert retry["reason"] == "retry_after"
    assert retry["Method"] == "sendMessage"


# Debug mode records a stack for every callback it schedules: 800 turns through PTB and httpx take
# twice as long with it, past the model's 2 s retry budget and the test's timeout on a busy machine.
@pytest.mark.usefixtures("asyncio_debug_off")
async def test_a_burst_of_quick_turns_never_exhausts_the_send_pool(tg: FakeTelegramServer, env: dict[str, str]) -> None:
    # Each turn ends while its "typing..." request may be in flight; cancelling such a request
    # used to leak one of httpx's pooled connections, until every send waited forever (800 quick
    # turns were enough to freeze all eight connections).
    # Each message's deadline counts from its arrival: 800 at once on a busy machine need more than 2 s.
    async with running(fast_settings(env, retry_budget_seconds=60.0)):
        for chat in range(800):
            tg.add_text_message(50_000 + chat, f"quick {chat}")
        sent = await tg.await_sent(count=800, timeout=90)
    assert sorted(message.text for message in sent) == sorted(f"echo: quick {chat}" for chat in range(800))


async def test_the_dynamodb_store_serves_the_whole_bot(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stores import build_stores

    with moto_dynamodb(monkeypatch, "e2e-conversations", region="eu-west-1") as dynamodb:
        settings = fast_settings(assistant_env(tg, llm, tmp_path / "unused", **dynamodb))
        async with running(settings):
            tg.add_text_message(42, "remember me")
            tg.add_text_message(42, "/new")
            tg.add_text_message(42, "fresh")
            sent = await tg.await_sent(chat_id=42, count=3, timeout=20)
        assert [message.text for message in sent] == ["echo: remember me", texts.RESET, "echo: fresh"]
        store, ingress = build_stores(settings.store)
        async with store, ingress:
            records = await store.load("42")
            assert await ingress.pending() == []
    kinds = [record.get("role") or record.get("type") for record in records]
    assert kinds == ["user", "assistant", "delivered", "reset", "notice", "delivered", "user", "assistant", "delivered"]
