"""BM25 ranking of a user's facts (FactRanker, SQLite FTS5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from stores import Fact, FactRanker, FactSource

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def fact(text: str, index: int, user_id: int = 1) -> Fact:
    return Fact(user_id, f"{index:08x}", text, NOW, FactSource("chat"))


FACTS = [
    fact("Allergic to peanuts and shellfish", 0),
    fact("Drinks coffee black, never with sugar", 1),
    fact("Lives in Lisbon with a cat called Miso", 2),
    fact("Works as a nurse on night shifts", 3),
    fact("Favourite café in Lisbon is Café A Brasileira; coffee there every Sunday", 4),
    fact("Sister Ana lives in São Paulo", 5),
]


@pytest.fixture
async def ranker() -> AsyncIterator[FactRanker]:
    ranker = FactRanker()
    yield ranker
    ranker.close()


async def test_the_best_match_comes_first_and_non_matches_are_left_out(ranker: FactRanker) -> None:
    ranked = await ranker.rank("Lisbon coffee?", FACTS)
    assert ranked[0] == FACTS[4]  # coffee and Lisbon
    assert set(ranked) == {FACTS[1], FACTS[2], FACTS[4]}
    assert await ranker.rank("quantum chromodynamics", FACTS) == []


async def test_words_match_across_inflection_case_and_accents(ranker: FactRanker) -> None:
    assert await ranker.rank("ALLERGY? allergic", FACTS) == [FACTS[0]]
    assert await ranker.rank("nursing shift", FACTS) == [FACTS[3]]
    assert await ranker.rank("sao paulo", FACTS) == [FACTS[5]]
    assert (await ranker.rank("cafe", FACTS))[0] == FACTS[4]


async def test_query_syntax_is_text_not_fts_operators(ranker: FactRanker) -> None:
    facts = [fact('He said "NEAR" AND left -- OR not', 0), fact("nothing to see", 1)]
    assert await ranker.rank('NEAR AND OR NOT "', facts) == [facts[0]]
    assert await ranker.rank("*) OR (", facts) == [facts[0]]  # "or" is a word of it
    assert await ranker.rank("*) : ^ (", facts) == []
    assert await ranker.rank("", facts) == []
    assert await ranker.rank("   🚀  ", facts) == []


async def test_limit_keeps_the_best(ranker: FactRanker) -> None:
    ranked = await ranker.rank("coffee lisbon", FACTS)
    assert await ranker.rank("coffee lisbon", FACTS, limit=2) == ranked[:2]
    assert await ranker.rank("coffee lisbon", FACTS, limit=0) == []


async def test_the_index_follows_deleted_added_and_changed_facts(ranker: FactRanker) -> None:
    assert set(await ranker.rank("coffee", FACTS)) == {FACTS[1], FACTS[4]}
    fewer = [item for item in FACTS if item.id != FACTS[1].id]
    assert await ranker.rank("coffee", fewer) == [FACTS[4]]
    changed = [*fewer[:-1], replace(FACTS[5], text="Sister Ana drinks coffee")]
    assert set(await ranker.rank("coffee", changed)) == {FACTS[4], changed[-1]}
    assert await ranker.rank("paulo", changed) == []
    assert await ranker.rank("coffee", []) == []


async def test_facts_of_several_users_are_never_ranked_together(ranker: FactRanker) -> None:
    with pytest.raises(ValueError, match="several users"):
        await ranker.rank("coffee", [fact("coffee", 0, user_id=1), fact("coffee", 1, user_id=2)])


async def test_each_user_has_an_index_and_only_the_recent_ones_are_kept() -> None:
    ranker = FactRanker(max_users=1)
    alice = [fact("likes jazz", 0, user_id=1)]
    bob = [fact("likes jazz and blues", 0, user_id=2)]  # the same id in another user's memory
    for _ in range(3):
        assert await ranker.rank("jazz", alice) == alice
        assert await ranker.rank("jazz", bob) == bob
    ranker.close()
    assert await ranker.rank("blues", bob) == bob


async def test_among_many_facts_a_word_most_share_does_not_bring_them_all_back(ranker: FactRanker) -> None:
    facts = [fact(f"my note number w{index}", index) for index in range(60)]
    facts.append(fact("my sister's birthday is on 3 March", 60))
    assert await ranker.rank("when is my sister's birthday", facts) == [facts[60]]
    assert len(await ranker.rank("my note", facts)) == 61  # only common words: they are kept
