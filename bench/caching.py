"""Prompt caching over a 50-turn conversation with tools, through the Anthropic and the OpenAI paths.

The real SDKs talk to the fake model server (tests/fakes/llm_server.py), which caches prompts as
each provider does: Anthropic's `cache_control` breakpoints (prefixes from 1024 tokens, read within
20 blocks of a breakpoint, 5 minutes), OpenAI's automatic prefix cache (from 1024 tokens, in
128-token steps). Tokens are the fake's (4 characters a token). Each turn goes through `run_turn`
and the usage meter, as a conversation's turn does: the shipped system prompt and price table, eight
tools of realistic size, three saved facts and the date and time (built and split as a turn does),
and a tool call in two turns out of three. Every conversation is run twice: with the prompt cache, and with the
fake's cache off (the same requests, nothing read or written): the cost without caching.

    .venv/bin/python bench/caching.py [--turns 50] [--all-turns] [--quick]

Prints, per provider, the tokens sent per turn, the cached share and the cost with and without
caching, then a summary. Target: at least 70% of input tokens cached from turn 5 on with Anthropic.
A third run spaces Anthropic's turns 10 minutes apart (past the cache's 5-minute life), where only
a turn's own tool steps read the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.usage import UsageMeter
from bench._harness import format_table
from conf import BackoffSettings, LLMSettings, LogSettings, load_settings
from llm import Record, ToolResult, ToolSpec, TurnContext, TurnRecord, Usage, UserRecord, build_chat_model, run_turn
from llm.instructions import build_instructions, split_instructions
from ops.logs import configure_logging
from stores import InMemoryPreferenceStore, InMemoryUsageStore
from tests.fakes.llm_server import CallTools, FakeLLMRequest, FakeLLMServer, Reply, ResponseSpec

SHIPPED = load_settings(Path(__file__).resolve().parent.parent / "conf" / "config.yml", env={})
MODELS = {"anthropic": "claude-sonnet-5", "openai": "gpt-4o-mini"}
FROM_TURN = 5
TARGET = 0.70

_WORDS = [
    "plan",
    "trip",
    "train",
    "berlin",
    "meeting",
    "tuesday",
    "budget",
    "invoice",
    "garden",
    "tomatoes",
    "weather",
    "rain",
    "jacket",
    "dinner",
    "friends",
    "recipe",
    "pasta",
    "book",
    "chapter",
    "notes",
    "project",
    "deadline",
    "report",
    "draft",
    "email",
    "reply",
    "doctor",
    "appointment",
    "thursday",
    "gym",
    "running",
    "shoes",
    "birthday",
    "gift",
    "sister",
    "museum",
    "tickets",
    "weekend",
]


def words(rng: random.Random, count: int) -> str:
    """A deterministic sentence-like run of words."""
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def tool_specs() -> list[ToolSpec]:
    """Eight tools the size of the assistant's own and a couple of MCP servers'."""
    text = {"type": "string", "description": "Plain text, as the user said it, in their language."}
    specs = [
        ("remember", "Save a fact about the user who is speaking, for later turns.", {"fact": text}),
        ("recall", "The user's saved facts that match a query, best first.", {"query": text}),
        ("forget", "Delete one of the user's saved facts by its id.", {"memory_id": text}),
        ("create_reminder", "Remind the user at a time; optionally repeat, or run a task then.", {"text": text}),
        ("list_reminders", "The reminders of this chat, with their ids and next times.", {}),
        ("cancel_reminder", "Cancel one reminder of this chat by its id.", {"reminder_id": text}),
        ("time__now", "The current time in a given IANA time zone, e.g. Europe/Berlin.", {"zone": text}),
        ("search__web", "Search the web and return the top results with titles and snippets.", {"query": text}),
    ]
    guidance = " Use it when it helps the user; explain what you did in one sentence afterwards."
    return [
        ToolSpec(name, description + guidance * 3, {"type": "object", "properties": properties})
        for name, description, properties in specs
    ]


class BenchTools:
    """The tools above, answering at once with ~300 characters."""

    def __init__(self) -> None:
        self._specs = tool_specs()
        self._rng = random.Random(7)

    def specs(self) -> Sequence[ToolSpec]:
        return self._specs

    async def call(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        return ToolResult(f"{name} result: {words(self._rng, 50)}")


class Script:
    """The fake model's side: in two turns out of three a tool call first, then an answer of ~80 words."""

    def __init__(self) -> None:
        self.turn = 0
        self._rng = random.Random(11)
        self._tools = [spec.name for spec in tool_specs()]

    def __call__(self, request: FakeLLMRequest) -> ResponseSpec:
        if request.tool_results or self.turn % 3 == 2:
            return Reply(words(self._rng, 80))
        return CallTools([(self._tools[self.turn % len(self._tools)], {"query": words(self._rng, 5)})])


@dataclass(frozen=True, slots=True)
class TurnRow:
    turn: int
    calls: int
    usage: Usage
    cost_micros: int


FACTS = [("f1", "lives in Berlin"), ("f2", "prefers short answers"), ("f3", "is vegetarian")]


