"""The usage meter: each call priced and added to the user's day in their zone, and the daily budget."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from actors.usage import NO_USER, BudgetExhausted, UsageMeter
from conf.usage import ModelPrice, UsageSettings
from llm import (
    ModelReply,
    ModelRequest,
    Record,
    ToolCall,
    ToolResult,
    ToolSpec,
    TurnContext,
    TurnRecord,
    Usage,
    UserRecord,
    run_turn,
)
from llm.pricing import cost_micros
from stores import InMemoryPreferenceStore, InMemoryUsageStore, StoreError
from stores import Usage as UsageTotal
from tests.feature_backends import FakeClock

MINI = ModelPrice(input=0.15, cached_input=0.075, output=0.60)
SONNET = ModelPrice(input=2.0, cached_input=0.2, cache_write=2.5, output=10.0)
PRICES = UsageSettings(prices={"mini": MINI, "sonnet": SONNET})


def test_cached_input_is_priced_apart_from_the_rest() -> None:
    # OpenAI: 1,000 input of which 600 cached, 100 output: 400 x 0.15 + 600 x 0.075 + 100 x 0.60.
    assert cost_micros(Usage(1000, 100, cache_read_tokens=600), MINI) == 60 + 45 + 60
    # Anthropic: reads at 0.2, writes at 2.5, the rest at 2.0.
    assert cost_micros(Usage(1000, 10, 500, 300), SONNET) == 200 * 2 + 500 * 0.2 + 300 * 2.5 + 10 * 10
    # Prices left empty are the input price; no price, no cost.
    assert cost_micros(Usage(1000, 0, 500, 500), ModelPrice(input=1.0, output=2.0)) == 1000
    assert cost_micros(Usage(1000, 100), None) == 0


class Setup:
    def __init__(self, budget: int = 0, default_zone: str = "America/New_York", owner: int | None = None) -> None:
        self.clock = FakeClock(datetime(2026, 5, 1, 23, 30, tzinfo=UTC))
        self.usage = InMemoryUsageStore()
        self.preferences = InMemoryPreferenceStore()
        settings = PRICES.model_copy(update={"daily_token_budget": budget})
        self.meter = UsageMeter(
            self.usage, self.preferences, settings, default_zone=default_zone, owner=owner, clock=self.clock
        )


async def test_a_call_is_added_to_the_users_day_in_their_zone_with_its_cost() -> None:
    setup = Setup()
    await setup.preferences.set_timezone(7, "Pacific/Auckland")
    priced = await setup.meter.record(7, Usage(1000, 100, cache_read_tokens=600), "mini")
    await setup.meter.record(8, Usage(10, 1), "unpriced-model")
    await setup.meter.record(None, Usage(5, 5), "mini")
    assert priced == UsageTotal(1000, 100, 600, 0, 165)
    # 23:30 UTC is already the 2nd in Auckland, still the 1st in New York (the default zone).
    assert await setup.usage.day(7, "2026-05-02") == priced
    assert await setup.usage.day(8, "2026-05-01") == UsageTotal(10, 1)
    assert (await setup.usage.day(NO_USER, "2026-05-01")).tokens == 10


async def test_an_unknown_zone_falls_back_to_the_default() -> None:
    setup = Setup()
    await setup.preferences.set_timezone(7, "Mars/Olympus_Mons")
    assert await setup.meter.zone(7) == ZoneInfo("America/New_York")
    assert await Setup(default_zone="Nowhere/Town").meter.zone(7) == ZoneInfo("UTC")


async def test_the_budget_stops_calls_until_midnight_in_the_users_zone() -> None:
    setup = Setup(budget=100)
    await setup.preferences.set_timezone(7, "Europe/Berlin")  # 01:30 on the 2nd there
    await setup.meter.record(7, Usage(60, 30), "mini")
    await setup.meter.check_budget(7)  # 90 of 100: one more call may go
    await setup.meter.record(7, Usage(15, 5), "mini")
    with pytest.raises(BudgetExhausted) as raised:
        await setup.meter.check_budget(7)
    assert (raised.value.used, raised.value.budget) == (110, 100)
    assert raised.value.renews_at == datetime(2026, 5, 3, tzinfo=ZoneInfo("Europe/Berlin"))
    await setup.meter.check_budget(8)  # another user's budget is their own
    setup.clock.now = datetime(2026, 5, 2, 22, 0, tzinfo=UTC)  # midnight in Berlin
    await setup.meter.check_budget(7)


async def test_without_a_budget_nothing_is_checked() -> None:
    setup = Setup(budget=0)
    await setup.meter.record(7, Usage(10**9, 10**9), "mini")
    await setup.meter.check_budget(7)


class FailingUsageStore(InMemoryUsageStore):
    async def _add(self, user_id: int, day: str, usage: UsageTotal) -> None:
        raise StoreError("disk full")

    async def _day(self, user_id: int, day: str) -> UsageTotal:
        raise StoreError("disk gone")


async def test_a_store_failure_is_logged_and_the_work_goes_on() -> None:
    meter = UsageMeter(
        FailingUsageStore(), InMemoryPreferenceStore(), PRICES.model_copy(update={"daily_token_budget": 1})
    )
    with capture_logs() as logs:
        priced = await meter.record(7, Usage(10, 1), "mini")
        await meter.check_budget(7)
    assert priced.tokens == 11
    assert [entry["event"] for entry in logs] == ["usage_not_recorded", "usage_budget_unchecked"]


class ToolLoopModel:
    """Always asks for a tool, each call costing 40 tokens; records the requests."""

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        call = ToolCall(f"call-{len(self.requests)}", "clock", {})
        return ModelReply("", (call,), "tool_use", Usage(30, 10), request.model or "configured")

    async def aclose(self) -> None:
        return None


class Clock:
    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec("clock", "The time.", {"type": "object", "properties": {}})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult("noon")


async def test_a_turns_tool_loop_stops_at_the_budget() -> None:
    setup = Setup(budget=100)
    inner = ToolLoopModel()
    model = setup.meter.for_user(inner, user_id=7, model_name="sonnet")
    history: list[Record] = [UserRecord(text="what time is it, again and again?")]
    recorded: list[TurnRecord] = []

    async def record(item: TurnRecord) -> None:
        recorded.append(item)

    with pytest.raises(BudgetExhausted):
        await run_turn(model, Clock(), TurnContext("", max_steps=10), history=history, record=record)
    # 40, 80, 120 tokens: the fourth call is never made.
    assert len(inner.requests) == 3
    assert {request.model for request in inner.requests} == {"sonnet"}
    assert model.usage == Usage(90, 30)
    assert model.cost_micros == 3 * (30 * 2 + 10 * 10)
    assert (await setup.usage.day(7, "2026-05-01")).tokens == 120
    assert len(recorded) == 6  # each call's assistant record and its tool result


async def test_the_owner_sees_every_users_month() -> None:
    setup = Setup(owner=1)
    await setup.meter.record(1, Usage(10, 1), "mini")
    await setup.meter.record(2, Usage(20, 2), "mini")
    mine = await setup.meter.report(1)
    theirs = await setup.meter.report(2)
    assert mine.everyone is not None
    assert sorted(mine.everyone) == [1, 2]
    assert theirs.everyone is None
    assert (theirs.day, theirs.month, theirs.today.tokens, theirs.this_month.tokens) == (
        "2026-05-01",
        "2026-05",
        22,
        22,
    )


class HeldUsageStore(InMemoryUsageStore):
    """Adds wait until `release` is set: a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def _add(self, user_id: int, day: str, usage: UsageTotal) -> None:
        self.started.set()
        await self.release.wait()
        await super()._add(user_id, day, usage)


