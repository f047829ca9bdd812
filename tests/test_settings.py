"""Settings: interpolation, validation, and one readable line for every kind of mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conf import AllowedUsers, ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "config.yml"


def load(env: dict[str, str] | None = None, path: Path = SHIPPED) -> object:
    return load_settings(path, env=env or {})


def test_the_shipped_file_loads_with_an_empty_environment() -> None:
    settings = load_settings(SHIPPED, env={})
    assert settings.telegram.token == ""
    assert settings.telegram.allowed_user_ids == AllowedUsers()
    assert settings.llm.provider == "openai"
    assert settings.llm.model == "gpt-4o-mini"
    assert settings.store.backend == "file"
    assert settings.store.dir == "data/conversations"
    assert settings.actors.idle_seconds == 600
    assert settings.health.port == 8080
    assert settings.logging.level == "INFO"
    assert settings.logging.format == "json"
    assert settings.mcp_config == "conf/mcp.yml"


def test_every_contract_variable_reaches_its_setting() -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": "123:abc",
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:8081/bot",
        "TELEGRAM_ALLOWED_USER_IDS": "1, 22 ,333",
        "LLM_PROVIDER": "anthropic",
        "LLM_MODEL": "claude-x",
        "LLM_API_KEY": "key",
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "STORE_BACKEND": "dynamodb",
        "STORE_DIR": "/srv/assistant/data",
        "DYNAMODB_TABLE": "t",
        "AWS_REGION": "eu-west-1",
        "DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:5000",
        "DYNAMODB_CREATE_TABLE": "true",
        "MCP_CONFIG": "other.yml",
        "ACTOR_IDLE_SECONDS": "30",
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "console",
    }
    settings = load_settings(SHIPPED, env=env)
    assert settings.telegram.token == "123:abc"
    assert settings.telegram.api_base_url == "http://127.0.0.1:8081/bot"
    assert settings.telegram.allowed_user_ids.user_ids == frozenset({1, 22, 333})
    assert (settings.llm.provider, settings.llm.model, settings.llm.api_key) == ("anthropic", "claude-x", "key")
    assert settings.llm.base_url == "http://127.0.0.1:9/v1"
    assert (settings.store.backend, settings.store.dir) == ("dynamodb", "/srv/assistant/data")
    dynamo = settings.store.dynamodb
    assert (dynamo.table, dynamo.region, dynamo.endpoint_url, dynamo.create_table) == (
        "t",
        "eu-west-1",
        "http://127.0.0.1:5000",
        True,
    )
    assert settings.mcp_config == "other.yml"
    assert settings.actors.idle_seconds == 30
    assert settings.health.port == 0
    assert (settings.logging.level, settings.logging.format) == ("DEBUG", "console")


def test_a_star_lets_everyone_in() -> None:
    allowed = load_settings(SHIPPED, env={"TELEGRAM_ALLOWED_USER_IDS": "*"}).telegram.allowed_user_ids
    assert allowed.everyone
    assert allowed.allows(42)
    assert not AllowedUsers().allows(42)


def test_the_api_key_falls_back_to_the_providers_own_variable() -> None:
    assert load_settings(SHIPPED, env={"OPENAI_API_KEY": "o"}).llm.api_key == "o"
    anthropic = load_settings(
        SHIPPED, env={"LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o"}
    )
    assert anthropic.llm.api_key == "a"
    assert load_settings(SHIPPED, env={"LLM_API_KEY": "x", "OPENAI_API_KEY": "o"}).llm.api_key == "x"


def test_settings_cannot_be_changed_once_loaded() -> None:
    settings = load_settings(SHIPPED, env={})
    with pytest.raises(ValueError, match="frozen"):
        settings.llm.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEGRAM_ALLOWED_USER_IDS": "abc"}, "TELEGRAM_ALLOWED_USER_IDS: 'abc' is not a numeric user id"),
        ({"TELEGRAM_ALLOWED_USER_IDS": "1,2x"}, "TELEGRAM_ALLOWED_USER_IDS: '2x' is not a numeric user id"),
        ({"ACTOR_IDLE_SECONDS": "soon"}, "ACTOR_IDLE_SECONDS: 'soon'"),
        ({"ACTOR_IDLE_SECONDS": "-5"}, "ACTOR_IDLE_SECONDS: '-5': Input should be greater than 0"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT: '70000': Input should be less than or equal to 65535"),
        ({"LLM_PROVIDER": "gemini"}, "LLM_PROVIDER: 'gemini': Input should be 'openai' or 'anthropic'"),
        ({"STORE_BACKEND": "s3"}, "STORE_BACKEND: 's3'"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: 'LOUD'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: 'xml'"),
        ({"DYNAMODB_CREATE_TABLE": "maybe"}, "DYNAMODB_CREATE_TABLE: 'maybe'"),
        ({"TELEGRAM_API_BASE_URL": "ftp://x"}, "TELEGRAM_API_BASE_URL: 'ftp://x' is not an http(s) URL"),
        ({"LLM_BASE_URL": "localhost:11434"}, "LLM_BASE_URL: 'localhost:11434' is not an http(s) URL"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_problem(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(SHIPPED, env=env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_an_empty_number_variable_means_the_default() -> None:
    assert load_settings(SHIPPED, env={"HEALTH_PORT": "", "ACTOR_IDLE_SECONDS": ""}).health.port == 8080


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config: file '.*nope.yml' does not exist"):
        load_settings(tmp_path / "nope.yml", env={})


def test_malformed_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("telegram:\n  token: [unclosed\nllm: {}\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line \d+"):
        load_settings(path, env={})


def test_the_shipped_files_read_the_same_with_libyaml_which_start_up_uses() -> None:
    import yaml

    from conf.settings import load_yaml_file

    assert yaml.__with_libyaml__  # the pinned PyYAML's wheel: start-up takes the fast parser
    for path in (SHIPPED, ROOT / "conf" / "mcp.yml"):
        assert load_yaml_file(path, "test") == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping of settings, not list"):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("telegram:\n  tokne: x\n", "telegram.tokne"),
        ("lmm:\n  model: x\n", "lmm"),
        ("store:\n  dynamodb:\n    tabel: x\n", "store.dynamodb.tabel"),
    ],
)
def test_a_typo_in_a_key_is_an_error(tmp_path: Path, text: str, setting: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.setting == setting
    assert "unknown setting" in caught.value.problem


def test_a_value_given_in_the_file_is_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("llm:\n  max_steps: 0\n")
    with pytest.raises(ConfigError, match=r"^llm\.max_steps: 0: Input should be greater than or equal to 1"):
        load_settings(path, env={})


def test_interpolation_defaults_and_embedding(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("llm:\n  system_prompt: 'You serve ${OWNER:-nobody} in ${CITY}.'\n")
    assert load_settings(path, env={"CITY": "Oslo"}).llm.system_prompt == "You serve nobody in Oslo."
    assert load_settings(path, env={"OWNER": "Ada", "CITY": "Oslo"}).llm.system_prompt == "You serve Ada in Oslo."


def test_the_config_file_can_come_from_assistant_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("llm:\n  model: from-env-path\n")
    assert load_settings(None, env={"ASSISTANT_CONFIG": str(path)}).llm.model == "from-env-path"


def _main(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_main_without_a_token_exits_2_naming_it() -> None:
    result = _main([], {})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: TELEGRAM_BOT_TOKEN: is required (or run with --console to try without Telegram)"
    )
    assert "Traceback" not in result.stderr


def test_main_with_a_bad_value_exits_2_with_one_line() -> None:
    result = _main([], {"TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_ALLOWED_USER_IDS": "abc"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: TELEGRAM_ALLOWED_USER_IDS: 'abc' is not a numeric user id"
    ]


def test_a_malformed_token_is_refused_without_showing_it() -> None:
    result = _main([], {"TELEGRAM_BOT_TOKEN": "not-a-token-secret"})
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN" in result.stderr
    assert "not-a-token-secret" not in result.stderr


def test_a_watchdog_shorter_than_a_long_poll_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("telegram:\n  poll_timeout_seconds: 30\n  watchdog_seconds: 20\n")
    with pytest.raises(
        ConfigError, match=r"^telegram: watchdog_seconds \(20\) must be longer than poll_timeout_seconds"
    ):
        load_settings(path, env={})
