"""Shared pieces of the provider tests: each provider's model over the fake server, and a fresh
interpreter's imports."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conf.settings import BackoffSettings, LLMSettings
from llm import ChatModel, ModelReply, ModelRequest, ToolSpec, UserRecord
from llm.anthropic_provider import AnthropicChatModel
from llm.openai_provider import OpenAIChatModel
from tests.fakes.llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
CLOCK = ToolSpec("clock", "The time now.", {"type": "object", "properties": {}})
USER = [UserRecord(text="hello there")]


@dataclass(frozen=True)
class Provider:
    """One provider as the tests drive it: its SDK's model on its own, or settings for the factory."""

    name: Literal["openai", "anthropic"]
    model: str
    key: str

    def base_url(self, server: FakeLLMServer) -> str:
        """Where the fake server speaks this provider's API."""
        return server.openai_base_url if self.name == "openai" else server.anthropic_base_url

    def raw_model(self, server: FakeLLMServer, *, stream: bool = True, timeout: float = 5.0) -> ChatModel:
        """The provider's model without the factory's retries."""
        model_class = OpenAIChatModel if self.name == "openai" else AnthropicChatModel
        return model_class(
            model=self.model,
            api_key=self.key,
            base_url=self.base_url(server),
            stream=stream,
            request_timeout_seconds=timeout,
        )

    def settings(self, server: FakeLLMServer, **changes: object) -> LLMSettings:
        """Settings for `build_chat_model`, pointing at the fake server."""
        values: dict[str, object] = {
            "provider": self.name,
            "model": self.model,
            "base_url": self.base_url(server),
            "api_key": self.key,
        }
        return LLMSettings.model_validate(values | changes)


OPENAI = Provider("openai", "gpt-test", "sk-test-secret-key-123")
ANTHROPIC = Provider("anthropic", "claude-test", "sk-ant-test-secret-456")


def imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has imported once it has run `code`."""
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    return {name.split(".")[0] for name in out}


async def complete_and_close(model: ChatModel, request: ModelRequest) -> ModelReply:
    """One request to a model made for it, then its clients closed (also when the request fails)."""
    try:
        return await model.complete(request)
    finally:
        await model.aclose()
