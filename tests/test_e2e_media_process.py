"""`python main.py` killed with SIGKILL in the middle of a transcription: the restart hears the voice
message again, answers it once and records it once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e_support import AssistantProcess, assistant_env
from tests.fakes.llm_server import FakeAudioRequest, FakeLLMServer, Hang
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_e2e_process import load_records

pytestmark = pytest.mark.slow


async def test_kill_9_mid_transcription_then_restart_answers_the_voice_message_once(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    store_dir = tmp_path / "store"
    process = AssistantProcess(assistant_env(tg, llm, store_dir), tmp_path / "assistant.log")
    hung = [False]

    def transcribe(_request: FakeAudioRequest) -> object:
        if not hung[0]:
            hung[0] = True
            return Hang()
        return "water the plants at six"

    llm.script_transcription(transcribe)
    process.start()
    try:
        update_id = tg.add_voice(42)
        await tg.await_calls("getUpdates", count=2, timeout=30)
        await asyncio.to_thread(llm.wait_for_audio_requests, 1, 30)
        assert tg.confirmed_offset > update_id  # Telegram considers it delivered
        process.kill9()
        assert tg.sent_to(42) == []

        process.start()
        [answer] = await tg.await_sent(chat_id=42, timeout=40)
        assert answer.text == "echo: water the plants at six"
        assert process.terminate() == 0
    finally:
        process.ensure_dead()
    records = await load_records(store_dir, "42")
    users = [record for record in records if record.get("role") == "user"]
    assert [(user["content"], user["update_id"]) for user in users] == [("water the plants at six", update_id)]
    assert [attachment["kind"] for attachment in users[0]["attachments"]] == ["voice"]
    assert len([record for record in records if record.get("type") == "delivered"]) == 1
    assert len(llm.audio_requests) == 2
