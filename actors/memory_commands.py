"""The memory and time zone commands: `/memory`, `/forget ID`, `/forget all`, `/timezone [Area/City]`.

They act on the facts and preferences of the user who sent the command (in any chat), need nothing
of the conversation's history, and answer with a notice (the model is not asked).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from actors import texts
from actors.protocol import Command
from actors.turn_setup import TurnSetup
from conf.zones import find_zone
from stores import StoreError

__all__ = ["MEMORY_COMMANDS", "answer_memory_command"]

log = structlog.get_logger(__name__)

MEMORY_COMMANDS = frozenset({"memory", "forget", "timezone"})
"""The command names this module answers."""


async def answer_memory_command(command: Command, setup: TurnSetup) -> str:
    """The answer to one of MEMORY_COMMANDS, for the user who sent it. A store that cannot be
    reached gets a short message saying so."""
    user_id = command.user_id
    if user_id is None:
        return texts.MEMORY_NO_USER
    try:
        if command.name == "timezone":
            return await _timezone(user_id, command.args, setup)
        if command.name == "forget":
            return await _forget(user_id, command.args, setup)
        return await _memory(user_id, setup)
    except StoreError as exc:
        log.error("memory_command_failed", command=command.name, error=str(exc))
        return texts.MEMORY_UNAVAILABLE


async def _memory(user_id: int, setup: TurnSetup) -> str:
    if setup.facts is None:
        return texts.MEMORY_EMPTY
    facts = await setup.facts.list_for_user(user_id)
    if not facts:
        return texts.MEMORY_EMPTY
    lines = [texts.MEMORY_LIST.format(count=len(facts))]
    lines += [f"`{fact.id}` {fact.text}" for fact in facts]
    return "\n".join(lines)


async def _forget(user_id: int, args: str, setup: TurnSetup) -> str:
    fact_id = args.strip().lower()
    if not fact_id:
        return texts.FORGET_USAGE
    if setup.facts is None:
        return texts.FORGET_UNKNOWN.format(fact_id=fact_id)
    if fact_id == "all":
        count = await setup.facts.delete_all(user_id)
        return texts.FORGET_ALL_DONE.format(count=count)
    fact = next((fact for fact in await setup.facts.list_for_user(user_id) if fact.id == fact_id), None)
    if fact is None or not await setup.facts.delete(user_id, fact_id):
        return texts.FORGET_UNKNOWN.format(fact_id=fact_id)
    return texts.FORGET_DONE.format(text=fact.text)


async def _timezone(user_id: int, args: str, setup: TurnSetup) -> str:
    now = setup.clock()
    if not args.strip():
        zone = await setup.zone_for(user_id)
        return texts.TIMEZONE_CURRENT.format(zone=zone.key, now=_at(now, zone))
    found = find_zone(args)
    if found is None:
        return texts.TIMEZONE_UNKNOWN.format(name=args.strip()[:64])
    if setup.preferences is None:
        return texts.MEMORY_UNAVAILABLE
    await setup.preferences.set_timezone(user_id, found.key)
    return texts.TIMEZONE_SET.format(zone=found.key, now=_at(now, found))


def _at(now: datetime, zone: ZoneInfo) -> str:
    """The local time, as a person says it: `Tuesday, 10 March 2026, 14:05`."""
    local = now.astimezone(zone)
    return f"{local:%A}, {local.day} {local:%B %Y, %H:%M}"
