"""Usage and model choice as a conversation sees them: the chat's model, the model a turn uses, and
the answers to `/usage` and `/model`.

The conversation actor holds one `Accounting` (shared by every conversation), or None (the model as
given, nothing counted): the functions below take either. It asks for the model of each turn
(`turn_model`: the chat's choice, budget-checked and accounted for the user who spoke), the text of
`/usage` and `/model`, the message when the budget is used up, and the turn's log fields and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import structlog

from actors import texts
from actors.protocol import Command
from actors.usage import BudgetExhausted, MeteredModel, UsageMeter, UsageReport, UsageTotal, usage_fields
from llm import ChatModel, Usage
from stores import PreferenceStore

__all__ = [
    "ACCOUNTING_COMMANDS",
    "Accounting",
    "ModelChoice",
    "UsageMetrics",
    "budget_notice",
    "turn_done",
    "turn_fields",
    "turn_model",
]

log = structlog.get_logger(__name__)

ACCOUNTING_COMMANDS = frozenset({"model", "usage"})
"""The commands `Accounting.answer` answers."""

_MAX_USERS_LISTED = 20


class UsageMetrics(Protocol):
    """Where a turn's tokens and cost are reported (ops.metrics.Metrics implements it)."""

    def turn_usage(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        cost_usd: float,
        model: str,
        conversation_id: str,
    ) -> None: ...


class ModelChoice:
    """The models users may pick (`LLM_MODELS`) and each chat's pick, kept in the preference store.

    A chat that picked nothing, or a model no longer listed, uses `default` (`LLM_MODEL`).
    """

    def __init__(self, preferences: PreferenceStore, models: Sequence[str], default: str) -> None:
        self._preferences = preferences
        self.models = tuple(models) if default in models else (default, *models)
        self.default = default

    async def current(self, conversation_id: str) -> str:
        """The chat's model."""
        chosen = await self._preferences.model(conversation_id)
        return chosen if chosen in self.models else self.default

    def named(self, name: str) -> str | None:
        """The listed model `name` means (exactly, else ignoring case), or None."""
        if name in self.models:
            return name
        return next((model for model in self.models if model.lower() == name.lower()), None)

    async def choose(self, conversation_id: str, name: str) -> str | None:
        """Switch the chat to `name`, durably; returns the model, or None (nothing changed) if not listed."""
        model = self.named(name)
        if model is not None:
            await self._preferences.set_model(conversation_id, model)
        return model


