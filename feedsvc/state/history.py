"""The state's record of what was published and is no longer, or no longer in the feeds: the
tags that existed (an emptied tag's feed, then 410), the tombstones of deleted entries (RFC
6721), and the archived entries and their pages' moves (RFC 5005). Queries of `Store`, kept
apart so each part of the state stays readable (as lemon24/reader's storage mixins are)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping

from feedsvc.errors import StoreError
from feedsvc.model import Revision


class HistoryQueries:
    """Mixed into `Store`, which provides the connection, the schema it learnt and the
    statement runners below."""

    _db: sqlite3.Connection
    _has_tags: bool
    _has_documents: bool
    _has_tag_history: bool
    _has_tombstones: bool
    _has_slots: bool
    _updated: str

    @property
    def corrupt(self) -> bool:
        raise NotImplementedError

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        raise NotImplementedError

    def _write(self, statements: Callable[[], None]) -> None:
        raise NotImplementedError

    def tag_history(self, now: int) -> dict[str, tuple[str, int | None]]:
        """tag → (label, when it lost its last entry or None) of every tag that existed: those
        the history has, and (for states made before it) those of entries published by `now`
        (removed since or not)."""
        if not self._has_tags:
            return {}
        derived = ("SELECT t.tag, MIN(t.label), NULL FROM tags t JOIN stamps s "
                   "ON s.slug = t.slug WHERE s.published <= ? GROUP BY t.tag")
        if self._has_tag_history and not self.corrupt:
            # Kept, so that a tag whose entries lose it later is still known (one statement,
            # at start only). Not writable now: read below all the same.
            with contextlib.suppress(StoreError):
                self._write(lambda: self._db.execute(
                    f"INSERT OR IGNORE INTO tag_history (tag, label, emptied) {derived}",
                    (now,)))
        known: dict[str, tuple[str, int | None]] = {
            row[0]: (row[1], None) for row in self._query(derived, (now,))}
        if self._has_tag_history:
            known.update((row[0], (row[1], row[2])) for row in self._query(
                "SELECT tag, label, emptied FROM tag_history"))
        return known

    def save_tag_history(self, rows: Mapping[str, tuple[str, int | None]]) -> None:
        """Record these tags' labels and when they lost their last entry (None: they have
        entries)."""
        values = [(tag, label, emptied) for tag, (label, emptied) in rows.items()]
        self._write(lambda: self._db.executemany(
            "INSERT OR REPLACE INTO tag_history (tag, label, emptied) VALUES (?, ?, ?)",
            values))

    def last_slot(self) -> int:
        """The newest archive slot numbered (0: none yet)."""
        if not self._has_slots:
            return 0
        return int(self._query("SELECT COALESCE(MAX(slot), 0) FROM archive_slots")[0][0])

    def slots_of(self, slugs: list[str]) -> list[tuple[int, str, int, int]]:
        """(slot, slug, state, changed) of these slugs' slots (any state), through the index
        on slug."""
        if not self._has_slots or not slugs:
            return []
        found: list[tuple[int, str, int, int]] = []
        for i in range(0, len(slugs), 500):
            chunk = slugs[i:i + 500]
            found.extend((int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in self._query(
                "SELECT slot, slug, state, changed FROM archive_slots WHERE slug IN "
                f"({', '.join('?' * len(chunk))})", tuple(chunk)))
        return found

    def slot_rows(self, first: int, last: int
                  ) -> list[tuple[int, str, int, int, int | None, int | None, str | None]]:
        """(slot, slug, state, changed, published, updated, content_hash) of slots `first`..
        `last`, oldest first: a rowid range (slot is the INTEGER PRIMARY KEY), the stamp
        looked up by slug for the slots that hold their entry."""
        if not self._has_slots:
            return []
        return [(int(r[0]), str(r[1]), int(r[2]), int(r[3]), r[4], r[5], r[6])  # type: ignore[misc]
                for r in self._query(
                    f"SELECT a.slot, a.slug, a.state, a.changed, s.published, {self._updated}, "
                    "s.content_hash FROM archive_slots a LEFT JOIN stamps s "
                    "ON a.state = 0 AND s.slug = a.slug AND s.live = 1 "
                    "WHERE a.slot BETWEEN ? AND ? ORDER BY a.slot", (first, last))]

    def archive_shifts(self, page: int) -> list[Revision]:
        """The revisions `/archive/after/{j}` with j <= page: the moments entries moved in
        (or out of) archive page j, shifting it and every later page."""
        if not self._has_documents:
            return []
        prefix = "/archive/after/"
        return [Revision(*row) for row in self._query(
            "SELECT path, digest, modified, previous FROM documents WHERE path >= ? "
            "AND path < ?", (prefix, prefix[:-1] + "0"))
            if row[0][len(prefix):].isdigit() and int(row[0][len(prefix):]) <= page]

    def tombstones_after(self, cutoff: int) -> dict[str, int]:
        """slug → deletion moment (Unix microseconds) of the entries deleted after `cutoff`."""
        if not self._has_tombstones:
            return {}
        return {str(row[0]): int(row[1]) for row in self._query(
            "SELECT slug, deleted FROM tombstones WHERE deleted > ?", (cutoff,))}

    def tombstone_of(self, slug: str) -> int | None:
        """When this slug's entry was deleted (Unix microseconds); None: it was not (or it
        came back since)."""
        if not self._has_tombstones:
            return None
        rows = self._query("SELECT deleted FROM tombstones WHERE slug = ?", (slug,))
        return int(rows[0][0]) if rows else None

    def tag_tombstones(self, tag: str, cutoff: int,
                       limit: int = -1) -> list[tuple[str, int, str]]:
        """(slug, deletion moment, label) of the entries with this tag (the tags they had when
        deleted: a removed slug keeps its tag rows) deleted after `cutoff`, newest first, ties
        by slug; at most `limit` of them (-1: all). SQLite keeps only `limit` rows in its
        sorter (tombstones.py: the bound on each document)."""
        if not self._has_tombstones or not self._has_tags:
            return []
        # CROSS JOIN: the recent tombstones first (their index on `deleted`), then each one's
        # row of this tag by primary key; never the walk of every entry a big tag has.
        return [(str(row[0]), int(row[1]), str(row[2])) for row in self._query(
            "SELECT d.slug, d.deleted, t.label FROM tombstones d CROSS JOIN tags t "
            "WHERE d.deleted > ? AND t.tag = ? AND t.slug = d.slug "
            "ORDER BY d.deleted DESC, d.slug LIMIT ?", (cutoff, tag, limit))]
