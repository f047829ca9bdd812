"""Summaries instead of forgetting, and what an activation loads and holds: planning, what the model
sees, the bounded history, and the conversation actor summarising after delivery."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from llm import (
    AssistantRecord,
    DeliveredRecord,
    Image,
    ModelMessage,
    ModelReply,
    ModelRequest,
    NoticeRecord,
    Record,
    ResetRecord,
    SummaryRecord,
    ToolCall,
    ToolResultRecord,
    UserRecord,
    record_to_json,
    trim_history,
)
from llm.context import SUMMARY_HEADER, estimate_stored_tokens, estimate_tokens, summary_message
from llm.history import History, VisibleStart, record_tokens
from llm.summary import plan_summary, summarise
from tests.memory_support import MemoryModel, Users, records_of_kind, request_tokens
from tests.test_context_budget import histories


def exchange(seq: int, words: int = 40, tools: bool = False) -> list[Record]:
    """A user message, optionally a tool call and its result, and an answer, numbered from `seq`."""
    text = " ".join(f"w{seq}" for _ in range(words))
    records: list[Record] = [UserRecord(text=f"u{seq} {text}", seq=seq)]
    if tools:
        call = ToolCall(f"c{seq}", "lookup", {"q": "x"})
        records.append(AssistantRecord(text="", tool_calls=(call,), seq=seq + 1))
        records.append(ToolResultRecord(tool_call_id=call.id, name="lookup", content=text, seq=seq + 2))
    records.append(AssistantRecord(text=f"a{seq} {text}", seq=seq + len(records)))
    return records


def conversation(exchanges: int, tools: bool = False, start: int = 0) -> list[Record]:
    records: list[Record] = []
    seq = start
    for index in range(exchanges):
        part = exchange(seq, tools=tools and index % 2 == 0)
        records += part
        seq += len(part)
    return records


def texts_seen(messages: list[ModelMessage]) -> list[str]:
    return [record_to_json(message).get("content", "") for message in messages]


# planning


def test_nothing_is_planned_while_the_conversation_fits_the_budget() -> None:
    history = conversation(5)
    assert plan_summary(history, 10_000, "Be brief.") is None


def tokens(records: list[Record]) -> int:
    return sum(record_tokens(record) for record in records)


def test_the_oldest_exchanges_are_planned_cut_at_a_user_message_keeping_half_the_budget() -> None:
    count = 2
    while tokens(conversation(count, tools=True)) < 2600:
        count += 1
    history = conversation(count, tools=True)
    plan = plan_summary(history, 2000, "Be brief.")
    assert plan is not None
    covered = [record for record in history if record.seq is not None and record.seq <= plan.last_seq]
    rest = history[len(covered) :]
    assert plan.records == tuple(covered)
    assert plan.first_seq == 0
    assert isinstance(rest[0], UserRecord)  # never between a tool call and its result
    assert tokens(rest) <= 1000 < tokens(rest) + tokens(covered[-4:])
    assert plan.previous is None


def test_a_rolling_summary_folds_the_previous_one_and_keeps_its_start() -> None:
    history = conversation(40)
    previous = SummaryRecord(text="FACT: earlier", first_seq=0, last_seq=19, seq=200)
    with_summary = [*history[20:], previous]
    plan = plan_summary(with_summary, 2000, "Be brief.")
    assert plan is not None
    assert plan.previous == previous
    assert plan.first_seq == 0
    assert plan.records[0].seq == 20
    request = plan.request()
    [transcript] = request.messages
    assert isinstance(transcript, UserRecord)
    assert transcript.text.startswith("Earlier summary:\nFACT: earlier\n\nConversation:\nUser: u20")


def test_the_newest_exchange_is_never_summarised_even_when_it_alone_is_too_big() -> None:
    history = exchange(0, words=5000)
    assert plan_summary(history, 1000, "Be brief.") is None
    history = [*exchange(0), *exchange(2, words=5000)]
    plan = plan_summary(history, 1000, "Be brief.")
    assert plan is not None
    assert plan.last_seq == 1


def test_a_long_backlog_is_summarised_a_budget_at_a_time() -> None:
    history = conversation(200)
    plan = plan_summary(history, 2000, "Be brief.")
    assert plan is not None
    assert sum(estimate_tokens(message) for message in plan.records) <= 2000
    assert plan.last_seq < history[-1].seq  # type: ignore[operator]


def test_tool_calls_and_results_are_in_the_transcript() -> None:
    plan = plan_summary(conversation(30, tools=True), 1500, "Be brief.")
    assert plan is not None
    [transcript] = plan.request().messages
    assert isinstance(transcript, UserRecord)
    assert 'Assistant used the tool lookup with {"q": "x"}' in transcript.text
    assert "Tool lookup answered: w0" in transcript.text


# what the model sees


def test_the_model_sees_the_summary_in_place_of_what_it_covers() -> None:
    history = conversation(6)  # seqs 0..11
    summary = SummaryRecord(text="FACT: the cat is Miso", first_seq=0, last_seq=5, seq=12)
    for arranged in ([*history, summary], [summary, *history[6:]]):
        seen = trim_history(arranged, 100_000, "p")
        assert seen[0] == UserRecord(text=f"{SUMMARY_HEADER}\n\nFACT: the cat is Miso", seq=12)
        assert [message.seq for message in seen[1:]] == list(range(6, 12))


def test_records_written_while_the_summary_was_made_are_seen_after_it() -> None:
    history = [*conversation(6), *exchange(12), SummaryRecord(text="s", first_seq=0, last_seq=5, seq=14)]
    seen = trim_history([*history, *exchange(15)], 100_000, "p")
    assert [message.seq for message in seen] == [14, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16]


def test_a_reset_hides_the_summary_too() -> None:
    summary = SummaryRecord(text="old", first_seq=0, last_seq=5, seq=12)
    seen = trim_history([*conversation(6), summary, ResetRecord(seq=13), *exchange(14)], 100_000, "p")
    assert [message.seq for message in seen] == [14, 15]
    # A summary of what came before a reset, stored after it (a race the actor avoids), is not seen.
    stale = SummaryRecord(text="stale", first_seq=0, last_seq=5, seq=14)
    seen = trim_history([*conversation(6), ResetRecord(seq=12), *exchange(13)[:1], stale], 100_000, "p")
    assert texts_seen(seen) == [seen[0].text]  # type: ignore[union-attr]
    assert SUMMARY_HEADER not in seen[0].text  # type: ignore[union-attr]


# what an active conversation holds


def test_history_drops_what_a_reset_or_a_summary_puts_out_of_sight() -> None:
    history = History(cap_tokens=100_000)
    for record in conversation(6):
        history.add(record)
    history.add(SummaryRecord(text="s", first_seq=0, last_seq=5, seq=12))
    assert [record.seq for record in history.records()] == [12, 6, 7, 8, 9, 10, 11]
    history.add(ResetRecord(seq=13))
    assert history.records() == [ResetRecord(seq=13)]
    assert history.resets == 1
    assert history.tokens == 1  # the reset marker


def test_history_is_capped_an_exchange_at_a_time_never_dropping_the_turn_in_progress() -> None:
    history = History(cap_tokens=500)
    for record in conversation(50, tools=True):
        history.add(record)
        assert history.tokens <= 500 or isinstance(history.records()[0], UserRecord)
    held = history.records()
    assert isinstance(held[0], UserRecord)
    assert history.tokens == sum(record_tokens(record) for record in held) <= 500
    # A turn in progress bigger than the cap is held whole.
    big = History(cap_tokens=100)
    for record in exchange(0, words=1000, tools=True):
        big.add(record)
    assert len(big.records()) == 4


def test_an_activation_reads_back_to_a_reset_a_summarys_start_or_the_cap() -> None:
    def read(records: list[Record], cap: int = 100_000) -> list[int]:
        stop = VisibleStart(cap)
        seqs = []
        for record in reversed(records):
            seqs.append(record.seq)
            if stop(record_to_json(record)):
                break
        return sorted(seq for seq in seqs if seq is not None)

    history = conversation(10)
    assert read([*history, ResetRecord(seq=20), *exchange(21)]) == [20, 21, 22]
    assert read([*history, *exchange(20), SummaryRecord(text="s", first_seq=0, last_seq=9, seq=22)]) == list(
        range(10, 23)
    )
    capped = read(history, cap=200)
    assert capped == list(range(capped[0], 20))
    assert capped[0] > 0
    assert capped[0] % 2 == 0  # it starts at a user message


# the conversation actor


async def test_the_summary_is_made_after_the_reply_is_delivered_and_delays_no_turn() -> None:
    model = MemoryModel(summary_gate=asyncio.Event())
    users = Users(model, context_tokens=800)
    for index in range(12):
        await users.say(42, 7, f"message {index} " + "words " * 40, update_id=index + 1)
        if model.summary_started.is_set():
            break
    assert model.summary_started.is_set(), "the conversation outgrew its budget"
    answered = len(users.channel.replies)
    # The summary call hangs; the reply that triggered it was delivered, and the next turn runs.
    assert await users.say(42, 7, "and now?", update_id=100) == "echo: and now?"
    assert len(users.channel.replies) == answered + 1
    assert records_of_kind(await users.store.load("42"), "summary") == []
    [task] = [task for task in asyncio.all_tasks() if task.get_name() == "summary:42"]
    model.summary_gate.set()  # type: ignore[union-attr]
    await asyncio.wait([task])
    await users.say(42, 7, "next", update_id=101)
    stored = await users.store.load("42")
    [summary] = records_of_kind(stored, "summary")
    assert summary["first_seq"] == 0
    # Nothing is deleted: every user message is still in the store.
    assert len(records_of_kind(stored, "user")) == len(users.channel.replies)
    await users.stop()


async def test_a_failed_summary_is_retried_later_and_trimming_serves_meanwhile() -> None:
    model = MemoryModel(fail_summaries=1)
    users = Users(model, context_tokens=800)
    with capture_logs() as logs:
        for index in range(40):
            await users.say(42, 7, f"message {index} " + "words " * 40, update_id=index + 1)
    failures = [entry for entry in logs if entry["event"] == "summary_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "warning"
    assert len(model.summary_requests) >= 2
    assert records_of_kind(await users.store.load("42"), "summary")
    assert all(request_tokens(request) <= 800 for request in model.turn_requests)
    await users.stop()


async def test_a_long_conversation_stays_within_its_budget_and_remembers_its_first_turn() -> None:
    """500 turns: every request fits the budget; what was said in turn 1 reaches the last request
    through the summaries; an activation reads only what the model may still see."""
    budget = 1500
    model = MemoryModel()
    users = Users(model, context_tokens=budget)
    await users.say(42, 7, "FACT: my cat is called Miso. " + "chatter " * 30, update_id=1)
    for turn in range(2, 501):
        await users.say(42, 7, f"turn {turn}: " + "chatter " * 30, update_id=turn)
        if turn == 250:
            await users.restart()
    assert len(model.turn_requests) == 500
    assert max(request_tokens(request) for request in model.turn_requests) <= budget
    assert "FACT: my cat is called Miso" in model.turn_requests[-1].messages[0].text  # type: ignore[union-attr]
    stored = await users.store.load("42")
    assert len(records_of_kind(stored, "user")) == 500  # nothing deleted
    assert len(records_of_kind(stored, "summary")) >= 10
    with capture_logs() as logs:
        await users.restart()
        await users.say(42, 7, "still there?", update_id=501)
    [loaded] = [entry for entry in logs if entry["event"] == "conversation_loaded"]
    assert loaded["records"] < 100 < len(stored)
    await users.stop()


async def test_tokens_sent_per_turn_level_off_once_the_budget_is_reached() -> None:
    model = MemoryModel()
    users = Users(model, context_tokens=1200)
    for turn in range(1, 121):
        await users.say(42, 7, f"turn {turn}: " + "chatter " * 30, update_id=turn)
    sizes = [request_tokens(request) for request in model.turn_requests]
    assert max(sizes) <= 1200
    assert max(sizes[60:]) - min(sizes[60:]) <= 1200 // 2 + 100
    await users.stop()


def summary_seqs(stored: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(record["first_seq"], record["last_seq"]) for record in records_of_kind(stored, "summary")]


@settings(max_examples=100, deadline=None)
@given(history=histories(broken=True))
def test_the_estimate_read_off_stored_json_is_the_estimate_of_the_record(history: list[Record]) -> None:
    pictured = ToolResultRecord(tool_call_id="c", name="n", content="a", images=(Image("image/png", "AAAA"),) * 2)
    for record in [*history, pictured, SummaryRecord(text="s", first_seq=0, last_seq=1)]:
        assert estimate_stored_tokens(record_to_json(record)) == record_tokens(record)
    assert estimate_stored_tokens({"role": "user", "content": 5}) == 4
    assert estimate_stored_tokens({"type": "summary", "text": "long " * 100}) == 0


def test_a_chat_of_commands_only_is_bounded_in_memory_and_on_activation() -> None:
    history = History(cap_tokens=100)
    markers: list[Record] = []
    for seq in range(0, 1000, 2):
        markers += [NoticeRecord(text="your memory is empty", seq=seq), DeliveredRecord(seq=seq + 1)]
    for record in markers:
        history.add(record)
    assert len(history.records()) <= 100
    stop = VisibleStart(100)
    read = 0
    for record in reversed(markers):
        read += 1
        if stop(record_to_json(record)):
            break
    assert read == 201


async def test_a_summary_longer_than_a_quarter_of_the_budget_is_cut() -> None:
    plan = plan_summary(conversation(40), 2000, "Be brief.")
    assert plan is not None

    class Wordy:
        async def complete(self, request: ModelRequest) -> ModelReply:
            return ModelReply(text="FACT: kept. " + "blah " * 5000)

        async def aclose(self) -> None:
            return None

    record = await summarise(Wordy(), plan)
    assert record is not None
    assert record.text.startswith("FACT: kept.")
    assert len(record.text) <= 2000 + len(" [...]")
    assert estimate_tokens(summary_message(record)) <= 2000 // 4 + 100


@settings(max_examples=100, deadline=None)
@given(history=histories(), budget=st.integers(min_value=1, max_value=400), summarised=st.booleans())
def test_the_summarisers_shortcut_never_skips_a_plan(history: list[Record], budget: int, summarised: bool) -> None:
    # Before planning, the summariser compares what the history holds (kept per record) with the
    # budget: that is at least what the plan counts, so a history it lets pass has nothing to plan.
    from actors.summaries import _at_most_seen

    held = History(cap_tokens=10_000)
    records = [dataclasses.replace(record, seq=seq) for seq, record in enumerate(history)]
    if summarised and len(records) > 2:
        records.append(SummaryRecord(text="FACT: earlier " * 10, first_seq=0, last_seq=1, seq=len(records)))
    for record in records:
        held.add(record)
    if plan_summary(held.records(), budget, "Be brief.") is not None:
        assert _at_most_seen(held, "Be brief.") > budget
