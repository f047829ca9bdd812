"""OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, OpenRouter, LM Studio, ...) on the `openai` SDK.

Importing this module imports `openai`; `llm.factory` imports it only when the provider is `openai`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import openai
from openai.types.chat import ChatCompletion

from llm._clients import SdkChatModel
from llm._direct import EncodedTools
from llm._errors import parse_arguments, unavailable
from llm.attachments import shown_images, user_text
from llm.base import ModelReply, ModelRequest, ToolSpec
from llm.records import AssistantRecord, Image, ModelMessage, ToolCall, ToolResultRecord, Usage, UserRecord

__all__ = ["OpenAIChatModel", "to_openai_messages"]

_PROVIDER = "openai"


class OpenAIChatModel(SdkChatModel):
    """A ChatModel on `AsyncOpenAI` (see SdkChatModel)."""

    provider = _PROVIDER
    sdk: ClassVar[ModuleType] = openai
    client_class = openai.AsyncOpenAI
    path = "/chat/completions"
    response_type = ChatCompletion

    def body(self, request: ModelRequest) -> dict[str, Any]:
        """A chat.completions request."""
        # OpenAI's own API wants `max_completion_tokens` (its reasoning models reject `max_tokens`);
        # compatible servers (Ollama, vLLM, LM Studio) have long known `max_tokens` only.
        max_tokens_key = "max_tokens" if self._base_url else "max_completion_tokens"
        messages = to_openai_messages(request.system, request.messages, request.images)
        if request.volatile_system.strip():
            # After the history: OpenAI caches the longest prefix it has seen (from 1024 tokens),
            # so what changes every turn must not come before what does not.
            messages.append({"role": "system", "content": request.volatile_system})
        body: dict[str, Any] = {
            "model": request.model or self._model,
            "messages": messages,
            "temperature": self._temperature,
            max_tokens_key: self._max_output_tokens,
        }
        if request.tools:
            body["tools"] = _tools(request.tools)
        if self._stream:
            # Without it a stream reports no usage at all.
            body["stream_options"] = {"include_usage": True}
        return body

    def read(self, response: Any) -> ModelReply:
        """The reply in a chat.completion."""
        if not response.choices:
            raise unavailable(_PROVIDER, "malformed response: no choices")
        choice = response.choices[0]
        calls = tuple(
            _tool_call(call.id, call.function.name, call.function.arguments)
            for call in (choice.message.tool_calls or ())
            if call.type == "function"
        )
        text = choice.message.content or ""
        return ModelReply(text, calls, choice.finish_reason or "", _usage(response.usage), self._model)

    def accumulator(self) -> _StreamAccumulator:
        """Assembles chat.completion.chunk events."""
        return _StreamAccumulator(self._model)


def _usage(usage: Any) -> Usage:
    """Usage as chat completions report it: `prompt_tokens` includes the cached ones."""
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cache_read_tokens=cached)


def _json_usage(usage: dict[str, Any]) -> Usage:
    """`_usage` of a streamed chunk's JSON."""
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cache_read_tokens=cached)


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StreamAccumulator:
    """Assembles chat.completion.chunk events: text deltas, and tool calls whose pieces arrive by index."""

    model: str
    text: list[str] = field(default_factory=list)
    calls: dict[Any, _PartialCall] = field(default_factory=dict)  # by index (None: a server left it out)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    done: bool = False

    def add(self, event: str, data: str) -> str:
        """Take one event (a chunk's JSON, or `[DONE]`); return its text delta."""
        if self.done:  # what follows `[DONE]` is not read (the SDK stops there too)
            return ""
        if data.startswith("[DONE]"):
            self.done = True
            return ""
        chunk = json.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            raise unavailable(_PROVIDER, "error during streaming")
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = _json_usage(usage)
        choices = chunk.get("choices")
        if not choices:
            return ""
        choice = choices[0]
        finish_reason = choice.get("finish_reason")
        if finish_reason:
            self.finish_reason = finish_reason
        delta = choice.get("delta")
        if delta is None:
            return ""
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._add_calls(tool_calls)
        text: str = delta.get("content") or ""
        if text:
            self.text.append(text)
        return text

    def _add_calls(self, pieces: list[dict[str, Any]]) -> None:
        for piece in pieces:
            call = self.calls.setdefault(piece.get("index"), _PartialCall())
            if piece.get("id"):
                call.id = piece["id"]
            function = piece.get("function")
            if function is not None:
                if function.get("name"):
                    call.name += function["name"]
                if function.get("arguments"):
                    call.arguments.append(function["arguments"])

    def reply(self) -> ModelReply:
        """The assembled reply; a stream that ended without a finish reason was cut off."""
        if not self.finish_reason:
            raise unavailable(_PROVIDER, "malformed response: stream ended without a finish reason")
        calls = tuple(_tool_call(call.id, call.name, "".join(call.arguments)) for _, call in sorted(self.calls.items()))
        return ModelReply("".join(self.text), calls, self.finish_reason, self.usage, self.model)


