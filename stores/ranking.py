"""BM25 ranking of a user's facts for `recall`, with SQLite's FTS5 (the standard library's sqlite3).

FTS5 does the scoring (its `bm25()`); we only keep an index per user between calls, so that a
recall costs a query, not the indexing of every fact: the index follows the facts it is given
(new ids are added, missing ones removed), and only the `max_users` most recent users keep one.
Each user's index is its own in-memory database, so one user's facts never weigh in another's
ranking. Why not `bm25s`: it needs numpy (~20 MB resident, ~0.6 s to import) and re-indexes
everything on any change, which costs more per recall than FTS5's incremental index.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence

from stores.base import StoreError
from stores.facts import Fact

__all__ = ["FactRanker"]

_WORD = re.compile(r"\w+")
# Porter stemming over Unicode words, accents folded: "likes" finds "like", "cafe" finds "café".
_TOKENIZER = "porter unicode61 remove_diacritics 2"
_MAX_QUERY_TERMS = 64
_PRUNE_FROM = 50  # facts; below this every term is kept (and scoring them all costs nothing)


class _UserIndex:
    """One user's facts in an in-memory FTS5 table, and which fact id each rowid holds."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.connection.execute(f"CREATE VIRTUAL TABLE facts USING fts5(text, tokenize='{_TOKENIZER}')")
        self.texts: dict[str, str] = {}  # fact id -> the text indexed for it
        self.rows: dict[str, int] = {}  # fact id -> rowid
        self.ids: dict[int, str] = {}  # rowid -> fact id
        self.next_row = 1

    def follow(self, facts: dict[str, Fact]) -> None:
        """Make the index hold exactly `facts` (by id)."""
        texts = self.texts
        if len(facts) == len(texts) and all(texts.get(fact_id) == fact.text for fact_id, fact in facts.items()):
            return  # the usual case: nothing changed since the last recall
        stale = [fact_id for fact_id, text in texts.items() if fact_id not in facts or facts[fact_id].text != text]
        fresh = [fact for fact_id, fact in facts.items() if texts.get(fact_id) != fact.text]
        self.connection.execute("BEGIN")
        self.connection.executemany("DELETE FROM facts WHERE rowid = ?", [(self.rows[fact_id],) for fact_id in stale])
        for fact_id in stale:
            del self.ids[self.rows.pop(fact_id)]
            del texts[fact_id]
        for fact in fresh:
            self.connection.execute("INSERT INTO facts(rowid, text) VALUES (?, ?)", (self.next_row, fact.text))
            texts[fact.id], self.rows[fact.id], self.ids[self.next_row] = fact.text, self.next_row, fact.id
            self.next_row += 1
        self.connection.execute("COMMIT")

    def search(self, terms: list[str], limit: int) -> list[str]:
        """Ids of the facts matching any of `terms`, best first.

        Among many facts, a term found in more than a quarter of them is left out of the query
        (unless all are): BM25 gives such a term little weight (none above half: FTS5 clamps
        its IDF), yet matching it makes SQLite score most facts, and brings back facts that share
        only a word like "the" or "my" with the query. This is stop-word removal, measured per user.
        """
        if len(self.ids) >= _PRUNE_FROM:
            common = len(self.ids) / 4
            terms = [term for term in terms if self._count(term) <= common] or terms
        # Each term quoted: words like AND, OR, NEAR or a leading '-' are text to FTS5, not syntax.
        match = " OR ".join(f'"{term}"' for term in terms)
        cursor = self.connection.execute(
            "SELECT rowid FROM facts WHERE facts MATCH ? ORDER BY bm25(facts), rowid LIMIT ?", (match, limit)
        )
        return [self.ids[row] for (row,) in cursor]

    def _count(self, term: str) -> int:
        (count,) = self.connection.execute("SELECT count(*) FROM facts WHERE facts MATCH ?", (f'"{term}"',)).fetchone()
        return int(count)


class FactRanker:
    """`rank(query, facts)`: the facts that match the query, best first (BM25).

    Safe to share across tasks: calls run in a worker thread, one at a time.
    """

    def __init__(self, *, max_users: int = 64) -> None:
        self._max_users = max_users
        self._indexes: OrderedDict[int, _UserIndex] = OrderedDict()
        self._mutex = threading.Lock()

    async def rank(self, query: str, facts: Sequence[Fact], *, limit: int | None = None) -> list[Fact]:
        """The facts sharing a word (after stemming) with `query`, best first; at most `limit`.

        `facts` are one user's facts (as `FactStore.list_for_user` gives them); facts of several
        users raise ValueError, since their ranking must never mix. A query without words
        matches nothing. StoreError if SQLite fails.
        """
        users = {fact.user_id for fact in facts}
        if len(users) > 1:
            raise ValueError("facts of several users cannot be ranked together")
        terms = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))[:_MAX_QUERY_TERMS]
        if not facts or not terms or limit == 0:
            return []
        try:
            return await asyncio.to_thread(self._rank, users.pop(), terms, facts, limit or len(facts))
        except sqlite3.Error as exc:
            raise StoreError(f"ranking facts failed: {exc}") from exc

    def _rank(self, user_id: int, terms: list[str], facts: Sequence[Fact], limit: int) -> list[Fact]:
        with self._mutex:
            index = self._index(user_id)
            by_id = {fact.id: fact for fact in facts}
            try:
                index.follow(by_id)
                return [by_id[fact_id] for fact_id in index.search(terms, limit)]
            except sqlite3.Error:
                # The index may no longer match its rows: build it afresh next time.
                del self._indexes[user_id]
                index.connection.close()
                raise

    def _index(self, user_id: int) -> _UserIndex:
        index = self._indexes.get(user_id)
        if index is not None:
            self._indexes.move_to_end(user_id)
            return index
        index = self._indexes[user_id] = _UserIndex()
        if len(self._indexes) > self._max_users:
            _, dropped = self._indexes.popitem(last=False)
            dropped.connection.close()
        return index

    def close(self) -> None:
        """Drop every index (a later `rank` builds them again)."""
        with self._mutex:
            for index in self._indexes.values():
                index.connection.close()
            self._indexes.clear()
