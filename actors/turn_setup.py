"""What a turn needs beyond its history: the instructions for this user and moment, and its tools.

One `TurnSetup` serves every conversation. For each turn it reads the speaking user's time zone
(their `/timezone`, else the `TIMEZONE` setting) and saved facts, builds the instructions (the
system prompt, the facts, the date and time: `llm.instructions`), and binds the built-in tools to
a `ToolContext` of that user, chat and moment. A store that cannot be reached costs the turn its
facts or the user's zone (logged), never the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from actors._conversation_parts import TurnSettings
from actors.accounting import know_zone
from actors.protocol import ReminderDue, UserMessage
from conf.zones import find_zone
from llm import ChatModel, Toolbox, TurnContext
from llm.instructions import FactLine, build_instructions, fit_facts, split_instructions
from stores import Fact, FactRanker, FactStore, PreferenceStore, StoreError
from stores._time import utc_now
from tools.builtin import ToolContext, Toolkit

__all__ = ["PreparedTurn", "TurnSetup", "turn_context"]

log = structlog.get_logger(__name__)

FACTS_SHARE = 8
"""The user's facts may take up to 1/FACTS_SHARE of the context budget in the instructions."""


@dataclass(frozen=True, slots=True)
class PreparedTurn:
    """One turn's instructions, the toolbox it calls, and the context that toolbox is bound to."""

    instructions: str
    toolbox: Toolbox
    context: ToolContext


class TurnSetup:
    """Builds each turn's instructions and toolbox (see the module docstring). Shared by all actors.

    `facts`, `ranker` and `preferences` are optional: without them a turn has no facts, or every user
    has the default zone. `clock` gives the current time as an aware datetime.
    """

    def __init__(
        self,
        system_prompt: str,
        toolkit: Toolkit,
        *,
        default_zone: ZoneInfo,
        context_tokens: int,
        facts: FactStore | None = None,
        ranker: FactRanker | None = None,
        preferences: PreferenceStore | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.system_prompt = system_prompt
        self.toolkit = toolkit
        self.default_zone = default_zone
        self.facts = facts
        self.ranker = ranker
        self.preferences = preferences
        self.clock = clock
        self.facts_budget_tokens = context_tokens // FACTS_SHARE

    async def prepare(
        self, conversation_id: str, message: UserMessage | ReminderDue, model: ChatModel | None = None
    ) -> PreparedTurn:
        """The instructions and toolbox of the turn that answers `message` (or carries out a reminder's
        task, for the user who made it). The turn's `model`, when metered, is told the user's zone
        read here, which saves its own look-up."""
        now = self.clock()
        # Two independent reads: together, a turn waits for the slower one only (one of them in a
        # task of its own, the other in this one: a task per read would cost a third more).
        async with asyncio.TaskGroup() as group:
            facts_read = group.create_task(self._facts_for(message.user_id, message.text), name="turn-setup-facts")
            zone = await self.zone_for(message.user_id)
        facts, left_out = facts_read.result()
        if model is not None:
            know_zone(model, zone)
        instructions = build_instructions(self.system_prompt, now=now, zone=zone, facts=facts, facts_left_out=left_out)
        context = ToolContext(message.user_id, conversation_id, message.target, zone, now, message.update_id)
        return PreparedTurn(instructions, self.toolkit.for_turn(context), context)

    async def zone_for(self, user_id: int | None) -> ZoneInfo:
        """The user's time zone: their own if they set one, else the default."""
        if user_id is None or self.preferences is None:
            return self.default_zone
        try:
            name = await self.preferences.timezone(user_id)
        except StoreError as exc:
            log.warning("user_zone_unavailable", user_id=user_id, error=str(exc))
            return self.default_zone
        zone = find_zone(name) if name else None
        return zone or self.default_zone

    async def _facts_for(self, user_id: int | None, text: str) -> tuple[list[FactLine], int]:
        """The user's facts that fit the budget, and how many did not.

        When all fit they are shown oldest first, so the instructions change only when the facts do
        (prompt caching). When not, those most relevant to the message come first (BM25 over its
        words), then the most recently used or saved.
        """
        if user_id is None or self.facts is None:
            return [], 0
        try:
            facts = await self.facts.list_for_user(user_id)
        except StoreError as exc:
            log.warning("user_facts_unavailable", user_id=user_id, error=str(exc))
            return [], 0
        fitted, left_out = fit_facts(_lines(facts), self.facts_budget_tokens)
        if not left_out:
            return fitted, 0
        relevant: list[Fact] = []
        if self.ranker is not None:
            try:
                relevant = await self.ranker.rank(text, facts)
            except StoreError as exc:
                log.warning("user_facts_unranked", user_id=user_id, error=str(exc))
        chosen = {fact.id for fact in relevant}
        rest = sorted(
            (fact for fact in facts if fact.id not in chosen),
            key=lambda fact: (fact.last_used_at or fact.created_at, fact.created_at),
            reverse=True,
        )
        return fit_facts(_lines([*relevant, *rest]), self.facts_budget_tokens)


def turn_context(settings: TurnSettings, message: UserMessage | ReminderDue, instructions: str) -> TurnContext:
    """What the turn that answers `message` asks of the model, with the instructions built for it
    (`TurnSetup`): what stays the same from turn to turn first, for prompt caching, and what changes
    (the date and time) after the history (`llm.instructions.split_instructions`)."""
    stable, volatile = split_instructions(instructions)
    deadline = _deadline(settings, message)
    return TurnContext(
        stable, settings.max_steps, settings.context_tokens, deadline=deadline, volatile_instructions=volatile
    )


def _deadline(settings: TurnSettings, message: UserMessage | ReminderDue) -> float:
    """When the model work of the message's turn must end (the loop's clock): one deadline per
    message, counted from its arrival, so a message queued behind a slow turn hears in time too."""
    now = asyncio.get_running_loop().time()
    arrived = message.received_at if message.received_at is not None else now
    return min(now, arrived) + settings.reply_within_seconds


def _lines(facts: Sequence[Fact]) -> list[FactLine]:
    return [(fact.id, fact.text) for fact in facts]
