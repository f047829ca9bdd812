"""From a raw Telegram update to what the assistant should do with it (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.commands import CommandName, command_args, command_named
from actors.protocol import Command, ConversationMessage, ReplyTarget, UserMessage
from conf import AllowedUsers

__all__ = ["NOT_ALLOWED", "BotIdentity", "Ignore", "Notify", "Route", "Routed", "is_durable", "route_update"]

NOT_ALLOWED = "not_allowed"
"""The `Notify.reason` of a refusal: the sender is not allowed to use the assistant."""

_GROUP_TYPES = frozenset({"group", "supergroup"})


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is, for mentions and replies in groups."""

    id: int
    username: str


@dataclass(frozen=True, slots=True)
class Routed:
    """Hand the message to its conversation's actor."""

    conversation_id: str
    message: ConversationMessage


@dataclass(frozen=True, slots=True)
class Notify:
    """Answer at once without the model (refusal, unreadable message)."""

    conversation_id: str
    target: ReplyTarget
    text: str
    reason: str
    user_id: int | None = None
    """Who wrote (for a refusal: the gateway refuses each stranger at most once in a while)."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to answer (edits, channel posts, group chatter not addressed to the bot)."""

    reason: str


Route = Routed | Notify | Ignore


def conversation_id_of(chat_id: int, thread_id: int | None) -> str:
    """A chat is a conversation; each forum topic of a supergroup is one of its own."""
    return str(chat_id) if thread_id is None else f"{chat_id}:{thread_id}"


def route_update(update: dict[str, Any], bot: BotIdentity, allowed: AllowedUsers) -> Route:
    """Decide what an update means. Never raises on odd shapes: anything unexpected is ignored."""
    update_id = update.get("update_id")
    message = update.get("message")
    if not isinstance(update_id, int) or not isinstance(message, dict):
        return Ignore("not_a_new_message")
    chat = message.get("chat")
    if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
        return Ignore("no_chat")
    chat_id: int = chat["id"]
    chat_type = chat.get("type", "private")
    raw_sender = message.get("from")
    sender: dict[str, Any] = raw_sender if isinstance(raw_sender, dict) else {}
    user_id = sender.get("id") if isinstance(sender.get("id"), int) else None
    if sender.get("is_bot"):
        return Ignore("from_a_bot")
    thread_id = message.get("message_thread_id") if message.get("is_topic_message") else None
    if not isinstance(thread_id, int):
        thread_id = None
    in_group = chat_type in _GROUP_TYPES
    if chat_type not in _GROUP_TYPES and chat_type != "private":
        return Ignore("unsupported_chat_type")
    conversation_id = conversation_id_of(chat_id, thread_id)
    message_id = message.get("message_id")
    target = ReplyTarget(chat_id, thread_id, message_id if in_group and isinstance(message_id, int) else None)

    text = message.get("text")
    if not isinstance(text, str):
        text = message.get("caption") if isinstance(message.get("caption"), str) else None
    entities = message.get("entities") or message.get("caption_entities") or []
    if not isinstance(entities, list):
        entities = []

    if in_group and not _addressed_to_bot(message, text, entities, bot):
        return Ignore("group_message_not_addressed")
    if not allowed.allows(user_id):
        from actors import texts

        return Notify(conversation_id, target, texts.NOT_ALLOWED.format(user_id=user_id), NOT_ALLOWED, user_id)
    if text is None or not text.strip():
        if _is_service_message(message):
            return Ignore("service_message")
        from actors import texts

        return Notify(conversation_id, target, texts.UNREADABLE, "unreadable")

    command = _command(text, entities, bot)
    if command is not None:
        return Routed(
            conversation_id, Command(conversation_id, command, target, update_id, user_id, command_args(text))
        )
    if command is None and text.startswith("/") and _is_command_for_other_bot(text, bot):
        return Ignore("command_for_another_bot")
    if in_group:
        text = _strip_mention(text, bot)
    return Routed(conversation_id, UserMessage(conversation_id, text, target, update_id, user_id))


def is_durable(route: Route) -> bool:
    """Whether the update must be in the ingress log before it is acknowledged: everything an allowed
    user should hear back about. Ignored updates and strangers' messages are not (a flood of strangers
    must not cost a write each)."""
    return not isinstance(route, Ignore) and not (isinstance(route, Notify) and route.reason == NOT_ALLOWED)


def _addressed_to_bot(message: dict[str, Any], text: str | None, entities: list[Any], bot: BotIdentity) -> bool:
    reply_to = message.get("reply_to_message")
    if isinstance(reply_to, dict) and isinstance(reply_to.get("from"), dict) and reply_to["from"].get("id") == bot.id:
        # A reply inside a forum topic carries the topic's first message as reply_to; that is
        # only "replying to the bot" when the bot wrote it.
        return True
    if text is None:
        return False
    mention = f"@{bot.username}".lower()
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        kind, offset, length = entity.get("type"), entity.get("offset", 0), entity.get("length", 0)
        if not isinstance(offset, int) or not isinstance(length, int):
            continue
        piece = _utf16_slice(text, offset, length).lower()
        if kind == "mention" and piece == mention:
            return True
        if kind == "text_mention" and isinstance(entity.get("user"), dict) and entity["user"].get("id") == bot.id:
            return True
        if kind == "bot_command" and piece.endswith(mention):
            return True
    return False


def _command(text: str, entities: list[Any], bot: BotIdentity) -> CommandName | None:
    if not text.startswith("/"):
        return None
    head = text.split(maxsplit=1)[0][1:]
    name, _, addressee = head.partition("@")
    if addressee and addressee.lower() != bot.username.lower():
        return None
    return command_named(name)


def _is_command_for_other_bot(text: str, bot: BotIdentity) -> bool:
    head = text.split(maxsplit=1)[0]
    _, _, addressee = head.partition("@")
    return bool(addressee) and addressee.lower() != bot.username.lower()


def _strip_mention(text: str, bot: BotIdentity) -> str:
    mention = f"@{bot.username}"
    stripped = " ".join(part for part in text.split(" ") if part.lower() != mention.lower()).strip()
    return stripped or text


def _utf16_slice(text: str, offset: int, length: int) -> str:
    # Telegram counts entity offsets in UTF-16 code units.
    encoded = text.encode("utf-16-le")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="ignore")


_SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "video_chat_started",
        "video_chat_ended",
        "message_auto_delete_timer_changed",
    }
)


def _is_service_message(message: dict[str, Any]) -> bool:
    return any(key in message for key in _SERVICE_KEYS)
