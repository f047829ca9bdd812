"""MCP tool results and schemas converted to the turn loop's provider-neutral shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp_types as types

from llm.base import Image, ToolResult

__all__ = ["MAX_RESULT_CHARS", "convert_result", "object_schema"]

MAX_RESULT_CHARS = 100_000
"""A tool answer longer than this is cut: one runaway tool must not fill the model's context."""

_EMPTY_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}}


def object_schema(schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The tool's input schema as both providers require it: a JSON Schema object with properties."""
    if not isinstance(schema, Mapping) or not schema:
        return dict(_EMPTY_SCHEMA)
    result = dict(schema)
    if result.get("type") != "object":
        # Not an object schema: the model could not send it as named arguments anyway.
        return dict(_EMPTY_SCHEMA)
    result.setdefault("properties", {})
    return result


def convert_result(result: types.CallToolResult) -> ToolResult:
    """Text blocks joined; images kept as images; resources and structured content rendered as text."""
    parts: list[str] = []
    images: list[Image] = []
    has_text = False
    for block in result.content:
        if isinstance(block, types.TextContent):
            has_text = True
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            images.append(Image(mime_type=block.mime_type, data_base64=block.data))
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio ({block.mime_type}) not shown]")
        elif isinstance(block, types.EmbeddedResource):
            has_text = True
            parts.append(_resource_text(block.resource, images))
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.name} <{block.uri}>]")
    # Servers SHOULD mirror structured content as text; show it only when they did not.
    if not has_text and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    text = "\n".join(part for part in parts if part)
    if not text and images:
        text = f"[{len(images)} image{'s' if len(images) > 1 else ''}]"
    if not text and result.is_error:
        text = "the tool reported an error without details"
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[cut: the tool answered {len(text)} characters]"
    return ToolResult(content=text, is_error=result.is_error, images=tuple(images))


def _resource_text(resource: types.TextResourceContents | types.BlobResourceContents, images: list[Image]) -> str:
    uri = str(resource.uri)
    if isinstance(resource, types.TextResourceContents):
        return f"[resource {uri}]\n{resource.text}"
    mime = resource.mime_type or "application/octet-stream"
    if mime.startswith("image/"):
        images.append(Image(mime_type=mime, data_base64=resource.blob))
        return f"[resource {uri}: image]"
    size = len(resource.blob) * 3 // 4  # base64's size, without decoding what is not shown
    return f"[resource {uri}: {mime}, about {size} bytes, not shown]"
