"""What each shape of Telegram update turns into: a message for an actor, a notice, or nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from actors import texts
from actors.protocol import Command, ReplyTarget, UserMessage
from channels.telegram.routing import BotIdentity, Ignore, Notify, Routed, route_update
from conf import AllowedUsers

BOT = BotIdentity(id=999, username="test_assistant_bot")
ALLOWED = AllowedUsers(user_ids=frozenset({42}))


def message(
    text: str | None = "hello", *, chat_id: int = 42, user_id: int = 42, chat_type: str = "private", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": 7,
        "date": 0,
        "chat": {"id": chat_id, "type": chat_type},
        "from": {"id": user_id, "is_bot": False, "first_name": "Ada"},
    }
    if text is not None:
        body["text"] = text
    body.update(extra)
    return {"update_id": 100, "message": body}


def test_a_private_text_goes_to_its_chats_conversation() -> None:
    route = route_update(message("hello"), BOT, ALLOWED)
    assert route == Routed("42", UserMessage("42", "hello", ReplyTarget(42), 100, 42))


def test_a_stranger_is_refused_with_their_id() -> None:
    route = route_update(message("hello", user_id=5, chat_id=5), BOT, ALLOWED)
    assert isinstance(route, Notify)
    assert route.text == texts.NOT_ALLOWED.format(user_id=5)
    assert "5" in route.text
    assert route.reason == "not_allowed"


def test_nobody_is_served_by_default() -> None:
    assert isinstance(route_update(message("hi"), BOT, AllowedUsers()), Notify)


def test_everyone_is_served_with_a_star() -> None:
    assert isinstance(route_update(message("hi", user_id=5), BOT, AllowedUsers(everyone=True)), Routed)


def test_commands_become_commands_and_new_is_reset() -> None:
    for text, name in [
        ("/start", "start"),
        ("/help", "help"),
        ("/reset", "reset"),
        ("/new", "reset"),
        ("/HELP", "help"),
    ]:
        route = route_update(
            message(text, entities=[{"type": "bot_command", "offset": 0, "length": len(text)}]), BOT, ALLOWED
        )
        assert isinstance(route, Routed)
        assert isinstance(route.message, Command)
        assert route.message.name == name


def test_what_follows_a_command_word_is_its_arguments() -> None:
    for text, args in [("/reset", ""), ("/reset  now please ", "now please"), ("/help@test_assistant_bot x", "x")]:
        route = route_update(message(text), BOT, ALLOWED)
        assert isinstance(route, Routed)
        assert isinstance(route.message, Command)
        assert route.message.args == args


def test_an_unknown_command_is_text_for_the_model() -> None:
    route = route_update(message("/weather Oslo"), BOT, ALLOWED)
    assert isinstance(route, Routed)
    assert isinstance(route.message, UserMessage)
    assert route.message.text == "/weather Oslo"


def test_a_sticker_gets_an_explanation_and_a_bare_photo_or_voice_goes_to_the_conversation() -> None:
    route = route_update(message(None, sticker={"file_id": "x"}), BOT, ALLOWED)
    assert isinstance(route, Notify)
    assert route.text == texts.NOT_READ["sticker"]
    for extra, kind in (({"photo": [{"file_id": "p"}]}, "photo"), ({"voice": {"file_id": "v"}}, "voice")):
        routed = route_update(message(None, **extra), BOT, ALLOWED)
        assert isinstance(routed, Routed)
        assert isinstance(routed.message, UserMessage)
        assert [item.kind for item in routed.message.attachments] == [kind]


def test_a_photo_caption_is_read_as_text() -> None:
    route = route_update(message(None, photo=[{"file_id": "p"}], caption="what is this?"), BOT, ALLOWED)
    assert isinstance(route, Routed)
    assert isinstance(route.message, UserMessage)
    assert route.message.text == "what is this?"


def test_edits_callbacks_channel_posts_and_membership_are_ignored() -> None:
    inner = message("x")["message"]
    for update in (
        {"update_id": 1, "edited_message": inner},
        {"update_id": 2, "callback_query": {"id": "c", "from": {"id": 42}}},
        {"update_id": 3, "channel_post": {**inner, "chat": {"id": -100, "type": "channel"}}},
        {"update_id": 4, "my_chat_member": {"chat": {"id": 42}}},
        {"update_id": 5},
    ):
        assert isinstance(route_update(update, BOT, ALLOWED), Ignore)


def test_in_groups_only_mentions_and_replies_are_answered() -> None:
    group = {"chat_id": -5, "chat_type": "group"}
    assert isinstance(route_update(message("chatter", **group), BOT, ALLOWED), Ignore)
    mention = "@test_assistant_bot what time is it?"
    route = route_update(
        message(mention, entities=[{"type": "mention", "offset": 0, "length": 19}], **group), BOT, ALLOWED
    )
    assert isinstance(route, Routed)
    assert isinstance(route.message, UserMessage)
    assert route.message.text == "what time is it?"
    assert route.message.target == ReplyTarget(-5, None, 7)
    assert route.conversation_id == "-5"
    reply = message(
        "and tomorrow?", reply_to_message={"message_id": 3, "from": {"id": BOT.id, "is_bot": True}}, **group
    )
    assert isinstance(route_update(reply, BOT, ALLOWED), Routed)
    other_reply = message("hm", reply_to_message={"message_id": 3, "from": {"id": 1, "is_bot": False}}, **group)
    assert isinstance(route_update(other_reply, BOT, ALLOWED), Ignore)


def test_a_stranger_mentioning_the_bot_in_a_group_is_refused() -> None:
    text = "@test_assistant_bot hi"
    update = message(
        text, user_id=5, chat_id=-5, chat_type="supergroup", entities=[{"type": "mention", "offset": 0, "length": 19}]
    )
    assert isinstance(route_update(update, BOT, ALLOWED), Notify)


def test_group_commands_must_name_the_bot() -> None:
    group = {"chat_id": -5, "chat_type": "group"}
    addressed = message(
        "/reset@test_assistant_bot", entities=[{"type": "bot_command", "offset": 0, "length": 25}], **group
    )
    route = route_update(addressed, BOT, ALLOWED)
    assert isinstance(route, Routed)
    assert isinstance(route.message, Command)
    assert route.message.name == "reset"
    other = message("/reset@other_bot", entities=[{"type": "bot_command", "offset": 0, "length": 16}], **group)
    assert isinstance(route_update(other, BOT, ALLOWED), Ignore)


def test_forum_topics_are_conversations_of_their_own() -> None:
    update = message(
        "@test_assistant_bot hi",
        chat_id=-100,
        chat_type="supergroup",
        message_thread_id=77,
        is_topic_message=True,
        entities=[{"type": "mention", "offset": 0, "length": 19}],
    )
    route = route_update(update, BOT, ALLOWED)
    assert isinstance(route, Routed)
    assert route.conversation_id == "-100:77"
    assert route.message.target == ReplyTarget(-100, 77, 7)


def test_mention_offsets_count_utf16_units() -> None:
    text = "🙂 @test_assistant_bot hi"
    update = message(text, chat_id=-5, chat_type="group", entities=[{"type": "mention", "offset": 3, "length": 19}])
    assert isinstance(route_update(update, BOT, ALLOWED), Routed)


def test_messages_from_bots_are_ignored() -> None:
    update = message("hi")
    update["message"]["from"]["is_bot"] = True
    assert isinstance(route_update(update, BOT, ALLOWED), Ignore)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20), _containers, max_leaves=20)


@given(
    st.dictionaries(
        st.sampled_from(["update_id", "message", "edited_message", "chat", "from", "text", "entities"]),
        json_values,
        max_size=5,
    ),
    st.dictionaries(
        st.sampled_from(
            [
                *("chat", "from", "text", "entities", "caption", "reply_to_message", "message_thread_id"),
                *("photo", "voice", "audio", "document", "media_group_id", "sticker", "location"),
            ]
        ),
        json_values,
        max_size=6,
    ),
)
def test_no_update_shape_makes_routing_raise(outer: dict[str, Any], inner: dict[str, Any]) -> None:
    route_update(outer, BOT, ALLOWED)
    route_update({"update_id": 1, "message": inner}, BOT, ALLOWED)
