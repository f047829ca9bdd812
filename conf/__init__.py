"""Configuration: `config.yml` and `mcp.yml` loaded into typed, immutable settings."""

from conf._scale import QueueSettings, WebhookSettings
from conf.mcp import DEFAULT_MCP_CONFIG_PATH, McpServerSettings, McpToolFilter, load_mcp_servers
from conf.media import MediaSettings, SpeechSettings
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
from conf.usage import ModelPrice, UsageSettings

__all__ = [
    "DEFAULT_MCP_CONFIG_PATH",
    "ActorSettings",
    "AllowedUsers",
    "BackoffSettings",
    "ConfigError",
    "DynamoDBSettings",
    "HealthSettings",
    "LLMSettings",
    "LogSettings",
    "McpServerSettings",
    "McpToolFilter",
    "MediaSettings",
    "MetricsSettings",
    "ModelPrice",
    "QueueSettings",
    "Settings",
    "SpeechSettings",
    "StoreSettings",
    "TelegramSettings",
    "UsageSettings",
    "WebhookSettings",
    "load_mcp_servers",
    "load_settings",
]
