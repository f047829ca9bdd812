"""Images reach the model only as its provider takes them, and one it refuses cannot break the
conversation: the real SDKs against the fake model server, which checks images as the APIs do."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conf.settings import BackoffSettings, LLMSettings
from llm import (
    ChatModel,
    Image,
    Record,
    ToolResult,
    ToolSpec,
    TurnContext,
    TurnRecord,
    UserRecord,
    build_chat_model,
    run_turn,
)
from llm.images import ANTHROPIC_IMAGES, REFUSED_IMAGE_NOTE, fit_image
from tests.fakes import media
from tests.fakes.llm_server import CallTools, FakeLLMServer, Reply

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0.0)


def encoded(mime: str, data: bytes) -> Image:
    return Image(mime, base64.b64encode(data).decode("ascii"))


def incompressible_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: as many bytes as pixels times three, whatever the encoder does."""
    from PIL import Image as PIL

    out = io.BytesIO()
    PIL.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG", compress_level=1)
    return out.getvalue()


SVG = encoded("image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
HUGE_PNG = encoded("image/png", incompressible_png(1400, 1300))  # about 7 MB of base64: over Anthropic's 5 MB
TALL_PNG = encoded("image/png", media.png(1080, 9000))  # a long screenshot: over 8000 px
MISLABELLED = encoded("image/png", media.jpeg(64, 48, noise=False))  # JPEG bytes declared as PNG


class Screenshots:
    """A toolbox whose one tool answers with the images it was given."""

    def __init__(self, images: Sequence[Image]) -> None:
        self.images = tuple(images)

    def specs(self) -> Sequence[ToolSpec]:
        return [ToolSpec("screenshot", "Take a screenshot", {"type": "object", "properties": {}})]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult("here it is", images=self.images)


def anthropic(llm: FakeLLMServer) -> ChatModel:
    settings = LLMSettings(
        provider="anthropic", model="claude-test", base_url=llm.anthropic_base_url, api_key="k", stream=False
    )
    return build_chat_model(settings, FAST)


async def turn(model: ChatModel, history: list[Record], toolbox: Screenshots) -> tuple[str, list[Record]]:
    recorded: list[Record] = []

    async def record(item: TurnRecord) -> None:
        recorded.append(item)

    result = await run_turn(model, toolbox, TurnContext("Be brief.", 4, 100_000), history=history, record=record)
    return result.text, recorded


async def test_images_a_provider_would_refuse_are_converted_or_left_out_with_a_note(llm: FakeLLMServer) -> None:
    llm.script([CallTools([("screenshot", {})]), Reply("I see them.")])
    toolbox = Screenshots([SVG, HUGE_PNG, TALL_PNG, MISLABELLED])
    model = anthropic(llm)
    try:
        text, recorded = await turn(model, [UserRecord(text="look")], toolbox)
    finally:
        await model.aclose()
    assert text == "I see them."
    request = llm.requests[1]
    assert request.rejection is None
    # Too many bytes: JPEG now; too tall: scaled down, still a PNG; mislabelled: labelled as it is.
    assert [(image.format, max(image.width, image.height) <= 8000) for image in request.images] == [
        ("jpeg", True),
        ("png", True),
        ("jpeg", True),
    ]
    [result] = request.tool_results
    assert "image/svg+xml" in result.content  # the model is told what it cannot see
    stored = recorded[1].images  # type: ignore[union-attr]
    assert all(len(image.data_base64) <= 5 * 1024 * 1024 for image in stored)  # stored as sent


async def test_an_image_the_provider_refuses_is_left_out_of_every_later_request(llm: FakeLLMServer) -> None:
    llm.refuse_images = True  # a model that takes no images at all
    llm.script([CallTools([("screenshot", {})]), Reply("I could not see it."), Reply("Fine.")])
    toolbox = Screenshots([encoded("image/png", media.png(32, 32))])
    history: list[Record] = [UserRecord(text="look")]
    model = anthropic(llm)  # one model for the process, as the system builds it
    try:
        text, recorded = await turn(model, history, toolbox)
        assert text == "I could not see it."
        text, _ = await turn(model, [*history, *recorded, UserRecord(text="and now?")], toolbox)
        assert text == "Fine."
    finally:
        await model.aclose()
    refused = [request for request in llm.requests if request.rejection is not None]
    assert len(refused) == 1  # once; the next request of the turn, and the next turn, left it out
    last = llm.requests[-1]
    assert last.images == []
    assert any(REFUSED_IMAGE_NOTE in result for result in _tool_result_texts(last.json))


def _tool_result_texts(body: Any) -> list[str]:
    return [
        inner.get("text", "")
        for message in body["messages"]
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
        for inner in block.get("content", [])
        if inner.get("type") == "text"
    ]


@pytest.mark.parametrize(
    ("image", "kept"),
    [
        (encoded("image/png", media.png(64, 48)), True),
        (encoded("image/gif", media.gif()), True),
        (encoded("image/webp", media.webp()), True),
        (encoded("image/png", media.decompression_bomb_png()), False),
        (encoded("image/png", media.corrupt_png()), False),
        (Image("image/png", "not base64 at all!"), False),
    ],
)
def test_images_that_fit_pass_untouched_and_unreadable_ones_are_refused(image: Image, kept: bool) -> None:
    fitted = fit_image(image, ANTHROPIC_IMAGES, verify=True)
    assert (fitted is image) if kept else (fitted is None)
