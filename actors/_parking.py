"""Messages a conversation keeps, in order, while its store fails, and the timer that retries them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from actors.protocol import ConversationMessage
from ops.backoff import Backoff
from stores import ConflictError, StoreError

__all__ = ["Parking", "RetryParked"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryParked:
    """A conversation actor's own reminder, through its mailbox, to try its parked messages again."""


class Parking:
    """The messages a conversation could not handle because its store failed, oldest first.

    While any is parked, later messages are parked behind it, so the conversation's order holds.
    Their updates stay pending in the ingress log (nothing marks them done), so a restart replays
    them too. `schedule` arms one timer at a time, after `backoff`'s delay for the attempt, that calls
    `wake` (which tells the actor `RetryParked`); `drain` then handles them. At most `capacity`
    messages are parked; `park` refuses more.
    """

    __slots__ = ("_backoff", "_capacity", "_timer", "_wake", "attempt", "messages", "told")

    def __init__(self, backoff: Backoff, capacity: int, wake: Callable[[], None]) -> None:
        self._backoff = backoff
        self._capacity = capacity
        self._wake = wake
        self._timer: asyncio.TimerHandle | None = None
        # A list, not a deque: an empty deque is 760 bytes, and every conversation actor has one of these.
        self.messages: list[ConversationMessage] = []
        self.attempt = 0
        self.told = False
        """The user was told of this episode's store fault (once per episode)."""

    def __bool__(self) -> bool:
        return bool(self.messages)

    def park(self, message: ConversationMessage) -> bool:
        """Keep `message` behind those already parked; False if there is no room."""
        if len(self.messages) >= self._capacity:
            return False
        self.messages.append(message)
        return True

    def schedule(self) -> float:
        """Arm the retry timer (unless it is armed); returns its delay in seconds."""
        if self._timer is not None:
            return max(0.0, self._timer.when() - asyncio.get_running_loop().time())
        self.attempt += 1
        delay = self._backoff.delay(self.attempt)
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        return delay

    def _fire(self) -> None:
        self._timer = None
        self._wake()

    async def drain(
        self,
        handle: Callable[[ConversationMessage], Awaitable[object]],
        skip: Callable[[ConversationMessage, Exception], Awaitable[None]],
    ) -> bool:
        """`handle` the parked messages in order. On a StoreError the rest stay parked and the timer is
        armed again: False. A message that fails otherwise is given to `skip` (as a poison message)
        and the next goes on. True once none is left: the next fault is a new episode."""
        while self.messages:
            message = self.messages[0]
            try:
                await handle(message)
            except ConflictError:
                raise  # another writer: the actor's crash and restart reload the history
            except StoreError as exc:
                delay = self.schedule()
                log.warning("conversation_store_still_unavailable", retry_in_s=round(delay, 3), error=repr(exc))
                return False
            except Exception as exc:
                log.error("parked_message_failed", update_id=message.update_id, error=repr(exc))
                await skip(message, exc)
            self.messages.pop(0)
        self.attempt = 0
        self.told = False
        return True

    def cancel(self) -> None:
        """Disarm the timer (the actor is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
