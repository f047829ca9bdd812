"""The bot's commands, once: the word a user types, what it asks for, and its line in Telegram's menu.

The Telegram routing, the console and the command menu registered with Telegram all read this
table; the conversation actor answers each `CommandName`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["COMMANDS", "CommandName", "CommandWord", "command_args", "command_named"]

CommandName = Literal["start", "help", "reset", "memory", "forget", "timezone", "model", "usage", "reminders", "stop"]
"""What a command asks of the conversation."""


@dataclass(frozen=True, slots=True)
class CommandWord:
    """One word a user may type after `/`."""

    word: str
    name: CommandName
    menu: str
    """Its description in Telegram's command menu; empty keeps it out of the menu."""


COMMANDS: tuple[CommandWord, ...] = (
    CommandWord("new", "reset", "Start a new conversation"),
    CommandWord("reset", "reset", "Start a new conversation"),
    CommandWord("help", "help", "What I can do"),
    CommandWord("memory", "memory", "What I remember about you"),
    CommandWord("forget", "forget", "Forget a saved fact: /forget ID or /forget all"),
    CommandWord("timezone", "timezone", "Your time zone: /timezone Area/City"),
    CommandWord("model", "model", "Show or switch the model of this chat"),
    CommandWord("usage", "usage", "Tokens and cost used today and this month"),
    CommandWord("reminders", "reminders", "Reminders in this chat"),
    CommandWord("stop", "stop", "Stop the answer being written"),
    # Telegram's own Start button sends /start; it needs no line in the menu.
    CommandWord("start", "start", ""),
)

_BY_WORD = {command.word: command.name for command in COMMANDS}


def command_named(word: str) -> CommandName | None:
    """The command `word` (without its `/` or `@bot`) asks for, in any case; None if it is none."""
    return _BY_WORD.get(word.lower())


def command_args(text: str) -> str:
    """What follows the command word in `text` (`/model  gpt-4o ` gives `gpt-4o`)."""
    parts = text.strip().split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""
