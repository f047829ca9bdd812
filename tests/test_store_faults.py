"""No acknowledged message is dropped without an answer or a notice: store faults, given-up actors,
and deduplication by the conversation's own records."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from actors import texts
from actors.protocol import Command
from llm import AssistantRecord, DeliveredRecord, ResetRecord, UserRecord, record_to_json
from stores import InMemoryConversationStore
from tests.e2e_support import assistant_env, fast_settings, running
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_conversation_actor import TARGET, ScriptedModel, World, user


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def env(tg: FakeTelegramServer, llm: FakeLLMServer, store_dir: Path) -> dict[str, str]:
    return assistant_env(tg, llm, store_dir)


def break_store(store_dir: Path) -> Path:
    """A real fault: the store's directory is replaced by a regular file (the ingress log, already
    open, keeps working). Returns where the directory went."""
    aside = store_dir.with_name("store-aside")
    store_dir.rename(aside)
    store_dir.write_text("not a directory")
    return aside


def mend_store(store_dir: Path, aside: Path) -> None:
    store_dir.unlink()
    aside.rename(store_dir)


async def test_a_store_fault_is_told_once_and_the_messages_are_answered_in_order_once_it_clears(
    tg: FakeTelegramServer, env: dict[str, str], store_dir: Path
) -> None:
    with capture_logs() as logs:
        async with running(fast_settings(env)):
            tg.add_text_message(42, "before")
            await tg.await_sent(chat_id=42, timeout=10)
            aside = break_store(store_dir)
            tg.add_text_message(7, "a new chat while the disk is gone")  # its history cannot be loaded
            tg.add_text_message(42, "an old chat while the disk is gone")  # its record cannot be written
            notices = await tg.await_sent(count=3, timeout=10)
            tg.add_text_message(42, "and once more")
            while sum(entry["event"] == "conversation_store_unavailable" for entry in logs) < 3:
                await tg.await_calls("getUpdates", count=tg.calls.count("getUpdates") + 1, timeout=10)
            mend_store(store_dir, aside)
            await tg.await_sent(count=6, timeout=15)
    assert sorted(message.text for message in notices[1:]) == [texts.STORE_UNAVAILABLE] * 2
    assert [message.text for message in tg.sent_to(7)] == [
        texts.STORE_UNAVAILABLE,
        "echo: a new chat while the disk is gone",
    ]
    assert [message.text for message in tg.sent_to(42)] == [
        "echo: before",
        texts.STORE_UNAVAILABLE,
        "echo: an old chat while the disk is gone",
        "echo: and once more",
    ]
    from stores import build_stores

    store, ingress = build_stores(fast_settings(env).store)
    async with store, ingress:
        assert await ingress.pending() == []
        users = [record["content"] for record in await store.load("42") if record.get("role") == "user"]
    assert users == ["before", "an old chat while the disk is gone", "and once more"]


async def test_a_conversation_given_up_tells_the_users_of_the_messages_it_held() -> None:
    class BrokenStore(InMemoryConversationStore):
        """A store whose reads fail with a fault that is not a StoreError (a bug, say)."""

        async def load(self, conversation_id: str) -> list[dict[str, object]]:
            raise RuntimeError("a bug in loading")

    world = World(ScriptedModel(), BrokenStore())
    with capture_logs() as logs:
        for update_id in (1, 2, 3):
            world.registry.tell("42", user(f"m{update_id}", update_id))
        while len(world.channel.done_ids) < 3:
            world.channel.delivered_event.clear()
            await asyncio.wait_for(world.channel.delivered_event.wait(), 10)
        await world.stop()
    assert world.channel.texts == [texts.DEAD_LETTER] * 3
    assert world.channel.done_ids == [1, 2, 3]
    assert "conversation_actor_given_up" in [entry["event"] for entry in logs]


async def test_a_replayed_update_without_a_record_is_answered_even_below_a_later_one() -> None:
    store = InMemoryConversationStore()
    later = [
        UserRecord(text="later", update_id=11, target=TARGET, seq=0),
        AssistantRecord(text="echo: later", update_id=11, target=TARGET, seq=1),
        DeliveredRecord(update_id=11, seq=2),
    ]
    await store.append("42", [record_to_json(record) for record in later])
    world = World(ScriptedModel(), store)
    # Update 10 was acknowledged, then lost before any record of it (the old give-up path); 11 was answered.
    assert await world.ask(user("earlier", 10)) == "echo: earlier"
    assert await world.ask(user("later", 11)) is None  # this one the conversation holds: skipped
    await world.stop()
    assert world.channel.texts == ["echo: earlier"]
    assert world.channel.done_ids == [10, 11]


async def test_a_replayed_reset_stores_no_second_marker() -> None:
    store = InMemoryConversationStore()
    before = [
        UserRecord(text="hello", update_id=1, target=TARGET, seq=0),
        AssistantRecord(text="echo: hello", update_id=1, target=TARGET, seq=1),
        DeliveredRecord(update_id=1, seq=2),
        ResetRecord(update_id=2, target=TARGET, seq=3),  # then a crash, before the notice
    ]
    await store.append("42", [record_to_json(record) for record in before])
    world = World(ScriptedModel(), store)
    assert await world.ask(Command("42", "reset", TARGET, 2, 42)) == texts.RESET
    await world.stop()
    records = await store.load("42")
    assert [record.get("type") for record in records[3:]] == ["reset", "notice", "delivered"]
    assert world.channel.texts == [texts.RESET]
