"""The building blocks every settings model shares: its base class and the field types of URLs and words."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

__all__ = ["CaseInsensitive", "HttpUrl", "OptionalHttpUrl", "SettingsModel"]


def _http_url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"{raw!r} is not an http(s) URL")
    return raw


def _lowercase(raw: object) -> object:
    return raw.strip().lower() if isinstance(raw, str) else raw


def _optional_http_url(raw: str) -> str:
    return _http_url(raw) if raw else raw


HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""A setting that must be an http(s) URL."""
OptionalHttpUrl = Annotated[str, AfterValidator(_optional_http_url)]
"""An http(s) URL, or empty for "not set"."""
CaseInsensitive = BeforeValidator(_lowercase)
"""Words in settings are case-insensitive: `Annotated[Literal["a", "b"], CaseInsensitive]`."""


class SettingsModel(BaseModel):
    """The base of every settings model: typos in keys are errors, and settings never change once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
