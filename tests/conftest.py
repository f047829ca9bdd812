"""Shared test configuration and the fixtures for the fake servers."""

import os

# As main.py does, and before python-telegram-bot is imported: its durations as timedelta, so
# RetryAfter raises no deprecation warning (which filterwarnings=error would make an error).
os.environ.setdefault("PTB_TIMEDELTA", "1")

from collections.abc import Iterator

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import FakeTelegramServer


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
