"""What the fake model server checks and counts in a completion request beyond its basic shape:
`stream_options`, `cache_control` markers, image input (and a model that refuses it), and the
prompt's token usage with its cached part (see _llm_tokens.py and _llm_images.py)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.fakes._llm_images import FakeImage, ImageRejected, check_anthropic, check_openai
from tests.fakes._llm_tokens import (
    FakeUsage,
    PromptCache,
    anthropic_image_tokens,
    anthropic_segments,
    check_cache_controls,
    image_placeholder,
    openai_image_tokens,
    openai_prompt,
)

if TYPE_CHECKING:
    from tests.fakes.llm_server import FakeLLMRequest


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused request: HTTP status and the provider's message (OpenAI's `param` and `code` too)."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None


def refuses_images(setting: bool | Collection[str], model: str) -> bool:
    """True if the server's `refuse_images` setting covers this model."""
    if isinstance(setting, bool):
        return setting
    return model in setting


def inspect(
    request: FakeLLMRequest, *, refuse_images: bool | Collection[str], cache: PromptCache, min_cache_tokens: int
) -> Rejection | None:
    """Check what _check leaves out; on success set `request.images` and `request.usage` (input side)."""
    body: dict[str, Any] = request.json
    if request.provider == "openai":
        if body.get("stream_options") is not None and not body.get("stream"):
            return Rejection(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
    else:
        problem = check_cache_controls(body)
        if problem is not None:
            return Rejection(400, problem)
    try:
        images = check_openai(request.messages) if request.provider == "openai" else check_anthropic(request.messages)
    except ImageRejected as exc:
        return Rejection(400, exc.message, exc.param, exc.code)
    model = str(body.get("model"))
    if images and refuses_images(refuse_images, model):
        first = images[0]
        if request.provider == "openai":
            return Rejection(
                400,
                "Invalid content type. image_url is only supported by certain models.",
                f"messages.[{first.message_index}].content.[{first.content_index}].type",
            )
        return Rejection(
            400,
            f"messages.{first.message_index}.content.{first.content_index}.image: "
            f"model {model} does not support image input",
        )
    request.images = images
    request.usage = _input_usage(request, images, cache, min_cache_tokens)
    return None


def _input_usage(
    request: FakeLLMRequest, images: list[FakeImage], cache: PromptCache, min_cache_tokens: int
) -> FakeUsage:
    body: dict[str, Any] = request.json
    model = str(body.get("model"))
    placeholders: dict[str, str] = {}
    for part, image in zip(_image_keys(request) if images else (), images, strict=True):
        cost = (
            openai_image_tokens(image.width, image.height, image.detail or "auto")
            if request.provider == "openai"
            else anthropic_image_tokens(image.width, image.height)
        )
        placeholders[part] = image_placeholder(image.digest, cost)
    if request.provider == "openai":
        total, cached = cache.openai(model, openai_prompt(body, placeholders))
        return FakeUsage(total, 0, cached, 0)
    total, read, write = cache.anthropic(model, anthropic_segments(body, placeholders), min_cache_tokens)
    return FakeUsage(total, 0, read, write)


def _image_keys(request: FakeLLMRequest) -> list[str]:
    """The string identifying each image in the body (data URL / base64 data), in check order."""
    from tests.fakes._llm_images import anthropic_images

    if request.provider == "anthropic":
        return [block["source"]["data"] for block, _ in anthropic_images(request.messages)]
    keys: list[str] = []
    for message in request.messages:
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                keys.append(part["image_url"]["url"])
    return keys
