"""What the model costs each user: every call's tokens added to the user's day, and the daily budget.

`UsageMeter.record(user_id, usage, model)` (or `record_soon`, which leaves the write running) is the
one way a model call is accounted: it prices the call (conf `usage.prices`) and adds it to the user's
counter of today, where "today" is the date in the user's time zone (their `/timezone`, else the
`timezone` setting). `UsageMeter.for_user(...)` wraps the chat model for work done for one user (a
turn, a summary, a reminder that runs): before each call it checks the user's budget and raises
`BudgetExhausted` instead of calling, so a turn's tool loop stops at the budget too; after each call
it records the usage. The write runs while the turn answers: the next budget check and `/usage` wait
for it, and `UsageMeter.aclose` waits for all.

    model = meter.for_user(shared_model, user_id=7, model_name="gpt-4o")
    reply = await model.complete(request)     # BudgetExhausted once today's tokens reach the budget
    model.usage, model.cost_micros            # what this work cost so far
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from conf.usage import UsageSettings
from llm import ChatModel, LLMError, ModelReply, ModelRequest
from llm import Usage as CallUsage
from llm.pricing import cost_micros
from stores import PreferenceStore, StoreError, UsageStore
from stores import Usage as UsageTotal
from stores._time import Clock, utc_now

__all__ = ["NO_USER", "BudgetExhausted", "MeteredModel", "UsageMeter", "UsageReport", "UsageTotal", "usage_fields"]

log = structlog.get_logger(__name__)

NO_USER = 0
"""The user id work is accounted to when no Telegram user is known (the console)."""


class BudgetExhausted(LLMError):
    """The user's tokens today reached `DAILY_TOKEN_BUDGET`: no model call for them until `renews_at`.

    An LLMError, so code that handles model failures in general stops cleanly on it too.
    """

    def __init__(self, *, used: int, budget: int, renews_at: datetime) -> None:
        super().__init__(f"daily token budget of {budget} used up ({used} tokens); renews at {renews_at.isoformat()}")
        self.used = used
        self.budget = budget
        self.renews_at = renews_at
        """The next midnight in the user's zone (an aware datetime in that zone)."""


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What `/usage` shows: the user's day and month (in their zone), the budget, and for the
    bot's owner every user's month."""

    day: str
    today: UsageTotal
    month: str
    this_month: UsageTotal
    budget: int
    """Tokens per day; 0 is unlimited."""
    renews_at: datetime
    everyone: dict[int, UsageTotal] | None = None

    @property
    def remaining(self) -> int:
        """Tokens left today (0 once the budget is reached; meaningless when the budget is 0)."""
        return max(0, self.budget - self.today.tokens)


class UsageMeter:
    """Accounts model calls per user and day, and enforces the daily budget (see the module docstring).

    A store failure while recording or checking is logged and does not stop the work: the call was
    made (or may be made), and the user is better served by an answer than by a lost count.
    """

    def __init__(
        self,
        usage: UsageStore,
        preferences: PreferenceStore,
        settings: UsageSettings,
        *,
        default_zone: str = "UTC",
        owner: int | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._usage = usage
        self._preferences = preferences
        self._settings = settings
        self._default_zone = _zone_or_none(default_zone) or ZoneInfo("UTC")
        self._owner = owner
        self._clock = clock
        self._writing: dict[int, set[asyncio.Task[None]]] = {}
        """Each user's usage writes still running (`record_soon`): a budget check or report waits for them."""

    def now(self) -> datetime:
        """The meter's clock: now, as an aware datetime."""
        return self._clock()

    @property
    def budget(self) -> int:
        """`DAILY_TOKEN_BUDGET`: tokens per user and day; 0 is unlimited."""
        return self._settings.daily_token_budget

    async def zone(self, user_id: int | None) -> ZoneInfo:
        """The user's time zone: their `/timezone`, else the configured default."""
        if user_id is None:
            return self._default_zone
        name = await self._preferences.timezone(user_id)
        return (_zone_or_none(name) if name else None) or self._default_zone

    async def record(
        self, user_id: int | None, usage: CallUsage, model: str, *, zone: ZoneInfo | None = None
    ) -> UsageTotal:
        """Add one model call's `usage` to the user's counter of today; returns it priced by `model`.

        `zone` saves the look-up when the caller has the user's zone already. Never raises StoreError.
        """
        priced = self.record_soon(user_id, usage, model, zone=zone or await self.zone(user_id))
        await self.settled(user_id)
        return priced

    def record_soon(self, user_id: int | None, usage: CallUsage, model: str, *, zone: ZoneInfo) -> UsageTotal:
        """`record`, returning at once: the write goes on while the caller answers the user (it is
        not on the way to the reply). `settled`, every budget check and every report wait for it."""
        priced = _priced(usage, cost_micros(usage, self._settings.price(model)))
        day = self._clock().astimezone(zone).date().isoformat()
        user = _user(user_id)
        task = asyncio.get_running_loop().create_task(self._add(user, day, priced, model))
        self._writing.setdefault(user, set()).add(task)
        task.add_done_callback(functools.partial(self._written, user))
        return priced

    async def _add(self, user: int, day: str, priced: UsageTotal, model: str) -> None:
        try:
            await self._usage.add(user, day, priced)
        except StoreError as exc:
            log.error("usage_not_recorded", user_id=user, model=model, tokens=priced.tokens, error=str(exc))

    def _written(self, user: int, task: asyncio.Task[None]) -> None:
        writes = self._writing.get(user)
        if writes is not None:
            writes.discard(task)
            if not writes:
                del self._writing[user]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("usage_not_recorded", user_id=user, error=repr(error))  # a fault besides the store's

    async def settled(self, user_id: int | None = None, *, everyone: bool = False) -> None:
        """Return once the usage writes started for `user_id` (for every user, with `everyone`) are done."""
        while writes := self._pending(user_id, everyone):
            await asyncio.wait(writes)

    def _pending(self, user_id: int | None, everyone: bool) -> list[asyncio.Task[None]]:
        if everyone:
            return [task for tasks in self._writing.values() for task in tasks]
        return list(self._writing.get(_user(user_id), ()))

    async def aclose(self) -> None:
        """Wait for every usage write still running (before the stores close)."""
        await self.settled(everyone=True)

    async def check_budget(self, user_id: int | None, *, zone: ZoneInfo | None = None) -> None:
        """Raise BudgetExhausted if the user's tokens today reached the budget (never with budget 0)."""
        if not self.budget:
            return
        zone = zone or await self.zone(user_id)
        local = self._clock().astimezone(zone)
        await self.settled(user_id)  # the user's last call counts
        try:
            used = (await self._usage.day(_user(user_id), local.date().isoformat())).tokens
        except StoreError as exc:
            log.warning("usage_budget_unchecked", user_id=user_id, error=str(exc))
            return
        if used >= self.budget:
            raise BudgetExhausted(used=used, budget=self.budget, renews_at=_next_midnight(local))

    async def report(self, user_id: int | None) -> UsageReport:
        """The user's usage today and this month (in their zone); every user's month for the owner."""
        local = self._clock().astimezone(await self.zone(user_id))
        day, month = local.date().isoformat(), local.strftime("%Y-%m")
        user = _user(user_id)
        owner = user_id is not None and user_id == self._owner
        await self.settled(user_id, everyone=owner)
        everyone = await self._usage.all_users_month(month) if owner else None
        return UsageReport(
            day,
            await self._usage.day(user, day),
            month,
            await self._usage.month(user, month),
            self.budget,
            _next_midnight(local),
            everyone,
        )

    def for_user(self, model: ChatModel, *, user_id: int | None, model_name: str = "") -> MeteredModel:
        """`model` as work for `user_id` uses it: budget-checked, accounted, asking `model_name`."""
        return MeteredModel(model, self, user_id, model_name)


