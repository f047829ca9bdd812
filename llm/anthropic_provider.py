"""Anthropic's Messages API on the `anthropic` SDK.

Importing this module imports `anthropic`; `llm.factory` imports it only when the provider is `anthropic`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import anthropic
from anthropic.types import Message as AnthropicMessage

from llm._anthropic_cache import cache_breakpoints, volatile_block
from llm._clients import SdkChatModel
from llm._errors import parse_arguments, unavailable
from llm.attachments import shown_images, user_text
from llm.base import ModelReply, ModelRequest
from llm.images import ANTHROPIC_IMAGES, fit_image, left_out_note
from llm.records import AssistantRecord, Image, ModelMessage, ToolCall, ToolResultRecord, Usage, UserRecord

__all__ = ["AnthropicChatModel", "to_anthropic_messages"]

_PROVIDER = "anthropic"


class AnthropicChatModel(SdkChatModel):
    """A ChatModel on `AsyncAnthropic` (see SdkChatModel). The 2.x SDK's messages.create() has no
    sampling parameters (current Claude models fix them), so `temperature` is not sent."""

    provider = _PROVIDER
    sdk: ClassVar[ModuleType] = anthropic
    client_class = anthropic.AsyncAnthropic
    path = "/v1/messages"
    response_type = AnthropicMessage
    # Raw events rather than `messages.stream()`: its helper raises on tool arguments that are not
    # JSON, and we want those back as ToolCall(arguments=None) for the model to correct.

    def body(self, request: ModelRequest) -> dict[str, Any]:
        """A Messages API request, its stable prefix marked for prompt caching (llm._anthropic_cache)."""
        body: dict[str, Any] = {
            "model": request.model or self._model,
            "max_tokens": self._max_output_tokens,
            "messages": to_anthropic_messages(request.messages, request.images),
        }
        if request.system:
            body["system"] = request.system
        if request.tools:
            body["tools"] = [
                {"name": spec.name, "description": spec.description, "input_schema": dict(spec.parameters)}
                for spec in request.tools
            ]
        cache_breakpoints(body)
        volatile_block(body["messages"], request.volatile_system)
        return body

    def read(self, response: Any) -> ModelReply:
        """The reply in a Message."""
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in response.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(_tool_call(block.id, block.name, block.input))
        usage = _usage(response.usage)
        return ModelReply("".join(text), tuple(calls), response.stop_reason or "", usage, self._model)

    def accumulator(self) -> _StreamAccumulator:
        """Assembles the Messages streaming events."""
        return _StreamAccumulator(self._model)


def _usage(usage: Any) -> Usage:
    """Usage as the Messages API reports it: `input_tokens` leaves out what the cache read or wrote."""
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    written = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage((usage.input_tokens or 0) + read + written, usage.output_tokens or 0, read, written)


def _json_usage(usage: dict[str, Any]) -> Usage:
    """`_usage` of a streamed event's JSON."""
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    return Usage((usage.get("input_tokens") or 0) + read + written, usage.get("output_tokens") or 0, read, written)


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

    model: str
    blocks: dict[int, _Block] = field(default_factory=dict)
    stop_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    stopped: bool = False
    done: bool = False  # read to the end of the body, as the SDK does

    def add(self, event: str, data: str) -> str:
        """Take one event; return its text delta. As the SDK reads them: `ping`s, events without a
        name and events without data are skipped, and an `error` event fails the request."""
        if event == "error":
            # Typically overloaded_error inside a 200 stream: worth another try.
            raise unavailable(_PROVIDER, "error event during streaming")
        if not event or event == "ping" or not data:
            return ""
        payload = json.loads(data)
        kind = payload.get("type")
        if kind == "content_block_delta":
            current = self.blocks[payload.get("index")]
            delta = payload["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                current.text.append(delta.get("text"))
                return str(delta.get("text"))
            if delta_type == "input_json_delta":
                current.json_parts.append(delta.get("partial_json"))
        elif kind == "message_start":
            self.usage = _json_usage(payload["message"]["usage"])
        elif kind == "content_block_start":
            block = payload["content_block"]
            block_type = block.get("type")
            self.blocks[payload.get("index")] = _Block(
                type=block_type,
                text=[block["text"]] if block_type == "text" and block.get("text") else [],
                id=block.get("id") or "",
                name=block.get("name") or "",
                input=block.get("input"),
            )
        elif kind == "message_delta":
            self.stop_reason = payload["delta"].get("stop_reason") or self.stop_reason
            usage = payload.get("usage")
            if usage is not None:
                # message_start counted the input; this event carries the output so far.
                self.usage = dataclasses.replace(self.usage, output_tokens=usage.get("output_tokens") or 0)
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
        return ModelReply("".join(text), tuple(calls), self.stop_reason, self.usage, self.model)


def _tool_call(call_id: str, name: str, arguments: object) -> ToolCall:
    if isinstance(arguments, str):
        return ToolCall(id=call_id, name=name, arguments=parse_arguments(arguments), raw_arguments=arguments)
    if isinstance(arguments, dict):
        return ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=json.dumps(arguments))
    if arguments is None:
        return ToolCall(id=call_id, name=name, arguments={}, raw_arguments="")
    return ToolCall(id=call_id, name=name, arguments=None, raw_arguments=json.dumps(arguments))


def to_anthropic_messages(
    messages: Sequence[ModelMessage], images: Mapping[str, Image] | None = None
) -> list[dict[str, Any]]:
    """The messages as Messages API messages, shaped as that API requires; the images the user sent
    that `images` carries (by file_id) are `image` blocks before their message's text.

    Tool results become `tool_result` blocks of a user message; consecutive messages of one role are
    merged (the API wants user and assistant to alternate); messages with nothing to say are dropped
    (the API rejects empty content); leading assistant messages are dropped (the first must be the user's).
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks = _blocks(message, images or {})
        if not blocks:
            continue
        api_role = "assistant" if isinstance(message, AssistantRecord) else "user"
        if not out and api_role != "user":
            continue
        if out and out[-1]["role"] == api_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": api_role, "content": blocks})
    return out


def _blocks(message: ModelMessage, images: Mapping[str, Image]) -> list[dict[str, Any]]:
    match message:
        case UserRecord():
            if not message.attachments:
                return _text_block(message.text)
            shown = [_image_block(image) for image in shown_images(message, images)]
            return shown + _text_block(user_text(message, images))
        case AssistantRecord():
            # Arguments that were not a JSON object go back as {}: the tool result quotes them.
            uses = [
                {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments or {})}
                for call in message.tool_calls
            ]
            return _text_block(message.text) + uses
        case ToolResultRecord():
            return [_tool_result(message)]


def _text_block(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] if text.strip() else []


def _image_block(image: Image) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": image.mime_type, "data": image.data_base64}}


def _tool_result(message: ToolResultRecord) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for image in message.images:
        fitted = fit_image(image, ANTHROPIC_IMAGES)  # a header read for images fitted when recorded
        if fitted is None:
            content.append({"type": "text", "text": left_out_note(image)})
            continue
        content.append(_image_block(fitted))
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if content:
        result["content"] = content
    if message.is_error:
        result["is_error"] = True
    return result
