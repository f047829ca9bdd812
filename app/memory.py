"""The memory side of the system: each turn's instructions and the built-in memory tools."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from zoneinfo import ZoneInfo

from actors.turn_setup import TurnSetup
from conf import Settings
from llm import Toolbox, load_system_prompt
from stores import FactRanker, FeatureStores
from tools.builtin import BuiltinTool, Toolkit
from tools.memory import memory_tools

__all__ = ["build_turn_setup"]


def build_turn_setup(
    settings: Settings,
    toolbox: Toolbox,
    features: FeatureStores,
    stack: AsyncExitStack,
    *,
    extra_tools: Sequence[BuiltinTool] = (),
) -> TurnSetup:
    """Each turn's instructions (the system prompt, the user's facts, the date and time in their zone)
    and tools (the memory tools, then `extra_tools` of other features, beside `toolbox`'s MCP tools).
    The fact ranker's indexes are dropped when `stack` closes."""
    ranker = FactRanker()
    stack.callback(ranker.close)
    llm = settings.llm
    return TurnSetup(
        load_system_prompt(llm),
        Toolkit(toolbox, [*memory_tools(features.facts, ranker), *extra_tools]),
        default_zone=ZoneInfo(settings.timezone),
        context_tokens=llm.context_tokens,
        facts=features.facts,
        ranker=ranker,
        preferences=features.preferences,
    )