def _tool_call(call_id: str | None, name: str, raw_arguments: str) -> ToolCall:
    # Some compatible servers omit ids; the tool result must still point at its call.
    return ToolCall(
        id=call_id or f"call_{uuid.uuid4().hex[:24]}",
        name=name,
        arguments=parse_arguments(raw_arguments),
        raw_arguments=raw_arguments,
    )


_TOOLS: dict[tuple[int, ...], tuple[tuple[ToolSpec, ...], EncodedTools]] = {}
"""Recent tool sets by the identity of their specs (held, so their ids stay theirs)."""
_TOOLS_HELD = 16


def _tools(specs: Sequence[ToolSpec]) -> EncodedTools:
    """The request's `tools`, made (and encoded) once for the same specs: shared, never changed."""
    key = tuple(map(id, specs))
    held = _TOOLS.get(key)
    if held is not None:
        return held[1]
    tools = EncodedTools([_tool_schema(spec) for spec in specs])
    if len(_TOOLS) >= _TOOLS_HELD:
        _TOOLS.clear()  # tool sets come and go (MCP servers): memory stays bounded
    _TOOLS[key] = (tuple(specs), tools)
    return tools


def _tool_schema(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": dict(spec.parameters)},
    }


def to_openai_messages(
    system: str, messages: Sequence[ModelMessage], images: Mapping[str, Image] | None = None
) -> list[dict[str, Any]]:
    """The messages as chat-completions messages, the system prompt first.

    The images the user sent that `images` carries (by file_id) are `image_url` parts (data URLs) of their
    message; images from tools are described in text: tool messages accept text only in this API.
    """
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        match message:
            case UserRecord():
                out.append({"role": "user", "content": _user_content(message, images or {})})
            case AssistantRecord():
                entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
                if message.tool_calls:
                    entry["tool_calls"] = [_call_entry(call) for call in message.tool_calls]
                elif entry["content"] is None:
                    entry["content"] = ""
                out.append(entry)
            case ToolResultRecord():
                out.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": tool_text(message)})
    return out


def _user_content(message: UserRecord, images: Mapping[str, Image]) -> str | list[dict[str, Any]]:
    """Plain text, or (with images shown) the text part and one `image_url` part per image."""
    if not message.attachments:
        return message.text
    shown = shown_images(message, images)
    text = user_text(message, images)
    if not shown:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    for image in shown:
        url = f"data:{image.mime_type};base64,{image.data_base64}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _call_entry(call: ToolCall) -> dict[str, Any]:
    # Arguments that were not a JSON object go back as "{}": the tool result already quotes what the model
    # sent, and some compatible servers reject a history whose arguments do not parse.
    encoded = json.dumps(dict(call.arguments), ensure_ascii=False) if call.arguments is not None else "{}"
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": encoded}}


def tool_text(message: ToolResultRecord) -> str:
    """A tool result's text, with a note for each image (for APIs that take no images in tool results)."""
    notes = [f"[the tool returned an image ({image.mime_type}) that cannot be shown here]" for image in message.images]
    return "\n".join([message.content, *notes]) if notes else message.content
