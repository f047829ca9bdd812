"""Typed, immutable settings loaded from `conf/config.yml` with environment interpolation."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from conf._interpolate import interpolate
from conf._scale import QueueSettings, WebhookSettings, check_scale
from conf._types import CaseInsensitive, HttpUrl, OptionalHttpUrl, SettingsModel
from conf.media import MediaSettings, SpeechSettings
from conf.usage import UsageSettings, model_list
from conf.zones import ZoneName

__all__ = [
    "ActorSettings",
    "AllowedUsers",
    "BackoffSettings",
    "CaseInsensitive",
    "ConfigError",
    "DynamoDBSettings",
    "HealthSettings",
    "HttpUrl",
    "LLMSettings",
    "LogSettings",
    "MediaSettings",
    "MetricsSettings",
    "OptionalHttpUrl",
    "Settings",
    "SettingsModel",
    "SpeechSettings",
    "StoreSettings",
    "TelegramSettings",
    "load_settings",
    "load_yaml_file",
]

DEFAULT_CONFIG_PATH = "conf/config.yml"
_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


class ConfigError(Exception):
    """A setting is missing or wrong. `setting` names it; `problem` says what is wrong.

    `str(error)` is the one line shown to the operator before exiting with status 2.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class AllowedUsers(SettingsModel):
    """Who may use the assistant: everyone (`*`), or numeric Telegram user ids; `owner` is the first listed."""

    everyone: bool = False
    user_ids: frozenset[int] = frozenset()
    owner: int | None = None

    def allows(self, user_id: int | None) -> bool:
        """True if `user_id` may use the assistant."""
        return self.everyone or (user_id is not None and user_id in self.user_ids)

    @classmethod
    def parse(cls, raw: object) -> AllowedUsers:
        """Read `*`, `""`, `"1, 2"`, an int or a list of ints; raise ValueError naming a bad id."""
        if isinstance(raw, AllowedUsers):
            return raw
        if raw is None:
            return cls()
        if isinstance(raw, int) and not isinstance(raw, bool):
            return cls(user_ids=frozenset({raw}))
        if isinstance(raw, str):
            items: list[object] = [part.strip() for part in raw.split(",") if part.strip()]
        elif isinstance(raw, list):
            items = list(raw)
        else:
            raise ValueError(f"{raw!r} is not a list of numeric user ids")
        ids: list[int] = []
        for item in items:
            text = str(item).strip()
            if text == "*":
                continue
            if isinstance(item, bool) or not text.lstrip("-").isdigit():
                raise ValueError(f"{text!r} is not a numeric user id")
            ids.append(int(text))
        return cls(everyone="*" in items, user_ids=frozenset(ids), owner=ids[0] if ids else None)


class BackoffSettings(SettingsModel):
    """Exponential backoff with jitter, capped so service is back within 10 s of an outage.

    The policy that uses them is `ops.backoff.Backoff`.
    """

    initial_seconds: float = Field(0.5, gt=0)
    max_seconds: float = Field(8.0, gt=0, le=10)
    multiplier: float = Field(2.0, ge=1)
    jitter_seconds: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _within_ten_seconds(self) -> BackoffSettings:
        # The longest wait is the cap plus the jitter: past 10 s, a retry could come later than
        # the promise to be working again within 10 s of Telegram or the model being back.
        if self.max_seconds + self.jitter_seconds > 10:
            raise ValueError(
                f"max_seconds + jitter_seconds ({self.max_seconds + self.jitter_seconds:g}) must be at most 10: "
                "service must resume within 10 s of an outage's end"
            )
        return self


