"""/memory, /forget and /timezone, answered by the conversation actor for the user who sent them."""

from __future__ import annotations

from actors import texts
from stores import FactSource, InMemoryFactStore, InMemoryPreferenceStore, StoreError
from stores.facts import Fact
from tests.memory_support import Users, records_of_kind


async def test_memory_lists_what_the_model_saved_at_once_with_ids() -> None:
    users = Users()
    assert await users.command(42, 7, "memory") == texts.MEMORY_EMPTY
    await users.say(42, 7, "remember: Prefers green tea")
    [fact] = await users.facts.list_for_user(7)
    listing = await users.command(42, 7, "memory")
    assert listing == f"{texts.MEMORY_LIST.format(count=1)}\n`{fact.id}` Prefers green tea"
    # Commands never reach the model: one turn, two model calls (the tool call, then the answer).
    assert len(users.model.requests) == 2
    await users.stop()


async def test_forget_one_then_all() -> None:
    users = Users()
    for text in ("one", "two", "three"):
        await users.facts.add(7, text, FactSource("42"))
    one = (await users.facts.list_for_user(7))[0]
    assert await users.command(42, 7, "forget", one.id.upper()) == texts.FORGET_DONE.format(text="one")
    assert await users.command(42, 7, "forget", one.id) == texts.FORGET_UNKNOWN.format(fact_id=one.id)
    assert await users.command(42, 7, "forget") == texts.FORGET_USAGE
    assert await users.command(42, 7, "forget", "all") == texts.FORGET_ALL_DONE.format(count=2)
    assert await users.facts.list_for_user(7) == []
    await users.stop()


async def test_commands_act_for_their_sender_only_in_any_chat() -> None:
    users = Users()
    mine = (await users.facts.add(7, "Mine", FactSource("42"))).fact
    theirs = (await users.facts.add(8, "Theirs", FactSource("43"))).fact
    # In a group both write in, each sees and forgets only their own.
    assert "Theirs" not in await users.command(-100, 7, "memory")
    assert await users.command(-100, 7, "forget", theirs.id) == texts.FORGET_UNKNOWN.format(fact_id=theirs.id)
    assert await users.command(-100, 8, "forget", "all") == texts.FORGET_ALL_DONE.format(count=1)
    assert await users.facts.list_for_user(7) == [mine]
    await users.stop()


async def test_a_replayed_forget_all_is_answered_once() -> None:
    users = Users()
    await users.facts.add(7, "x", FactSource("42"))
    assert await users.command(42, 7, "forget", "all", update_id=5) == texts.FORGET_ALL_DONE.format(count=1)
    await users.facts.add(7, "saved since", FactSource("42"))
    assert await users.command(42, 7, "forget", "all", update_id=5) is None
    assert len(await users.facts.list_for_user(7)) == 1
    notices = records_of_kind(await users.store.load("42"), "notice")
    assert [notice["text"] for notice in notices] == [texts.FORGET_ALL_DONE.format(count=1)]
    await users.stop()


async def test_timezone_shows_sets_and_refuses_with_an_example() -> None:
    users = Users()
    current = await users.command(42, 7, "timezone")
    assert current == texts.TIMEZONE_CURRENT.format(zone="UTC", now="Tuesday, 10 March 2026, 13:05")
    assert await users.command(42, 7, "timezone", "america/new_york") == texts.TIMEZONE_SET.format(
        zone="America/New_York", now="Tuesday, 10 March 2026, 09:05"
    )
    assert await users.preferences.timezone(7) == "America/New_York"
    refused = await users.command(42, 7, "timezone", "Mars/Olympus")
    assert refused == texts.TIMEZONE_UNKNOWN.format(name="Mars/Olympus")
    assert "Europe/Berlin" in refused
    assert await users.preferences.timezone(7) == "America/New_York"
    await users.say(42, 7, "what time is it?")
    # The date and time change every turn: they come after the cached part of the instructions.
    assert "Tuesday, 10 March 2026, 09:05 (America/New_York, UTC-04:00)" in users.model.requests[-1].volatile_system
    await users.stop()


async def test_without_a_known_user_memory_commands_say_so() -> None:
    users = Users()
    for name, args in (("memory", ""), ("forget", "all"), ("timezone", "Europe/Berlin")):
        assert await users.command(42, None, name, args) == texts.MEMORY_NO_USER
    await users.stop()


class UnreachableFacts(InMemoryFactStore):
    async def _load(self, user_id: int) -> list[Fact]:
        raise StoreError("the disk is gone")


class UnreachablePreferences(InMemoryPreferenceStore):
    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        raise StoreError("the table is gone")


async def test_an_unreachable_store_is_told_in_one_line() -> None:
    users = Users(facts=UnreachableFacts(), preferences=UnreachablePreferences())
    assert await users.command(42, 7, "memory") == texts.MEMORY_UNAVAILABLE
    assert await users.command(42, 7, "timezone", "Europe/Berlin") == texts.MEMORY_UNAVAILABLE
    # And a turn still gets its answer, without the facts.
    assert await users.say(42, 7, "hello") == "echo: hello"
    await users.stop()