class Accounting:
    """The meter, the model choice and the metrics, as the conversation actor uses them."""

    def __init__(
        self, meter: UsageMeter, models: ModelChoice, *, priced: bool, metrics: UsageMetrics | None = None
    ) -> None:
        self.meter = meter
        self.models = models
        self._priced = priced
        self._metrics = metrics

    async def turn_model(self, model: ChatModel, conversation_id: str, user_id: int | None) -> MeteredModel:
        """`model` as this turn uses it: the chat's model, checked against and counted for `user_id`."""
        return self.meter.for_user(model, user_id=user_id, model_name=await self.models.current(conversation_id))

    def turn_done(self, model: MeteredModel, conversation_id: str) -> None:
        """Report what a turn's model calls cost (as EMF metrics), whether it succeeded or not."""
        if self._metrics is None or model.usage.input_tokens + model.usage.output_tokens == 0:
            return
        usage = model.usage
        self._metrics.turn_usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_usd=model.cost_micros / 1_000_000,
            model=model.model_name,
            conversation_id=conversation_id,
        )

    def cost(self, model: MeteredModel) -> int | None:
        """What the turn cost in micro-dollars, or None where no prices are configured."""
        return model.cost_micros if self._priced else None

    async def answer(self, command: Command) -> str:
        """The answer to `/usage` or `/model [NAME]`."""
        if command.name == "model":
            return await self._model_command(command)
        return self._usage_text(await self.meter.report(command.user_id))

    def budget_text(self, exhausted: BudgetExhausted) -> str:
        """The one short message a user gets instead of an answer once their budget is used up."""
        return texts.BUDGET_EXHAUSTED.format(
            budget=f"{exhausted.budget:,}",
            zone=exhausted.renews_at.tzinfo,
            wait=_duration(exhausted.renews_at - self.meter.now()),
        )

    async def _model_command(self, command: Command) -> str:
        listed = ", ".join(f"`{model}`" for model in self.models.models)
        if not command.args:
            current = await self.models.current(command.conversation_id)
            return texts.MODEL_CURRENT.format(current=current, models=listed)
        model = await self.models.choose(command.conversation_id, command.args)
        if model is None:
            return texts.MODEL_UNKNOWN.format(name=command.args.replace("`", "'"), models=listed)
        return texts.MODEL_SWITCHED.format(model=model)

    def _usage_text(self, report: UsageReport) -> str:
        if report.budget:
            wait = _duration(report.renews_at - self.meter.now())
            budget = texts.USAGE_BUDGET.format(
                remaining=f"{report.remaining:,}", budget=f"{report.budget:,}", zone=report.renews_at.tzinfo, wait=wait
            )
        else:
            budget = texts.USAGE_NO_BUDGET
        text = texts.USAGE.format(
            day=report.day,
            today=self._line(report.today),
            month=report.month,
            this_month=self._line(report.this_month),
            budget=budget,
        )
        if report.everyone is not None:
            text += "\n\n" + self._everyone(report.everyone)
        return text

    def _line(self, usage: UsageTotal) -> str:
        line = (
            f"{usage.tokens:,} tokens: {usage.input_tokens:,} input "
            f"({usage.cache_read_tokens:,} cached), {usage.output_tokens:,} output"
        )
        return f"{line}; {_dollars(usage.cost_micros)}" if self._priced else line

    def _everyone(self, users: dict[int, UsageTotal]) -> str:
        total = UsageTotal()
        for usage in users.values():
            total += usage
        lines = [texts.USAGE_ALL_USERS.format(total=self._short(total))]
        ranked = sorted(users.items(), key=lambda item: (-item[1].tokens, item[0]))
        lines += [f"• {user_id}: {self._short(usage)}" for user_id, usage in ranked[:_MAX_USERS_LISTED]]
        if len(ranked) > _MAX_USERS_LISTED:
            lines.append(f"• and {len(ranked) - _MAX_USERS_LISTED} more")
        return "\n".join(lines)

    def _short(self, usage: UsageTotal) -> str:
        line = f"{usage.tokens:,} tokens"
        return f"{line}, {_dollars(usage.cost_micros)}" if self._priced else line


def _dollars(micros: int) -> str:
    """`$0.0123` below a dollar (cents would round a day's use to nothing), `$12.34` above."""
    dollars = micros / 1_000_000
    return f"${dollars:.4f}" if dollars < 1 else f"${dollars:,.2f}"


def _duration(delta: timedelta) -> str:
    """`5 h 12 min` (or `12 min`; at least 1 min)."""
    minutes = max(1, round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


async def turn_model(
    accounting: Accounting | None, model: ChatModel, conversation_id: str, user_id: int | None
) -> ChatModel:
    """The model a turn of `conversation_id` for `user_id` calls (and its summary): with accounting, the
    chat's model, budget-checked (BudgetExhausted) and counted for the user; else `model` itself."""
    if accounting is None:
        return model
    return await accounting.turn_model(model, conversation_id, user_id)


def know_zone(model: ChatModel, zone: ZoneInfo) -> None:
    """Tell a turn's metered model the user's zone, which the turn's set-up has read already."""
    if isinstance(model, MeteredModel):
        model.know_zone(zone)


def turn_fields(accounting: Accounting | None, model: ChatModel, usage: Usage) -> dict[str, int | float | str]:
    """The tokens of a turn (its model and cost too, with accounting) for its `turn_finished` log line."""
    if accounting is None or not isinstance(model, MeteredModel):
        return dict(usage_fields(usage, None))
    return {"model": model.model_name, **usage_fields(usage, accounting.cost(model))}


def turn_done(accounting: Accounting | None, model: ChatModel, conversation_id: str) -> None:
    """Report a turn's tokens and cost as metrics, however it ended (nothing without accounting)."""
    if accounting is not None and isinstance(model, MeteredModel):
        accounting.turn_done(model, conversation_id)


def budget_notice(accounting: Accounting | None, exhausted: BudgetExhausted) -> str:
    """The notice a turn stopped by the budget answers with (logged)."""
    log.info("turn_stopped_budget_exhausted", used=exhausted.used, budget=exhausted.budget)
    assert accounting is not None  # only an accounted model raises it
    return accounting.budget_text(exhausted)
