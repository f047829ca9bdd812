"""The contract every UsageStore and PreferenceStore backend keeps: memory, file, DynamoDB (moto)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stores import Usage
from tests.feature_backends import BACKENDS, FeatureBackend, make_backend

ALICE, BOB = 111, 222


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FeatureBackend:
    return make_backend(request.param, tmp_path, request, monkeypatch)


CALL = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000, cache_write_tokens=50, cost_micros=4500)


async def test_a_day_sums_what_was_added_to_it(backend: FeatureBackend) -> None:
    async with backend.usage() as store:
        assert await store.day(ALICE, "2026-05-01") == Usage()
        await store.add(ALICE, "2026-05-01", CALL)
        await store.add(ALICE, "2026-05-01", Usage(input_tokens=5, output_tokens=7))
        await store.add(ALICE, "2026-05-02", CALL)
        await store.add(BOB, "2026-05-01", CALL)
        today = await store.day(ALICE, "2026-05-01")
        assert today == Usage(1205, 307, 1000, 50, 4500)
        assert today.tokens == 1512
        assert await store.day(BOB, "2026-05-01") == CALL
        assert await store.day(BOB, "2026-05-02") == Usage()


async def test_usage_survives_reopening_the_store(backend: FeatureBackend) -> None:
    if not backend.durable:
        pytest.skip("the memory backend keeps nothing across objects")
    async with backend.usage() as store:
        await store.add(ALICE, "2026-05-01", CALL)
    async with backend.usage() as store:
        await store.add(ALICE, "2026-05-01", CALL)
    async with backend.usage() as store:
        assert await store.day(ALICE, "2026-05-01") == CALL + CALL
        assert await store.month(ALICE, "2026-05") == CALL + CALL


async def test_a_month_sums_its_days_only(backend: FeatureBackend) -> None:
    async with backend.usage() as store:
        for day in ("2026-04-30", "2026-05-01", "2026-05-15", "2026-05-31", "2026-06-01"):
            await store.add(ALICE, day, CALL)
        await store.add(BOB, "2026-05-10", Usage(output_tokens=1))
        assert await store.month(ALICE, "2026-05") == CALL + CALL + CALL
        assert await store.month(ALICE, "2026-04") == CALL
        assert await store.month(ALICE, "2025-05") == Usage()
        assert await store.month(BOB, "2026-05") == Usage(output_tokens=1)


async def test_the_owners_total_has_every_users_month(backend: FeatureBackend) -> None:
    async with backend.usage() as store:
        assert await store.all_users_month("2026-05") == {}
        for user in range(1, 13):
            await store.add(user, "2026-05-01", Usage(input_tokens=user))
            await store.add(user, "2026-05-20", Usage(output_tokens=user))
        await store.add(99, "2026-06-01", CALL)
        totals = await store.all_users_month("2026-05")
        assert totals == {user: Usage(input_tokens=user, output_tokens=user) for user in range(1, 13)}
        assert await store.all_users_month("2026-06") == {99: CALL}


async def test_concurrent_adds_from_two_workers_all_count(backend: FeatureBackend) -> None:
    async with backend.usage() as first, backend.usage() as second:
        one = Usage(input_tokens=1, output_tokens=2, cost_micros=3)
        await asyncio.gather(*(store.add(ALICE, "2026-05-01", one) for _ in range(15) for store in (first, second)))
        for store in (first, second):
            assert await store.day(ALICE, "2026-05-01") == Usage(input_tokens=30, output_tokens=60, cost_micros=90)


async def test_malformed_days_and_months_are_value_errors(backend: FeatureBackend) -> None:
    async with backend.usage() as store:
        for day in ("2026-5-1", "2026-02-30", "20260501", "", "2026-05-01T00:00", "2026-13-01"):
            with pytest.raises(ValueError, match="day"):
                await store.add(ALICE, day, CALL)
            with pytest.raises(ValueError, match="day"):
                await store.day(ALICE, day)
        for month in ("2026-5", "2026-13", "2026-00", "2026-05-01", ""):
            with pytest.raises(ValueError, match="month"):
                await store.month(ALICE, month)
            with pytest.raises(ValueError, match="month"):
                await store.all_users_month(month)
        assert await store.all_users_month("2026-05") == {}


def test_counts_are_non_negative_ints() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        Usage(input_tokens=-1)
    with pytest.raises(ValueError, match="cost_micros"):
        Usage(cost_micros=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_tokens"):
        Usage(output_tokens=True)


# Preferences


async def test_a_chats_model_is_kept_until_changed_or_unset(backend: FeatureBackend) -> None:
    async with backend.preferences() as store:
        assert await store.model("-1001234567890:42") is None
        await store.set_model("-1001234567890:42", "gpt-4o-mini")
        await store.set_model("555", "claude-sonnet-5")
        await store.set_model("-1001234567890:42", "claude-haiku-4")
        assert await store.model("-1001234567890:42") == "claude-haiku-4"
        assert await store.model("555") == "claude-sonnet-5"
        await store.set_model("555", None)
        assert await store.model("555") is None
        await store.set_model("555", None)  # unsetting what is unset is fine


async def test_a_users_time_zone_is_kept_until_changed_or_unset(backend: FeatureBackend) -> None:
    async with backend.preferences() as store:
        assert await store.timezone(ALICE) is None
        await store.set_timezone(ALICE, "Europe/Berlin")
        await store.set_timezone(BOB, "America/New_York")
        assert await store.timezone(ALICE) == "Europe/Berlin"
        await store.set_timezone(ALICE, None)
        assert await store.timezone(ALICE) is None
        assert await store.timezone(BOB) == "America/New_York"


async def test_preferences_survive_reopening_and_keep_hostile_ids_apart(backend: FeatureBackend) -> None:
    if not backend.durable:
        pytest.skip("the memory backend keeps nothing across objects")
    ids = ["Chat", "chat", "../../etc/passwd", "日本語 🚀", "x" * 3000, "\ud800lone", "111"]
    async with backend.preferences() as store:
        for index, conversation in enumerate(ids):
            await store.set_model(conversation, f"model-{index}")
        await store.set_timezone(111, "Asia/Tokyo")
    async with backend.preferences() as store:
        assert [await store.model(conversation) for conversation in ids] == [f"model-{i}" for i in range(len(ids))]
        assert await store.timezone(111) == "Asia/Tokyo"  # a user id and a chat id "111" do not meet
