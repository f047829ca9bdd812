"""The turn loop, with the real SDKs talking to the fake server and a small in-test toolbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from unittest.mock import ANY

import pytest

from conf.settings import BackoffSettings, LLMSettings
from llm import (
    STEP_LIMIT_TEXT,
    AssistantRecord,
    ChatModel,
    EmptyToolbox,
    LLMRejected,
    Record,
    ToolResult,
    ToolSpec,
    TurnContext,
    TurnRecord,
    UserRecord,
    build_chat_model,
    record_to_json,
    run_turn,
)
from tests.fakes.llm_server import CallTools, Fail, FakeLLMServer, Reply

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
SCHEMA = {"type": "object", "properties": {}}


class FakeToolbox:
    """Tools by name: each an async function of the arguments. Records calls and what was recorded
    by then, so tests can check ordering."""

    def __init__(self, tools: Mapping[str, Any], records: list[dict[str, Any]] | None = None) -> None:
        self.tools = dict(tools)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.records = records
        self.records_seen_at_call: list[int] = []

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec(name, f"The {name} tool.", SCHEMA) for name in self.tools]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        self.calls.append((name, dict(arguments)))
        if self.records is not None:
            self.records_seen_at_call.append(len(self.records))
        result = await self.tools[name](**arguments)
        return result if isinstance(result, ToolResult) else ToolResult(str(result))


@pytest.fixture(params=["openai", "anthropic"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeLLMServer, ChatModel]]:
    provider = request.param
    with FakeLLMServer() as server:
        url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
        settings = LLMSettings(provider=provider, model="test-model", base_url=url, api_key="k", stream=True)
        model = build_chat_model(settings, FAST)
        yield server, model
        await model.aclose()


class Recorder:
    """Keeps the JSON form of each record the turn makes."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def __call__(self, record: TurnRecord) -> None:
        await asyncio.sleep(0)  # a real sink awaits I/O; the turn must wait for it
        self.records.append(record_to_json(record))


def user(text: str) -> list[Record]:
    return [UserRecord(text=text, seq=1)]


def context(instructions: str = "", max_steps: int = 8, context_tokens: int = 4000, **more: Any) -> TurnContext:
    return TurnContext(instructions, max_steps, context_tokens, **more)


