"""What both providers do alike: each real SDK over HTTP to the fake server."""

from __future__ import annotations

import json
import time

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from llm import LLMRejected, LLMUnavailable, ModelRequest, ToolSpec, build_chat_model
from ops.proxies import proxy_for_host
from tests.fakes.llm_server import Fail, FakeLLMServer, Malformed, Reply
from tests.fakes.moto_server import LoopbackProxy
from tests.llm_support import ANTHROPIC, FAST, OPENAI, USER, Provider, complete_and_close

PROVIDERS = pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC], ids=lambda provider: provider.name)


@PROVIDERS
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", ["json", "shape", "disconnect"])
async def test_a_malformed_response_is_unavailable(
    llm: FakeLLMServer, provider: Provider, stream: bool, kind: str
) -> None:
    llm.script(Malformed(kind))  # type: ignore[arg-type]
    with pytest.raises(LLMUnavailable):
        await complete_and_close(provider.raw_model(llm, stream=stream), ModelRequest("", USER))


@PROVIDERS
async def test_streaming_passes_the_text_in_order_as_it_arrives(llm: FakeLLMServer, provider: Provider) -> None:
    # Paced: the words arrive in separate reads, and each read's text is one delta.
    llm.script(Reply("one two three four", chars_per_second=1000))
    deltas: list[str] = []
    reply = await complete_and_close(provider.raw_model(llm), ModelRequest("", USER, on_delta=deltas.append))
    assert len(deltas) > 1
    assert "".join(deltas) == reply.text == "one two three four"


@PROVIDERS
async def test_a_streamed_request_carries_what_the_sdk_sends(llm: FakeLLMServer, provider: Provider) -> None:
    # Streamed requests go straight over aiohttp (llm/_direct.py), whole ones through the SDK: the
    # server must see the same authentication, version, agent and body from both.
    llm.script([Reply("whole"), Reply("streamed")])
    await complete_and_close(provider.raw_model(llm, stream=False), ModelRequest("be brief", USER))
    await complete_and_close(provider.raw_model(llm, stream=True), ModelRequest("be brief", USER))
    whole, streamed = llm.requests
    assert whole.path == streamed.path
    assert streamed.rejection is None
    assert streamed.stream
    assert not whole.stream
    for name in ("authorization", "x-api-key", "anthropic-version", "user-agent", "content-type"):
        assert streamed.headers.get(name) == whole.headers.get(name), name
    assert provider.key in (streamed.headers.get("authorization", "") + streamed.headers.get("x-api-key", ""))
    options = {"stream": False, "stream_options": None}  # a streamed request asks for usage at its end
    assert {**streamed.json, **options} == {**whole.json, **options}


TOOLS = (
    ToolSpec("clock", "What time it is", {"type": "object", "properties": {}}),
    ToolSpec("echo", "Repeat a text, word for wörd", {"type": "object", "properties": {"text": {"type": "string"}}}),
)


@PROVIDERS
async def test_a_streamed_request_carries_the_tools_as_the_sdk_sends_them(
    llm: FakeLLMServer, provider: Provider
) -> None:
    llm.script([Reply("whole"), Reply("streamed"), Reply("streamed again")])
    await complete_and_close(provider.raw_model(llm, stream=False), ModelRequest("be brief", USER, tools=TOOLS))
    model = provider.raw_model(llm, stream=True)
    await model.complete(ModelRequest("be brief", USER, tools=TOOLS))
    await complete_and_close(model, ModelRequest("be brief", USER, tools=TOOLS))
    whole, streamed, again = llm.requests
    assert streamed.rejection is None
    assert streamed.tool_names == whole.tool_names == ["clock", "echo"]
    assert streamed.json["tools"] == again.json["tools"] == whole.json["tools"]


def test_the_same_tools_are_made_and_encoded_once() -> None:
    from llm._direct import EncodedTools, encode_body
    from llm.openai_provider import OpenAIChatModel

    model = OpenAIChatModel(model="gpt-test", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    first, second = (model.body(ModelRequest("be brief", USER, tools=TOOLS)) for _ in range(2))
    assert isinstance(first["tools"], EncodedTools)
    assert first["tools"] is second["tools"]  # one list, one JSON, for as long as the tools stay
    other = model.body(ModelRequest("be brief", USER, tools=TOOLS[:1]))
    assert [tool["function"]["name"] for tool in other["tools"]] == ["clock"]
    plain = json.dumps({**first, "tools": list(first["tools"])}, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(encode_body(first)) == json.loads(plain)  # the same request (tools written last)


@PROVIDERS
async def test_a_refused_streamed_request_reports_the_status_and_the_error_type(
    llm: FakeLLMServer, provider: Provider
) -> None:
    llm.script([Fail(401)])
    with pytest.raises(LLMRejected) as caught:
        await complete_and_close(provider.raw_model(llm), ModelRequest("", USER))
    assert caught.value.status == 401
    assert provider.key not in str(caught.value)


@PROVIDERS
async def test_429_with_retry_after_waits_that_long_then_succeeds(llm: FakeLLMServer, provider: Provider) -> None:
    llm.script([Fail(429, retry_after=0.2)])
    model = build_chat_model(provider.settings(llm), FAST)
    with capture_logs() as logs:
        started = time.monotonic()
        reply = await model.complete(ModelRequest("", USER))
        elapsed = time.monotonic() - started
    await model.aclose()
    assert reply.text == "echo: hello there"
    assert len(llm.requests) == 2
    assert llm.requests[1].received_at - llm.requests[0].received_at >= 0.2 * 0.9
    assert elapsed >= 0.18
    retries = [line for line in logs if line["event"] == "llm_retry"]
    assert [(r["status"], r["wait_s"], r["attempt"]) for r in retries] == [(429, 0.2, 1)]


@pytest.mark.parametrize(
    ("provider", "status", "budget"),
    [(OPENAI, 503, 0.3), (ANTHROPIC, 529, 0.25)],  # 529: Anthropic's "overloaded"
    ids=["openai", "anthropic"],
)
async def test_an_outage_gives_up_within_the_budget_with_the_last_error(
    llm: FakeLLMServer, provider: Provider, status: int, budget: float
) -> None:
    llm.script(lambda request: Fail(status))
    model = build_chat_model(provider.settings(llm, retry_budget_seconds=budget), FAST)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await model.complete(ModelRequest("", USER))
    elapsed = time.monotonic() - started
    await model.aclose()
    assert caught.value.status == status
    assert len(llm.requests) >= 3
    assert elapsed < budget + 1.0  # the budget, plus the duration of the last attempt


class CountingProxy(LoopbackProxy):
    """A forward proxy that passes every request on to the fake server, and counts them."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.paths: list[str] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return await self._forward(request, await request.read())


@PROVIDERS
async def test_a_streamed_request_goes_through_the_proxy_the_environment_names(
    llm: FakeLLMServer, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm.script(Reply("through the proxy"))
    async with CountingProxy(f"http://127.0.0.1:{llm.port}") as proxy:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        proxy_for_host.cache_clear()
        try:
            reply = await complete_and_close(provider.raw_model(llm), ModelRequest("", USER))
        finally:
            proxy_for_host.cache_clear()
    assert reply.text == "through the proxy"
    assert len(proxy.paths) == 1
    assert proxy.paths[0].endswith(("/chat/completions", "/v1/messages"))
