"""Usage, the budget and the model choice as a conversation sees them: /usage, /model and turns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

from structlog.testing import capture_logs

from actors import texts
from actors.accounting import Accounting, ModelChoice
from actors.commands import CommandName
from actors.conversation import ConversationActor, TurnSettings
from actors.protocol import Command, Reply, ReplyTarget, UserMessage
from actors.usage import UsageMeter
from conf.usage import ModelPrice, UsageSettings
from llm import EmptyToolbox, ModelReply, ModelRequest, Usage
from stores import InMemoryConversationStore, InMemoryPreferenceStore, InMemoryUsageStore
from tests.feature_backends import FakeClock

TARGET = ReplyTarget(chat_id=42)
PRICES = {"small": ModelPrice(input=1.0, output=2.0), "large": ModelPrice(input=10.0, output=20.0)}


class CountingModel:
    """Answers every request, each call reporting 100 input and 20 output tokens."""

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return ModelReply(f"answer {len(self.requests)}", usage=Usage(100, 20), model=request.model)

    async def aclose(self) -> None:
        return None


class Channel:
    def __init__(self) -> None:
        self.replies: list[Reply] = []

    async def deliver(self, reply: Reply) -> None:
        self.replies.append(reply)

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        yield

    async def done(self, update_id: int) -> None:
        return None


class RecordingMetrics:
    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []
        self.usages: list[dict[str, Any]] = []

    def turn(
        self, latency_ms: float, *, conversation_id: str, steps: int, ok: bool, first_text_ms: float | None = None
    ) -> None:
        self.turns.append({"steps": steps, "ok": ok})

    def turn_usage(self, **fields: Any) -> None:
        self.usages.append(fields)


class Chat:
    """One conversation actor with accounting over in-memory stores, driven message by message."""

    def __init__(self, *, budget: int = 0, owner: int | None = None) -> None:
        self.clock = FakeClock(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
        self.usage = InMemoryUsageStore()
        self.preferences = InMemoryPreferenceStore()
        self.model = CountingModel()
        self.channel = Channel()
        self.metrics = RecordingMetrics()
        settings = UsageSettings(daily_token_budget=budget, prices=PRICES)
        meter = UsageMeter(self.usage, self.preferences, settings, owner=owner, clock=self.clock)
        models = ModelChoice(self.preferences, ("small", "large"), "small")
        self.accounting = Accounting(meter, models, priced=True, metrics=self.metrics)
        self.actor = ConversationActor(
            "42",
            store=InMemoryConversationStore(),
            model=self.model,
            toolbox=EmptyToolbox(),
            channel=self.channel,
            settings=TurnSettings("Be brief."),
            metrics=self.metrics,
            accounting=self.accounting,
        )
        self.update_id = 0

    async def send(self, text: str, user_id: int = 7) -> str:
        self.update_id += 1
        if text.startswith("/"):
            word, _, args = text[1:].partition(" ")
            message: UserMessage | Command = Command(
                "42", cast(CommandName, word), TARGET, self.update_id, user_id, args
            )
        else:
            message = UserMessage("42", text, TARGET, self.update_id, user_id)
        if self.update_id == 1:
            await self.actor.on_start()
        answer = await self.actor.handle(message)
        assert answer is not None
        return answer


async def test_model_lists_the_choices_and_the_chats_current_one() -> None:
    chat = Chat()
    assert await chat.send("/model") == texts.MODEL_CURRENT.format(current="small", models="`small`, `large`")


async def test_a_chat_switches_model_and_its_turns_use_it() -> None:
    chat = Chat()
    await chat.send("hello")
    assert await chat.send("/model LARGE") == texts.MODEL_SWITCHED.format(model="large")
    await chat.send("hello again")
    assert [request.model for request in chat.model.requests] == ["small", "large"]
    # Kept in the preference store: another process (or a restart) sees the same choice.
    assert await chat.preferences.model("42") == "large"
    assert await ModelChoice(chat.preferences, ("small", "large"), "small").current("42") == "large"


async def test_a_model_not_listed_is_refused_and_nothing_changes() -> None:
    chat = Chat()
    answer = await chat.send("/model gpt-9`x")
    assert answer == texts.MODEL_UNKNOWN.format(name="gpt-9'x", models="`small`, `large`")
    assert await chat.preferences.model("42") is None


async def test_a_model_no_longer_listed_falls_back_to_the_default() -> None:
    chat = Chat()
    await chat.preferences.set_model("42", "retired")
    await chat.send("hello")
    assert chat.model.requests[0].model == "small"


async def test_usage_shows_today_this_month_the_cost_and_the_budget() -> None:
    chat = Chat(budget=1000)
    await chat.send("hello")
    await chat.send("/model large")
    await chat.send("hello again")
    answer = await chat.send("/usage")
    # 120 tokens at small's prices (100 x 1 + 20 x 2 = 140 micro-dollars) and at large's (1,400).
    assert "Today (2026-05-01): 240 tokens: 200 input (0 cached), 40 output; $0.0015" in answer
    assert "This month (2026-05): 240 tokens" in answer
    assert "760 of 1,000 tokens left; it renews at midnight (UTC), in 12 h 0 min." in answer
    assert "All users" not in answer


async def test_the_owner_also_sees_every_users_total() -> None:
    chat = Chat(owner=1)
    await chat.send("hello", user_id=1)
    await chat.send("hello", user_id=2)
    answer = await chat.send("/usage", user_id=1)
    assert texts.USAGE_NO_BUDGET in answer
    assert "All users this month: 240 tokens, $0.0003\n• 1: 120 tokens, $0.0001\n• 2: 120 tokens, $0.0001" in answer


async def test_an_exhausted_budget_gets_one_short_message_and_no_model_call_until_midnight() -> None:
    chat = Chat(budget=200)
    assert await chat.send("one") == "answer 1"
    assert await chat.send("two") == "answer 2"  # 120 tokens before it: under the budget
    refusal = await chat.send("three")
    assert refusal == texts.BUDGET_EXHAUSTED.format(budget="200", zone="UTC", wait="12 h 0 min")
    assert len(chat.model.requests) == 2
    assert chat.channel.replies[-1].kind == "notice"
    assert chat.metrics.turns[-1] == {"steps": 0, "ok": True}  # a budget stop is no turn error
    chat.clock.now = datetime(2026, 5, 2, 0, 0, tzinfo=UTC)
    assert await chat.send("four") == "answer 3"


async def test_each_turn_logs_and_reports_its_tokens_and_cost() -> None:
    chat = Chat()
    with capture_logs() as logs:
        await chat.send("hello")
    [finished] = [entry for entry in logs if entry["event"] == "turn_finished"]
    assert finished["model"] == "small"
    assert (finished["input_tokens"], finished["output_tokens"], finished["cost_usd"]) == (100, 20, 0.00014)
    assert chat.metrics.usages == [
        {
            "input_tokens": 100,
            "output_tokens": 20,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": 0.00014,
            "model": "small",
            "conversation_id": "42",
        }
    ]