class TelegramSettings(SettingsModel):
    """The Telegram gateway."""

    token: str = ""
    api_base_url: HttpUrl = "https://api.telegram.org/bot"
    allowed_user_ids: AllowedUsers = AllowedUsers()
    poll_timeout_seconds: int = Field(30, ge=0, le=50)
    watchdog_seconds: float = Field(120.0, gt=0)
    send_timeout_seconds: float = Field(20.0, gt=0)
    send_connections: int = Field(4, ge=1, le=256)
    overall_messages_per_second: int = Field(0, ge=0)
    group_messages_per_minute: int = Field(20, ge=1)
    typing_delay_seconds: float = Field(0.25, ge=0)
    stream_replies: bool = True
    """Answers appear as the model writes them (drafts in private chats, edits in groups)."""
    draft_interval_seconds: float = Field(0.4, gt=0)
    edit_interval_seconds: float = Field(2.0, gt=0)

    def require_token(self) -> str:
        """The bot token, checked for its shape (digits, a colon, letters); ConfigError if it is
        missing or malformed. Only modes that talk to Telegram call this (not `--console`)."""
        if not self.token:
            raise ConfigError("TELEGRAM_BOT_TOKEN", "is required (or run with --console to try without Telegram)")
        if not _TOKEN_SHAPE.match(self.token):
            raise ConfigError("TELEGRAM_BOT_TOKEN", "does not look like a bot token (digits, a colon, then letters)")
        return self.token

    @field_validator("allowed_user_ids", mode="before")
    @classmethod
    def _parse_allowed(cls, raw: object) -> AllowedUsers:
        return AllowedUsers.parse(raw)

    @model_validator(mode="after")
    def _watchdog_outlasts_a_poll(self) -> TelegramSettings:
        if self.watchdog_seconds <= self.poll_timeout_seconds:
            raise ValueError(
                f"watchdog_seconds ({self.watchdog_seconds:g}) must be longer than poll_timeout_seconds "
                f"({self.poll_timeout_seconds}): a healthy long poll would look stalled"
            )
        return self


class LLMSettings(SettingsModel):
    """The chat model and the turn loop around it; `models` (`LLM_MODELS`, for `/model`) include `model`."""

    provider: Annotated[Literal["openai", "anthropic"], CaseInsensitive] = "openai"
    model: str = ""
    models: Annotated[tuple[str, ...], BeforeValidator(model_list)] = ()
    api_key: str = ""
    base_url: OptionalHttpUrl = ""
    temperature: float = Field(0.7, ge=0, le=2)
    max_output_tokens: int = Field(1024, gt=0)
    system_prompt: str = "You are a helpful personal assistant. Answer concisely."
    system_prompt_file: str = ""
    request_timeout_seconds: float = Field(60.0, gt=0)
    retry_budget_seconds: float = Field(45.0, gt=0, le=60)
    max_steps: int = Field(8, ge=1)
    context_tokens: int = Field(16000, ge=256)
    stream: bool = True

    @model_validator(mode="after")
    def _defaults(self) -> LLMSettings:
        if not self.model:
            default = "gpt-4o-mini" if self.provider == "openai" else "claude-sonnet-5"
            object.__setattr__(self, "model", self.models[0] if self.models else default)
        if self.model not in self.models:
            object.__setattr__(self, "models", (self.model, *self.models))
        return self


class DynamoDBSettings(SettingsModel):
    """The DynamoDB conversation store."""

    table: str = "assistant-conversations"
    region: str = ""
    endpoint_url: str = ""
    create_table: bool = False
    ttl_days: int = Field(0, ge=0)
    state_table: str = ""
    """Table of the facts, reminders, usage and preferences; empty: `<table>-state`."""

    @property
    def state_table_name(self) -> str:
        """The state table's name: `state_table`, or `<table>-state`."""
        return self.state_table or f"{self.table}-state"


class StoreSettings(SettingsModel):
    """Where conversations and the ingress log are kept."""

    backend: Literal["file", "dynamodb", "memory"] = "file"
    dir: str = "data/conversations"
    dynamodb: DynamoDBSettings = DynamoDBSettings()


class ActorSettings(SettingsModel):
    """The actor runtime."""

    idle_seconds: float = Field(600.0, gt=0)
    mailbox_size: int = Field(64, ge=1)
    max_live: int = Field(384, ge=1)
    max_idle: int = Field(256, ge=1)
    stop_grace_seconds: float = Field(10.0, ge=0)
    max_restarts: int = Field(5, ge=0)
    restart_window_seconds: float = Field(60.0, gt=0)


class HealthSettings(SettingsModel):
    """The `/healthz` endpoint; port 0 turns it off."""

    host: str = "0.0.0.0"  # noqa: S104 - inside a container the endpoint must be reachable by Docker's probe
    port: int = Field(8080, ge=0, le=65535)


