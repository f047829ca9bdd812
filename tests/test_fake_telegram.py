"""The fake Bot API answers python-telegram-bot (and raw HTTP) the way Telegram does."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import httpx
import pytest
from telegram import Bot, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter

from tests.fakes.telegram_server import FakeTelegramServer

# PTB 22 warns when RetryAfter.retry_after is read as an int (inside its own constructor too).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_get_me_answers_the_bot_user(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.username == "test_assistant_bot"
    assert me.is_bot


async def test_an_unknown_token_is_unauthorized(tg: FakeTelegramServer) -> None:
    with pytest.raises(InvalidToken, match="rejected by the server"):
        async with Bot("999:wrong", base_url=tg.base_url) as other:
            await other.get_me()


async def test_raw_answers_have_the_bot_api_shape(tg: FakeTelegramServer) -> None:
    async with httpx.AsyncClient() as client:
        ok = await client.post(f"{tg.base_url}{tg.token}/sendMessage", json={"chat_id": 5, "text": "json body"})
        form = await client.post(f"{tg.base_url}{tg.token}/sendMessage", data={"chat_id": "5", "text": "form body"})
        unknown = await client.post(f"{tg.base_url}{tg.token}/sendTelepathy", json={})
        empty = await client.post(f"{tg.base_url}{tg.token}/sendMessage", json={"chat_id": 5, "text": "  "})
    assert ok.json()["ok"] is True
    assert ok.json()["result"]["text"] == "json body"
    assert form.json()["result"]["chat"]["id"] == 5
    assert unknown.status_code == 404
    assert unknown.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert empty.json() == {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
    assert [m.text for m in tg.sent_to(5)] == ["json body", "form body"]


async def test_get_updates_returns_as_soon_as_an_update_arrives(tg: FakeTelegramServer, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=20), name="poll")
    while "getUpdates" not in tg.calls:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    threading.Thread(target=tg.add_text_message, args=(42, "hello")).start()
    updates = await asyncio.wait_for(poll, 10)
    assert [u.message.text for u in updates if u.message] == ["hello"]
    assert time.monotonic() - started < 5


async def test_an_offset_confirms_and_removes_earlier_updates(tg: FakeTelegramServer, bot: Bot) -> None:
    first = tg.add_text_message(42, "one")
    second = tg.add_text_message(42, "two")
    assert [u.update_id for u in await bot.get_updates()] == [first, second]
    assert [u.update_id for u in await bot.get_updates(offset=second)] == [second]
    assert tg.confirmed_offset == second
    assert [u["update_id"] for u in tg.pending_updates] == [second]
    assert await bot.get_updates(offset=second + 1) == ()
    assert tg.pending_updates == []


async def test_limit_and_allowed_updates_are_honoured(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.add_edited_message(42, "edited")
    ids = [tg.add_text_message(42, str(i)) for i in range(3)]
    tg.add_callback_query(42, "button")
    updates = await bot.get_updates(limit=2, allowed_updates=["message"])
    assert [u.update_id for u in updates] == ids[:2]
    # The setting sticks, as on Telegram: later polls without it still get only messages.
    assert [u.update_id for u in await bot.get_updates(offset=ids[2])] == [ids[2]]


async def test_a_newer_poll_terminates_an_older_one_with_conflict(tg: FakeTelegramServer, bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=20), name="older")
    while "getUpdates" not in tg.calls:
        await asyncio.sleep(0.01)
    async with Bot(tg.token, base_url=tg.base_url) as second:
        await second.get_updates(timeout=0)
    with pytest.raises(Conflict):
        await asyncio.wait_for(older, 5)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("a < b", "Unclosed start tag at byte offset 2"),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="red">x</span>', 'Tag "span" must have class "tg-spoiler"'),
    ],
)
async def test_html_that_telegram_cannot_parse_is_refused(bot: Bot, text: str, reason: str) -> None:
    with pytest.raises(BadRequest, match="parse entities") as caught:
        await bot.send_message(42, text, parse_mode="HTML")
    assert reason.lower() in caught.value.message.lower()


async def test_supported_html_is_accepted_and_counted_after_parsing(tg: FakeTelegramServer, bot: Bot) -> None:
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s><strike>k</strike><del>d</del>"
        '<span class="tg-spoiler">p</span><tg-spoiler>q</tg-spoiler><a href="https://x.org/?a=1&amp;b=2">a</a>'
        '<code>c</code><pre><code class="language-python">x</code></pre><blockquote expandable>q</blockquote>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji> &lt;&gt;&amp;&quot;&#33;&#x21; & R&D'
    )
    message = await bot.send_message(42, text, parse_mode="HTML")
    assert message.text == 'bsieunskdpqacxq👍 <>&"!! & R&D'
    long_but_short_visible = "<b>" + "&amp;" * 4096 + "</b>"
    await bot.send_message(42, long_but_short_visible, parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(42, "x" * 4097)
    assert len(tg.sent) == 2


async def test_blocked_and_unknown_chats_are_refused(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.block_chat(7)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(7, "hi")
    tg.reject_unknown_chats = True
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(8, "hi")
    tg.add_text_message(8, "hello")
    await bot.send_message(8, "hi")


async def test_editing_to_the_same_text_is_not_modified(tg: FakeTelegramServer, bot: Bot) -> None:
    message = await bot.send_message(42, "<b>v1</b>", parse_mode="HTML")
    await bot.edit_message_text("v2", 42, message.message_id)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("v2", 42, message.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("v3", 42, 999_999)
    assert [e.text for e in tg.edits] == ["v2"]


async def test_fail_next_injects_flood_control_for_one_chat(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.fail_next("sendMessage", 429, retry_after=7, chat_id=1, count=2)
    await bot.send_message(2, "other chat flows")
    for _ in range(2):
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(1, "flooded")
        assert caught.value.retry_after == timedelta(seconds=7)  # PTB_TIMEDELTA is set (conftest.py)
    await bot.send_message(1, "through")
    assert [m.text for m in tg.sent] == ["other chat flows", "through"]
    assert tg.calls.count("sendMessage") == 4


async def test_outage_and_conflict_of_get_updates(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.getupdates_outage(True)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_updates()
    tg.getupdates_outage(False)
    tg.conflict(True)
    with pytest.raises(Conflict, match="terminated by other getUpdates"):
        await bot.get_updates()
    tg.conflict(False)
    assert await bot.get_updates() == ()


async def test_commands_are_set_read_and_deleted(tg: FakeTelegramServer, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("reset", "Start afresh")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "reset"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Bad-Name", "x")])
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    assert tg.calls.count("setMyCommands") == 2


async def test_chat_actions_and_replies_are_recorded(tg: FakeTelegramServer, bot: Bot) -> None:
    await bot.send_chat_action(-100123, "typing", message_thread_id=9)
    await bot.send_message(-100123, "in topic", message_thread_id=9, reply_to_message_id=77)
    [action] = tg.chat_actions
    assert (action.chat_id, action.action, action.message_thread_id) == (-100123, "typing", 9)
    [sent] = tg.sent
    assert (sent.message_thread_id, sent.reply_to) == (9, 77)


async def test_await_sent_does_not_block_the_loop_and_times_out_loudly(tg: FakeTelegramServer, bot: Bot) -> None:
    waiting = asyncio.create_task(tg.await_sent(chat_id=3, count=2), name="await-sent")
    await bot.send_message(3, "one")  # runs on this loop while await_sent waits
    await bot.send_message(3, "two")
    assert [m.text for m in await waiting] == ["one", "two"]
    with pytest.raises(TimeoutError, match="expected 1 message"):
        await tg.await_sent(chat_id=4, timeout=0.05)


def test_wait_for_sent_blocks_until_messages_arrive(tg: FakeTelegramServer) -> None:
    def send() -> None:
        httpx.post(f"{tg.base_url}{tg.token}/sendMessage", json={"chat_id": 5, "text": "late"})

    threading.Thread(target=send).start()
    assert [m.text for m in tg.wait_for_sent(chat_id=5)] == ["late"]


async def test_group_messages_carry_command_and_mention_entities(tg: FakeTelegramServer, bot: Bot) -> None:
    await bot.send_message(-5, "earlier answer")
    tg.add_text_message(
        -5, "@test_assistant_bot what about /help@test_assistant_bot?", chat_type="group", user_id=9, reply_to_bot=True
    )
    tg.add_text_message(-1001, "in a topic", chat_type="supergroup", message_thread_id=3)
    group, topic = await bot.get_updates()
    assert group.message is not None
    assert group.message.chat.type == "group"
    assert group.message.from_user is not None
    assert group.message.from_user.id == 9
    assert group.message.parse_entities(["mention"]).popitem()[1] == "@test_assistant_bot"
    assert group.message.parse_entities(["bot_command"]).popitem()[1] == "/help@test_assistant_bot"
    assert group.message.reply_to_message is not None
    assert group.message.reply_to_message.from_user is not None
    assert group.message.reply_to_message.from_user.username == "test_assistant_bot"
    assert topic.message is not None
    assert (topic.message.message_thread_id, topic.message.chat.is_forum) == (3, True)


async def test_odd_update_shapes_parse_as_python_telegram_bot_objects(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.add_sticker(1)
    tg.add_photo(1)
    tg.add_photo(1, caption="what is this?")
    tg.add_voice(1)
    tg.add_document(1)
    tg.add_edited_message(1, "fixed typo")
    tg.add_callback_query(1, "data")
    tg.add_channel_post(-100777, "news")
    tg.add_my_chat_member(-5, "kicked")
    tg.add_update(
        {
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "dice": {"emoji": "🎲", "value": 3},
            }
        }
    )
    updates: tuple[Update, ...] = await bot.get_updates()
    assert len(updates) == 10
    messages = [u.message for u in updates[:5]] + [updates[9].message]
    assert all(message is not None for message in messages)
    sticker, photo, captioned, voice, document, dice = (m for m in messages if m is not None)
    assert sticker.sticker is not None
    assert photo.photo
    assert photo.caption is None
    assert captioned.caption == "what is this?"
    assert voice.voice is not None
    assert document.document is not None
    assert dice.dice is not None
    assert updates[5].edited_message is not None
    assert updates[6].callback_query is not None
    assert updates[7].channel_post is not None
    assert updates[8].my_chat_member is not None


async def test_a_latency_changed_once_a_call_is_seen_is_not_the_one_that_call_gets(tg: FakeTelegramServer) -> None:
    # Tests slow a send down, then speed the next one up as soon as the first is seen: the first must
    # keep its latency, however the server's thread and the test are scheduled.
    tg.send_latency = 0.5
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        send = asyncio.ensure_future(
            client.post(f"{tg.base_url}{tg.token}/sendMessage", json={"chat_id": 5, "text": "a"})
        )
        await tg.await_calls("sendMessage", count=1, timeout=5)
        tg.send_latency = 0.0
        response = await send
    assert response.json()["ok"]
    assert time.monotonic() - started >= 0.5
