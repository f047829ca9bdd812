"""Property: workers sharing the SQS FIFO queue and the DynamoDB store, some of them killed at random
moments mid-turn, answer every message of every chat in order and store each one exactly once.

The workers run in this process, each with its own SQS client, registry of SharedConversationActor
and store client, as processes would; a kill cancels all of its work at once (its in-flight requests
may or may not have reached moto, as with kill -9), releases nothing and sends nothing more, so its
messages come back to the others after the visibility timeout. moto's server is serialised (see
tests/scale_support.py): the properties judge our code, not the fake's FIFO races.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.conversation import TurnSettings
from actors.protocol import Reply, ReplyTarget, UserMessage
from actors.registry import ConversationRegistry
from actors.shared_conversation import SharedConversationActor
from actors.supervisor import Supervisor
from channels.telegram.queued import message_group_of
from conf import BackoffSettings
from llm import EmptyToolbox, ModelReply, ModelRequest, UserRecord
from ops.backoff import Backoff
from stores import DynamoDBConversationStore, StoreError
from stores.sqs_ingress import SqsIngressLog
from tests.fakes.moto_serialised import serialised_moto_server
from tests.fakes.moto_server import fake_aws_credentials
from tests.scale_support import dynamodb_settings, make_fifo_queue, queue_settings, text_update

pytestmark = pytest.mark.slow

FAST = BackoffSettings(initial_seconds=0.01, max_seconds=0.05, jitter_seconds=0)
VISIBILITY = 2  # seconds: a killed worker's messages come back this soon; the live ones keep theirs hidden
HELD = 4  # messages a worker takes on at once, as `max_in_flight` bounds a real worker
_runs = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_credentials(patch)
        with serialised_moto_server() as url:
            yield url


class EchoModel:
    """Answers `echo: <text>` after `delay` seconds (a turn long enough to be killed in)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def complete(self, request: ModelRequest) -> ModelReply:
        await asyncio.sleep(self.delay)
        last = next(m for m in reversed(request.messages) if isinstance(m, UserRecord))
        return ModelReply(text=f"echo: {last.text}")

    async def aclose(self) -> None:
        return None


