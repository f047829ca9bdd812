"""Builders of Bot API update objects, shaped as Telegram sends them (used by FakeTelegramServer).

Media messages (voice, photos, documents, ...) are built in _telegram_media_updates.py.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from typing import Any, Literal, Protocol

__all__ = ["ChatType", "UpdateBuilder", "text_entities"]

ChatType = Literal["private", "group", "supergroup"]

# Telegram marks /commands at the start of a word (optionally /cmd@botname) and @mentions.
_COMMAND = re.compile(r"(?<!\S)/[a-zA-Z0-9_]{1,32}(?:@[a-zA-Z0-9_]{3,32})?(?![a-zA-Z0-9_@])")
_MENTION = re.compile(r"(?<![\w@/])@[a-zA-Z0-9_]{5,32}(?![a-zA-Z0-9_])")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def text_entities(text: str) -> list[dict[str, Any]]:
    """The `bot_command` and `mention` entities Telegram computes, with UTF-16 offsets."""
    entities: list[dict[str, Any]] = []
    for kind, pattern in (("bot_command", _COMMAND), ("mention", _MENTION)):
        for match in pattern.finditer(text):
            entities.append(
                {
                    "type": kind,
                    "offset": _utf16_len(text[: match.start()]),
                    "length": _utf16_len(match.group(0)),
                }
            )
    return sorted(entities, key=lambda entity: int(entity["offset"]))


class _SentLike(Protocol):
    @property
    def message_id(self) -> int: ...

    @property
    def visible_text(self) -> str: ...


class UpdateBuilder(ABC):
    """Builds updates and messages; the server supplies ids and the update queue."""

    def __init__(self, bot_id: int, bot_username: str) -> None:
        self.bot_id = bot_id
        self.bot_username = bot_username

    @abstractmethod
    def add_update(self, raw: dict[str, Any]) -> int:
        """Queue an update and return its id."""

    @abstractmethod
    def _next_message_id(self) -> int: ...

    @abstractmethod
    def _last_bot_message(self, chat_id: int) -> _SentLike | None: ...

    # -- objects -----------------------------------------------------------------------------------

    def bot_user(self, full: bool = False) -> dict[str, Any]:
        """The bot's User object (the getMe form when `full`)."""
        user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Test Assistant",
            "username": self.bot_username,
        }
        if full:
            user |= {
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
                "can_connect_to_business": False,
                "has_main_web_app": False,
            }
        return user

    @staticmethod
    def chat(chat_id: int, chat_type: str | None = None, *, forum: bool = False, **user: Any) -> dict[str, Any]:
        """A Chat object; the type defaults from the id's sign, as Telegram's ids go."""
        kind = chat_type or ("private" if chat_id > 0 else "supergroup" if str(chat_id).startswith("-100") else "group")
        if kind == "private":
            return {
                "id": chat_id,
                "type": "private",
                "first_name": user.get("first_name", "Test"),
                "username": user.get("username", f"user{chat_id}"),
            }
        chat: dict[str, Any] = {"id": chat_id, "type": kind, "title": f"Test {kind} {chat_id}"}
        if kind == "supergroup" and forum:
            chat["is_forum"] = True
        return chat

    @staticmethod
    def user(user_id: int, username: str | None = None, first_name: str = "Test") -> dict[str, Any]:
        """A (human) User object."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        return user

    def bot_message(
        self, chat_id: int | str, message_id: int, text: str, chat_type: str | None = None
    ) -> dict[str, Any]:
        """A Message the bot sent (the result of sendMessage / editMessageText)."""
        numeric = chat_id if isinstance(chat_id, int) else 0
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self.chat(numeric, chat_type),
            "from": self.bot_user(),
            "text": text,
        }

    def message(
        self,
        chat_id: int,
        *,
        user_id: int | None = None,
        chat_type: ChatType | None = None,
        message_thread_id: int | None = None,
        reply_to_bot: bool = False,
        username: str | None = None,
        first_name: str = "Test",
        **content: Any,
    ) -> dict[str, Any]:
        """A Message from a user, with `content` (text, sticker, photo, ...) merged in."""
        kind = chat_type or ("private" if chat_id > 0 else "group")
        sender = user_id if user_id is not None else (chat_id if kind == "private" else 1001)
        message: dict[str, Any] = {
            "message_id": self._next_message_id(),
            "date": int(time.time()),
            "chat": self.chat(
                chat_id,
                kind,
                forum=message_thread_id is not None,
                first_name=first_name,
                username=username or f"user{sender}",
            ),
            "from": self.user(sender, username or f"user{sender}", first_name),
        }
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        if reply_to_bot:
            previous = self._last_bot_message(chat_id)
            message["reply_to_message"] = self.bot_message(
                chat_id,
                previous.message_id if previous else self._next_message_id(),
                previous.visible_text if previous else "an earlier answer",
                kind,
            )
        message.update(content)
        return message

    # -- updates -----------------------------------------------------------------------------------

    def add_text_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: ChatType | None = None,
        message_thread_id: int | None = None,
        reply_to_bot: bool = False,
        username: str | None = None,
        first_name: str = "Test",
    ) -> int:
        """Queue a text message (with command and mention entities); return its update_id.

        `user_id` defaults to the chat id in private chats and to 1001 in groups.
        """
        content: dict[str, Any] = {"text": text}
        entities = text_entities(text)
        if entities:
            content["entities"] = entities
        return self.add_update(
            {
                "message": self.message(
                    chat_id,
                    user_id=user_id,
                    chat_type=chat_type,
                    message_thread_id=message_thread_id,
                    reply_to_bot=reply_to_bot,
                    username=username,
                    first_name=first_name,
                    **content,
                )
            }
        )

    def add_edited_message(self, chat_id: int, text: str, **kwargs: Any) -> int:
        """Queue an edited_message update."""
        message = self.message(chat_id, text=text, **kwargs)
        message["edit_date"] = message["date"]
        return self.add_update({"edited_message": message})

    def add_channel_post(self, chat_id: int, text: str) -> int:
        """Queue a channel_post update (chat ids of channels are negative)."""
        post = {
            "message_id": self._next_message_id(),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "channel", "title": "Test channel"},
            "text": text,
        }
        return self.add_update({"channel_post": post})

    def add_callback_query(self, chat_id: int, data: str, user_id: int | None = None) -> int:
        """Queue a callback_query update from a button under a bot message."""
        sender = user_id if user_id is not None else chat_id
        query = {
            "id": str(self._next_message_id()),
            "from": self.user(sender),
            "chat_instance": "-1234567890",
            "data": data,
            "message": self.bot_message(chat_id, self._next_message_id(), "a message with buttons"),
        }
        return self.add_update({"callback_query": query})

    def add_my_chat_member(self, chat_id: int, new_status: str = "member", user_id: int = 1001) -> int:
        """Queue a my_chat_member update (the bot was added to, or removed from, a chat)."""
        old_status = "left" if new_status != "left" else "member"
        member_update: dict[str, Any] = {
            "chat": self.chat(chat_id),
            "from": self.user(user_id),
            "date": int(time.time()),
            "old_chat_member": {"status": old_status, "user": self.bot_user()},
            "new_chat_member": {"status": new_status, "user": self.bot_user()},
        }
        if new_status == "kicked":
            member_update["new_chat_member"]["until_date"] = 0
        return self.add_update({"my_chat_member": member_update})
