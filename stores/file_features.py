"""File backends of the facts, usage and preference stores (see stores/_shared_log.py; reminders
are in stores/file_reminders.py).

Each keeps JSONL change logs in its own directory (the factory puts them under the conversation
store's directory as `_facts/`, `_reminders/`, `_usage/` and `_preferences/`, names no conversation
file can take):

- facts: `u<user id>.jsonl` per user (so a user's facts are never in another user's file);
- reminders: one `reminders.jsonl`; compaction keeps only active reminders;
- usage: `<YYYY-MM>.jsonl` per month, one line per added usage, summed on read;
- preferences: one `preferences.jsonl`.

Every write is `fsync`ed before it returns. Several store objects, in one process or several,
may share a directory: each operation is atomic across all of them (the reminder claim included).
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from stores._group_commit import GroupCommit
from stores._shared_log import Line, SharedLog, make_directory
from stores._time import Clock, from_micros, to_micros, utc_now
from stores.facts import AddedFact, Fact, FactLimits, FactSource, FactStore, fact_from_json, fact_to_json, mark_used
from stores.facts import plan_add as plan_fact
from stores.usage import PreferenceStore, Usage, UsageStore, sum_by_user, sum_days

__all__ = ["FileFactStore", "FilePreferenceStore", "FileUsageStore"]

K = TypeVar("K", bound=Hashable)
L = TypeVar("L", bound=SharedLog[Any])


class _LogCache(Generic[K, L]):
    """The logs of the most recently used keys (users, months): a log holds its file's state in
    memory, so only a bounded number are kept; a dropped one is read again when next needed."""

    def __init__(self, make: Callable[[K], L], size: int) -> None:
        self._make = make
        self._size = size
        self._logs: OrderedDict[K, L] = OrderedDict()

    def get(self, key: K) -> L:
        """The log of `key`."""
        found = self._logs.get(key)
        if found is not None:
            self._logs.move_to_end(key)
            return found
        made = self._logs[key] = self._make(key)
        if len(self._logs) > self._size:
            self._logs.popitem(last=False)
        return made


def _ids(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("ids must be a list of strings")
    return value


class _FactLog(SharedLog[dict[str, Fact]]):
    """One user's facts by id. Lines: `add` (a fact, and ids dropped for it), `delete`, `clear`, `use`."""

    def __init__(self, path: Path, user_id: int) -> None:
        super().__init__(path)
        self.user_id = user_id

    def empty(self) -> dict[str, Fact]:
        return {}

    def fold(self, state: dict[str, Fact], line: Line) -> None:
        op = line["op"]
        if op == "add":
            fact, dropped = fact_from_json(line["fact"]), _ids(line["drop"])
            if fact.user_id != self.user_id:
                raise ValueError(f"a fact of user {fact.user_id} in the file of user {self.user_id}")
            for fact_id in dropped:
                state.pop(fact_id, None)
            state[fact.id] = fact
        elif op == "delete":
            for fact_id in _ids(line["ids"]):
                state.pop(fact_id, None)
        elif op == "clear":
            state.clear()
        elif op == "use":
            at, used = from_micros(int(line["at"])), _ids(line["ids"])
            for fact_id in used:
                if fact_id in state:
                    state[fact_id] = mark_used(state[fact_id], at)
        else:
            raise ValueError(f"unknown change {op!r}")

    def snapshot(self, state: dict[str, Fact]) -> Iterator[Line]:
        return ({"op": "add", "fact": fact_to_json(fact), "drop": []} for fact in state.values())


class FileFactStore(FactStore):
    """Facts in `directory/u<user id>.jsonl`. `cached_users` bounds the users whose facts stay in memory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Clock = utc_now,
        limits: FactLimits | None = None,
        cached_users: int = 32,
    ) -> None:
        super().__init__(clock=clock, limits=limits)
        self.directory = Path(directory)
        self._logs: _LogCache[int, _FactLog] = _LogCache(
            lambda user_id: _FactLog(self.directory / f"u{user_id}.jsonl", user_id), cached_users
        )

    async def open(self) -> None:
        """Create the directory if needed."""
        await make_directory(self.directory)

    async def _add(self, user_id: int, text: str, source: FactSource) -> AddedFact:
        now = self.clock()

        def step(state: dict[str, Fact]) -> tuple[list[Line], AddedFact]:
            added = plan_fact(state.values(), user_id, text, source, now, self.limits)
            line = {"op": "add", "fact": fact_to_json(added.fact), "drop": [fact.id for fact in added.dropped]}
            return [line], added

        return await self._logs.get(user_id).transact(step)

    async def _load(self, user_id: int) -> list[Fact]:
        return await self._logs.get(user_id).read(lambda state: list(state.values()))

    async def _delete(self, user_id: int, fact_id: str) -> bool:
        def step(state: dict[str, Fact]) -> tuple[list[Line], bool]:
            return ([{"op": "delete", "ids": [fact_id]}], True) if fact_id in state else ([], False)

        return await self._logs.get(user_id).transact(step)

    async def _delete_all(self, user_id: int) -> int:
        def step(state: dict[str, Fact]) -> tuple[list[Line], int]:
            return ([{"op": "clear"}] if state else []), len(state)

        return await self._logs.get(user_id).transact(step)

    async def _touch(self, user_id: int, fact_ids: frozenset[str], now: datetime) -> None:
        def step(state: dict[str, Fact]) -> tuple[list[Line], None]:
            known = sorted(fact_ids & state.keys())
            return ([{"op": "use", "ids": known, "at": to_micros(now)}] if known else []), None

        await self._logs.get(user_id).transact(step)


_Days = dict[tuple[int, str], Usage]
"""Usage by (user id, day) within one month."""

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_micros")


class _UsageLog(SharedLog[_Days]):
    """One month's usage. Lines: one added usage each (`user`, `day` and the counters)."""

    def empty(self) -> _Days:
        return {}

    def fold(self, state: _Days, line: Line) -> None:
        key = (int(line["user"]), sys.intern(str(line["day"])))  # one string per day, not per user
        usage = Usage(**{name: line[name] for name in _USAGE_FIELDS})
        state[key] = state.get(key, Usage()) + usage

    def snapshot(self, state: _Days) -> Iterator[Line]:
        return (_usage_line(user_id, day, usage) for (user_id, day), usage in state.items())