def turn_context(turn: int) -> TurnContext:
    """The instructions as a conversation's turn builds them (the shipped system prompt, three saved
    facts, the date and time, a minute later each turn), split as the conversation actor splits them."""
    now = datetime(2026, 5, 1, 9, 0, tzinfo=UTC) + timedelta(minutes=turn)
    text = build_instructions(SHIPPED.llm.system_prompt, now=now, zone=ZoneInfo("Europe/Berlin"), facts=FACTS)
    stable, volatile = split_instructions(text)
    return TurnContext(stable, volatile_instructions=volatile)


async def conversation(
    llm: FakeLLMServer, provider: str, turns: int, *, cached: bool, minutes_apart: float = 0.0
) -> list[TurnRow]:
    """One conversation of `turns` turns; what each turn's calls cost."""
    url = llm.anthropic_base_url if provider == "anthropic" else llm.openai_base_url
    settings = LLMSettings(provider=provider, model=MODELS[provider], base_url=url, api_key="bench")
    llm.prompt_cache.clear()
    llm.prompt_cache.enabled = cached
    script = Script()
    llm.script(script)
    now = [0.0]
    llm.clock = lambda: now[0]
    model = build_chat_model(settings, BackoffSettings())
    meter = UsageMeter(InMemoryUsageStore(), InMemoryPreferenceStore(), SHIPPED.usage)
    tools = BenchTools()
    rng = random.Random(3)
    history: list[Record] = []

    async def record(item: TurnRecord) -> None:
        # Numbered as the conversation actor numbers them: where trimming may start depends on it.
        history.append(dataclasses.replace(item, seq=len(history)))

    rows = []
    try:
        for turn in range(turns):
            script.turn = turn
            now[0] = turn * minutes_apart * 60
            history.append(UserRecord(text=f"{words(rng, 25)}?", seq=len(history)))
            metered = meter.for_user(model, user_id=1, model_name=MODELS[provider])
            result = await run_turn(metered, tools, turn_context(turn), history=history, record=record)
            rows.append(TurnRow(turn + 1, result.steps, metered.usage, metered.cost_micros))
    finally:
        await model.aclose()
    return rows


def share(usage: Usage) -> float:
    return usage.cache_read_tokens / usage.input_tokens if usage.input_tokens else 0.0


def total(rows: Sequence[TurnRow]) -> tuple[Usage, int]:
    usage, cost = Usage(), 0
    for row in rows:
        usage += row.usage
        cost += row.cost_micros
    return usage, cost


def turn_table(rows: Sequence[TurnRow], uncached: Sequence[TurnRow], all_turns: bool) -> str:
    shown = [row for row in rows if all_turns or row.turn <= 5 or row.turn % 5 == 0]
    by_turn = {row.turn: row for row in uncached}
    return format_table(
        ["turn", "calls", "input", "cache read", "cache write", "output", "cached", "cost", "cost uncached"],
        [
            [
                str(row.turn),
                str(row.calls),
                f"{row.usage.input_tokens:,}",
                f"{row.usage.cache_read_tokens:,}",
                f"{row.usage.cache_write_tokens:,}",
                f"{row.usage.output_tokens:,}",
                f"{share(row.usage):.0%}",
                f"${row.cost_micros / 1e6:.4f}",
                f"${by_turn[row.turn].cost_micros / 1e6:.4f}",
            ]
            for row in shown
        ],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="15 turns")
    parser.add_argument("--all-turns", action="store_true", help="a row for every turn, not every fifth")
    args = parser.parse_args()
    if args.quick:
        args.turns = 15
    configure_logging(LogSettings(level="WARNING", format="console"), [])
    summary = []
    passed = True
    with FakeLLMServer() as llm:
        runs = [("anthropic", 0.0), ("openai", 0.0), ("anthropic", 10.0)]
        for provider, apart in runs:
            rows = await conversation(llm, provider, args.turns, cached=True, minutes_apart=apart)
            uncached = await conversation(llm, provider, args.turns, cached=False, minutes_apart=apart)
            title = f"{provider} ({MODELS[provider]})" + (f", turns {apart:g} min apart" if apart else "")
            print(f"\n## {title}\n\n{turn_table(rows, uncached, args.all_turns)}")
            usage, cost = total(rows)
            late, _ = total([row for row in rows if row.turn >= FROM_TURN])
            _, cost_uncached = total(uncached)
            if provider == "anthropic" and not apart:
                passed = share(late) >= TARGET
            summary.append(
                [
                    title,
                    f"{usage.input_tokens:,}",
                    f"{share(usage):.1%}",
                    f"{share(late):.1%}",
                    f"${cost / 1e6:.4f}",
                    f"${cost_uncached / 1e6:.4f}",
                    f"{1 - cost / cost_uncached:.0%}" if cost_uncached else "-",
                ]
            )
    headers = ["conversation", "input tokens", "cached", f"cached from turn {FROM_TURN}", "cost", "uncached", "saved"]
    print(f"\n## Summary ({args.turns} turns)\n\n{format_table(headers, summary)}")
    verdict = "met" if passed else "NOT met"
    print(f"\nTarget (>= {TARGET:.0%} of input cached from turn {FROM_TURN} on, Anthropic): {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
