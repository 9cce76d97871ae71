"""Deletions readers can see: RFC 6721 tombstones (`<at:deleted-entry ref when>`).

An entry that stops being published (its seed deleted, its slug changed, or turned into a
draft: RFC 6721 §1, "the entry has been removed") gets a tombstone dated when the removal was
applied (the batch's clock, kept in the state: restarts and `build` give the same bytes). The
Atom documents in whose scope the entry was (the main feed, and the feeds of the tags it had)
carry it for `[feed] tombstone_days`: in scope, not only among the `max_entries` shown, since a
reader that polled the feed when the entry was shown may still hold it after newer entries
pushed it out (RFC 6721 §2: a feed may carry tombstones of entries it no longer contains). An
entry that was never visible (deleted while scheduled) gets none: no reader could hold it. A
slug that comes back is the same entry (ids derive from the slug), so its tombstone goes.

Only the tombstones still shown are held in memory (the deletions of the last
`tombstone_days`); the state keeps every one, so the page of a deleted entry answers 410 Gone
(longtail.py) after its tombstone has left the documents. The rules here are pure but for the
storage `load` callable: tested without SQLite.

At most `[feed] tombstones_max` tombstones per document: the newest by deletion moment (ties
by slug, one choice on every machine). RFC 6721 §1 lets a publisher say of only some deleted
entries that they were deleted, and the subscription documents are to stay small: deleting most
of a 100k folder would otherwise put ~16 MB of `at:deleted-entry` in each for `tombstone_days`.
A tombstone the bound leaves out is still in the state: its entry's page answers 410 all the
same. Choosing them is a bounded heap (`newest`; the tag feeds: a LIMIT in the query), never a
sort of every deletion.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from feedsvc.model import US, from_micros
from feedsvc.publish.ids import entry_id

DAY_US = 86_400 * US


def cutoff(now_us: int, days: int) -> int:
    """Tombstones dated after this moment are shown at `now_us` (with 0 days: none)."""
    return now_us - days * DAY_US


def newest(buried: Iterable[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    """The `limit` newest of (slug, moment in µs) pairs: latest moment first, ties by slug.
    A bounded heap: O(n log limit), never a sort of every deletion."""
    return heapq.nsmallest(limit, buried, key=lambda pair: (-pair[1], pair[0]))


def refs(feed_id: str, buried: Iterable[tuple[str, int]],
         entry_id: Callable[[str, str], str]) -> tuple[tuple[str, datetime], ...]:
    """(entry id, deletion moment) of (slug, moment in µs) pairs, newest first, then by id:
    one order on every machine."""
    return tuple(sorted(((entry_id(feed_id, slug), from_micros(when)) for slug, when in buried),
                        key=lambda pair: (-pair[1].timestamp(), pair[0])))


class Tombstones:
    """The tombstones the documents show now, and those not written to the state yet.

    `load(cutoff)`: slug → deletion moment of the tombstones dated after `cutoff`, from the
    state (read once, at start)."""

    def __init__(self, days: int, load: Callable[[int], Mapping[str, int]], now_us: int,
                 limit: int = 500) -> None:
        self.days = days
        #: At most this many tombstones in a document (`[feed] tombstones_max`).
        self.limit = limit
        self.shown: dict[str, int] = dict(load(cutoff(now_us, days)))
        #: slug → deletion moment, or None for a tombstone to delete (the slug came back).
        self.unsaved: dict[str, int | None] = {}
        #: The main feed's tombstones changed since it was last rendered.
        self.changed = False
        # The slugs loaded at start: their tags' documents are rendered with the first batch
        # (a tag whose entries were all deleted is touched by no seed of a scan).
        self._loaded = sorted(self.shown)

    def bury(self, slug: str, when_us: int, now_us: int) -> None:
        """`slug`'s entry was removed at `when_us`."""
        self.unsaved[slug] = when_us
        if when_us > cutoff(now_us, self.days):
            self.shown[slug] = when_us
            self.changed = True

    def lift(self, slug: str) -> None:
        """`slug` is published again: the same entry, no longer deleted."""
        self.unsaved[slug] = None
        if self.shown.pop(slug, None) is not None:
            self.changed = True

    def expire(self, now_us: int) -> list[str]:
        """Drop the tombstones older than `tombstone_days`; returns their slugs (and, the
        first time, those loaded at start): the tags they had are to be rendered again."""
        limit = cutoff(now_us, self.days)
        gone = sorted(slug for slug, when in self.shown.items() if when <= limit)
        for slug in gone:
            del self.shown[slug]
        self.changed |= bool(gone)
        loaded, self._loaded = self._loaded, []
        return gone + loaded

    def next_expiry(self) -> int | None:
        """When the next shown tombstone leaves the documents (µs); None: none is shown."""
        oldest = min(self.shown.values(), default=None)
        return None if oldest is None else oldest + self.days * DAY_US

    def saved(self) -> None:
        self.unsaved.clear()

    def take_changed(self) -> bool:
        """Whether the main feed's tombstones changed since this was last asked."""
        changed, self.changed = self.changed, False
        return changed

    def refs(self, feed_id: str) -> tuple[tuple[str, datetime], ...]:
        """The main feed's tombstones: the `limit` newest shown ones (RFC 6721 `ref`, `when`)."""
        return refs(feed_id, newest(self.shown.items(), self.limit), entry_id)

    def sooner(self, due: datetime | None) -> datetime | None:
        """`due` (a scheduled entry's time), or when the next tombstone leaves the documents
        if that is sooner: the pipeline applies an empty batch then."""
        expiry = self.next_expiry()
        if expiry is None:
            return due
        return from_micros(expiry) if due is None else min(due, from_micros(expiry))

