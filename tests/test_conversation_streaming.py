"""Streamed turns in the conversation actor: /stop (out of band, mid-model and mid-tool, held for queued
and replayed turns) and the time to the first visible text."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from actors import texts
from actors.protocol import Command
from llm import ModelReply, ModelRequest, ToolCall, ToolResult, ToolSpec, UserRecord, record_to_json
from llm.context import INTERRUPTED_TOOL_RESULT
from stores import InMemoryConversationStore
from tests.test_conversation_actor import TARGET, GatedStore, ScriptedModel, World, user


class WritingModel:
    """Streams `written` to `on_delta`, then waits (forever, unless `release` is set) before answering;
    or asks for the `clock` tool first when `tool_first`."""

    def __init__(self, written: str = "I was saying that", tool_first: bool = False) -> None:
        self.written = written
        self.tool_first = tool_first
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.calls: list[list[dict[str, Any]]] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append([record_to_json(message) for message in request.messages])
        last = request.messages[-1]
        if self.tool_first and isinstance(last, UserRecord):
            if request.on_delta is not None:
                request.on_delta("Let me check the clock.")
            return ModelReply(text="Let me check the clock.", tool_calls=(ToolCall("c1", "clock", {}),))
        if request.on_delta is not None:
            for word in self.written.split(" "):
                request.on_delta(word + " ")
        self.writing.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ModelReply(text=self.written + ", done.")

    async def aclose(self) -> None:
        return None


class SlowClock:
    """A toolbox whose one tool runs until cancelled (or released)."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.cancelled = False

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec("clock", "What time it is", {"type": "object", "properties": {}})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return ToolResult("never")


def stop(update_id: int | None) -> Command:
    return Command("42", "stop", TARGET, update_id, 42)


async def test_stop_mid_model_records_and_sends_what_was_written_marked_stopped() -> None:
    model = WritingModel()
    world = World(model)  # type: ignore[arg-type]
    answer = asyncio.ensure_future(world.ask(user("tell me", 1)))
    await model.writing.wait()
    assert world.registry.interrupt("42", stop(2)) is True
    assert await answer == f"I was saying that\n\n{texts.STOPPED}"
    assert model.cancelled
    assert world.channel.texts == [f"I was saying that\n\n{texts.STOPPED}"]
    assert world.channel.done_ids == [1, 2]
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "delivered"]
    assert records[1]["content"].endswith(texts.STOPPED)
    assert records[1]["update_id"] == 1

    # The conversation goes on, and the model sees the stopped answer.
    model.release.set()
    assert await world.ask(user("go on", 3)) == "I was saying that, done."
    assert [m["content"] for m in model.calls[-1]][-2:] == [records[1]["content"], "go on"]
    await world.stop()


async def test_stop_mid_tool_cancels_the_tool_call_and_the_next_turn_sees_it_interrupted() -> None:
    model = WritingModel(tool_first=True)
    tools = SlowClock()
    world = World(model, toolbox=tools)  # type: ignore[arg-type]
    answer = asyncio.ensure_future(world.ask(user("what time is it?", 1)))
    await tools.running.wait()
    assert world.registry.interrupt("42", stop(2)) is True
    assert await answer == f"Let me check the clock.\n\n{texts.STOPPED}"
    assert tools.cancelled

    model.tool_first = False
    model.release.set()
    await world.ask(user("never mind", 3))
    seen = model.calls[-1]
    tool_results = [m for m in seen if m["role"] == "tool"]
    assert [m["content"] for m in tool_results] == [INTERRUPTED_TOOL_RESULT]
    await world.stop()


async def test_a_stop_during_a_store_write_lets_the_write_finish_then_stops_the_turn() -> None:
    model = WritingModel(tool_first=True)
    tools = SlowClock()
    store = GatedStore(hold_if=lambda records: any(record.get("tool_calls") for record in records))
    world = World(model, store=store, toolbox=tools)  # type: ignore[arg-type]
    answer = asyncio.ensure_future(world.ask(user("what time is it?", 1)))
    await store.held.wait()
    assert world.registry.interrupt("42", stop(2)) is True
    await asyncio.sleep(0.05)
    assert not answer.done()  # the write is not cut
    store.release.set()
    assert await answer == f"Let me check the clock.\n\n{texts.STOPPED}"
    assert not tools.running.is_set()  # stopped before the tool ran
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records][:2] == ["user", "assistant"]
    assert records[1]["tool_calls"]  # written whole, with its sequence number
    assert [r["seq"] for r in records] == list(range(len(records)))
    await world.stop()


async def test_stop_with_nothing_running_is_not_taken() -> None:
    world = World(WritingModel())  # type: ignore[arg-type]
    assert world.registry.interrupt("42", stop(1)) is False  # no actor at all
    world.model.release.set()  # type: ignore[attr-defined]
    await world.ask(user("hello", 2))
    assert world.registry.interrupt("42", stop(3)) is False  # an actor, but idle
    # A /stop that reaches the mailbox (the console) is answered there.
    assert await world.ask(stop(4)) == texts.NOTHING_TO_STOP
    await world.stop()


async def test_a_second_stop_while_one_is_carried_out_is_not_taken() -> None:
    model = WritingModel()
    world = World(model)  # type: ignore[arg-type]
    answer = asyncio.ensure_future(world.ask(user("tell me", 1)))
    await model.writing.wait()
    assert world.registry.interrupt("42", stop(2)) is True
    assert world.registry.interrupt("42", stop(3)) is False
    assert (await answer).endswith(texts.STOPPED)
    await world.stop()


