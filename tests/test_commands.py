"""The one command table: Telegram, the console and Telegram's command menu all read it."""

from __future__ import annotations

from actors.commands import COMMANDS, command_named
from actors.protocol import Command, UserMessage
from channels.console import parse_console_line
from channels.telegram.gateway import BOT_COMMANDS
from channels.telegram.routing import BotIdentity, Routed, route_update
from conf import AllowedUsers


def test_each_word_asks_the_same_of_telegram_and_the_console() -> None:
    bot = BotIdentity(id=999, username="test_assistant_bot")
    for command in COMMANDS:
        text = f"/{command.word.upper()}"
        update = {
            "update_id": 1,
            "message": {
                "message_id": 7,
                "date": 0,
                "chat": {"id": 42, "type": "private"},
                "from": {"id": 42, "is_bot": False, "first_name": "Ada"},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text)}],
            },
        }
        route = route_update(update, bot, AllowedUsers(everyone=True))
        assert isinstance(route, Routed)
        assert isinstance(route.message, Command)
        console = parse_console_line(text)
        assert isinstance(console, Command)
        assert route.message.name == console.name == command.name


def test_the_menu_lists_the_table_in_order_without_start() -> None:
    assert [(c.command, c.description) for c in BOT_COMMANDS] == [
        ("new", "Start a new conversation"),
        ("reset", "Start a new conversation"),
        ("help", "What I can do"),
        ("memory", "What I remember about you"),
        ("forget", "Forget a saved fact: /forget ID or /forget all"),
        ("timezone", "Your time zone: /timezone Area/City"),
        ("model", "Show or switch the model of this chat"),
        ("usage", "Tokens and cost used today and this month"),
        ("reminders", "Reminders in this chat"),
        ("stop", "Stop the answer being written"),
    ]


def test_words_outside_the_table_are_no_command() -> None:
    assert command_named("halt") is None
    assert isinstance(parse_console_line("/halt now"), UserMessage)
    assert isinstance(parse_console_line("new"), UserMessage)
