"""Facts a user asked the assistant to keep: the interface, its rules, and the in-memory backend.

Every method takes the Telegram user id, and no method reads across users: isolation holds by
construction. A user's memory is bounded (`FactLimits`); adding past the bound drops the facts
that went longest without being used (a fact never used counts from when it was saved; fewer uses
first on a tie) and reports them, so that the model can tell the user.
"""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from stores._time import Clock, from_micros, to_micros, utc_now
from stores.base import StoreError, _Resource

__all__ = [
    "AddedFact",
    "Fact",
    "FactLimits",
    "FactRejected",
    "FactSource",
    "FactStore",
    "InMemoryFactStore",
    "fact_from_json",
    "fact_to_json",
    "plan_add",
]

FactRejection = Literal["empty", "too_long", "not_text"]


@dataclass(frozen=True, slots=True)
class FactLimits:
    """The bound of one user's memory."""

    max_facts: int = 200
    max_total_chars: int = 20_000
    max_fact_chars: int = 500


@dataclass(frozen=True, slots=True)
class FactSource:
    """Where a fact was said."""

    conversation_id: str
    message_id: int | None = None
    """The Telegram message id (or update id) of the message that asked for it, where known."""


@dataclass(frozen=True, slots=True)
class Fact:
    """One saved fact of one user."""

    user_id: int
    id: str
    """Eight hex characters, unique among the user's facts; what `/forget ID` takes."""
    text: str
    created_at: datetime
    source: FactSource
    last_used_at: datetime | None = None
    use_count: int = 0


@dataclass(frozen=True, slots=True)
class AddedFact:
    """What `FactStore.add` did: the saved fact and the facts dropped to stay within the bound."""

    fact: Fact
    dropped: tuple[Fact, ...] = ()


class FactRejected(StoreError):
    """A fact that cannot be saved: `reason` is `empty`, `too_long` (over `limit` characters) or
    `not_text` (not valid Unicode). Nothing was stored; the caller tells the model why."""

    def __init__(self, reason: FactRejection, *, limit: int | None = None) -> None:
        super().__init__(f"fact rejected: {reason}" + (f" (limit {limit} characters)" if limit is not None else ""))
        self.reason: FactRejection = reason
        self.limit = limit


