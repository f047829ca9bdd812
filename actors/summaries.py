"""One conversation's summaries, made in the background after its replies are delivered.

The conversation actor owns a `Summariser`. After a reply is delivered it calls `start_if_needed`:
when what the model would see outgrows the budget (`llm.summary.plan_summary`), the summary call
starts as a task of its own, so it never delays a reply, this one or the next. Before handling its
next message (and when it stops) the actor calls `take`, and appends the summary record it gets:
only the actor's task writes its history, so the record lands in order. A failed call is logged and
tried again at a later turn, no sooner than the backoff policy's delay; meanwhile the model sees the
history trimmed to the budget, as it would without summaries. A summary planned before a reset is
dropped: it tells of what the reset put out of sight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from llm import ChatModel, LLMError, SummaryRecord
from llm.context import estimate_text_tokens, estimate_tokens, summary_message
from llm.history import History
from llm.summary import SummaryPlan, plan_summary, summarise
from ops.backoff import Backoff

__all__ = ["Summariser"]

log = structlog.get_logger(__name__)


class Summariser:
    """Runs at most one summary call at a time for one conversation (see the module docstring)."""

    def __init__(
        self,
        conversation_id: str,
        model: ChatModel,
        budget_tokens: int,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conversation_id = conversation_id
        self._model = model
        self._budget = budget_tokens
        self._backoff = backoff if backoff is not None else Backoff()
        self._clock = clock
        self._task: asyncio.Task[SummaryRecord | None] | None = None
        self._resets = 0
        self._failures = 0
        self._retry_at = 0.0

    @property
    def running(self) -> bool:
        """True while a summary call is in flight."""
        return self._task is not None and not self._task.done()

    def start_if_needed(self, history: History, instructions: str, *, model: ChatModel | None = None) -> bool:
        """Start summarising if what the model would see of `history` outgrows the budget; True if it started.

        Nothing starts while a call is in flight or a finished one waits for `take`, nor before the
        retry delay after a failure. `model` replaces the one given at construction for this summary
        (the turn's: the chat's model, counted for the user the turn served, `actors.accounting.turn_model`).
        """
        if self._task is not None or self._clock() < self._retry_at:
            return False
        if _at_most_seen(history, instructions) <= self._budget:
            return False  # all it holds fits, so what the model sees does: no plan to make
        plan = plan_summary(history.records(), self._budget, instructions)
        if plan is None:
            return False
        self._resets = history.resets
        self._task = asyncio.create_task(self._run(plan, model or self._model), name=f"summary:{self.conversation_id}")
        # Retrieved here so that a task whose actor crashed before `take` is never reported unretrieved.
        self._task.add_done_callback(_retrieve)
        return True

    async def _run(self, plan: SummaryPlan, model: ChatModel) -> SummaryRecord | None:
        started = time.perf_counter()
        record = await summarise(model, plan)
        log.info(
            "conversation_summarised",
            conversation_id=self.conversation_id,
            first_seq=plan.first_seq,
            last_seq=plan.last_seq,
            records=len(plan.records),
            chars=len(record.text) if record is not None else 0,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return record

    def take(self, *, resets: int) -> SummaryRecord | None:
        """The summary of a call that has finished, to append now; None if there is none (yet), if it
        failed (it is tried again later), or if a reset came since it was planned."""
        task = self._task
        if task is None or not task.done():
            return None
        self._task = None
        if task.cancelled():
            return None
        error = task.exception()
        record = task.result() if error is None else None
        if record is None:
            self._failed(error)
            return None
        self._failures = 0
        return record if resets == self._resets else None

    def _failed(self, error: BaseException | None) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        self._retry_at = self._clock() + delay
        reason = "empty summary" if error is None else repr(error)
        if error is not None and not isinstance(error, LLMError):
            # Not the model's failure but ours: the stack trace is what tells us why.
            log.error("summary_failed", conversation_id=self.conversation_id, error=reason, exc_info=error)
        else:
            log.warning("summary_failed", conversation_id=self.conversation_id, error=reason, retry_in_s=delay)

    async def close(self, *, resets: int) -> SummaryRecord | None:
        """Stop: a finished call's summary is returned (to append), one in flight is cancelled (the
        next activation plans it again)."""
        task = self._task
        if task is not None and not task.done():
            self._task = None
            task.cancel()
            # wait() neither raises the task's outcome nor swallows our own cancellation.
            await asyncio.wait([task])
            return None
        return self.take(resets=resets)


def _retrieve(task: asyncio.Task[SummaryRecord | None]) -> None:
    if not task.cancelled():
        task.exception()


def _at_most_seen(history: History, instructions: str) -> int:
    """At least what `plan_summary` counts of `history`: every record it holds (markers as 1), its
    summary and the instructions. Kept per record by the history, so this costs no walk through it."""
    summary = estimate_tokens(summary_message(history.summary)) if history.summary is not None else 0
    return history.tokens + summary + estimate_text_tokens(instructions)
