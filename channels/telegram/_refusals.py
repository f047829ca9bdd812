"""What Telegram's refusals of an edit mean (it has no error codes for them: its description is the
only signal)."""

from __future__ import annotations

from telegram.error import BadRequest

__all__ = ["MessageGone", "edit_impossible"]


class MessageGone(Exception):
    """The message to edit cannot be edited any more."""


_GONE = ("message to edit not found", "message can't be edited", "message is too long", "message_id_invalid")


def edit_impossible(exc: BadRequest) -> bool:
    """True if Telegram refused an edit because the message cannot take it (deleted, too old, too
    long as Telegram counts), not because of the chat or the request."""
    reason = exc.message.lower()
    return any(gone in reason for gone in _GONE)
