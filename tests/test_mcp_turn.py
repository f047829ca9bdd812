"""A full turn: the model (real SDKs against the fake LLM server) calls MCP tools on real servers
and answers with their results."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import pytest

from conf.mcp import McpServerSettings
from conf.settings import BackoffSettings, LLMSettings
from llm import TurnContext, TurnRecord, UserRecord, record_to_json
from llm.factory import build_chat_model
from llm.turn import run_turn
from tests.fakes.llm_server import CallTools, FakeLLMServer, Reply
from tests.mcp_helpers import FAST, running, stdio_settings
from tools import McpConnection, McpToolbox

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_model_calls_mcp_tools_and_answers_with_their_results(
    provider: Literal["openai", "anthropic"],
) -> None:
    time_settings = McpServerSettings(
        command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"), timeout=10
    )
    fake = McpConnection("fake", stdio_settings(timeout=1), FAST)
    clock = McpConnection("time", time_settings, FAST)
    toolbox = McpToolbox({"fake": fake, "time": clock})
    records: list[dict[str, Any]] = []

    async def record(item: TurnRecord) -> None:
        records.append(record_to_json(item))

    with FakeLLMServer() as llm:
        base_url = llm.openai_base_url if provider == "openai" else llm.anthropic_base_url
        model_name = "gpt-test" if provider == "openai" else "claude-test"
        settings = LLMSettings(provider=provider, model=model_name, base_url=base_url, api_key="test-key", stream=False)
        model = build_chat_model(settings, BackoffSettings())
        llm.script(
            [
                CallTools(
                    [
                        ("time__get_current_time", {"timezone": "Asia/Tokyo"}),
                        ("fake__add", {"a": 20, "b": 22}),
                        ("fake__slow", {"seconds": 30}),
                    ]
                ),
                Reply("Tokyo time noted; the sum is 42; the slow tool timed out."),
            ]
        )
        try:
            async with running(fake), running(clock):
                result = await run_turn(
                    model,
                    toolbox,
                    TurnContext("You are a test.", max_steps=4, context_tokens=8000),
                    history=[UserRecord(text="what time is it in Tokyo, and 20+22?")],
                    record=record,
                )
        finally:
            await model.aclose()
        requests = await llm.await_requests(2)

    assert result.text == "Tokyo time noted; the sum is 42; the slow tool timed out."
    offered = requests[0].tool_names
    assert "time__get_current_time" in offered
    assert "fake__echo" in offered
    time_result, sum_result, slow_result = requests[1].tool_results
    assert json.loads(time_result.content)["timezone"] == "Asia/Tokyo"
    assert not time_result.is_error
    assert sum_result.content == "42"
    assert "did not answer within 1 s" in slow_result.content
    tool_records = [item for item in records if item["role"] == "tool"]
    assert [item["is_error"] for item in tool_records] == [False, False, True]
