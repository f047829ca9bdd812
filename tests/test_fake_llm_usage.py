"""The fake model server reports usage and prompt caching as each provider does, and paces streams."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic
from anthropic import BadRequestError as AnthropicBadRequest
from hypothesis import given
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai import BadRequestError as OpenAIBadRequest

from tests.fakes.llm_server import FakeLLMServer, Reply

LONG = "You are a careful assistant. " * 400  # ~11,600 characters: ~2,900 tokens
TOOLS_OPENAI = [{"type": "function", "function": {"name": "time__now", "parameters": {"type": "object"}}}]


@pytest.fixture
async def openai_client(llm: FakeLLMServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=llm.openai_base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def anthropic_client(llm: FakeLLMServer) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(base_url=llm.anthropic_base_url, api_key="k", max_retries=0) as sdk:
        yield sdk


def _system(text: str = LONG, cached: bool = True) -> list[dict[str, Any]]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cached:
        block["cache_control"] = {"type": "ephemeral"}
    return [block]


# -- OpenAI ---------------------------------------------------------------------------------------


async def test_openai_caches_long_prefixes_by_itself(llm: FakeLLMServer, openai_client: AsyncOpenAI) -> None:
    history: list[Any] = [{"role": "system", "content": LONG}, {"role": "user", "content": "first"}]
    first = await openai_client.chat.completions.create(model="gpt-x", messages=history, tools=TOOLS_OPENAI)
    history += [{"role": "assistant", "content": "echo: first"}, {"role": "user", "content": "second"}]
    second = await openai_client.chat.completions.create(model="gpt-x", messages=history, tools=TOOLS_OPENAI)
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert cached % 128 == 0
    # Everything the first request sent is a prefix of the second, less the unfinished 128-token step.
    assert first.usage.prompt_tokens - 128 < cached <= first.usage.prompt_tokens < second.usage.prompt_tokens
    assert llm.requests[1].usage is not None
    assert llm.requests[1].usage.cache_read == cached
    # Another model does not share the cache.
    other = await openai_client.chat.completions.create(model="gpt-y", messages=history, tools=TOOLS_OPENAI)
    assert other.usage is not None
    assert other.usage.prompt_tokens_details is not None
    assert other.usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_does_not_cache_short_prompts(openai_client: AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "short " * 100}]
    for _ in range(2):
        reply = await openai_client.chat.completions.create(model="gpt-x", messages=messages)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens < 1024
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_streams_usage_last_when_asked(openai_client: AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "hello"}]
    stream = await openai_client.chat.completions.create(
        model="gpt-x", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3  # "echo: hello" is 11 characters
    assert last.usage.total_tokens == last.usage.prompt_tokens + 3
    plain = await openai_client.chat.completions.create(model="gpt-x", messages=messages, stream=True)
    assert all(chunk.usage is None for chunk in [c async for c in plain])


async def test_openai_refuses_stream_options_without_stream(openai_client: AsyncOpenAI) -> None:
    with pytest.raises(OpenAIBadRequest, match="only allowed when 'stream' is enabled") as caught:
        await openai_client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream_options={"include_usage": True}
        )
    assert caught.value.param == "stream_options"


# -- Anthropic ------------------------------------------------------------------------------------


async def test_anthropic_writes_then_reads_a_marked_prefix(
    llm: FakeLLMServer, anthropic_client: AsyncAnthropic
) -> None:
    messages: list[Any] = [{"role": "user", "content": "first"}]
    first = await anthropic_client.messages.create(
        model="claude-x", max_tokens=100, system=_system(), messages=messages
    )
    second = await anthropic_client.messages.create(
        model="claude-x", max_tokens=100, system=_system(), messages=[{"role": "user", "content": "other"}]
    )
    written = first.usage.cache_creation_input_tokens
    assert written is not None
    assert written > 1024
    assert (first.usage.cache_read_input_tokens, second.usage.cache_read_input_tokens) == (0, written)
    assert second.usage.cache_creation_input_tokens == 0
    # input_tokens is what was neither read nor written: here the user turn.
    assert 0 < second.usage.input_tokens < 20
    total = llm.requests[1].usage
    assert total is not None
    assert total.input_tokens == second.usage.input_tokens + written


async def test_anthropic_reads_an_earlier_breakpoint_within_twenty_blocks(anthropic_client: AsyncAnthropic) -> None:
    def turn(history: list[Any]) -> list[Any]:
        # The breakpoint moves to the newest user turn, as a conversation's requests place it.
        marked = [dict(m) for m in history]
        last = marked[-1]
        last["content"] = [{"type": "text", "text": last["content"], "cache_control": {"type": "ephemeral"}}]
        return marked

    history: list[Any] = [{"role": "user", "content": "hello"}]
    first = await anthropic_client.messages.create(
        model="claude-x", max_tokens=50, system=_system(cached=False), messages=turn(history)
    )
    history += [{"role": "assistant", "content": "echo: hello"}, {"role": "user", "content": "again"}]
    second = await anthropic_client.messages.create(
        model="claude-x", max_tokens=50, system=_system(cached=False), messages=turn(history)
    )
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens is not None
    assert 0 < second.usage.cache_creation_input_tokens < 30  # only the new turns are written


async def test_anthropic_does_not_cache_below_the_minimum(llm: FakeLLMServer, anthropic_client: AsyncAnthropic) -> None:
    for _ in range(2):
        reply = await anthropic_client.messages.create(
            model="claude-x", max_tokens=10, system=_system("short"), messages=[{"role": "user", "content": "hi"}]
        )
    assert (reply.usage.cache_creation_input_tokens, reply.usage.cache_read_input_tokens) == (0, 0)
    llm.anthropic_min_cache_tokens = 4096  # e.g. a Haiku-class minimum: ~2,900 tokens are not enough
    llm.prompt_cache.clear()
    reply = await anthropic_client.messages.create(
        model="claude-x", max_tokens=10, system=_system(), messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.usage.cache_creation_input_tokens == 0


async def test_anthropic_cache_entries_expire(llm: FakeLLMServer, anthropic_client: AsyncAnthropic) -> None:
    now = [1000.0]
    llm.clock = lambda: now[0]
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    first = await anthropic_client.messages.create(model="claude-x", max_tokens=10, system=_system(), messages=messages)
    now[0] += 299  # a read within five minutes refreshes the entry
    read = await anthropic_client.messages.create(model="claude-x", max_tokens=10, system=_system(), messages=messages)
    now[0] += 299
    again = await anthropic_client.messages.create(model="claude-x", max_tokens=10, system=_system(), messages=messages)
    now[0] += 301
    expired = await anthropic_client.messages.create(
        model="claude-x", max_tokens=10, system=_system(), messages=messages
    )
    written = first.usage.cache_creation_input_tokens
    assert read.usage.cache_read_input_tokens == again.usage.cache_read_input_tokens == written
    assert (expired.usage.cache_read_input_tokens, expired.usage.cache_creation_input_tokens) == (0, written)


async def test_anthropic_streams_usage_in_message_start_and_delta(anthropic_client: AsyncAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "stream please"}]
    await anthropic_client.messages.create(model="claude-x", max_tokens=10, system=_system(), messages=messages)
    starts: list[Any] = []
    deltas: list[Any] = []
    async with anthropic_client.messages.stream(
        model="claude-x", max_tokens=10, system=_system(), messages=messages
    ) as stream:
        async for event in stream:
            if event.type == "message_start":
                starts.append(event.message.usage)
            elif event.type == "message_delta":
                deltas.append(event.usage)
        final = await stream.get_final_message()
    [start] = starts
    [delta] = deltas
    assert start.cache_read_input_tokens > 1024
    assert delta.cache_read_input_tokens == start.cache_read_input_tokens
    assert delta.output_tokens == final.usage.output_tokens == 5  # "echo: stream please": 19 characters
    assert final.usage.cache_read_input_tokens == start.cache_read_input_tokens


async def test_anthropic_allows_four_breakpoints_at_most(anthropic_client: AsyncAnthropic) -> None:
    blocks = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    too_many = r"A maximum of 4 blocks with cache_control may be provided\. Found 5\."
    with pytest.raises(AnthropicBadRequest, match=too_many):
        await anthropic_client.messages.create(
            model="claude-x",
            max_tokens=10,
            system=blocks,
            messages=[{"role": "user", "content": "hi"}],  # type: ignore[arg-type]
        )
    with pytest.raises(AnthropicBadRequest, match="Input should be 'ephemeral'"):
        await anthropic_client.messages.create(
            model="claude-x",
            max_tokens=10,
            system=[{"type": "text", "text": "x", "cache_control": {"type": "forever"}}],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "hi"}],
        )


async def test_caching_can_be_switched_off_for_comparisons(
    llm: FakeLLMServer, anthropic_client: AsyncAnthropic
) -> None:
    llm.prompt_cache.enabled = False
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        reply = await anthropic_client.messages.create(
            model="claude-x", max_tokens=10, system=_system(), messages=messages
        )
    assert (reply.usage.cache_creation_input_tokens, reply.usage.cache_read_input_tokens) == (0, 0)
    assert reply.usage.input_tokens > 2000


# -- pacing ---------------------------------------------------------------------------------------


async def test_streams_are_paced_like_a_model(llm: FakeLLMServer, openai_client: AsyncOpenAI) -> None:
    llm.first_token_delay = 0.25
    llm.chars_per_second = 200
    llm.script(Reply("word " * 16))  # 80 characters: 0.4 s at 200 characters a second
    started = time.monotonic()
    stream = await openai_client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    arrivals = [
        time.monotonic() - started async for chunk in stream if chunk.choices and chunk.choices[0].delta.content
    ]
    assert 0.25 <= arrivals[0] < 0.25 + 0.2
    assert arrivals[-1] >= 0.25 + 0.37
    assert arrivals[-1] - arrivals[0] >= 0.3


async def test_a_reply_can_override_the_pace(llm: FakeLLMServer, anthropic_client: AsyncAnthropic) -> None:
    llm.first_token_delay = 30.0  # would time the test out
    llm.script(Reply("quick", first_token_delay=0.0, chars_per_second=0.0))
    started = time.monotonic()
    reply = await anthropic_client.messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.content[0].text == "quick"  # type: ignore[union-attr]
    assert time.monotonic() - started < 5


@given(role=st.text(max_size=12), content=st.text(max_size=40))
def test_a_plain_message_is_counted_as_its_canonical_json(role: str, content: str) -> None:
    # The fake's fast path for plain text messages must hash and count exactly what the general one does.
    from tests.fakes._llm_tokens import _message_text, _substitute, canonical

    message = {"role": role, "content": content}
    assert _message_text(message, {}) == canonical(_substitute(message, {}))
