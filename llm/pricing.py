"""What a model call cost, from its usage and the model's list prices."""

from __future__ import annotations

from conf.usage import ModelPrice
from llm.records import Usage

__all__ = ["cost_micros"]


def cost_micros(usage: Usage, price: ModelPrice | None) -> int:
    """The cost of `usage` in millionths of a US dollar (0 when `price` is None).

    Input the prompt cache served is charged at `cached_input`, input written to it at
    `cache_write`, the rest at `input` (either price left empty is `input`). A price is dollars
    per million tokens, so tokens times price is micro-dollars; rounded once, per call.
    """
    if price is None:
        return 0
    cached = price.input if price.cached_input is None else price.cached_input
    written = price.input if price.cache_write is None else price.cache_write
    uncached = max(0, usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens)
    total = (
        uncached * price.input
        + usage.cache_read_tokens * cached
        + usage.cache_write_tokens * written
        + usage.output_tokens * price.output
    )
    return round(total)
