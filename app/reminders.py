"""The reminders feature, wired: its tools (for every turn) and the scheduler that fires them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.conversation import ConversationActor
    from actors.registry import ConversationRegistry
    from actors.scheduler import ReminderScheduler
    from actors.supervisor import Child, Supervisor
    from ops.backoff import Backoff
    from stores import ReminderStore
    from tools.builtin_reminders import ReminderTools

__all__ = ["reminder_tools", "start_scheduler"]


def reminder_tools(store: ReminderStore, scheduler: Callable[[], ReminderScheduler | None]) -> ReminderTools:
    """`create_reminder`, `list_reminders` and `cancel_reminder` on `store`. They wake the scheduler
    that `scheduler()` returns when they are called (it starts after the actors that use them)."""
    from tools.builtin_reminders import ReminderTools

    def wake(due: datetime) -> None:
        running = scheduler()
        if running is not None:
            running.wake(due)

    return ReminderTools(store, on_change=wake)


def start_scheduler(
    root: Supervisor, registry: ConversationRegistry[ConversationActor], store: ReminderStore, backoff: Backoff
) -> tuple[ReminderScheduler, Child]:
    """The scheduler, started as a permanent child of `root`, telling firings to `registry`'s actors."""
    from actors.protocol import ReminderDue
    from actors.scheduler import ReminderScheduler
    from ops.clock import SystemClock

    def tell(conversation_id: str, message: ReminderDue) -> asyncio.Future[object]:
        return registry.actor_for(conversation_id).ask_future(message)

    scheduler = ReminderScheduler(store, tell, clock=SystemClock(), backoff=backoff)
    child = root.start_child("reminder-scheduler", scheduler.run, restart="permanent", stop=scheduler.stop)
    return scheduler, child
