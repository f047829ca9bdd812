"""RetryingChatModel: the retry policy alone, around a scripted in-process chat model.

The HTTP paths (real SDKs, Retry-After headers) are covered in test_llm_openai / test_llm_anthropic;
here the policy's arithmetic is checked exactly, without a network in the way.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from conf.settings import BackoffSettings
from llm import (
    LLMError,
    LLMRejected,
    LLMUnavailable,
    ModelReply,
    ModelRequest,
    RetryingChatModel,
)

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)


class ScriptedModel:
    """Raises the scripted errors in turn, then answers "ok". Records when each attempt started."""

    def __init__(self, *errors: LLMError, forever: LLMError | None = None) -> None:
        self.errors = list(errors)
        self.forever = forever
        self.attempts: list[float] = []
        self.closed = False
        self.started = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.attempts.append(time.monotonic())
        self.started.set()
        if request.on_delta is not None:
            request.on_delta(f"attempt {len(self.attempts)} ")
        if self.errors:
            raise self.errors.pop(0)
        if self.forever is not None:
            raise self.forever
        return ModelReply(text=f"ok after {len(self.attempts)}")

    async def aclose(self) -> None:
        self.closed = True


async def test_an_answer_on_the_first_attempt_passes_straight_through() -> None:
    inner = ScriptedModel()
    model = RetryingChatModel(inner, FAST, budget_seconds=1)
    assert (await model.complete(ModelRequest("", []))).text == "ok after 1"
    await model.aclose()
    assert inner.closed


async def test_waits_grow_exponentially_up_to_the_cap() -> None:
    inner = ScriptedModel(*(LLMUnavailable("down", status=503) for _ in range(5)))
    model = RetryingChatModel(inner, FAST, budget_seconds=5)
    with capture_logs() as logs:
        reply = await model.complete(ModelRequest("", []))
    assert reply.text == "ok after 6"
    retries = [line for line in logs if line["event"] == "llm_retry"]
    assert [line["wait_s"] for line in retries] == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert [line["attempt"] for line in retries] == [1, 2, 3, 4, 5]
    assert all(line["status"] == 503 and line["log_level"] == "warning" for line in retries)


async def test_jitter_adds_at_most_jitter_seconds() -> None:
    inner = ScriptedModel(*(LLMUnavailable("down") for _ in range(4)))
    jittery = BackoffSettings(initial_seconds=0.01, max_seconds=0.01, jitter_seconds=0.02)
    with capture_logs() as logs:
        await RetryingChatModel(inner, jittery, budget_seconds=5).complete(ModelRequest("", []))
    waits = [line["wait_s"] for line in logs if line["event"] == "llm_retry"]
    assert all(0.01 <= wait <= 0.03 for wait in waits)


async def test_retry_after_replaces_the_computed_wait() -> None:
    inner = ScriptedModel(LLMUnavailable("slow down", status=429, retry_after=0.15))
    model = RetryingChatModel(inner, FAST, budget_seconds=2)
    with capture_logs() as logs:
        await model.complete(ModelRequest("", []))
    assert inner.attempts[1] - inner.attempts[0] >= 0.15 * 0.9
    assert [line["wait_s"] for line in logs if line["event"] == "llm_retry"] == [0.15]


async def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    error = LLMUnavailable("come back in an hour", status=429, retry_after=3600)
    inner = ScriptedModel(error)
    model = RetryingChatModel(inner, FAST, budget_seconds=1)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await model.complete(ModelRequest("", []))
    assert caught.value is error
    assert len(inner.attempts) == 1
    assert time.monotonic() - started < 0.5


async def test_an_endless_outage_ends_within_the_budget_with_the_last_error() -> None:
    inner = ScriptedModel(forever=LLMUnavailable("still down", status=502))
    model = RetryingChatModel(inner, FAST, budget_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="still down"):
        await model.complete(ModelRequest("", []))
    assert time.monotonic() - started <= 0.2 + 0.05
    # Waits 0.01 + 0.02 + 0.04 + 0.05 + 0.05 = 0.17 s; the next 0.05 would pass the budget. A loaded
    # machine oversleeps, which can only end the retries earlier.
    assert 4 <= len(inner.attempts) <= 6


async def test_a_rejection_is_never_retried_and_logged_once() -> None:
    inner = ScriptedModel(LLMRejected("openai answered HTTP 403 (permission_error)", status=403))
    model = RetryingChatModel(inner, FAST, budget_seconds=5)
    with capture_logs() as logs, pytest.raises(LLMRejected):
        await model.complete(ModelRequest("", []))
    assert len(inner.attempts) == 1
    rejected = [line for line in logs if line["event"] == "llm_request_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["status"] == 403
    assert rejected[0]["log_level"] == "error"


async def test_deltas_of_a_failed_attempt_are_followed_by_the_next_attempts() -> None:
    inner = ScriptedModel(LLMUnavailable("cut off"))
    deltas: list[str] = []
    reply = await RetryingChatModel(inner, FAST, budget_seconds=5).complete(
        ModelRequest("", [], on_delta=deltas.append)
    )
    assert deltas == ["attempt 1 ", "attempt 2 "]
    assert reply.text == "ok after 2"


async def test_cancellation_during_a_wait_propagates_at_once() -> None:
    inner = ScriptedModel(forever=LLMUnavailable("down", retry_after=30))
    model = RetryingChatModel(inner, FAST, budget_seconds=60)
    task = asyncio.create_task(model.complete(ModelRequest("", [])), name="retrying-complete")
    await inner.started.wait()
    await asyncio.sleep(0)  # let it enter the 30 s wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=1)
    assert len(inner.attempts) == 1
