"""The fake model server checks image input as OpenAI and Anthropic do, and can play a model that can't see."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from anthropic import BadRequestError as AnthropicBadRequest
from openai import AsyncOpenAI
from openai import BadRequestError as OpenAIBadRequest

from tests.fakes import media
from tests.fakes.llm_server import FakeLLMServer


@pytest.fixture
async def openai_client(llm: FakeLLMServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def anthropic_client(llm: FakeLLMServer) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _openai_photo(data: bytes, mime: str = "image/png", detail: str = "auto", role: str = "user") -> list[Any]:
    url = f"data:{mime};base64,{_b64(data)}"
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
    ]
    return (
        [{"role": role, "content": content}]
        if role == "user"
        else [
            {"role": "user", "content": "hi"},
            {"role": role, "content": content},
            {"role": "user", "content": "and?"},
        ]
    )


def _anthropic_photo(data: bytes, media_type: str = "image/png") -> list[Any]:
    image = {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": _b64(data)}}
    return [{"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]}]


# -- OpenAI ---------------------------------------------------------------------------------------


async def test_openai_takes_a_data_url_and_counts_its_tiles(llm: FakeLLMServer, openai_client: AsyncOpenAI) -> None:
    photo = media.png(1024, 768)
    high = await openai_client.chat.completions.create(model="gpt-x", messages=_openai_photo(photo))
    low = await openai_client.chat.completions.create(model="gpt-x", messages=_openai_photo(photo, detail="low"))
    [image] = llm.requests[0].images
    assert (image.width, image.height, image.format, image.data) == (1024, 768, "png", photo)
    assert high.choices[0].message.content == "echo: what is this?"
    assert high.usage is not None
    assert low.usage is not None
    # 1024x768 is 768 on the short side already: 2x2 tiles, 85 + 4 * 170 tokens, against 85 at low detail.
    assert high.usage.prompt_tokens - low.usage.prompt_tokens == (85 + 4 * 170) - 85


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (_openai_photo(media.png(), mime="application/pdf"), "but got unsupported MIME type 'application/pdf'"),
        (_openai_photo(media.corrupt_png()), "Please make sure your image is valid"),
        (_openai_photo(b"plain text, not an image"), "one the following formats"),
        (_openai_photo(media.png(), role="assistant"), "only allowed for messages with role 'user'"),
        (_openai_photo(media.png(), detail="ultra"), "Supported values are: 'low', 'high', and 'auto'"),
    ],
)
async def test_openai_refuses_bad_images(openai_client: AsyncOpenAI, messages: list[Any], error: str) -> None:
    with pytest.raises(OpenAIBadRequest, match=error):
        await openai_client.chat.completions.create(model="gpt-x", messages=messages)


async def test_openai_takes_a_pixel_bomb_on_its_headers_word(llm: FakeLLMServer, openai_client: AsyncOpenAI) -> None:
    await openai_client.chat.completions.create(model="gpt-x", messages=_openai_photo(media.decompression_bomb_png()))
    [image] = llm.requests[0].images
    assert (image.width, image.height) == (10_000, 10_000)


async def test_openai_model_that_cannot_see(llm: FakeLLMServer, openai_client: AsyncOpenAI) -> None:
    llm.refuse_images = {"text-only"}
    with pytest.raises(OpenAIBadRequest, match="image_url is only supported by certain models") as caught:
        await openai_client.chat.completions.create(model="text-only", messages=_openai_photo(media.png()))
    assert caught.value.param == "messages.[0].content.[1].type"
    seen = await openai_client.chat.completions.create(model="vision", messages=_openai_photo(media.png()))
    assert seen.choices[0].message.content == "echo: what is this?"
    text = await openai_client.chat.completions.create(model="text-only", messages=[{"role": "user", "content": "hi"}])
    assert text.choices[0].message.content == "echo: hi"


# -- Anthropic ------------------------------------------------------------------------------------


async def test_anthropic_takes_base64_images(llm: FakeLLMServer, anthropic_client: AsyncAnthropic) -> None:
    photo = media.jpeg(800, 600, noise=False)
    reply = await anthropic_client.messages.create(
        model="claude-x", max_tokens=10, messages=_anthropic_photo(photo, "image/jpeg")
    )
    [image] = llm.requests[0].images
    assert (image.media_type, image.width, image.height, image.data) == ("image/jpeg", 800, 600, photo)
    assert reply.content[0].text == "echo: what is this?"  # type: ignore[union-attr]
    # (800 * 600) / 750 = 640 tokens for the image.
    assert reply.usage.input_tokens >= 640


async def test_anthropic_images_in_tool_results_are_checked_too(
    llm: FakeLLMServer, anthropic_client: AsyncAnthropic
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "take a screenshot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "screen", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/gif", "data": _b64(media.gif())},
                        }
                    ],
                }
            ],
        },
    ]
    tools: Any = [{"name": "screen", "input_schema": {"type": "object"}}]
    await anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=messages, tools=tools)
    assert [image.format for image in llm.requests[0].images] == ["gif"]


@pytest.mark.parametrize(
    ("data", "media_type", "error"),
    [
        (media.png(), "image/jpeg", "Image does not match the provided media type image/jpeg"),
        (media.png(), "image/bmp", "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"),
        (
            media.decompression_bomb_png(),
            "image/png",
            "At least one of the image dimensions exceed max allowed size: 8000",
        ),
        (media.corrupt_png(), "image/png", "Could not process image"),
        (b"GIF89a" + os.urandom(4_000_000), "image/gif", r"image exceeds 5 MB maximum: 5333344 bytes > 5242880 bytes"),
    ],
)
async def test_anthropic_refuses_bad_images(
    anthropic_client: AsyncAnthropic, data: bytes, media_type: str, error: str
) -> None:
    with pytest.raises(AnthropicBadRequest, match=error):
        await anthropic_client.messages.create(
            model="claude-x", max_tokens=10, messages=_anthropic_photo(data, media_type)
        )


async def test_anthropic_limits_sides_to_2000_pixels_beyond_twenty_images(anthropic_client: AsyncAnthropic) -> None:
    small = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _b64(media.png(8, 8))}}
    big = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _b64(media.png(2100, 10))}}
    messages: list[Any] = [{"role": "user", "content": [small] * 20 + [big, {"type": "text", "text": "all"}]}]
    with pytest.raises(AnthropicBadRequest, match="for many-image requests: 2000 pixels"):
        await anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=messages)


async def test_anthropic_model_that_cannot_see(llm: FakeLLMServer, anthropic_client: AsyncAnthropic) -> None:
    llm.refuse_images = True
    with pytest.raises(AnthropicBadRequest, match="does not support image input"):
        await anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=_anthropic_photo(media.png()))
    assert llm.requests[0].rejection is not None
    assert llm.requests[0].images == []
