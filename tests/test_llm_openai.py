"""The OpenAI-compatible provider, the factory and the fake server: the real `openai` SDK over HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from conf.settings import ConfigError, LLMSettings
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
    UserRecord,
    build_chat_model,
    load_system_prompt,
)
from llm.openai_provider import OpenAIChatModel
from tests.fakes.llm_server import CallTools, Fail, FakeLLMServer, Hang, Reply
from tests.llm_support import CLOCK, FAST, OPENAI, ROOT, USER, complete_and_close, imported_after

KEY = OPENAI.key
ADD = ToolSpec("add", "Add numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})
raw_model = OPENAI.raw_model
settings = OPENAI.settings


@pytest.mark.parametrize("stream", [False, True])
async def test_a_plain_answer_comes_back_with_the_system_prompt_sent_first(llm: FakeLLMServer, stream: bool) -> None:
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("Be brief.", USER))
    assert reply.text == "echo: hello there"
    assert reply.tool_calls == ()
    request = llm.requests[0]
    assert request.rejection is None
    assert request.stream is stream
    assert request.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert "tools" not in request.json


@pytest.mark.parametrize("stream", [False, True])
async def test_the_reported_usage_comes_back_with_cached_tokens_and_the_model(llm: FakeLLMServer, stream: bool) -> None:
    llm.cache_tokens = (5, 0)
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", USER))
    assert reply.model == "gpt-test"
    assert reply.usage.input_tokens > 5
    assert reply.usage.output_tokens > 0
    assert (reply.usage.cache_read_tokens, reply.usage.cache_write_tokens) == (5, 0)
    # A stream reports usage only when asked to.
    assert llm.requests[0].json.get("stream_options") == ({"include_usage": True} if stream else None)


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_come_back_with_their_arguments_parsed(llm: FakeLLMServer, stream: bool) -> None:
    llm.script(CallTools([("clock", {}), ("add", {"a": 1, "b": [2, 3]})], text="Let me check."))
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", USER, [CLOCK, ADD]))
    assert reply.text == "Let me check."
    assert [(call.name, call.arguments) for call in reply.tool_calls] == [("clock", {}), ("add", {"a": 1, "b": [2, 3]})]
    assert len({call.id for call in reply.tool_calls}) == 2
    assert llm.requests[0].json["tools"][1] == {
        "type": "function",
        "function": {"name": "add", "description": "Add numbers.", "parameters": ADD.parameters},
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_arguments_that_are_not_json_become_a_call_without_arguments(llm: FakeLLMServer, stream: bool) -> None:
    llm.script(CallTools([("add", '{"a": 1,,'), ("add", "[1, 2]")]))
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", USER, [ADD]))
    assert [(call.arguments, call.raw_arguments) for call in reply.tool_calls] == [
        (None, '{"a": 1,,'),
        (None, "[1, 2]"),
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_history_with_tool_results_is_accepted_by_the_api(llm: FakeLLMServer, stream: bool) -> None:
    history: list[ModelMessage] = [
        UserRecord(text="what time is it?", seq=1, update_id=7),
        AssistantRecord(text="", tool_calls=(ToolCall("c1", "clock", {}),)),
        ToolResultRecord(
            tool_call_id="c1",
            name="clock",
            content="12:00",
            is_error=False,
            images=(Image("image/png", "AAAA"),),
        ),
    ]
    reply = await complete_and_close(raw_model(llm, stream=stream), ModelRequest("", history, [CLOCK]))
    request = llm.requests[0]
    assert request.rejection is None
    assert reply.text.startswith("tool said: 12:00")
    assert "image/png" in request.json["messages"][-1]["content"]
    assert all(set(m) <= {"role", "content", "tool_calls", "tool_call_id"} for m in request.json["messages"])


async def test_a_request_the_api_refuses_is_rejected_with_its_status(llm: FakeLLMServer) -> None:
    model = OpenAIChatModel(model="", api_key=KEY, base_url=llm.openai_base_url)
    with pytest.raises(LLMRejected) as caught:
        await complete_and_close(model, ModelRequest("", USER))
    assert caught.value.status == 400
    assert llm.requests[0].rejection == "you must provide a model parameter"


async def test_a_server_that_never_answers_times_out_as_unavailable(llm: FakeLLMServer) -> None:
    llm.script(Hang())
    model = raw_model(llm, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="timed out"):
        await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert time.monotonic() - started < 3


async def test_a_500_is_retried_until_the_model_answers(llm: FakeLLMServer) -> None:
    llm.script([Fail(500), Fail(503), Reply("finally")])
    reply = await complete_and_close(build_chat_model(settings(llm, stream=False), FAST), ModelRequest("", USER))
    assert reply.text == "finally"
    assert len(llm.requests) == 3


async def test_a_wrong_key_is_rejected_once_and_logged_without_the_key(llm: FakeLLMServer) -> None:
    llm.script(lambda request: Fail(401))
    model = build_chat_model(settings(llm), FAST)
    with capture_logs() as logs, pytest.raises(LLMRejected) as caught:
        await model.complete(ModelRequest("", USER))
    await model.aclose()
    assert caught.value.status == 401
    assert len(llm.requests) == 1
    assert [line["status"] for line in logs if line["event"] == "llm_request_rejected"] == [401]
    assert KEY not in str(caught.value)
    assert KEY not in repr(logs)


async def test_an_empty_api_key_still_reaches_a_local_server(llm: FakeLLMServer) -> None:
    reply = await complete_and_close(build_chat_model(settings(llm, api_key=""), FAST), ModelRequest("", USER))
    assert reply.text == "echo: hello there"
    assert llm.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_the_fake_server_answers_many_requests_concurrently(llm: FakeLLMServer) -> None:
    llm.latency = 0.5
    model = build_chat_model(settings(llm, stream=False), FAST)
    started = time.monotonic()
    replies = await asyncio.gather(*(model.complete(ModelRequest("", [UserRecord(text=f"n{i}")])) for i in range(100)))
    elapsed = time.monotonic() - started
    await model.aclose()
    assert sorted(reply.text for reply in replies) == sorted(f"echo: n{i}" for i in range(100))
    assert elapsed < 10  # one after another it would take 50 s (the margin is for a loaded 2-core machine)
    assert len(await llm.await_requests(100, timeout=1)) == 100


def test_the_fake_server_refuses_a_request_without_a_key_with_401() -> None:
    with FakeLLMServer() as server:
        llm_settings = LLMSettings(provider="openai", base_url=server.openai_base_url, api_key=KEY)
        assert server.base_url.startswith("http://127.0.0.1:")
        import httpx2

        response = httpx2.post(f"{server.openai_base_url}/chat/completions", json={"model": "m", "messages": []})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert server.wait_for_requests(1, timeout=1)[0].rejection is not None
        assert llm_settings.model == "gpt-4o-mini"


def test_importing_llm_imports_no_provider_sdk() -> None:
    modules = imported_after("import llm")
    assert "openai" not in modules
    assert "anthropic" not in modules


def test_building_the_openai_model_imports_only_the_openai_sdk() -> None:
    modules = imported_after(
        "from conf.settings import LLMSettings, BackoffSettings\n"
        "from llm import build_chat_model\n"
        "build_chat_model(LLMSettings(provider='openai', api_key='k'), BackoffSettings())"
    )
    assert "openai" in modules
    assert "anthropic" not in modules


def test_the_system_prompt_file_wins_over_the_inline_prompt(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are a pirate.\n", encoding="utf-8")
    assert load_system_prompt(LLMSettings(system_prompt="inline")) == "inline"
    assert (
        load_system_prompt(LLMSettings(system_prompt="inline", system_prompt_file=str(prompt))) == "You are a pirate."
    )


def test_a_missing_system_prompt_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_system_prompt(LLMSettings(system_prompt_file=str(tmp_path / "nope.txt")))
    assert caught.value.setting == "llm.system_prompt_file"


def test_a_lazy_model_imports_its_sdk_only_when_first_asked() -> None:
    with FakeLLMServer() as server:
        code = (
            "import asyncio, sys\n"
            "from conf import BackoffSettings, LLMSettings\n"
            "from llm import ModelRequest, UserRecord, build_chat_model\n"
            f"settings = LLMSettings(provider='openai', base_url={server.openai_base_url!r}, api_key='k')\n"
            "model = build_chat_model(settings, BackoffSettings(), lazy=True)\n"
            "print('openai' in sys.modules)\n"
            "async def main():\n"
            "    reply = await model.complete(ModelRequest('s', [UserRecord(text='hi')]))\n"
            "    print('openai' in sys.modules, reply.text)\n"
            "    await model.aclose()\n"
            "asyncio.run(main())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False", "True echo: hi"]


async def test_a_hung_model_cannot_keep_the_user_waiting_past_the_retry_budget() -> None:
    with FakeLLMServer() as server:
        server.script(lambda request: Hang())
        settings = LLMSettings(
            provider="openai",
            base_url=server.openai_base_url,
            api_key=KEY,
            request_timeout_seconds=60,  # the SDK alone would wait a minute
            retry_budget_seconds=2,
        )
        model = build_chat_model(settings, FAST)
        started = time.monotonic()
        with pytest.raises(LLMUnavailable):
            await model.complete(ModelRequest("s", [UserRecord(text="hi")]))
        elapsed = time.monotonic() - started
        await model.aclose()
    assert elapsed < 10  # the budget (2 s) bounds it; a generous bound for a loaded machine
