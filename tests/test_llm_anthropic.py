"""The Anthropic provider: the real `anthropic` SDK over HTTP to the fake server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from conf.settings import BackoffSettings, LLMSettings
from llm import (
    AssistantRecord,
    Image,
    LLMRejected,
    LLMUnavailable,
    ModelMessage,
    ModelRequest,
    ToolCall,
    ToolResultRecord,
    ToolSpec,
    Usage,
    UserRecord,
    build_chat_model,
)
from llm.anthropic_provider import AnthropicChatModel, to_anthropic_messages
from tests.fakes.llm_server import CallTools, Fail, FakeLLMServer, Hang, Malformed, Reply

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
KEY = "sk-ant-test-secret-456"
CLOCK = ToolSpec("clock", "The time now.", {"type": "object", "properties": {}})
ROOT = Path(__file__).resolve().parent.parent
USER = [UserRecord(text="hello there")]


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def raw_model(server: FakeLLMServer, *, stream: bool = True, timeout: float = 5.0) -> AnthropicChatModel:
    return AnthropicChatModel(
        model="claude-test",
        api_key=KEY,
        base_url=server.anthropic_base_url,
        stream=stream,
        request_timeout_seconds=timeout,
    )


def settings(server: FakeLLMServer, **changes: object) -> LLMSettings:
    values: dict[str, object] = {"provider": "anthropic", "model": "claude-test", "base_url": server.anthropic_base_url}
    values["api_key"] = KEY
    return LLMSettings.model_validate(values | changes)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_answer_comes_back_with_the_system_prompt_as_system(llm: FakeLLMServer, stream: bool) -> None:
    model = raw_model(llm, stream=stream)
    reply = await model.complete(ModelRequest("Be brief.", USER))
    await model.aclose()
    assert reply.text == "echo: hello there"
    assert reply.stop_reason == "end_turn"
    request = llm.requests[0]
    assert request.rejection is None
    assert request.stream is stream
    # One text block marked for prompt caching: the same prompt to the model as the string.
    assert request.json["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert request.system == "Be brief."
    assert request.json["max_tokens"] == 1024
    assert request.headers["authorization"] == f"Bearer {KEY}"  # the 2.x SDK sends the key as a bearer token


async def test_streaming_passes_the_text_in_order_as_it_arrives(llm: FakeLLMServer) -> None:
    # Paced: the words arrive in separate reads, and each read's text is one delta.
    llm.script(Reply("alpha beta gamma", chars_per_second=1000))
    deltas: list[str] = []
    model = raw_model(llm)
    reply = await model.complete(ModelRequest("", USER, on_delta=deltas.append))
    await model.aclose()
    assert len(deltas) > 1
    assert "".join(deltas) == reply.text == "alpha beta gamma"


@pytest.mark.parametrize("stream", [False, True])
async def test_the_reported_usage_counts_cached_input_and_the_model(llm: FakeLLMServer, stream: bool) -> None:
    llm.cache_tokens = (5, 3)
    model = raw_model(llm, stream=stream)
    reply = await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert reply.model == "claude-test"
    # The API counts cached input beside `input_tokens`; Usage counts it within.
    reported = llm.requests[0].usage
    assert reported is not None
    assert reported.uncached_input > 0
    assert reply.usage == Usage(reported.uncached_input + 5 + 3, reported.output_tokens, 5, 3)
    assert reply.usage.output_tokens > 1


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_blocks_come_back_as_tool_calls(llm: FakeLLMServer, stream: bool) -> None:
    llm.script(CallTools([("clock", {}), ("clock", {"zone": "UTC"}), ("clock", "{not json")], text="Checking."))
    model = raw_model(llm, stream=stream)
    reply = await model.complete(ModelRequest("", USER, [CLOCK]))
    await model.aclose()
    assert reply.text == "Checking."
    assert reply.stop_reason == "tool_use"
    assert [call.arguments for call in reply.tool_calls] == [{}, {"zone": "UTC"}, None]
    assert reply.tool_calls[2].raw_arguments == "{not json"
    assert all(call.id.startswith("toolu_") for call in reply.tool_calls)
    assert llm.requests[0].json["tools"] == [
        {
            "name": "clock",
            "description": "The time now.",
            "input_schema": CLOCK.parameters,
            "cache_control": {"type": "ephemeral"},
        }
    ]


def _tool_turn(call_ids: list[str], is_error: bool = False, images: tuple[Image, ...] = ()) -> list[ModelMessage]:
    calls = tuple(ToolCall(call_id, "clock", {}) for call_id in call_ids)
    results = [
        ToolResultRecord(tool_call_id=call_id, name="clock", content=f"t{i}", is_error=is_error, images=images)
        for i, call_id in enumerate(call_ids)
    ]
    return [AssistantRecord(text="", tool_calls=calls), *results]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_history_with_tool_results_is_merged_into_alternating_messages(
    llm: FakeLLMServer, stream: bool
) -> None:
    history = [
        AssistantRecord(text="a greeting left over from a trimmed history"),
        UserRecord(text="time?"),
        *_tool_turn(["toolu_a", "toolu_b"], is_error=True),
    ]
    model = raw_model(llm, stream=stream)
    reply = await model.complete(ModelRequest("", history, [CLOCK]))
    await model.aclose()
    request = llm.requests[0]
    assert request.rejection is None
    assert [m["role"] for m in request.json["messages"]] == ["user", "assistant", "user"]
    assert [r.tool_call_id for r in request.tool_results] == ["toolu_a", "toolu_b"]
    assert all(r.is_error for r in request.tool_results)
    assert reply.text == "tool said: t0 | t1"


def test_consecutive_user_records_are_merged_and_empty_ones_dropped() -> None:
    messages = to_anthropic_messages(
        [
            UserRecord(text="one"),
            UserRecord(text="two"),
            AssistantRecord(text="  "),
            *_tool_turn(["t1"]),
            UserRecord(text="and now?"),
        ]
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["type"] for b in messages[0]["content"]] == ["text", "text"]
    # The tool result stays first in its user message, as the API requires.
    assert [b["type"] for b in messages[2]["content"]] == ["tool_result", "text"]


async def test_images_from_tools_are_sent_as_image_blocks(llm: FakeLLMServer) -> None:
    history: list[ModelMessage] = [
        UserRecord(text="draw"),
        *_tool_turn(
            ["toolu_i"],
            images=(
                Image(
                    "image/png",
                    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
                ),
            ),
        ),
    ]
    model = raw_model(llm)
    await model.complete(ModelRequest("", history, [CLOCK]))
    await model.aclose()
    result = llm.requests[0].json["messages"][-1]["content"][0]
    assert result["content"][1] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        },
    }


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["json", "shape", "disconnect"])
async def test_a_malformed_response_is_unavailable(llm: FakeLLMServer, stream: bool, kind: str) -> None:
    llm.script(Malformed(kind))  # type: ignore[arg-type]
    model = raw_model(llm, stream=stream)
    with pytest.raises(LLMUnavailable):
        await model.complete(ModelRequest("", USER))
    await model.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_server_that_never_answers_times_out_as_unavailable(llm: FakeLLMServer, stream: bool) -> None:
    llm.script(Hang())
    model = raw_model(llm, stream=stream, timeout=0.3)
    with pytest.raises(LLMUnavailable, match="timed out"):
        await model.complete(ModelRequest("", USER))
    await model.aclose()


async def test_429_with_retry_after_waits_that_long_then_succeeds(llm: FakeLLMServer) -> None:
    llm.script([Fail(429, retry_after=0.2)])
    model = build_chat_model(settings(llm), FAST)
    with capture_logs() as logs:
        reply = await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert reply.text == "echo: hello there"
    assert llm.requests[1].received_at - llm.requests[0].received_at >= 0.2 * 0.9
    assert [(line["status"], line["wait_s"]) for line in logs if line["event"] == "llm_retry"] == [(429, 0.2)]


async def test_overloaded_then_success_is_retried(llm: FakeLLMServer) -> None:
    llm.script([Fail(529), Fail(500)])
    model = build_chat_model(settings(llm, stream=False), FAST)
    reply = await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert reply.text == "echo: hello there"
    assert len(llm.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_refused_request_is_rejected_once(llm: FakeLLMServer, status: int) -> None:
    llm.script(lambda request: Fail(status))
    model = build_chat_model(settings(llm), FAST)
    with pytest.raises(LLMRejected) as caught:
        await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert caught.value.status == status
    assert len(llm.requests) == 1
    assert KEY not in str(caught.value)


async def test_an_outage_gives_up_within_the_budget(llm: FakeLLMServer) -> None:
    llm.script(lambda request: Fail(529))
    model = build_chat_model(settings(llm, retry_budget_seconds=0.25), FAST)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert caught.value.status == 529
    assert time.monotonic() - started < 0.25 + 1.0


def test_building_the_anthropic_model_imports_only_the_anthropic_sdk() -> None:
    code = (
        "from conf.settings import LLMSettings, BackoffSettings\n"
        "from llm import build_chat_model\n"
        "build_chat_model(LLMSettings(provider='anthropic', api_key='k'), BackoffSettings())\n"
        "import sys; print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    modules = {name.split(".")[0] for name in out.split()}
    assert "anthropic" in modules
    assert "openai" not in modules
