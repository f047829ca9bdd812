"""Configuration: `config.yml` and `mcp.yml` loaded into typed, immutable settings."""

from conf.settings import (
    ActorSettings,
    AllowedUsers,
    BackoffSettings,
    ConfigError,
    DynamoDBSettings,
    HealthSettings,
    LLMSettings,
    LogSettings,
    MetricsSettings,
    Settings,
    StoreSettings,
    TelegramSettings,
    load_settings,
)

__all__ = [
    "ActorSettings",
    "AllowedUsers",
    "BackoffSettings",
    "ConfigError",
    "DynamoDBSettings",
    "HealthSettings",
    "LLMSettings",
    "LogSettings",
    "MetricsSettings",
    "Settings",
    "StoreSettings",
    "TelegramSettings",
    "load_settings",
]
