"""End to end: /model, /usage and the daily budget through the fake Bot API and the fake model, across
restarts, on the file and the DynamoDB backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import texts
from channels.telegram.format import to_telegram_html
from tests.e2e_support import assistant_env, fast_settings, moto_dynamodb, running
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer

OWNER, OTHER = 42, 43


@pytest.fixture(params=["file", "dynamodb"])
def env(
    request: pytest.FixtureRequest,
    tg: FakeTelegramServer,
    llm: FakeLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    values = assistant_env(
        tg,
        llm,
        tmp_path / "store",
        TELEGRAM_ALLOWED_USER_IDS=f"{OWNER},{OTHER}",
        LLM_MODELS="gpt-4o-mini,gpt-4o",
        TIMEZONE="Europe/Berlin",
    )
    if request.param == "file":
        yield values
        return
    # moto keeps its tables for the whole process: each test gets tables of its own.
    with moto_dynamodb(monkeypatch, f"e2e-usage-{uuid.uuid4().hex[:8]}") as dynamodb:
        yield values | dynamodb


async def exchange(tg: FakeTelegramServer, chat: int, text: str) -> str:
    """Send one message and wait for the one answer."""
    before = len(tg.sent_to(chat))
    tg.add_text_message(chat, text)
    sent = await tg.await_sent(chat_id=chat, count=before + 1, timeout=20)
    return sent[-1].text


def tokens(llm: FakeLLMServer) -> int:
    return sum(request.usage.input_tokens + request.usage.output_tokens for request in llm.requests if request.usage)


async def test_model_choice_and_usage_survive_a_restart(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    async with running(fast_settings(env)):
        assert await exchange(tg, OWNER, "/model gpt-4o") == to_telegram_html(
            texts.MODEL_SWITCHED.format(model="gpt-4o")
        )
        assert await exchange(tg, OWNER, "hello") == "echo: hello"
        refusal = await exchange(tg, OWNER, "/model gpt-9")
        assert refusal == to_telegram_html(texts.MODEL_UNKNOWN.format(name="gpt-9", models="`gpt-4o-mini`, `gpt-4o`"))
        assert await exchange(tg, OTHER, "hi from the other user") == "echo: hi from the other user"
    async with running(fast_settings(env)):
        assert await exchange(tg, OWNER, "hello again") == "echo: hello again"
        owner_usage = await exchange(tg, OWNER, "/usage")
        other_usage = await exchange(tg, OTHER, "/usage")
    # The system prompt first, the same in every request; the date and time after the history.
    assert len({request.messages[0]["content"] for request in llm.requests}) == 1
    assert all(request.messages[-1]["content"].startswith("# Now\n") for request in llm.requests)
    # The owner's chat kept its model; the other chat uses the default.
    assert [request.json["model"] for request in llm.requests] == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]
    other = llm.requests[1].usage
    assert other is not None
    other_tokens = other.input_tokens + other.output_tokens
    owner_tokens = tokens(llm) - other_tokens
    assert f"{owner_tokens:,} tokens" in owner_usage.split("All users")[0]
    assert f"All users this month: {owner_tokens + other_tokens:,} tokens" in owner_usage
    assert f"• {OTHER}: {other_tokens:,} tokens" in owner_usage
    assert "$0.000" in owner_usage  # priced: the shipped table has both models
    assert f"{other_tokens:,} tokens" in other_usage
    assert "All users" not in other_usage


async def test_an_exhausted_budget_stops_model_calls_even_after_a_restart(
    tg: FakeTelegramServer, llm: FakeLLMServer, env: dict[str, str]
) -> None:
    env = env | {"DAILY_TOKEN_BUDGET": "10"}
    async with running(fast_settings(env)):
        assert await exchange(tg, OWNER, "first") == "echo: first"
        refusal = await exchange(tg, OWNER, "second")
        assert await exchange(tg, OTHER, "someone else") == "echo: someone else"
    async with running(fast_settings(env)):
        again = await exchange(tg, OWNER, "third")
        usage = await exchange(tg, OWNER, "/usage")
    assert "You have used today's budget of 10 tokens" in refusal
    assert "at midnight (Europe/Berlin), in " in refusal
    assert again.startswith("You have used today's budget")
    assert [request.last_user_text for request in llm.requests] == ["first", "someone else"]
    assert "Daily budget: 0 of 10 tokens left" in usage
