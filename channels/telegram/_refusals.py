"""What Telegram's refusals mean: a permanent delivery failure, a flood wait's length, an edit the
message cannot take (Telegram has no error codes for those: its description is the only signal)."""

from __future__ import annotations

import datetime as dtm
import warnings

from telegram.error import BadRequest, RetryAfter
from telegram.warnings import PTBDeprecationWarning

__all__ = ["DeliveryError", "MessageGone", "edit_impossible", "retry_after_seconds"]


class MessageGone(Exception):
    """The message to edit cannot be edited any more."""


_GONE = ("message to edit not found", "message can't be edited", "message is too long", "message_id_invalid")


def edit_impossible(exc: BadRequest) -> bool:
    """True if Telegram refused an edit because the message cannot take it (deleted, too old, too
    long as Telegram counts), not because of the chat or the request."""
    reason = exc.message.lower()
    return any(gone in reason for gone in _GONE)


class DeliveryError(Exception):
    """A message could not be delivered for a permanent reason (bot blocked, chat not found, ...).

    `chat_id` is the chat; `reason` is Telegram's description, for the log (never for the user).
    Transient failures (flood control, network) are retried, never raised.
    """

    def __init__(self, chat_id: int, reason: str) -> None:
        super().__init__(f"cannot deliver to chat {chat_id}: {reason}")
        self.chat_id = chat_id
        self.reason = reason


def retry_after_seconds(exc: RetryAfter) -> float:
    """The seconds Telegram asks us to wait: `RetryAfter.retry_after` is an int, or a timedelta
    with PTB_TIMEDELTA set."""
    with warnings.catch_warnings():
        # Reading it as an int is deprecated in PTB 22.2+; both forms are handled here.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)
