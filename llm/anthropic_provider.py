"""Anthropic's Messages API on the `anthropic` SDK.

Importing this module imports `anthropic`; `llm.factory` imports it only when the provider is `anthropic`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import anthropic
import httpx2
from anthropic._types import RequestOptions
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent

from llm._clients import SHARD_LIMITS, ClientShards, post_once, post_streaming, request_options
from llm._errors import error_for_status, parse_arguments, unavailable
from llm.base import DeltaCallback, LLMError, Message, ModelReply, ToolCall, ToolSpec

__all__ = ["AnthropicChatModel", "to_anthropic_messages"]

_PROVIDER = "anthropic"


class AnthropicChatModel:
    """A ChatModel on `AsyncAnthropic`. It never retries by itself (the SDK's retries are off): wrap it in
    `RetryingChatModel`. Raises LLMRejected / LLMUnavailable, never an SDK exception."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = "",
        temperature: float | None = None,
        max_output_tokens: int = 1024,
        request_timeout_seconds: float = 60.0,
        stream: bool = True,
    ) -> None:
        self._model = model
        # The 2.x SDK's messages.create() has no sampling parameters (current Claude models fix them),
        # so `temperature` is accepted for a uniform constructor and not sent.
        del temperature
        self._max_output_tokens = max_output_tokens
        self._request_timeout = request_timeout_seconds
        self._stream = stream
        # One TLS context for every shard: each would otherwise load the CA bundle (~0.9 MB).
        tls = httpx2.create_ssl_context()
        self._clients = ClientShards(
            lambda: anthropic.AsyncAnthropic(
                # A key-less local proxy still needs the header the SDK insists on sending.
                api_key=api_key or "not-needed",
                base_url=base_url or None,
                timeout=request_timeout_seconds,
                max_retries=0,  # our RetryingChatModel owns retries, within the turn's budget
                http_client=anthropic.DefaultAsyncHttpxClient(verify=tls, limits=SHARD_LIMITS),
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
            "max_tokens": self._max_output_tokens,
            "messages": to_anthropic_messages(messages),
        }
        if system:
            params["system"] = system
        if tools:
            params["tools"] = [
                {"name": spec.name, "description": spec.description, "input_schema": dict(spec.parameters)}
                for spec in tools
            ]
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
        except anthropic.APIStatusError as exc:
            if exc.status_code < 400:
                # An `error` event inside a 200 stream (typically overloaded_error): worth another try.
                raise unavailable(_PROVIDER, "error event during streaming") from exc
            raise error_for_status(_PROVIDER, exc.status_code, exc.body, exc.response.headers) from exc
        except anthropic.APITimeoutError as exc:
            raise unavailable(_PROVIDER, "request timed out") from exc
        except anthropic.APIConnectionError as exc:
            raise unavailable(_PROVIDER, "connection failed") from exc
        except anthropic.APIResponseValidationError as exc:
            raise unavailable(_PROVIDER, "malformed response", exc.status_code) from exc
        except anthropic.APIError as exc:
            raise unavailable(_PROVIDER, "request failed") from exc
        except httpx2.TimeoutException as exc:
            # The SDK does not wrap transport errors raised while a stream is being read.
            raise unavailable(_PROVIDER, "stream timed out") from exc
        except httpx2.TransportError as exc:
            raise unavailable(_PROVIDER, "connection lost during streaming") from exc
        except ValueError as exc:
            # A body or stream event that is not JSON (json.JSONDecodeError is a ValueError).
            raise unavailable(_PROVIDER, "malformed response") from exc

    async def _complete_once(self, params: dict[str, Any], options: RequestOptions) -> ModelReply:
        return await post_once(
            self._clients, _PROVIDER, "/v1/messages", params, options, AnthropicMessage, _reply_from_message
        )

    async def _complete_streaming(
        self, params: dict[str, Any], on_delta: DeltaCallback | None, options: RequestOptions
    ) -> ModelReply:
        # Raw events rather than `messages.stream()`: its helper raises on tool arguments that are not
        # JSON, and we want those back as ToolCall(arguments=None) for the model to correct.
        acc = _StreamAccumulator()
        await post_streaming(
            self._clients,
            _PROVIDER,
            "/v1/messages",
            params,
            options,
            AnthropicMessage,
            anthropic.AsyncStream[RawMessageStreamEvent],
            acc.add,
            on_delta,
        )
        return acc.reply()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._clients.close()


def _reply_from_message(message: Any) -> ModelReply:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(_tool_call(block.id, block.name, block.input))
    return ModelReply(
        text="".join(text),
        tool_calls=tuple(calls),
        stop_reason=message.stop_reason or "",
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
    )


@dataclass(slots=True)
class _Block:
    type: str
    text: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""
    input: Any = None
    json_parts: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StreamAccumulator:
    """Assembles the Messages streaming events (message_start ... message_stop) into one reply."""

    blocks: dict[int, _Block] = field(default_factory=dict)
    stop_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    stopped: bool = False

    def add(self, event: Any) -> str:
        """Take one event; return its text delta."""
        kind = event.type
        if kind == "message_start":
            self.input_tokens = event.message.usage.input_tokens or 0
        elif kind == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = _Block(
                type=block.type,
                text=[block.text] if block.type == "text" and block.text else [],
                id=getattr(block, "id", ""),
                name=getattr(block, "name", ""),
                input=getattr(block, "input", None),
            )
        elif kind == "content_block_delta":
            current = self.blocks[event.index]
            delta = event.delta
            if delta.type == "text_delta":
                current.text.append(delta.text)
                return str(delta.text)
            if delta.type == "input_json_delta":
                current.json_parts.append(delta.partial_json)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            if event.usage is not None:
                self.output_tokens = event.usage.output_tokens or 0
        elif kind == "message_stop":
            self.stopped = True
        return ""

    def reply(self) -> ModelReply:
        """The assembled reply; a stream without message_stop was cut off."""
        if not self.stopped:
            raise unavailable(_PROVIDER, "malformed response: stream ended without message_stop")
        text: list[str] = []
        calls: list[ToolCall] = []
        for _, block in sorted(self.blocks.items()):
            if block.type == "text":
                text.extend(block.text)
            elif block.type == "tool_use":
                raw = "".join(block.json_parts)
                calls.append(_tool_call(block.id, block.name, raw if block.json_parts else block.input))
        return ModelReply(
            text="".join(text),
            tool_calls=tuple(calls),
            stop_reason=self.stop_reason,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


def _tool_call(call_id: str, name: str, arguments: object) -> ToolCall:
    if isinstance(arguments, str):
        return ToolCall(id=call_id, name=name, arguments=parse_arguments(arguments), raw_arguments=arguments)
    if isinstance(arguments, dict):
        return ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=json.dumps(arguments))
    if arguments is None:
        return ToolCall(id=call_id, name=name, arguments={}, raw_arguments="")
    return ToolCall(id=call_id, name=name, arguments=None, raw_arguments=json.dumps(arguments))


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral history records as Messages API messages.

    Tool results become `tool_result` blocks of a user message; consecutive messages of one role are
    merged (the API wants user and assistant to alternate); messages with nothing to say are dropped
    (the API rejects empty content); leading assistant messages are dropped (the first must be the user's).
    Records with a `type` (markers) or an unknown role are skipped.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if "type" in message or role not in {"user", "assistant", "tool"}:
            continue
        blocks = _blocks(message)
        if not blocks:
            continue
        api_role = "assistant" if role == "assistant" else "user"
        if not out and api_role != "user":
            continue
        if out and out[-1]["role"] == api_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": api_role, "content": blocks})
    return out


def _blocks(message: Message) -> list[dict[str, Any]]:
    role = message.get("role")
    text = str(message.get("content") or "")
    if role == "user":
        return [{"type": "text", "text": text}] if text.strip() else []
    if role == "assistant":
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
        for call in message.get("tool_calls") or ():
            arguments = call.get("arguments")
            blocks.append(
                {
                    "type": "tool_use",
                    "id": str(call.get("id", "")),
                    "name": str(call.get("name", "")),
                    # Arguments that were not a JSON object go back as {}: the tool result quotes them.
                    "input": dict(arguments) if isinstance(arguments, Mapping) else {},
                }
            )
        return blocks
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for image in cast(Sequence[Mapping[str, Any]], message.get("images") or ()):
        content.append(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": image.get("mime_type"), "data": image.get("data_base64")},
            }
        )
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id", ""))}
    if content:
        result["content"] = content
    if message.get("is_error"):
        result["is_error"] = True
    return [result]
