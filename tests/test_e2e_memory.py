"""End to end, through the fake Bot API and the fake model: the memory section of the contract on the
file and DynamoDB backends. A fact the model saves is listed by /memory at once, is in the
instructions of the user's turns in any chat, survives /reset and a restart, and never reaches
another user; /timezone sets the zone the instructions state."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors import texts
from channels.telegram.format import to_telegram_html
from conf import Settings
from tests.e2e_support import assistant_env, fast_settings, moto_dynamodb, running
from tests.fakes.llm_server import CallTools, FakeLLMServer, Reply
from tests.fakes.telegram_server import FakeTelegramServer

FACT = "My cat is called Miso"


@contextmanager
def backend_settings(
    name: str, tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    if name == "file":
        yield fast_settings(assistant_env(tg, llm, tmp_path / "store"))
        return
    with moto_dynamodb(monkeypatch, "e2e-memory", region="eu-west-1") as dynamodb:
        yield fast_settings(assistant_env(tg, llm, tmp_path / "unused", **dynamodb))


@pytest.mark.parametrize("backend", ["file", "dynamodb"])
async def test_a_saved_fact_is_listed_kept_across_reset_and_restart_and_private_to_its_user(
    backend: str, tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm.script([CallTools([("remember", {"fact": FACT})]), Reply("Noted: your cat is Miso.")])
    with backend_settings(backend, tg, llm, tmp_path, monkeypatch) as settings:
        async with running(settings):
            tg.add_text_message(42, "Remember that my cat is called Miso")
            [answer] = await tg.await_sent(chat_id=42, timeout=15)
            assert answer.text == "Noted: your cat is Miso."
            assert {"remember", "recall", "forget"} <= set(llm.requests[0].tool_names)
            [saved] = llm.requests[1].tool_results
            assert saved.content.startswith("Saved as fact ")

            tg.add_text_message(42, "/memory")
            [listing] = (await tg.await_sent(chat_id=42, count=2, timeout=15))[1:]
            match = re.search(r"([0-9a-f]{8})</code> My cat is called Miso", listing.text)
            assert match is not None, listing.text

            tg.add_text_message(42, "/reset")
            tg.add_text_message(42, "/timezone europe/berlin")
            tg.add_text_message(42, "what is my cat called?")
            sent = await tg.await_sent(chat_id=42, count=5, timeout=15)
            assert sent[2].text == texts.RESET
            assert sent[3].text.startswith("Your time zone is now Europe/Berlin")
            after_reset = llm.requests[-1]
            assert after_reset.last_user_text == "what is my cat called?"
            assert [m["role"] for m in after_reset.messages if m["role"] != "system"] == ["user"]
            assert f'<fact id="{match.group(1)}">{FACT}</fact>' in after_reset.system
            assert "(Europe/Berlin, UTC+" in after_reset.system

        llm.script([])
        async with running(settings):  # a restart: new stores, new actors
            tg.add_text_message(42, "hello again")
            tg.add_text_message(7, "hello from someone else")
            await tg.await_sent(chat_id=42, count=6, timeout=15)
            await tg.await_sent(chat_id=7, timeout=15)
            tg.add_text_message(7, "/memory")
            [other_listing] = (await tg.await_sent(chat_id=7, count=2, timeout=15))[1:]
    by_user = {request.last_user_text: request for request in llm.requests[-2:]}
    assert FACT in by_user["hello again"].system
    assert "(Europe/Berlin, UTC+" in by_user["hello again"].system
    assert FACT not in by_user["hello from someone else"].system
    assert "(UTC, UTC+00:00)" in by_user["hello from someone else"].system
    assert other_listing.text == to_telegram_html(texts.MEMORY_EMPTY)


async def test_forget_and_an_unknown_time_zone_through_telegram(
    tg: FakeTelegramServer, llm: FakeLLMServer, tmp_path: Path
) -> None:
    llm.script([CallTools([("remember", {"fact": "Likes green tea"})]), Reply("Saved.")])
    async with running(fast_settings(assistant_env(tg, llm, tmp_path / "store"))):
        tg.add_text_message(42, "remember I like green tea")
        tg.add_text_message(42, "/memory")
        listing = (await tg.await_sent(chat_id=42, count=2, timeout=15))[1]
        match = re.search(r"([0-9a-f]{8})</code> Likes green tea", listing.text)
        assert match is not None, listing.text
        tg.add_text_message(42, f"/forget {match.group(1)}")
        tg.add_text_message(42, "/forget all")
        tg.add_text_message(42, "/timezone Mars/Olympus")
        sent = await tg.await_sent(chat_id=42, count=5, timeout=15)
    assert sent[2].text == to_telegram_html("Forgotten: Likes green tea")
    assert sent[3].text == texts.FORGET_ALL_DONE.format(count=0)
    assert "Mars/Olympus" in sent[4].text
    assert "Europe/Berlin" in sent[4].text
    assert len(llm.requests) == 2  # the commands never reach the model
