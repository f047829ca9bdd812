"""The gateway under Telegram's failures: a refused token, another poller, a stalled poll, a full mailbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from actors import texts
from app.system import AssistantSystem
from conf import Settings
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer


def with_changes(
    settings: Settings, *, telegram: dict[str, object] | None = None, actors: dict[str, object] | None = None
) -> Settings:
    return settings.model_copy(
        update={
            "telegram": settings.telegram.model_copy(update=telegram or {}),
            "actors": settings.actors.model_copy(update=actors or {}),
        }
    )


async def test_a_token_telegram_refuses_stops_the_process_with_status_1(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    env = assistant_env(tg, llm, tmp_path / "store", TELEGRAM_BOT_TOKEN="999:not-the-fakes-token")
    settings = with_changes(fast_settings(env), actors={"max_restarts": 2})
    system = AssistantSystem(settings, {}, mode="telegram")
    with capture_logs() as logs:
        exit_code = await asyncio.wait_for(system.run(install_signal_handlers=False), 30)
    assert exit_code == 1
    events = [entry["event"] for entry in logs]
    assert events.count("child_crashed") == 2
    assert "supervisor_escalation" in events


async def test_another_poller_that_persists_stops_the_process_with_status_1(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    tg.conflict(True)
    settings = with_changes(
        fast_settings(assistant_env(tg, llm, tmp_path / "store")),
        telegram={"watchdog_seconds": 1.5},
        actors={"max_restarts": 1},
    )
    system = AssistantSystem(settings, {}, mode="telegram")
    with capture_logs() as logs:
        exit_code = await asyncio.wait_for(system.run(install_signal_handlers=False), 30)
    assert exit_code == 1
    events = [entry["event"] for entry in logs]
    assert "telegram_poll_conflict" in events
    assert events.count("telegram_conflict_persists") == 2


async def test_a_conflict_that_ends_is_ridden_out(tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path) -> None:
    tg.conflict(True)
    async with running(fast_settings(assistant_env(tg, llm, tmp_path / "store"))):
        await tg.await_calls("getUpdates", count=3, timeout=10)
        tg.conflict(False)
        tg.add_text_message(42, "only me now")
        [reply] = await tg.await_sent(chat_id=42, timeout=10)
    assert reply.text == "echo: only me now"


async def test_a_stalled_poll_turns_health_to_503_rebuilds_and_recovers(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    # Polls last up to 1 s (fast_settings), so the watchdog must allow more than that.
    settings = with_changes(
        fast_settings(assistant_env(tg, llm, tmp_path / "store")), telegram={"watchdog_seconds": 1.5}
    )
    with capture_logs() as logs:
        async with running(settings) as system:
            await tg.await_calls("getUpdates", count=2, timeout=10)
            assert system.gateway.health()[0] is True
            tg.getupdates_outage(True)
            while not any(entry["event"] == "telegram_poll_stalled" for entry in logs):
                await tg.await_calls("getUpdates", count=tg.calls.count("getUpdates") + 1, timeout=10)
            ok, body = system.gateway.health()
            assert ok is False
            assert body["status"] == "stalled"
            tg.getupdates_outage(False)
            tg.add_text_message(42, "back?")
            await tg.await_sent(chat_id=42, timeout=10)
            assert system.gateway.health()[0] is True


async def test_a_full_mailbox_answers_busy_and_loses_nothing_silently(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.latency = 0.5
    settings = with_changes(fast_settings(assistant_env(tg, llm, tmp_path / "store")), actors={"mailbox_size": 1})
    with capture_logs() as logs:
        async with running(settings):
            for index in range(4):
                tg.add_text_message(42, f"m{index}")
            sent = await tg.await_sent(chat_id=42, count=4, timeout=15)
    answers = [message.text for message in sent]
    busy = answers.count(texts.BUSY)
    assert busy >= 1
    assert len([text for text in answers if text.startswith("echo: ")]) == 4 - busy
    refused = [entry for entry in logs if entry["event"] == "message_refused"]
    assert len(refused) == busy
    assert all(entry["reason"] == "busy" and entry["conversation_id"] == "42" for entry in refused)
