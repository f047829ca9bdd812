"""Building the configured chat model; only the configured provider's SDK is imported."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

from conf.settings import BackoffSettings, ConfigError, LLMSettings
from llm.base import ChatModel, ModelReply, ModelRequest
from llm.images import ImageRefusalGuard
from llm.retry import RetryingChatModel
from ops.backoff import Backoff

__all__ = ["build_chat_model", "load_system_prompt"]


def build_chat_model(settings: LLMSettings, backoff: Backoff | BackoffSettings, *, lazy: bool = False) -> ChatModel:
    """The provider named by `settings.provider`, wrapped in an ImageRefusalGuard (images the provider
    refuses are left out from then on) and a RetryingChatModel with `settings.retry_budget_seconds`.
    Creating it does no I/O; close it with `aclose()`.

    With `lazy`, the provider's SDK is imported (in a thread, so the event loop keeps serving)
    when the first request needs it: start-up is ~0.35 s faster and ~25 MB smaller until then.
    """
    model: ChatModel = _LazyChatModel(settings) if lazy else _provider(settings)
    return RetryingChatModel(ImageRefusalGuard(model), backoff, settings.retry_budget_seconds)


_PROVIDER_MODULES = {"openai": "llm.openai_provider", "anthropic": "llm.anthropic_provider"}


def _provider(settings: LLMSettings) -> ChatModel:
    # The imports live here so that importing `llm` never loads an SDK, and a deployment needs
    # only the SDK of the provider it uses.
    module = importlib.import_module(_PROVIDER_MODULES[settings.provider])
    factory = module.AnthropicChatModel if settings.provider == "anthropic" else module.OpenAIChatModel
    model: ChatModel = factory(
        model=settings.model,
        api_key=settings.api_key,
        base_url=settings.base_url,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        request_timeout_seconds=settings.request_timeout_seconds,
        stream=settings.stream,
    )
    return model


class _LazyChatModel:
    """Builds the provider on first use; see `build_chat_model(lazy=True)`."""

    def __init__(self, settings: LLMSettings) -> None:
        self._settings = settings
        self._model: ChatModel | None = None
        self._building = asyncio.Lock()

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Build the provider if needed, then ask it."""
        if self._model is None:
            async with self._building:
                if self._model is None:
                    await asyncio.to_thread(importlib.import_module, _PROVIDER_MODULES[self._settings.provider])
                    self._model = _provider(self._settings)
        return await self._model.complete(request)

    async def aclose(self) -> None:
        """Close the provider, if it was ever built."""
        if self._model is not None:
            await self._model.aclose()


def load_system_prompt(settings: LLMSettings) -> str:
    """The system prompt: the text of `system_prompt_file` when it is set, else `system_prompt`.

    Raises ConfigError naming `llm.system_prompt_file` when the file cannot be read. Called once at
    start-up (a blocking read is fine there).
    """
    if not settings.system_prompt_file:
        return settings.system_prompt
    path = Path(settings.system_prompt_file)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError("llm.system_prompt_file", f"file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("llm.system_prompt_file", f"cannot read {str(path)!r}: {exc}") from None