class LogSettings(SettingsModel):
    """Logging to stdout."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _normalise(cls, raw: object) -> object:
        return raw.strip() if isinstance(raw, str) else raw

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, raw: object) -> object:
        return raw.upper() if isinstance(raw, str) else raw


class MetricsSettings(SettingsModel):
    """CloudWatch Embedded Metric Format lines in the log."""

    enabled: bool = True
    namespace: str = "PersonalAssistant"
    service: str = "assistant"
    interval_seconds: float = Field(60.0, ge=0)
    """Values are gathered and written once per interval (a few lines a minute); 0: a line per event."""


class Settings(SettingsModel):
    """Every setting of the assistant (see docs/contract.md)."""

    telegram: TelegramSettings = TelegramSettings()
    llm: LLMSettings = LLMSettings()
    store: StoreSettings = StoreSettings()
    mcp_config: str = "conf/mcp.yml"
    actors: ActorSettings = ActorSettings()
    backoff: BackoffSettings = BackoffSettings()
    health: HealthSettings = HealthSettings()
    logging: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    usage: UsageSettings = UsageSettings()
    timezone: ZoneName = "UTC"
    """Users' time zone until they choose their own with /timezone."""
    speech: SpeechSettings = SpeechSettings()
    media: MediaSettings = MediaSettings()
    webhook: WebhookSettings = WebhookSettings()
    queue: QueueSettings = QueueSettings()

    def secrets(self) -> list[str]:
        """The secret values in these settings, for the log redactor."""
        return [
            value
            for value in (self.telegram.token, self.llm.api_key, self.speech.api_key, self.webhook.secret)
            if value
        ]


def load_yaml_file(path: str | Path, what: str) -> Any:
    """Read a YAML file; a missing or malformed file is a ConfigError naming `what`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(what, f"file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(what, f"cannot read {str(path)!r}: {exc.strerror}") from None
    try:
        # libyaml's parser when PyYAML has it (its wheels do): ~15x faster than the pure-Python
        # one (~20 ms for config.yml, before the first poll). A file it refuses is parsed again by
        # the pure-Python parser, whose message and position the operator then reads (as before).
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(what, f"{str(path)!r} is not valid YAML{where}: {problem}") from None


def describe_validation_error(
    exc: ValidationError, sources: Mapping[tuple[str | int, ...], str], prefix: tuple[str | int, ...] = ()
) -> ConfigError:
    """Turn pydantic's first error into one readable ConfigError naming the setting."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    full = (*prefix, *loc)
    setting = sources.get(full) or ".".join(str(part) for part in full) or "configuration"
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = ".".join(str(part) for part in full[:-1]) or "top level"
        return ConfigError(".".join(str(part) for part in full), f"unknown setting (not a key of {parent}; a typo?)")
    if kind == "missing":
        return ConfigError(setting, "is required")
    scalar_input = not isinstance(error.get("input"), dict | list)
    if "input" in error and scalar_input and kind not in {"model_type", "dict_type"} and not message.startswith("'"):
        message = f"{error['input']!r}: {message}"
    return ConfigError(setting, message)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the configuration file; raise ConfigError on any problem.

    `path` defaults to `ASSISTANT_CONFIG`, then `conf/config.yml`. `env` defaults to os.environ.
    """
    env = os.environ if env is None else env
    path = path or env.get("ASSISTANT_CONFIG") or DEFAULT_CONFIG_PATH
    raw = load_yaml_file(path, "--config")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("--config", f"{str(path)!r} must hold a mapping of settings, not {type(raw).__name__}")
    sources: dict[tuple[str | int, ...], str] = {}
    data = interpolate(raw, env, (), sources)
    data = _drop_blank_optionals(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(exc, sources) from None
    check_scale(settings)
    return _apply_fallbacks(settings, env)


def _drop_blank_optionals(data: Any) -> Any:
    """An empty interpolated number (`HEALTH_PORT=`) means 'the default', not an error."""
    if isinstance(data, dict):
        return {key: _drop_blank_optionals(value) for key, value in data.items() if not _blank_number(key, value)}
    return data


_NUMERIC_KEYS = frozenset(
    {
        "port",
        "idle_seconds",
        "poll_timeout_seconds",
        "watchdog_seconds",
        "ttl_days",
        "temperature",
        "max_output_tokens",
        "max_steps",
        "context_tokens",
    }
)


def _blank_number(key: object, value: object) -> bool:
    return key in _NUMERIC_KEYS and isinstance(value, str) and value.strip() == ""


def _apply_fallbacks(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`LLM_API_KEY` falls back to the provider's own variable (docs/contract.md)."""
    if settings.llm.api_key:
        return settings
    fallback = env.get("OPENAI_API_KEY" if settings.llm.provider == "openai" else "ANTHROPIC_API_KEY", "")
    if not fallback:
        return settings
    llm = settings.llm.model_copy(update={"api_key": fallback})
    return settings.model_copy(update={"llm": llm})
