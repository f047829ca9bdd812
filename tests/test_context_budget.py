"""Context trimming: the invariants of trim_history over random histories (hypothesis), and the estimate."""

from __future__ import annotations

import dataclasses
import itertools
import random
import sys
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm import (
    AssistantRecord,
    DeliveredRecord,
    Image,
    NoticeRecord,
    Record,
    ResetRecord,
    ToolCall,
    ToolResultRecord,
    UserRecord,
    estimate_tokens,
    trim_history,
)
from llm.context import INTERRUPTED_TOOL_RESULT, estimate_text_tokens, forget_estimates

_ids = itertools.count()

text = st.text(alphabet="abc def\n", max_size=300)


@st.composite
def turns(draw: st.DrawFn, broken: bool) -> list[Record]:
    """One conversation turn: a user message, tool rounds, an answer. `broken` adds what crashes and
    old bugs leave behind: missing results, orphan results, markers."""
    records: list[Record] = [UserRecord(text=draw(text), seq=0)]
    for _ in range(draw(st.integers(0, 3))):
        calls = tuple(ToolCall(f"c{next(_ids)}", "t", {"q": draw(text)}) for _ in range(draw(st.integers(1, 3))))
        records.append(AssistantRecord(text=draw(text), tool_calls=calls))
        for call in calls:
            if broken and draw(st.booleans()) and draw(st.booleans()):
                continue  # the result was never recorded
            records.append(ToolResultRecord(tool_call_id=call.id, name="t", content=draw(text), is_error=False))
    if not broken or draw(st.booleans()):
        records.append(AssistantRecord(text=draw(text)))
    if broken and draw(st.booleans()):
        records.insert(
            draw(st.integers(0, len(records))),
            draw(
                st.sampled_from(
                    [
                        DeliveredRecord(update_id=1),
                        NoticeRecord(text="hidden"),
                        ToolResultRecord(tool_call_id="orphan", name="t", content="?", is_error=False),
                        AssistantRecord(text="stray"),
                    ]
                )
            ),
        )
    return records


@st.composite
def histories(draw: st.DrawFn, broken: bool = False) -> list[Record]:
    records = [record for turn in draw(st.lists(turns(broken), min_size=1, max_size=8)) for record in turn]
    # The turn in progress: its user message, maybe with tool rounds done so far.
    records += draw(turns(broken))[:-1] if draw(st.booleans()) else [UserRecord(text=draw(text))]
    return records


def is_call(message: Any) -> bool:
    return isinstance(message, AssistantRecord) and bool(message.tool_calls)


def check_pairs(trimmed: list[Any]) -> None:
    """Every call is followed by exactly its results, in order; every result follows its call."""
    i = 0
    while i < len(trimmed):
        message = trimmed[i]
        assert not isinstance(message, ToolResultRecord), f"tool result without its call at {i}"
        i += 1
        if is_call(message):
            ids = [call.id for call in message.tool_calls]
            results = trimmed[i : i + len(ids)]
            assert [type(r) for r in results] == [ToolResultRecord] * len(ids)
            assert [r.tool_call_id for r in results] == ids
            i += len(ids)


def last_user(messages: list[Any]) -> Any:
    return next(m for m in reversed(messages) if isinstance(m, UserRecord))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(broken=True), st.integers(0, 3000), text)
def test_trimmed_histories_keep_the_invariants(history: list[Any], budget: int, system: str) -> None:
    trimmed = trim_history(history, budget, system)
    assert trimmed, "the last user message is always kept"
    assert isinstance(trimmed[0], UserRecord)
    assert all(isinstance(m, UserRecord | AssistantRecord | ToolResultRecord) for m in trimmed)
    check_pairs(trimmed)
    assert any(m is last_user(history) for m in trimmed)
    # Contiguous: the non-synthesised records are the input's visible records from some point on.
    real = [m for m in trimmed if getattr(m, "content", None) != INTERRUPTED_TOOL_RESULT]
    start = next(i for i, m in enumerate(history) if m is real[0])
    assert all(any(m is h for h in history[start:]) for m in real)


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 3000), text)
def test_a_well_formed_history_is_cut_to_the_budget_or_to_the_turn_in_progress(
    history: list[Any], budget: int, system: str
) -> None:
    trimmed = trim_history(history, budget, system)
    # Nothing is invented for a well-formed history: the result is a suffix of it.
    assert trimmed == history[len(history) - len(trimmed) :]
    cost = estimate_text_tokens(system) + sum(estimate_tokens(m) for m in trimmed)
    turn_in_progress = history[max(i for i, m in enumerate(history) if isinstance(m, UserRecord)) :]
    if len(trimmed) > len(turn_in_progress):
        assert cost <= budget
    else:
        assert trimmed == turn_in_progress


@settings(max_examples=100, deadline=None)
@given(histories())
def test_a_history_that_fits_is_kept_whole(history: list[Any]) -> None:
    assert trim_history(history, 10**9, "system") == history