class FactStore(_Resource):
    """Per-user facts. Every write is durable before it returns (except `touch`, see there)."""

    def __init__(self, *, clock: Clock = utc_now, limits: FactLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits or FactLimits()

    async def add(self, user_id: int, text: str, source: FactSource) -> AddedFact:
        """Save `text` (surrounding white space removed) as a new fact of the user.

        Raises FactRejected for empty, over-long or invalid text. Facts dropped to stay within the
        bound are gone when this returns, and listed in the result.
        """
        return await self._add(user_id, check_fact_text(text, self.limits), source)

    async def list_for_user(self, user_id: int) -> list[Fact]:
        """The user's facts, oldest first; `[]` for a user with none."""
        facts = await self._load(user_id)
        return sorted(facts, key=lambda fact: (fact.created_at, fact.id))

    async def delete(self, user_id: int, fact_id: str) -> bool:
        """Delete one of the user's facts. False if the user has no fact with this id."""
        return await self._delete(user_id, fact_id)

    async def delete_all(self, user_id: int) -> int:
        """Delete every fact of the user; the number deleted."""
        return await self._delete_all(user_id)

    async def touch(self, user_id: int, fact_ids: Iterable[str]) -> None:
        """Mark the user's facts as used now (more recent use keeps a fact longer).

        Unknown ids are ignored. A mark lost in a crash only makes a fact look less used.
        """
        ids = frozenset(fact_ids)
        if ids:
            await self._touch(user_id, ids, self.clock())

    # What a backend implements; the public methods above check arguments and call these.

    @abstractmethod
    async def _add(self, user_id: int, text: str, source: FactSource) -> AddedFact:
        """The backend's part of the public method of the same name (arguments already checked)."""

    @abstractmethod
    async def _load(self, user_id: int) -> list[Fact]:
        """The user's facts, in any order (`list_for_user` sorts them)."""

    @abstractmethod
    async def _delete(self, user_id: int, fact_id: str) -> bool:
        """The backend's part of the public method of the same name (arguments already checked)."""

    @abstractmethod
    async def _delete_all(self, user_id: int) -> int:
        """The backend's part of the public method of the same name (arguments already checked)."""

    @abstractmethod
    async def _touch(self, user_id: int, fact_ids: frozenset[str], now: datetime) -> None:
        """The backend's part of the public method of the same name (arguments already checked)."""


def check_fact_text(text: str, limits: FactLimits) -> str:
    """The text to store, or FactRejected."""
    text = text.strip()
    if not text:
        raise FactRejected("empty")
    if len(text) > limits.max_fact_chars:
        raise FactRejected("too_long", limit=limits.max_fact_chars)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FactRejected("not_text") from None
    return text


def plan_add(
    existing: Collection[Fact], user_id: int, text: str, source: FactSource, now: datetime, limits: FactLimits
) -> AddedFact:
    """The new fact (with an id none of `existing` has) and which of `existing` to drop for it."""
    taken = {fact.id for fact in existing}
    fact_id = secrets.token_hex(4)
    while fact_id in taken:
        fact_id = secrets.token_hex(4)
    fact = Fact(user_id=user_id, id=fact_id, text=text, created_at=now, source=source)
    count = len(existing) + 1
    chars = sum(len(item.text) for item in existing) + len(text)
    dropped: list[Fact] = []
    for victim in sorted(existing, key=_eviction_order):
        if count <= limits.max_facts and chars <= limits.max_total_chars:
            break
        dropped.append(victim)
        count -= 1
        chars -= len(victim.text)
    return AddedFact(fact, tuple(dropped))


def _eviction_order(fact: Fact) -> tuple[datetime, int, datetime, str]:
    return (fact.last_used_at or fact.created_at, fact.use_count, fact.created_at, fact.id)


def mark_used(fact: Fact, now: datetime) -> Fact:
    """The fact after one more use at `now`."""
    return replace(fact, last_used_at=now, use_count=fact.use_count + 1)


def fact_to_json(fact: Fact) -> dict[str, Any]:
    """The fact as JSON-ready data (instants as epoch microseconds)."""
    return {
        "user_id": fact.user_id,
        "id": fact.id,
        "text": fact.text,
        "created": to_micros(fact.created_at),
        "conversation_id": fact.source.conversation_id,
        "message_id": fact.source.message_id,
        "last_used": to_micros(fact.last_used_at) if fact.last_used_at is not None else None,
        "uses": fact.use_count,
    }


def fact_from_json(data: Mapping[str, Any]) -> Fact:
    """The fact of `fact_to_json`'s data; KeyError, TypeError or ValueError if it is not one."""
    last_used = data["last_used"]
    message_id = data["message_id"]
    return Fact(
        user_id=_int(data["user_id"]),
        id=str(data["id"]),
        text=str(data["text"]),
        created_at=from_micros(_int(data["created"])),
        source=FactSource(str(data["conversation_id"]), _int(message_id) if message_id is not None else None),
        last_used_at=from_micros(_int(last_used)) if last_used is not None else None,
        use_count=_int(data["uses"]),
    )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an int: {value!r}")
    return value


class InMemoryFactStore(FactStore):
    """Facts in a dict, lost at exit; the reference the durable backends are tested against."""

    def __init__(self, *, clock: Clock = utc_now, limits: FactLimits | None = None) -> None:
        super().__init__(clock=clock, limits=limits)
        self._facts: dict[int, dict[str, Fact]] = {}

    async def _add(self, user_id: int, text: str, source: FactSource) -> AddedFact:
        facts = self._facts.setdefault(user_id, {})
        added = plan_add(facts.values(), user_id, text, source, self.clock(), self.limits)
        for victim in added.dropped:
            del facts[victim.id]
        facts[added.fact.id] = added.fact
        return added

    async def _load(self, user_id: int) -> list[Fact]:
        return list(self._facts.get(user_id, {}).values())

    async def _delete(self, user_id: int, fact_id: str) -> bool:
        return self._facts.get(user_id, {}).pop(fact_id, None) is not None

    async def _delete_all(self, user_id: int) -> int:
        return len(self._facts.pop(user_id, {}))

    async def _touch(self, user_id: int, fact_ids: frozenset[str], now: datetime) -> None:
        facts = self._facts.get(user_id, {})
        for fact_id in fact_ids & facts.keys():
            facts[fact_id] = mark_used(facts[fact_id], now)
