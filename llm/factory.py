"""Building the configured chat model; only the configured provider's SDK is imported."""

from __future__ import annotations

from pathlib import Path

from conf.settings import BackoffSettings, ConfigError, LLMSettings
from llm.base import ChatModel
from llm.retry import RetryingChatModel

__all__ = ["build_chat_model", "load_system_prompt"]


def build_chat_model(settings: LLMSettings, backoff: BackoffSettings) -> ChatModel:
    """The provider named by `settings.provider`, wrapped in a RetryingChatModel with
    `settings.retry_budget_seconds`. Creating it does no I/O; close it with `aclose()`."""
    options = {
        "model": settings.model,
        "api_key": settings.api_key,
        "base_url": settings.base_url,
        "temperature": settings.temperature,
        "max_output_tokens": settings.max_output_tokens,
        "request_timeout_seconds": settings.request_timeout_seconds,
        "stream": settings.stream,
    }
    model: ChatModel
    # The imports live here so that importing `llm` never loads an SDK, and a deployment needs
    # only the SDK of the provider it uses.
    if settings.provider == "anthropic":
        from llm.anthropic_provider import AnthropicChatModel

        model = AnthropicChatModel(**options)  # type: ignore[arg-type]
    else:
        from llm.openai_provider import OpenAIChatModel

        model = OpenAIChatModel(**options)  # type: ignore[arg-type]
    return RetryingChatModel(model, backoff, settings.retry_budget_seconds)


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
