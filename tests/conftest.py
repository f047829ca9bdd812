"""Shared test configuration and the fixtures for the fake servers."""

import os

# As main.py does, and before python-telegram-bot is imported: its durations as timedelta, so
# RetryAfter raises no deprecation warning (which filterwarnings=error would make an error).
os.environ.setdefault("PTB_TIMEDELTA", "1")

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

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


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server (DynamoDB, SQS) on 127.0.0.1 for one test module, serving one request at a time
    as DynamoDB's conditional writes need (see tests/fakes/moto_serialised.py); a module may override it."""
    from tests.fakes.moto_serialised import serialised_moto_server  # moto loads only where a test uses it

    with serialised_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region in the environment: no real AWS configuration is read."""
    from tests.fakes.moto_server import fake_aws_credentials

    fake_aws_credentials(monkeypatch)


@pytest.fixture
async def dynamodb_client(moto_endpoint: str) -> AsyncIterator[Any]:
    """A plain DynamoDB client on `moto_endpoint`, to look at what the stores wrote."""
    from aiobotocore.session import get_session

    from stores._dynamodb_table import _LOADER

    session = get_session()
    session.register_component("data_loader", _LOADER)  # the parsed service model, loaded once
    async with session.create_client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint) as raw:
        yield raw


@pytest.fixture
async def asyncio_debug_off() -> AsyncIterator[None]:
    """asyncio's debug mode (on for every test: pyproject.toml) off for one test; say why beside each use."""
    loop = asyncio.get_running_loop()
    loop.set_debug(False)
    yield
    loop.set_debug(True)
