"""Isolation: facts of one user never reach a request made for another, whatever the interleaving.

Three users write in their private chats and in one group they share, remembering, recalling,
chatting, listing and forgetting, in random orders and concurrently (hypothesis). Each user's facts
carry their id (`secret-of-user-2-...`). For every model request made for a user's turn:

- its instructions hold no other user's fact;
- a recall made in it returns none of another user's facts;
- in a private chat, nothing of another user's appears at all.

`/memory` shows a user only their own facts, and the store keeps each fact with its owner.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm import ModelRequest, ToolResultRecord, UserRecord, record_to_json
from tests.memory_support import Users, is_summary_request

USERS = (1, 2, 3)
GROUP = -100
SECRET = re.compile(r"secret-of-user-(\d+)-\d+")
TAG = re.compile(r"^\(u(\d+) (private|group)\)")

Action = Literal["remember", "recall", "chat", "memory", "forget_all"]
Step = tuple[int, bool, Action]

steps = st.tuples(
    st.sampled_from(USERS),
    st.booleans(),
    st.sampled_from(["remember", "remember", "recall", "chat", "memory", "forget_all"]),
)


def owners(text: str) -> set[int]:
    return {int(match) for match in SECRET.findall(text)}


def speaker(request: ModelRequest) -> tuple[int, bool]:
    """The user (and whether in private) a turn's request is made for: its last user message's tag."""
    last = next(message for message in reversed(request.messages) if isinstance(message, UserRecord))
    match = TAG.match(last.text)
    assert match is not None, last.text
    return int(match.group(1)), match.group(2) == "private"


async def play(rounds: list[list[Step]]) -> None:
    users = Users(context_tokens=1200)
    memory_answers: list[tuple[int, str]] = []
    counter = 0

    async def act(user: int, private: bool, action: Action) -> None:
        nonlocal counter
        counter += 1
        chat = user if private else GROUP
        tag = f"(u{user} {'private' if private else 'group'})"
        if action == "memory":
            memory_answers.append((user, await users.command(chat, user, "memory")))
        elif action == "forget_all":
            await users.command(chat, user, "forget", "all")
        elif action == "remember":
            await users.say(chat, user, f"{tag} remember: secret-of-user-{user}-{counter}")
        elif action == "recall":
            await users.say(chat, user, f"{tag} recall: secret")
        else:
            await users.say(chat, user, f"{tag} hello " + "chatter " * 20)

    for group in rounds:
        # Steps of one round run concurrently; different chats really overlap.
        await asyncio.gather(*(act(*step) for step in group))
    await users.stop()

    for request in users.model.requests:
        if is_summary_request(request):
            continue
        user, private = speaker(request)
        assert owners(request.system) <= {user}, "another user's fact in the instructions"
        last = request.messages[-1]
        if isinstance(last, ToolResultRecord):
            assert owners(last.content) <= {user}, "another user's fact in a recall"
        if private:
            seen = " ".join(str(record_to_json(message)) for message in request.messages)
            assert owners(seen) <= {user}, "another user's words in a private chat"
    for user, answer in memory_answers:
        assert owners(answer) <= {user}
    for user in USERS:
        assert all(fact.user_id == user for fact in await users.facts.list_for_user(user))
        assert all(owners(fact.text) == {user} for fact in await users.facts.list_for_user(user))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.lists(steps, min_size=1, max_size=3), min_size=1, max_size=10))
def test_facts_of_one_user_never_reach_a_request_for_another(rounds: list[list[Step]]) -> None:
    asyncio.run(play(rounds), debug=True)


def test_the_isolation_check_catches_a_leak() -> None:
    """The property above can fail: a fact of user 2 in a request made for user 1 is caught."""
    request = ModelRequest("facts: secret-of-user-2-9", [UserRecord(text="(u1 group) hello")])
    user, _ = speaker(request)
    assert not owners(request.system) <= {user}


async def test_in_a_shared_group_each_turn_carries_the_speakers_facts_only() -> None:
    users = Users()
    await users.say(1, 1, "(u1 private) remember: secret-of-user-1-1")
    await users.say(2, 2, "(u2 private) remember: secret-of-user-2-2")
    await users.say(GROUP, 1, "(u1 group) hello")
    await users.say(GROUP, 2, "(u2 group) hello")
    *_, for_one, for_two = users.model.requests
    assert owners(for_one.system) == {1}
    assert owners(for_two.system) == {2}
    await users.stop()
