"""The Telegram side of the assistant: formatting, flood-controlled sending (and the gateway)."""

from channels.telegram.client import TelegramClient
from channels.telegram.format import MAX_MESSAGE_LENGTH, html_to_plain, split_message, to_telegram_html
from channels.telegram.sender import DeliveryError, Rate, TelegramSender

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "DeliveryError",
    "Rate",
    "TelegramClient",
    "TelegramSender",
    "html_to_plain",
    "split_message",
    "to_telegram_html",
]