def test_a_call_whose_result_is_missing_gets_an_error_result() -> None:
    history: list[Record] = [
        UserRecord(text="hi"),
        AssistantRecord(text="", tool_calls=(ToolCall("a", "t", {}),)),
        UserRecord(text="hello?"),
    ]
    trimmed = trim_history(history, 10_000, "")
    assert trimmed[2] == ToolResultRecord(
        tool_call_id="a",
        name="t",
        content=INTERRUPTED_TOOL_RESULT,
        is_error=True,
    )
    assert trimmed[3] == history[2]


def test_a_huge_last_user_message_is_kept_alone() -> None:
    history: list[Record] = [UserRecord(text="old"), AssistantRecord(text="x")]
    huge = UserRecord(text="y" * 100_000)
    assert trim_history([*history, huge], 500, "system prompt") == [huge]


def test_the_model_sees_nothing_before_the_last_reset_and_no_markers() -> None:
    history: list[Record] = [
        UserRecord(text="forgotten"),
        AssistantRecord(text="gone"),
        ResetRecord(update_id=2),
        NoticeRecord(text="Starting afresh.", update_id=2),
        DeliveredRecord(update_id=2),
        UserRecord(text="new start"),
    ]
    assert trim_history(history, 10**9, "") == [history[-1]]


def test_the_estimate_counts_text_tool_calls_and_images_but_not_base64() -> None:
    assert estimate_tokens(UserRecord(text="")) == 4
    assert estimate_tokens(UserRecord(text="x" * 400)) == 104
    call = AssistantRecord(text="", tool_calls=(ToolCall("1", "t", {"q": "a" * 400}),))
    assert estimate_tokens(call) > 100
    image = Image("image/png", "A" * 1_000_000)
    result = ToolResultRecord(tool_call_id="1", name="t", content="", images=(image,))
    assert 1600 <= estimate_tokens(result) < 1700


def test_a_history_without_a_user_message_is_kept_whole() -> None:
    history: list[Record] = [AssistantRecord(text="a greeting"), AssistantRecord(text="y" * 10_000)]
    assert trim_history(history, 10, "") == history


def numbered(records: list[Record]) -> list[Record]:
    return [dataclasses.replace(record, seq=seq) for seq, record in enumerate(records)]


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, 3000), text)
def test_a_numbered_history_is_cut_at_an_anchor_within_the_budget(history: list[Any], budget: int, system: str) -> None:
    history = numbered(history)
    trimmed = trim_history(history, budget, system)
    assert trimmed == history[len(history) - len(trimmed) :]
    assert isinstance(trimmed[0], UserRecord)
    cost = estimate_text_tokens(system) + sum(estimate_tokens(m) for m in trimmed)
    turn_in_progress = history[max(i for i, m in enumerate(history) if isinstance(m, UserRecord)) :]
    assert cost <= budget or trimmed == turn_in_progress


def test_as_a_conversation_grows_past_the_budget_its_start_moves_in_steps() -> None:
    rng = random.Random(5)
    budget = 4000
    history: list[Record] = []
    starts: list[int] = []
    for turn in range(200):
        history.append(UserRecord(text="q" * rng.randint(40, 400), seq=len(history)))
        if turn % 3:
            call = ToolCall(f"c{turn}", "t", {"q": "x" * rng.randint(10, 60)})
            history.append(AssistantRecord(text="", tool_calls=(call,), seq=len(history)))
            history.append(ToolResultRecord(tool_call_id=call.id, name="t", content="r" * 600, seq=len(history)))
        history.append(AssistantRecord(text="a" * rng.randint(200, 800), seq=len(history)))
        trimmed = trim_history(history, budget, "system")
        cost = estimate_text_tokens("system") + sum(estimate_tokens(m) for m in trimmed)
        assert cost <= budget
        if trimmed[0] is not history[0]:
            assert cost >= budget // 2, "at least half the budget is used"
        starts.append(trimmed[0].seq or 0)
    assert starts == sorted(starts)
    # Trimmed to whatever fits, the start would move nearly every turn once the budget is reached (from
    # turn ~15); at a 16-record anchor (64 would leave less than half the budget) about every fifth.
    moves = sum(1 for before, after in itertools.pairwise(starts) if after != before)
    assert 10 <= moves <= 200 // 4, starts


def test_a_costly_estimate_is_remembered_until_forgotten_and_a_plain_one_never_held() -> None:
    # Remembering holds the message (its id stays its own); forgetting, after idle conversations
    # were evicted, lets go of it. A plain message is estimated by its lengths each time: holding
    # it would keep a burst's messages in memory for nothing.
    call = AssistantRecord(text="", tool_calls=(ToolCall("1", "t", {"q": "a" * 400}),))
    plain = UserRecord(text="x" * 400)
    alone = sys.getrefcount(call), sys.getrefcount(plain)
    first = estimate_tokens(call)
    assert estimate_tokens(plain) == 104
    assert (sys.getrefcount(call), sys.getrefcount(plain)) == (alone[0] + 1, alone[1])
    assert estimate_tokens(call) == first
    forget_estimates()
    assert (sys.getrefcount(call), sys.getrefcount(plain)) == alone
    assert estimate_tokens(call) == first