async def test_an_answer_without_tools_is_one_step_and_one_record(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup
    sink = Recorder()
    result = await run_turn(model, EmptyToolbox(), context("sys"), history=user("hi"), record=sink)
    assert result.text == "echo: hi"
    assert (result.steps, result.stopped_by_step_limit) == (1, False)
    assert result.model_ms > 0
    assert sink.records == [{"role": "assistant", "content": "echo: hi", "usage": ANY, "model": "test-model"}]
    assert "tools" not in server.requests[0].json


async def test_tool_calls_of_one_step_run_concurrently_and_are_recorded_in_order(
    setup: tuple[FakeLLMServer, ChatModel],
) -> None:
    server, model = setup
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def tool_a() -> str:
        a_started.set()
        await asyncio.wait_for(b_started.wait(), 5)  # only returns if b runs at the same time
        return "A"

    async def tool_b() -> str:
        b_started.set()
        await asyncio.wait_for(a_started.wait(), 5)
        return "B"

    server.script([CallTools([("tool_a", {}), ("tool_b", {})], text="Working on it.")])
    sink = Recorder()
    toolbox = FakeToolbox({"tool_a": tool_a, "tool_b": tool_b}, sink.records)
    deltas: list[str] = []
    result = await run_turn(model, toolbox, context("sys", on_delta=deltas.append), history=user("go"), record=sink)
    assert result.text == "tool said: A | B"
    assert result.steps == 2
    assert "".join(deltas).startswith("Working on it.")
    roles = [(r["role"], r.get("name")) for r in sink.records]
    assert roles == [("assistant", None), ("tool", "tool_a"), ("tool", "tool_b"), ("assistant", None)]
    calls = sink.records[0]["tool_calls"]
    assert [(c["name"], c["arguments"]) for c in calls] == [("tool_a", {}), ("tool_b", {})]
    assert [r["tool_call_id"] for r in sink.records[1:3]] == [c["id"] for c in calls]
    # The assistant record was persisted before any tool ran.
    assert toolbox.records_seen_at_call == [1, 1]
    assert server.requests[1].rejection is None


async def test_tool_errors_go_back_to_the_model_as_results(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup

    async def flaky() -> ToolResult:
        return ToolResult("Error: the service timed out", is_error=True)

    async def broken() -> str:
        raise RuntimeError("a bug in the toolbox")

    server.script([CallTools([("flaky", {}), ("broken", {})])])
    sink = Recorder()
    result = await run_turn(
        model, FakeToolbox({"flaky": flaky, "broken": broken}), context(), history=user("try"), record=sink
    )
    assert [r["is_error"] for r in sink.records[1:3]] == [True, True]
    assert "the service timed out" in result.text
    assert "failed unexpectedly" in result.text
    assert "a bug in the toolbox" not in result.text


async def test_unknown_tools_and_arguments_that_are_not_json_are_explained_without_calling(
    setup: tuple[FakeLLMServer, ChatModel],
) -> None:
    server, model = setup

    async def real() -> str:
        return "should not run"

    server.script([CallTools([("real", '{"x": '), ("imaginary", {})])])
    sink = Recorder()
    toolbox = FakeToolbox({"real": real})
    await run_turn(model, toolbox, context(), history=user("x"), record=sink)
    assert toolbox.calls == []
    assert sink.records[0]["tool_calls"][0]["arguments"] is None
    assert sink.records[0]["tool_calls"][0]["raw_arguments"] == '{"x": '
    bad_json, unknown = sink.records[1], sink.records[2]
    assert bad_json["is_error"]
    assert "not a valid JSON object" in bad_json["content"]
    assert '{"x": ' in bad_json["content"]
    assert unknown["is_error"]
    assert "no tool named 'imaginary'" in unknown["content"]
    assert server.requests[1].rejection is None


async def test_the_step_limit_stops_a_model_that_keeps_calling_tools(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup
    server.script(lambda request: CallTools([("again", {})], text="More."))

    async def again() -> str:
        return "done"

    sink = Recorder()
    toolbox = FakeToolbox({"again": again})
    result = await run_turn(model, toolbox, context(max_steps=3), history=user("loop"), record=sink)
    assert result.stopped_by_step_limit
    assert result.steps == 3
    assert len(server.requests) == 3
    assert len(toolbox.calls) == 2
    assert result.text == "More.\n\n" + STEP_LIMIT_TEXT.format(steps=3)
    assert sink.records[-1] == {"role": "assistant", "content": result.text, "usage": ANY, "model": "test-model"}
    assert all(request.rejection is None for request in server.requests)


async def test_a_model_failure_propagates_and_records_nothing(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup
    server.script(lambda request: Fail(401))
    sink = Recorder()
    with pytest.raises(LLMRejected):
        await run_turn(model, EmptyToolbox(), context(), history=user("x"), record=sink)
    assert sink.records == []


async def test_cancelling_a_turn_cancels_its_tool_calls(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    server.script([CallTools([("slow", {})])])
    sink = Recorder()
    turn = asyncio.create_task(
        run_turn(model, FakeToolbox({"slow": slow}), context(), history=user("x"), record=sink),
        name="turn-under-test",
    )
    await asyncio.wait_for(entered.wait(), 5)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    assert cancelled.is_set()
    assert [r["role"] for r in sink.records] == ["assistant"]


async def test_the_history_sent_is_trimmed_to_the_context_budget(setup: tuple[FakeLLMServer, ChatModel]) -> None:
    server, model = setup
    history: list[Record] = []
    for i in range(50):
        history += [UserRecord(text=f"question {i} " + "x" * 400), AssistantRecord(text="ok")]
    history.append(UserRecord(text="the last question"))
    server.script([Reply("fine")])
    await run_turn(model, EmptyToolbox(), context(context_tokens=1000), history=history, record=Recorder())
    sent = server.requests[0]
    assert sent.rejection is None
    assert 2 < len(sent.messages) < 20
    assert sent.last_user_text == "the last question"


async def test_each_assistant_record_carries_its_model_calls_usage_with_cached_tokens(
    setup: tuple[FakeLLMServer, ChatModel],
) -> None:
    server, model = setup
    server.cache_tokens = (3, 2)

    async def clock() -> str:
        return "noon"

    server.script([CallTools([("clock", {})]), Reply("It is noon.")])
    sink = Recorder()
    result = await run_turn(model, FakeToolbox({"clock": clock}), context(), history=user("time?"), record=sink)
    usages = [record["usage"] for record in sink.records if record["role"] == "assistant"]
    assert len(usages) == 2
    written = 2 if server.requests[0].provider == "anthropic" else 0  # OpenAI reports cache reads only
    assert all(usage["input_tokens"] > 5 for usage in usages)
    assert all((usage["cache_read_tokens"], usage["cache_write_tokens"]) == (3, written) for usage in usages)
    assert all(usage["output_tokens"] > 0 for usage in usages)
    assert result.usage.input_tokens == sum(usage["input_tokens"] for usage in usages)
    assert result.usage.output_tokens == sum(usage["output_tokens"] for usage in usages)
