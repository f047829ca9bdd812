"""The settings of usage and model choice: LLM_MODELS, DAILY_TOKEN_BUDGET, the price table, the owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from conf import AllowedUsers, ConfigError, ModelPrice, load_settings

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "config.yml"


def test_the_shipped_file_prices_the_default_models_and_has_no_budget() -> None:
    settings = load_settings(SHIPPED, env={})
    assert settings.usage.daily_token_budget == 0
    assert settings.timezone == "UTC"
    assert settings.llm.models == ("gpt-4o-mini",)
    assert settings.usage.price("gpt-4o-mini") == ModelPrice(input=0.15, cached_input=0.075, output=0.6)
    anthropic = load_settings(SHIPPED, env={"LLM_PROVIDER": "anthropic"})
    sonnet = settings.usage.price(anthropic.llm.model)
    assert sonnet == ModelPrice(input=2.0, cached_input=0.2, cache_write=2.5, output=10.0)
    assert settings.usage.price("some-local-model") is None


def test_llm_models_lists_the_choices_and_its_first_is_the_default() -> None:
    settings = load_settings(SHIPPED, env={"LLM_MODELS": " gpt-4o , gpt-4o-mini,,gpt-4o ", "TIMEZONE": "Asia/Tokyo"})
    assert (settings.llm.model, settings.llm.models) == ("gpt-4o", ("gpt-4o", "gpt-4o-mini"))
    assert settings.timezone == "Asia/Tokyo"


def test_llm_model_is_always_among_the_choices() -> None:
    settings = load_settings(SHIPPED, env={"LLM_MODEL": "o4-mini", "LLM_MODELS": "gpt-4o"})
    assert (settings.llm.model, settings.llm.models) == ("o4-mini", ("o4-mini", "gpt-4o"))


def test_the_daily_budget_is_read_and_checked() -> None:
    assert load_settings(SHIPPED, env={"DAILY_TOKEN_BUDGET": "200000"}).usage.daily_token_budget == 200_000
    assert load_settings(SHIPPED, env={"DAILY_TOKEN_BUDGET": ""}).usage.daily_token_budget == 0
    with pytest.raises(ConfigError) as raised:
        load_settings(SHIPPED, env={"DAILY_TOKEN_BUDGET": "-1"})
    assert raised.value.setting == "DAILY_TOKEN_BUDGET"


def test_a_negative_or_misspelt_price_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("usage:\n  prices:\n    m: {input: -1, output: 1}\n")
    with pytest.raises(ConfigError, match=r"usage\.prices\.m\.input"):
        load_settings(config, env={})
    config.write_text("usage:\n  prices:\n    m: {input: 1, output: 1, cached: 0.5}\n")
    with pytest.raises(ConfigError, match=r"usage\.prices\.m\.cached"):
        load_settings(config, env={})


def test_the_owner_is_the_first_id_listed() -> None:
    assert AllowedUsers.parse("7, 3, 5").owner == 7
    assert AllowedUsers.parse([9, 1]).owner == 9
    assert AllowedUsers.parse("*").owner is None
    everyone_and_owner = AllowedUsers.parse("12,*")
    assert (everyone_and_owner.owner, everyone_and_owner.everyone, everyone_and_owner.allows(99)) == (12, True, True)
    assert AllowedUsers.parse("").owner is None


def test_check_names_the_budget() -> None:
    from app.check import FEATURES

    on = FEATURES["budget"](load_settings(SHIPPED, env={"DAILY_TOKEN_BUDGET": "50000"}))
    assert (on.on, on.detail, on.probe) == (True, "50,000 tokens per user and day", None)
    assert not FEATURES["budget"](load_settings(SHIPPED, env={})).on