@dataclass
class Sent:
    """What every worker delivered, in order: (chat id, update id, text)."""

    replies: list[tuple[int, int, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Channel:
    """A worker's ReplyChannel: records deliveries, deletes done messages; silent once killed."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def deliver(self, reply: Reply) -> None:
        if not self.worker.killed and reply.update_id is not None:
            self.worker.sent.replies.append((reply.target.chat_id, reply.update_id, reply.text))
            self.worker.sent.changed.set()

    @asynccontextmanager
    async def typing(self, target: ReplyTarget) -> AsyncIterator[None]:
        yield

    async def done(self, update_id: int) -> None:
        if not self.worker.killed:
            await self.worker.ingress.done(update_id)


class Worker:
    """One worker process: its own queue and store clients, registry and receive loop."""

    def __init__(self, endpoint: str, queue_url: str, table: str, sent: Sent, delay: float) -> None:
        self.sent = sent
        self.killed = False
        queue = queue_settings(endpoint, queue_url, visibility_timeout_seconds=VISIBILITY)
        self.ingress = SqsIngressLog(queue, message_group_of)
        self.store = DynamoDBConversationStore(dynamodb_settings(endpoint, table), Backoff(FAST))
        self.model = EchoModel(delay)
        self.channel = Channel(self)
        supervisor = Supervisor("conversations", backoff=FAST, max_restarts=20, window_seconds=60)
        self.registry: ConversationRegistry[Any] = ConversationRegistry(self._actor, supervisor, idle_seconds=60)
        self.tasks: list[asyncio.Task[None]] = []

    def _actor(self, conversation_id: str) -> SharedConversationActor:
        return SharedConversationActor(
            conversation_id,
            store=self.store,
            model=self.model,
            toolbox=EmptyToolbox(),
            channel=self.channel,
            settings=TurnSettings("test"),
            backoff=Backoff(FAST),
        )

    async def start(self) -> None:
        await self.ingress.open()
        await self.store.open()
        self.tasks = [
            asyncio.create_task(self._receive_forever(), name="worker"),
            asyncio.create_task(self._keep_hidden(), name="keep-hidden"),
        ]

    async def _receive_forever(self) -> None:
        while True:
            # Few at a time, so that the messages spread over the workers (a busy worker's room is small too).
            room = min(2, HELD - self.ingress.held)
            if room <= 0:
                await asyncio.sleep(0.02)  # every held turn is running: as the real worker, take nothing on
                continue
            for update in await self.ingress.receive(room):
                chat = update["message"]["chat"]["id"]
                message = UserMessage(str(chat), update["message"]["text"], ReplyTarget(chat), update["update_id"])
                self.registry.tell(str(chat), message)

    async def _keep_hidden(self) -> None:
        """As the real worker: every third of the visibility timeout, hide what is held for another."""
        while True:
            await asyncio.sleep(VISIBILITY / 3)
            with contextlib.suppress(StoreError):  # the next round tries again, as the real worker does
                await self.ingress.extend_held()

    async def _cancel_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def kill(self) -> None:
        """Like kill -9: everything stops at once, nothing is released or sent."""
        self.killed = True
        await self._cancel_tasks()
        await self.registry.stop(0)
        await self.ingress.close()
        await self.store.close()

    async def stop(self) -> None:
        await self._cancel_tasks()
        await self.registry.stop(1)
        await self.ingress.release()
        await self.ingress.close()
        await self.store.close()


async def run_scenario(endpoint: str, messages: list[int], kills: list[float], delay: float) -> None:
    run = next(_runs)
    queue_url = await make_fifo_queue(endpoint, f"prop-{run}", visibility=VISIBILITY)
    table = "scale-properties"
    sent = Sent()
    workers = [Worker(endpoint, queue_url, table, sent, delay) for _ in range(3)]
    for worker in workers:
        await worker.start()
    chats = {chat: 10_000 * (run + 1) + chat for chat in set(messages)}  # fresh conversations per run
    updates = [text_update(index + 1, chats[chat], f"m{index}") for index, chat in enumerate(messages)]
    gateway = SqsIngressLog(queue_settings(endpoint, queue_url), message_group_of)
    await gateway.open()
    try:
        await gateway.append(updates)
        for after in kills:
            await asyncio.sleep(after)  # a random moment mid-turn: the property's input, not a wait
            alive = [worker for worker in workers if not worker.killed]
            victim = random.Random(after).choice(alive)
            await victim.kill()
            replacement = Worker(endpoint, queue_url, table, sent, delay)
            await replacement.start()
            workers.append(replacement)
        wanted = {update["update_id"] for update in updates}
        async with asyncio.timeout(20):
            while not wanted <= {update_id for _, update_id, _ in sent.replies}:
                sent.changed.clear()
                await sent.changed.wait()
    finally:
        await gateway.close()
        for worker in workers:
            if not worker.killed:
                await worker.stop()
    await check(endpoint, table, chats, updates, sent)


async def check(endpoint: str, table: str, chats: dict[int, int], updates: list[dict[str, Any]], sent: Sent) -> None:
    async with DynamoDBConversationStore(dynamodb_settings(endpoint, table)) as store:
        for chat_id in chats.values():
            mine = [update["update_id"] for update in updates if update["message"]["chat"]["id"] == chat_id]
            # Answered in order: a reply sent again (a crash after sending, before recording it) repeats
            # one already sent, never one out of turn.
            first_seen: list[int] = []
            for chat, update_id, text in sent.replies:
                if chat == chat_id and update_id not in first_seen:
                    first_seen.append(update_id)
                    assert text == f"echo: m{update_id - 1}"
            assert first_seen == mine
            records = await store.load(str(chat_id))
            assert [record["seq"] for record in records] == list(range(len(records)))
            users = [record["update_id"] for record in records if record.get("role") == "user"]
            assert users == mine  # each stored exactly once, in order
            delivered = [record["update_id"] for record in records if record.get("type") == "delivered"]
            assert delivered == mine


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=st.lists(st.integers(0, 3), min_size=4, max_size=14),
    kills=st.lists(st.floats(0.02, 0.3), max_size=2),
    delay=st.sampled_from([0.0, 0.05, 0.15]),
)
def test_workers_killed_at_random_keep_every_chat_in_order_and_stored_once(
    endpoint: str, messages: list[int], kills: list[float], delay: float
) -> None:
    asyncio.run(run_scenario(endpoint, messages, kills, delay))
