"""Shared test configuration and the fixtures for the fake servers."""

import os

# As main.py does, and before python-telegram-bot is imported: its durations as timedelta, so
# RetryAfter raises no deprecation warning (which filterwarnings=error would make an error).
os.environ.setdefault("PTB_TIMEDELTA", "1")

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from telegram import Bot

from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer


@pytest.fixture(scope="session", autouse=True)
def _provider_sdks_imported() -> None:
    """The assistant imports a provider's SDK at its first model call (about a second for openai or
    anthropic); a process does that once. In-process tests share one process, so it happens here,
    before any test: otherwise whichever end-to-end test came first paid it inside its reply deadline."""
    import anthropic  # noqa: F401
    import openai  # noqa: F401


@pytest.fixture
def tg() -> Iterator[FakeTelegramServer]:
    """A fake Telegram Bot API server on 127.0.0.1 (see tests/fakes/telegram_server.py)."""
    with FakeTelegramServer() as server:
        yield server


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    """A fake OpenAI/Anthropic completion server on 127.0.0.1 (see tests/fakes/llm_server.py)."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def bot(tg: FakeTelegramServer) -> AsyncIterator[Bot]:
    """A python-telegram-bot Bot talking to the fake server."""
    async with Bot(tg.token, base_url=tg.base_url) as client:
        yield client


@pytest.fixture
async def asyncio_debug_off() -> AsyncIterator[None]:
    """asyncio's debug mode (on for every test: pyproject.toml) off for one test; say why beside each use."""
    loop = asyncio.get_running_loop()
    loop.set_debug(False)
    yield
    loop.set_debug(True)