class OneAnswerModel:
    async def complete(self, request: ModelRequest) -> ModelReply:
        return ModelReply(text="hi", usage=Usage(60, 30))

    async def aclose(self) -> None:
        pass


async def test_a_calls_usage_is_written_while_the_answer_goes_on_and_counted_before_the_next_check() -> None:
    store = HeldUsageStore()
    meter = UsageMeter(store, InMemoryPreferenceStore(), PRICES.model_copy(update={"daily_token_budget": 100}))
    model = meter.for_user(OneAnswerModel(), user_id=7, model_name="mini")
    request = ModelRequest(system="", messages=[UserRecord(text="hello")])
    reply = await asyncio.wait_for(model.complete(request), 5)  # returns with the write still held
    assert reply.text == "hi"
    assert model.usage == Usage(60, 30)
    await store.started.wait()
    assert (await store.day(7, meter.now().date().isoformat())).tokens == 0
    second = asyncio.ensure_future(model.complete(request))  # its budget check waits for the write
    await asyncio.sleep(0)
    assert not second.done()
    store.release.set()
    await second  # 90 of 100 counted: it may go
    with pytest.raises(BudgetExhausted):
        await model.complete(request)  # 180 counted
    assert (await meter.report(7)).today.tokens == 180


async def test_closing_the_meter_waits_for_every_write() -> None:
    store = HeldUsageStore()
    meter = UsageMeter(store, InMemoryPreferenceStore(), PRICES)
    meter.record_soon(7, Usage(10, 1), "mini", zone=ZoneInfo("UTC"))
    meter.record_soon(8, Usage(20, 2), "mini", zone=ZoneInfo("UTC"))
    closing = asyncio.ensure_future(meter.aclose())
    await store.started.wait()
    assert not closing.done()
    store.release.set()
    await closing
    assert (await store.all_users_month(meter.now().strftime("%Y-%m"))) == {
        7: UsageTotal(10, 1, cost_micros=2),
        8: UsageTotal(20, 2, cost_micros=4),
    }
