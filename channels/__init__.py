"""The edges to the outside: the Telegram channel and the console."""

from __future__ import annotations