class MeteredModel:
    """A ChatModel for one user's work (see `UsageMeter.for_user`); `usage` and `cost_micros` sum
    its calls. Closing it does nothing: the wrapped model belongs to the system."""

    def __init__(self, model: ChatModel, meter: UsageMeter, user_id: int | None, model_name: str) -> None:
        self._model = model
        self._meter = meter
        self._user_id = user_id
        self.model_name = model_name
        self.usage = CallUsage()
        self.cost_micros = 0
        self._zone: ZoneInfo | None = None

    def know_zone(self, zone: ZoneInfo) -> None:
        """The user's time zone, when the caller has read it already (the turn's set-up has): the
        first call then saves the look-up."""
        if self._zone is None:
            self._zone = zone

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Check the budget (BudgetExhausted: no call), ask the model, record what the call cost."""
        if self._zone is None:
            self._zone = await self._meter.zone(self._user_id)
        await self._meter.check_budget(self._user_id, zone=self._zone)
        if self.model_name:
            request = dataclasses.replace(request, model=self.model_name)
        reply = await self._model.complete(request)
        priced = self._meter.record_soon(self._user_id, reply.usage, reply.model or self.model_name, zone=self._zone)
        self.usage += reply.usage
        self.cost_micros += priced.cost_micros
        return reply

    async def aclose(self) -> None:
        """Nothing to close (see the class docstring)."""


def usage_fields(usage: CallUsage, cost: int | None) -> dict[str, int | float]:
    """A turn's tokens (and cost in dollars, where known) as log fields."""
    fields: dict[str, int | float] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    if cost is not None:
        fields["cost_usd"] = cost / 1_000_000
    return fields


def _priced(usage: CallUsage, cost: int) -> UsageTotal:
    return UsageTotal(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens, cost)


def _user(user_id: int | None) -> int:
    return NO_USER if user_id is None else user_id


def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("time_zone_unknown", zone=name)
        return None


def _next_midnight(local: datetime) -> datetime:
    """The start of the next day in `local`'s zone (wall-clock midnight, whatever DST does)."""
    zone = local.tzinfo
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
