"""Settings of what the model costs: the price table, the daily token budget, and the models users may pick."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelPrice", "UsageSettings", "model_list"]


class ModelPrice(BaseModel):
    """One model's list prices in US dollars per million tokens.

    `cached_input` is what a prompt-cache read costs (OpenAI's "cached input", Anthropic's "cache
    hits"); `cache_write` what Anthropic charges to write the cache (5-minute writes: 1.25 times
    `input`). Either left empty is charged at `input` (OpenAI writes its cache at the input price).
    """

    # As conf.settings.SettingsModel (not imported: conf.settings imports this module).
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class UsageSettings(BaseModel):
    """Usage accounting: `daily_token_budget` (input + output tokens per user and day in their time
    zone, 0 for unlimited) and `prices` by model name (a model without a price costs nothing shown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_token_budget: int = Field(0, ge=0)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    def price(self, model: str) -> ModelPrice | None:
        """The price of `model`, or None where none is configured."""
        return self.prices.get(model)


def model_list(raw: object) -> object:
    """`LLM_MODELS` as a tuple of names: a comma-separated string or a list; blanks and repeats dropped."""
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        return raw  # pydantic reports the wrong type
    names: list[str] = []
    for item in items:
        name = str(item).strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)
