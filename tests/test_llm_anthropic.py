"""The Anthropic provider: the real `anthropic` SDK over HTTP to the fake server."""

from __future__ import annotations

import pytest

from llm import (
    AssistantRecord,
    Image,
    LLMRejected,
    LLMUnavailable,
    ModelMessage,
    ModelRequest,
    ToolCall,
    ToolResultRecord,
    Usage,
    UserRecord,
    build_chat_model,
)
from llm.anthropic_provider import to_anthropic_messages
from tests.fakes.llm_server import CallTools, Fail, FakeLLMServer, Hang
from tests.llm_support import ANTHROPIC, CLOCK, FAST, USER, complete_and_close, imported_after

KEY = ANTHROPIC.key
raw_model = ANTHROPIC.raw_model
settings = ANTHROPIC.settings


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_answer_comes_back_with_the_system_prompt_as_system(llm: FakeLLMServer, stream: bool) -> None:
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("Be brief.", USER))
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


@pytest.mark.parametrize("stream", [False, True])
async def test_the_reported_usage_counts_cached_input_and_the_model(llm: FakeLLMServer, stream: bool) -> None:
    llm.cache_tokens = (5, 3)
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", USER))
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
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", USER, [CLOCK]))
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
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", history, [CLOCK]))
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
    await complete_and_close(raw_model(llm), ModelRequest("", history, [CLOCK]))
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
async def test_a_server_that_never_answers_times_out_as_unavailable(llm: FakeLLMServer, stream: bool) -> None:
    llm.script(Hang())
    with pytest.raises(LLMUnavailable, match="timed out"):
        await complete_and_close(raw_model(llm, stream=stream, timeout=0.3), ModelRequest("", USER))


async def test_overloaded_then_success_is_retried(llm: FakeLLMServer) -> None:
    llm.script([Fail(529), Fail(500)])
    reply = await complete_and_close(build_chat_model(settings(llm, stream=False), FAST), ModelRequest("", USER))
    assert reply.text == "echo: hello there"
    assert len(llm.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_refused_request_is_rejected_once(llm: FakeLLMServer, status: int) -> None:
    llm.script(lambda request: Fail(status))
    with pytest.raises(LLMRejected) as caught:
        await complete_and_close(build_chat_model(settings(llm), FAST), ModelRequest("", USER))
    assert caught.value.status == status
    assert len(llm.requests) == 1
    assert KEY not in str(caught.value)


def test_building_the_anthropic_model_imports_only_the_anthropic_sdk() -> None:
    modules = imported_after(
        "from conf.settings import LLMSettings, BackoffSettings\n"
        "from llm import build_chat_model\n"
        "build_chat_model(LLMSettings(provider='anthropic', api_key='k'), BackoffSettings())"
    )
    assert "anthropic" in modules
    assert "openai" not in modules
