"""OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, OpenRouter, LM Studio, ...) on the `openai` SDK.

Importing this module imports `openai`; `llm.factory` imports it only when the provider is `openai`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai
from openai._types import RequestOptions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from llm._clients import SHARD_LIMITS, ClientShards, post_once, post_streaming, request_options
from llm._errors import error_for_status, parse_arguments, unavailable
from llm.base import DeltaCallback, LLMError, Message, ModelReply, ToolCall, ToolSpec

__all__ = ["OpenAIChatModel", "to_openai_messages"]

_PROVIDER = "openai"


class OpenAIChatModel:
    """A ChatModel on `AsyncOpenAI`. It never retries by itself (the SDK's retries are off): wrap it in
    `RetryingChatModel`. Raises LLMRejected / LLMUnavailable, never an SDK exception."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = "",
        temperature: float = 0.7,
        max_output_tokens: int = 1024,
        request_timeout_seconds: float = 60.0,
        stream: bool = True,
    ) -> None:
        self._model = model
        self._temperature = temperature
        self._max_output_tokens = max_output_tokens
        self._request_timeout = request_timeout_seconds
        self._stream = stream
        # OpenAI's own API wants `max_completion_tokens` (its reasoning models reject `max_tokens`);
        # compatible servers (Ollama, vLLM, LM Studio) have long known `max_tokens` only.
        self._max_tokens_key = "max_tokens" if base_url else "max_completion_tokens"
        # One TLS context for every shard: each would otherwise load the CA bundle (~0.9 MB).
        tls = httpx2.create_ssl_context()
        self._clients = ClientShards(
            lambda: openai.AsyncOpenAI(
                # Local servers need no key, but the SDK insists on one: any placeholder will do.
                api_key=api_key or "not-needed",
                base_url=base_url or None,
                timeout=request_timeout_seconds,
                max_retries=0,  # our RetryingChatModel owns retries, within the turn's budget
                http_client=openai.DefaultAsyncHttpxClient(verify=tls, limits=SHARD_LIMITS),
            )
        )

    async def complete(
        self,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        on_delta: DeltaCallback | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        """Ask for the next reply; streams text to `on_delta` when streaming is on."""
        params: dict[str, Any] = {
            "model": self._model,
            "messages": to_openai_messages(system, messages),
            "temperature": self._temperature,
            self._max_tokens_key: self._max_output_tokens,
        }
        if tools:
            params["tools"] = [_tool_schema(spec) for spec in tools]
        try:
            if self._stream:
                return await self._complete_streaming(
                    params, on_delta, cast(RequestOptions, request_options(timeout, self._request_timeout))
                )
            return await self._complete_once(
                params, cast(RequestOptions, request_options(timeout, self._request_timeout))
            )
        except LLMError:
            raise
        except openai.APIStatusError as exc:
            raise error_for_status(_PROVIDER, exc.status_code, exc.body, exc.response.headers) from exc
        except openai.APITimeoutError as exc:
            raise unavailable(_PROVIDER, "request timed out") from exc
        except openai.APIConnectionError as exc:
            raise unavailable(_PROVIDER, "connection failed") from exc
        except openai.APIResponseValidationError as exc:
            raise unavailable(_PROVIDER, "malformed response", exc.status_code) from exc
        except openai.APIError as exc:  # an error event inside a stream
            raise unavailable(_PROVIDER, "error during streaming") from exc
        except ValueError as exc:
            # A body or stream event that is not JSON (json.JSONDecodeError is a ValueError).
            raise unavailable(_PROVIDER, "malformed response") from exc

    async def _complete_once(self, params: dict[str, Any], options: RequestOptions) -> ModelReply:
        return await post_once(
            self._clients, _PROVIDER, "/chat/completions", params, options, ChatCompletion, _reply_from_completion
        )

    async def _complete_streaming(
        self, params: dict[str, Any], on_delta: DeltaCallback | None, options: RequestOptions
    ) -> ModelReply:
        acc = _StreamAccumulator()
        await post_streaming(
            self._clients,
            _PROVIDER,
            "/chat/completions",
            params,
            options,
            ChatCompletion,
            openai.AsyncStream[ChatCompletionChunk],
            acc.add,
            on_delta,
        )
        return acc.reply()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._clients.close()


def _reply_from_completion(completion: Any) -> ModelReply:
    if not completion.choices:
        raise unavailable(_PROVIDER, "malformed response: no choices")
    choice = completion.choices[0]
    calls = tuple(
        _tool_call(call.id, call.function.name, call.function.arguments)
        for call in (choice.message.tool_calls or ())
        if call.type == "function"
    )
    usage = completion.usage
    return ModelReply(
        text=choice.message.content or "",
        tool_calls=calls,
        stop_reason=choice.finish_reason or "",
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
    )


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StreamAccumulator:
    """Assembles chat.completion.chunk events: text deltas, and tool calls whose pieces arrive by index."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, chunk: Any) -> str:
        """Take one chunk; return its text delta."""
        if chunk.usage is not None:
            self.input_tokens = chunk.usage.prompt_tokens or 0
            self.output_tokens = chunk.usage.completion_tokens or 0
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return ""
        for piece in delta.tool_calls or ():
            call = self.calls.setdefault(piece.index, _PartialCall())
            if piece.id:
                call.id = piece.id
            if piece.function is not None:
                if piece.function.name:
                    call.name += piece.function.name
                if piece.function.arguments:
                    call.arguments.append(piece.function.arguments)
        text: str = delta.content or ""
        if text:
            self.text.append(text)
        return text

    def reply(self) -> ModelReply:
        """The assembled reply; a stream that ended without a finish reason was cut off."""
        if not self.finish_reason:
            raise unavailable(_PROVIDER, "malformed response: stream ended without a finish reason")
        calls = tuple(_tool_call(call.id, call.name, "".join(call.arguments)) for _, call in sorted(self.calls.items()))
        return ModelReply(
            text="".join(self.text),
            tool_calls=calls,
            stop_reason=self.finish_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


def _tool_call(call_id: str | None, name: str, raw_arguments: str) -> ToolCall:
    # Some compatible servers omit ids; the tool result must still point at its call.
    return ToolCall(
        id=call_id or f"call_{uuid.uuid4().hex[:24]}",
        name=name,
        arguments=parse_arguments(raw_arguments),
        raw_arguments=raw_arguments,
    )


def _tool_schema(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": dict(spec.parameters)},
    }


def to_openai_messages(system: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral history records as chat-completions messages, the system prompt first.

    Records the model should not see (markers with a `type`, unknown roles) are skipped. Images from
    tools are described in text: tool messages accept text only in the chat completions API.
    """
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role = message.get("role")
        if "type" in message or role not in {"user", "assistant", "tool"}:
            continue
        if role == "user":
            out.append({"role": "user", "content": str(message.get("content") or "")})
        elif role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": str(message.get("content") or "") or None}
            calls = [_call_entry(call) for call in message.get("tool_calls") or ()]
            if calls:
                entry["tool_calls"] = calls
            elif entry["content"] is None:
                entry["content"] = ""
            out.append(entry)
        else:
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": str(message.get("tool_call_id", "")),
                    "content": tool_text(message),
                }
            )
    return out


def _call_entry(call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments")
    # Arguments that were not a JSON object go back as "{}": the tool result already quotes what the model
    # sent, and some compatible servers reject a history whose arguments do not parse.
    encoded = json.dumps(arguments, ensure_ascii=False) if isinstance(arguments, Mapping) else "{}"
    function = {"name": str(call.get("name", "")), "arguments": encoded}
    return {"id": str(call.get("id", "")), "type": "function", "function": function}


def tool_text(message: Message) -> str:
    """A tool record's text, with a note for each image (for APIs that take no images in tool results)."""
    text = str(message.get("content") or "")
    images = cast(Sequence[Mapping[str, Any]], message.get("images") or ())
    notes = [
        f"[the tool returned an image ({image.get('mime_type', 'image')}) that cannot be shown here]"
        for image in images
    ]
    return "\n".join([text, *notes]) if notes else text
