"""The SQS FIFO ingress log against moto's server over HTTP (serialised: see tests/scale_support.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from channels.telegram.queued import message_group_of
from stores import StoreError
from stores.sqs_ingress import SqsIngressLog
from tests.fakes.moto_serialised import serialised_moto_server
from tests.fakes.moto_server import fake_aws_credentials
from tests.scale_support import make_fifo_queue, queue_counts, queue_settings, text_update

_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        fake_aws_credentials(patch)
        with serialised_moto_server() as url:
            yield url


async def fresh_log(endpoint: str, **settings: int) -> SqsIngressLog:
    visibility = settings.setdefault("visibility_timeout_seconds", 30)
    url = await make_fifo_queue(endpoint, f"ingress-{next(_names)}", visibility=visibility)
    log = SqsIngressLog(queue_settings(endpoint, url, **settings), message_group_of)
    await log.open()
    return log


async def test_updates_come_back_in_order_and_a_second_copy_is_dropped(endpoint: str) -> None:
    log = await fresh_log(endpoint)
    try:
        updates = [text_update(10 + index, 7, f"m{index}") for index in range(12)]
        await log.append(updates[:5])
        await log.append(updates[3:])  # 3 and 4 again: a re-poll after a crash
        received = []
        while len(received) < 12:
            batch = await log.receive()
            assert batch, "the queue ran dry early"
            received += batch
            for update in batch:
                await log.done(update["update_id"])
        assert [update["update_id"] for update in received] == list(range(10, 22))
        assert await queue_counts(endpoint, log.settings.url) == (0, 0)
        assert await log.pending() == []
    finally:
        await log.close()


async def test_one_conversation_is_in_one_consumers_hands_at_a_time(endpoint: str) -> None:
    first = await fresh_log(endpoint, wait_seconds=0)
    second = SqsIngressLog(first.settings, message_group_of)
    await second.open()
    try:
        await first.append([text_update(1, 1, "a"), text_update(2, 1, "b"), text_update(3, 2, "c")])
        got_first, got_second = await asyncio.gather(first.receive(1), second.receive(1))
        chats = {update["message"]["chat"]["id"] for update in got_first + got_second}
        assert chats == {1, 2}  # never update 2 (chat 1) while update 1 is held
        assert await second.receive() == []  # chat 1's next waits until its first is done
        holder = first if any(update["update_id"] == 1 for update in got_first) else second
        await holder.done(1)
        assert [update["update_id"] for update in await second.receive()] == [2]
    finally:
        await first.close()
        await second.close()


async def test_release_hands_what_is_held_to_another_consumer_at_once(endpoint: str) -> None:
    log = await fresh_log(endpoint, wait_seconds=0)
    other = SqsIngressLog(log.settings, message_group_of)
    await other.open()
    try:
        await log.append([text_update(5, 3, "x")])
        assert [update["update_id"] for update in await log.receive()] == [5]
        assert await other.receive() == []
        await log.extend_held()
        assert log.held == 1
        await log.release()
        assert [update["update_id"] for update in await other.receive()] == [5]
    finally:
        await log.close()
        await other.close()


async def test_a_message_not_done_reappears_after_the_visibility_timeout(endpoint: str) -> None:
    log = await fresh_log(endpoint, wait_seconds=0, visibility_timeout_seconds=1)
    try:
        await log.append([text_update(8, 4, "again")])
        assert len(await log.receive()) == 1
        await asyncio.sleep(1.1)  # SQS's clock: nothing to wait on but the timeout itself
        assert [update["update_id"] for update in await log.receive()] == [8]
        await log.done(8)
        assert await queue_counts(endpoint, log.settings.url) == (0, 0)
    finally:
        await log.close()


async def test_a_standard_queue_is_refused(endpoint: str) -> None:
    url = await make_fifo_queue(endpoint, f"standard-{next(_names)}", fifo=False)
    # Past the settings' own check (a .fifo name): the queue itself is asked.
    settings = queue_settings(endpoint, url.replace("standard", "x") + ".fifo").model_copy(update={"url": url})
    log = SqsIngressLog(settings, message_group_of)
    with pytest.raises(StoreError):
        await log.open()
    await log.close()


async def test_check_reaches_the_queue_and_counts_what_waits(endpoint: str) -> None:
    from app.scale import check_queue
    from conf import load_settings
    from tests.e2e_support import SHIPPED

    log = await fresh_log(endpoint, wait_seconds=0)
    try:
        await log.append([text_update(1, 1, "a"), text_update(2, 2, "b")])
        env = {"STORE_BACKEND": "dynamodb", "INGRESS_QUEUE_URL": log.settings.url, "SQS_ENDPOINT_URL": endpoint}
        settings = load_settings(SHIPPED, env=env | {"AWS_REGION": "us-east-1"})
        assert await check_queue(settings) == "FIFO queue reachable, 2 message(s) waiting"
    finally:
        await log.close()