async def test_a_stop_covers_turns_queued_before_it_and_leaves_later_ones() -> None:
    model = WritingModel()
    world = World(model)  # type: ignore[arg-type]
    first = asyncio.ensure_future(world.ask(user("one", 1)))
    await model.writing.wait()
    second = asyncio.ensure_future(world.ask(user("two", 2)))
    await asyncio.sleep(0)
    assert world.registry.interrupt("42", stop(3)) is True
    third = asyncio.ensure_future(world.ask(user("three", 4)))
    model.release.set()
    assert (await first).endswith(texts.STOPPED)
    assert await second == texts.STOPPED  # stopped before it began: the model never saw it
    assert await third == "I was saying that, done."
    assert len(model.calls) == 2
    assert world.channel.done_ids == [1, 2, 3, 4]
    await world.stop()


async def test_a_turn_replayed_after_a_crash_stays_stopped_by_the_stop_replayed_after_it() -> None:
    store = InMemoryConversationStore()
    await store.append("42", [{"seq": 0, "role": "user", "content": "long story", "update_id": 5, "chat_id": 42}])
    model = WritingModel()
    world = World(model, store)  # type: ignore[arg-type]
    # The gateway replays the pending updates in order: the message, then the /stop that followed it.
    replayed = world.registry.actor_for("42").ask_future(user("long story", 5))
    assert world.registry.interrupt("42", stop(6)) is True
    assert await replayed == texts.STOPPED
    assert model.calls == []
    assert world.channel.done_ids == [5, 6]
    records = await world.records()
    assert [r.get("role") or r.get("type") for r in records] == ["user", "assistant", "delivered"]
    await world.stop()


async def test_a_stop_with_only_other_work_queued_says_there_was_nothing_to_stop() -> None:
    model = WritingModel()
    world = World(model)  # type: ignore[arg-type]
    model.release.set()
    actor = world.registry.actor_for("42")
    helped = actor.ask_future(Command("42", "help", TARGET, 1, 42))
    assert world.registry.interrupt("42", stop(2)) is True  # something is queued: held until it is done
    assert await helped == texts.HELP  # answered once the held stop was settled too
    assert world.channel.texts == [texts.HELP, texts.NOTHING_TO_STOP]
    assert world.channel.done_ids == [1, 2]
    await world.stop()


async def test_the_turns_log_line_says_when_its_first_text_became_visible() -> None:
    model = WritingModel()
    model.release.set()
    world = World(model)  # type: ignore[arg-type]
    with capture_logs() as logs:
        await world.ask(user("hello", 1))
    [line] = [line for line in logs if line["event"] == "turn_finished"]
    assert 0 < line["first_text_ms"] <= line["duration_ms"]
    await world.stop()


async def test_a_closed_turn_output_is_freed_without_the_cycle_collector() -> None:
    # A preview stream holds its output's methods (the text to show, when it became visible), as
    # TelegramReplyStream does: once the output closes, dropping it frees both at once. A cycle
    # would wait for a full collection, hundreds of turns' worth during a burst of chats.
    from contextlib import AbstractAsyncContextManager, nullcontext
    from weakref import ref

    from actors._streaming import TurnStreams
    from actors.protocol import Reply, ReplyTarget

    class Stream:
        def __init__(self, text: Any, on_visible: Any) -> None:
            self.text, self.on_visible = text, on_visible

        def changed(self) -> None: ...
        def tool_boundary(self) -> None: ...
        def answered(self) -> None: ...
        async def finish(self, reply: Reply) -> None: ...
        async def aclose(self) -> None: ...

    streams_made: list[Any] = []

    class Channel:
        async def deliver(self, reply: Reply) -> None: ...
        async def done(self, update_id: int) -> None: ...

        def typing(self, target: ReplyTarget) -> AbstractAsyncContextManager[None]:
            return nullcontext()  # type: ignore[return-value]

        def open_stream(self, target: ReplyTarget, text: Any, **callbacks: Any) -> Stream:
            stream = Stream(text, callbacks["on_visible"])
            streams_made.append(ref(stream))
            return stream

    async def append(record: Any) -> None: ...

    streams = TurnStreams("42", Channel(), append)  # type: ignore[arg-type]
    gc.collect()
    gc.disable()
    try:
        output = streams.begin(user("hello", 1))
        output.delta("partial")
        await output.close()
        del output
        assert streams_made[0]() is None
    finally:
        gc.enable()


async def test_an_evicted_actor_is_freed_without_the_cycle_collector() -> None:
    # Its parts call back into it weakly: an evicted actor is no reference cycle left to the full
    # collector (a burst of chats would leave tens of thousands of such objects between collections).
    from weakref import ref

    world = World(ScriptedModel())
    assert await world.ask(user("hello", 1)) == "echo: hello"
    gone = ref(world.registry.get("42"))
    gc.collect()
    gc.disable()
    try:
        assert world.registry.evict_idle(now=float("inf")) == 1
        for _ in range(100):  # the actor's task ends within a few turns of the loop
            if gone() is None:
                break
            await asyncio.sleep(0)
        assert gone() is None
    finally:
        gc.enable()
    await world.stop()


def test_a_weak_method_calls_through_while_its_object_lives_and_raises_after() -> None:
    from actors._weak import weakly

    class Owner:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def note(self, value: int) -> int:
            self.seen.append(value)
            return value * 2

    owner = Owner()
    first, second = weakly(owner.note), weakly(owner.note)
    assert first(2) == 4
    assert second(3) == 6
    assert owner.seen == [2, 3]
    gc.disable()
    try:
        del owner  # the weak methods do not keep it: freed at once, no collector needed
        with pytest.raises(ReferenceError, match=r"Owner\.note"):
            first(1)
    finally:
        gc.enable()