def _usage_line(user_id: int, day: str, usage: Usage) -> Line:
    return {"user": user_id, "day": day, **{name: getattr(usage, name) for name in _USAGE_FIELDS}}


class FileUsageStore(UsageStore):
    """Usage in `directory/<YYYY-MM>.jsonl`, one line per `add`, summed on read; the sums of the
    `cached_months` most recent months stay in memory, so a read costs only the new lines. Adds
    that arrive together (every model call adds one) are written together (stores/_group_commit.py)."""

    def __init__(self, directory: str | os.PathLike[str], *, cached_months: int = 3) -> None:
        self.directory = Path(directory)
        self._logs: _LogCache[str, _UsageLog] = _LogCache(
            lambda month: _UsageLog(self.directory / f"{month}.jsonl"), cached_months
        )
        self._adds: GroupCommit[str] = GroupCommit(self._logs.get)

    async def open(self) -> None:
        """Create the directory if needed."""
        await make_directory(self.directory)

    async def close(self) -> None:
        """Wait for the adds under way."""
        await self._adds.flush()

    async def _add(self, user_id: int, day: str, usage: Usage) -> None:
        await self._adds.append(day[:7], _usage_line(user_id, day, usage))

    async def _day(self, user_id: int, day: str) -> Usage:
        return await self._logs.get(day[:7]).read(lambda state: state.get((user_id, day), Usage()))

    async def _month(self, user_id: int, month: str) -> Usage:
        return await self._logs.get(month).read(
            lambda state: sum_days(usage for (user, _), usage in state.items() if user == user_id)
        )

    async def _all_users_month(self, month: str) -> dict[int, Usage]:
        return await self._logs.get(month).read(
            lambda state: sum_by_user((user, usage) for (user, _), usage in state.items())
        )


_Preferences = dict[tuple[str, str | int], str]
"""Values by (kind, key): ("model", conversation id) or ("timezone", user id)."""


class _PreferenceLog(SharedLog[_Preferences]):
    """Preferences. Lines: `kind`, `key` and `value` (null: unset)."""

    def empty(self) -> _Preferences:
        return {}

    def fold(self, state: _Preferences, line: Line) -> None:
        kind, key, value = line["kind"], line["key"], line["value"]
        if kind not in ("model", "timezone") or not isinstance(key, str | int) or not isinstance(value, str | None):
            raise ValueError("not a preference")
        if value is None:
            state.pop((kind, key), None)
        else:
            state[(kind, key)] = value

    def snapshot(self, state: _Preferences) -> Iterator[Line]:
        return ({"kind": kind, "key": key, "value": value} for (kind, key), value in state.items())


class FilePreferenceStore(PreferenceStore):
    """Preferences in `directory/preferences.jsonl`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._log = _PreferenceLog(self.directory / "preferences.jsonl")

    async def open(self) -> None:
        """Create the directory if needed."""
        await make_directory(self.directory)

    async def model(self, conversation_id: str) -> str | None:
        """The model chosen for the conversation, or None."""
        return await self._log.read(lambda state: state.get(("model", conversation_id)))

    async def set_model(self, conversation_id: str, model: str | None) -> None:
        """Choose the conversation's model (None: back to the default)."""
        await self._set("model", conversation_id, model)

    async def timezone(self, user_id: int) -> str | None:
        """The user's IANA time zone, or None."""
        return await self._log.read(lambda state: state.get(("timezone", user_id)))

    async def set_timezone(self, user_id: int, timezone: str | None) -> None:
        """Set the user's time zone (None: back to the default)."""
        await self._set("timezone", user_id, timezone)

    async def _set(self, kind: str, key: str | int, value: str | None) -> None:
        line = {"kind": kind, "key": key, "value": value}
        await self._log.transact(lambda state: ([line] if state.get((kind, key)) != value else [], None))
