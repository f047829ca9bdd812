"""Prompt caching through the real SDKs and the fake model server, which caches as each provider does:
Anthropic's `cache_control` breakpoints, OpenAI's automatic prefix cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from conf.settings import BackoffSettings, LLMSettings
from llm import AssistantRecord, ChatModel, Record, ToolResult, ToolSpec, TurnContext, TurnRecord, UserRecord, run_turn
from llm import build_chat_model as build
from llm._anthropic_cache import LOOKBACK_BLOCKS
from tests.fakes._llm_tokens import count_cache_breakpoints
from tests.fakes.llm_server import CallTools, FakeLLMRequest, FakeLLMServer, Reply, ResponseSpec

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
SYSTEM = "You are a careful assistant. " * 150  # ~1100 tokens: past both providers' smallest cached prefix
EPHEMERAL = {"type": "ephemeral"}


class LookupTools:
    """Two tools whose schemas are long enough to matter, answering at once."""

    def specs(self) -> list[ToolSpec]:
        schema = {"type": "object", "properties": {"query": {"type": "string", "description": "What to look up. " * 8}}}
        return [ToolSpec("lookup", "Look something up. " * 10, schema), ToolSpec("weather", "The weather.", schema)]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(f"{name} found: {arguments.get('query', '')} is fine. " * 3)


def tool_then_answer(request: FakeLLMRequest) -> ResponseSpec:
    """Each turn: one tool call, then an answer about its result."""
    if request.tool_results:
        return Reply("Here is what I found: " + request.tool_results[0].content)
    return CallTools([("lookup", {"query": request.last_user_text[:40]})])


@pytest.fixture(params=["anthropic", "openai"])
async def provider(request: pytest.FixtureRequest, llm: FakeLLMServer) -> AsyncIterator[tuple[str, ChatModel]]:
    name = request.param
    url = llm.anthropic_base_url if name == "anthropic" else llm.openai_base_url
    settings = LLMSettings(provider=name, model="test-model", base_url=url, api_key="k")
    llm.script(tool_then_answer)
    model = build(settings, FAST)
    yield name, model
    await model.aclose()


async def converse(model: ChatModel, turns: int, *, volatile: str = "It is {turn}:00.") -> list[Record]:
    history: list[Record] = []

    async def record(item: TurnRecord) -> None:
        history.append(item)

    for turn in range(turns):
        history.append(UserRecord(text=f"Question {turn}: how is thing number {turn} doing today?"))
        context = TurnContext(SYSTEM, volatile_instructions=volatile.format(turn=turn))
        await run_turn(model, LookupTools(), context, history=history, record=record)
    return history


async def test_the_cached_share_grows_past_seventy_percent(llm: FakeLLMServer, provider: tuple[str, ChatModel]) -> None:
    name, model = provider
    history = await converse(model, 8)
    usages = [request.usage for request in llm.requests]
    assert all(usage is not None for usage in usages)
    shares = [usage.cache_read / usage.input_tokens for usage in usages if usage is not None]
    # Two requests a turn: from the third turn on, all but what the request adds was read from the cache.
    assert min(shares[4:]) >= 0.7, shares
    # What each call cost, as the provider reported it, is on its assistant record.
    recorded = [record.usage for record in history if isinstance(record, AssistantRecord)]
    assert [usage.cache_read_tokens for usage in recorded if usage is not None] == [
        usage.cache_read for usage in usages if usage is not None
    ]
    if name == "anthropic":
        assert sum(usage.cache_write for usage in usages if usage is not None) > 0


async def test_anthropic_marks_tools_system_and_history_and_sends_the_volatile_part_last(
    llm: FakeLLMServer, provider: tuple[str, ChatModel]
) -> None:
    name, model = provider
    await converse(model, 3)
    for index, request in enumerate(llm.requests):
        body = request.json
        last_message = body["messages"][-1]
        if name == "openai":
            # The system prompt first, what changes every turn after the history.
            assert body["messages"][0] == {"role": "system", "content": SYSTEM}
            assert last_message == {"role": "system", "content": f"It is {index // 2}:00."}
            continue
        assert count_cache_breakpoints(body) <= 4
        assert body["tools"][-1]["cache_control"] == EPHEMERAL
        assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
        *history, volatile = last_message["content"]
        assert volatile == {"type": "text", "text": f"<instructions>\nIt is {index // 2}:00.\n</instructions>"}
        assert history[-1]["cache_control"] == EPHEMERAL


async def test_a_step_that_adds_many_blocks_still_reads_the_previous_prefix(llm: FakeLLMServer) -> None:
    settings = LLMSettings(provider="anthropic", model="m", base_url=llm.anthropic_base_url, api_key="k")
    many = LOOKBACK_BLOCKS + 5
    llm.script([Reply("Hello."), CallTools([("weather", {"query": f"city {n}"}) for n in range(many)]), Reply("Done.")])
    model = build(settings, FAST)
    try:
        await converse(model, 2, volatile="")
    finally:
        await model.aclose()
    first, calling, answering = (request.usage for request in llm.requests)
    assert first is not None
    assert calling is not None
    assert answering is not None
    # The answering request adds 2 x 25 blocks (tool uses, tool results) after the calling request's
    # prefix: only a breakpoint 20 blocks back can find that prefix within its look-back.
    assert answering.cache_read >= calling.input_tokens
    assert count_cache_breakpoints(llm.requests[-1].json) == 4


async def test_without_volatile_instructions_the_request_is_as_before(llm: FakeLLMServer) -> None:
    settings = LLMSettings(provider="openai", model="m", base_url=llm.openai_base_url, api_key="k")
    model = build(settings, FAST)
    try:
        await converse(model, 1, volatile="")
    finally:
        await model.aclose()
    assert [message["role"] for message in llm.requests[0].messages] == ["system", "user"]


async def test_a_request_may_name_another_model(llm: FakeLLMServer, provider: tuple[str, ChatModel]) -> None:
    _, model = provider
    from llm import ModelRequest

    reply = await model.complete(ModelRequest("", [UserRecord(text="hi")], model="other-model"))
    assert llm.requests[0].json["model"] == "other-model"
    assert reply.model == "other-model"
    reply = await model.complete(ModelRequest("", [UserRecord(text="hi")]))
    assert llm.requests[1].json["model"] == "test-model"
    assert reply.model == "test-model"


def test_the_instructions_split_into_what_stays_and_what_changes() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from llm.instructions import FACTS_HEADING, NOW_HEADING, build_instructions, split_instructions

    now, zone = datetime(2026, 5, 1, 9, 30, tzinfo=UTC), ZoneInfo("Europe/Berlin")
    facts = [("f1", "likes tea")]
    stable, volatile = split_instructions(build_instructions("Be brief.", now=now, zone=zone, facts=facts))
    # All facts shown: they change only when the memory does, so they stay in the cached part.
    assert stable.startswith("Be brief.")
    assert FACTS_HEADING in stable
    assert "likes tea" in stable
    assert volatile.startswith(NOW_HEADING)
    assert "11:30" in volatile
    assert NOW_HEADING not in stable
    # Some left out: those shown are chosen for each message, so they go with the time.
    stable, volatile = split_instructions(
        build_instructions("Be brief.", now=now, zone=zone, facts=facts, facts_left_out=4)
    )
    assert stable == "Be brief."
    assert volatile.startswith(FACTS_HEADING)
    assert "likes tea" in volatile
    assert NOW_HEADING in volatile
    assert split_instructions("Only a prompt.") == ("Only a prompt.", "")
