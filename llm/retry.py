"""Retrying a chat model within a time budget: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import dataclasses
import time

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_before_delay

from conf.settings import BackoffSettings
from llm.base import ChatModel, LLMRejected, LLMUnavailable, ModelReply, ModelRequest
from ops.backoff import Backoff

__all__ = ["RetryingChatModel"]

log = structlog.get_logger(__name__)

_MIN_ATTEMPT_SECONDS = 1.0


class RetryingChatModel:
    """A ChatModel that retries LLMUnavailable (429, 5xx, timeouts, connection errors, malformed replies).

    - Waits are `backoff`'s: exponential, capped, jittered (plain settings become `Backoff(settings)`).
    - A provider's Retry-After replaces the computed wait (the provider knows when it will take us back).
    - It gives up when the next wait would end past `budget_seconds` after the first attempt started
      (a Retry-After longer than what is left of the budget therefore ends the retries at once), and
      re-raises the last LLMUnavailable, so the caller can tell the user within a bounded time.
    - LLMRejected is never retried: it is logged once as `llm_request_rejected` and re-raised.
    - Streaming: a failed attempt may already have passed some deltas to `on_delta` before failing; the
      next attempt streams its text again from the start, after calling `request.on_retry`. Callers must
      treat deltas as a progress signal (typing indicator, live preview) and use only the final
      ModelReply's text as the answer.
    - Cancellation propagates at once, also during a wait.
    """

    def __init__(self, model: ChatModel, backoff: Backoff | BackoffSettings, budget_seconds: float) -> None:
        self._model = model
        self._budget_seconds = budget_seconds
        self._wait = Backoff.of(backoff).wait(_retry_after)

    @property
    def model(self) -> ChatModel:
        """The wrapped model."""
        return self._model

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Ask the wrapped model, retrying LLMUnavailable within the budget (see the class docstring);
        a `request.timeout` shorter than the budget is this call's budget (what is left of a turn's
        deadline, say), so the caller hears LLMUnavailable before its deadline passes."""
        budget = self._budget_seconds if request.timeout is None else min(self._budget_seconds, request.timeout)
        # Under a caller's deadline, no retry starts in its last stretch: a failing model is then told
        # as unavailable before the deadline passes, not as a turn that ran out of time.
        margin = 0.0 if request.timeout is None else min(_MIN_ATTEMPT_SECONDS, budget / 4)
        started = time.monotonic()
        # The first attempt outside tenacity: nearly every request succeeds at once, and building the
        # retry machinery for each cost more CPU than the rest of this wrapper (issue 17).
        try:
            first = dataclasses.replace(request, timeout=max(_MIN_ATTEMPT_SECONDS, budget))
            return await self._model.complete(first)
        except LLMUnavailable as exc:
            failed: LLMUnavailable | None = exc
        except LLMRejected as exc:
            log.error("llm_request_rejected", status=exc.status, reason=str(exc))
            raise
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(LLMUnavailable),
            wait=self._wait,
            stop=stop_before_delay(budget - margin - (time.monotonic() - started)),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                if attempt.retry_state.attempt_number > 1 and request.on_retry is not None:
                    request.on_retry()
                with attempt:
                    if failed is not None:  # the first attempt's failure, told to tenacity (it waits, logs, stops)
                        error, failed = failed, None
                        raise error
                    # An attempt may not outlast the budget: a hung request must not keep the user
                    # waiting past it (the SDK's own timeout ends it; nothing is cancelled here).
                    left = budget - (time.monotonic() - started)
                    attempt_request = dataclasses.replace(request, timeout=max(_MIN_ATTEMPT_SECONDS, left))
                    return await self._model.complete(attempt_request)
        except LLMRejected as exc:
            log.error("llm_request_rejected", status=exc.status, reason=str(exc))
            raise
        raise AssertionError("unreachable: tenacity either returns, re-raises or retries")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self._model.aclose()


def _retry_after(error: BaseException) -> float | None:
    return error.retry_after if isinstance(error, LLMUnavailable) else None


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning(
        "llm_retry",
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        status=getattr(error, "status", None),
        reason=str(error),
    )
