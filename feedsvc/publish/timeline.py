"""The order of published entries and the time each one appears. Pure.

Published slugs, newest `published` first, then by slug; beside them, each one's -published
(the sort key), so that keeping the order needs no stamp. An entry dated in the future is in
the order already: it is scheduled, before the first visible one, until its time comes.
"""

from __future__ import annotations

import bisect
import heapq
from array import array
from datetime import datetime

from feedsvc.timerange import datetime_of


class Timeline:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.keys = array("q")  # -published of each slug in `order`
        # Changes to the order put off by a big batch and applied at once by apply_changes.
        self._new: dict[str, int] = {}  # slug → published
        self._gone: dict[str, int] = {}  # slug → published, where it was
        self._visible_at = 0  # the time the visible entries were last chosen for

    def add(self, slug: str, published: int, later: bool) -> None:
        """Place a slug that became published; `later`: in a big batch, by apply_changes."""
        if self._gone.get(slug) == published:
            del self._gone[slug]  # dropped earlier in this batch: it is still in place
        elif later or slug in self._gone:
            # Put off; also when a big chunk of the same scan put off its drop from another
            # second (placed now, the merge would then drop it).
            self._new[slug] = published
        else:
            start, end = self._span(published)
            index = bisect.bisect_left(self.order, slug, start, end)
            self.order.insert(index, slug)
            self.keys.insert(index, -published)

    def drop(self, slug: str, published: int, later: bool) -> None:
        if self._new.pop(slug, None) is not None:  # added earlier in this batch
            return
        if later:
            self._gone[slug] = published
            return
        start, end = self._span(published)
        index = bisect.bisect_left(self.order, slug, start, end)
        if index < end and self.order[index] == slug:
            del self.order[index]
            del self.keys[index]

    def move(self, slug: str, before: int, after: int, later: bool) -> None:
        """The author moved the date: the entry moves in the order."""
        self.drop(slug, before, later)
        self.add(slug, after, later)

    def _span(self, published: int) -> tuple[int, int]:
        """Where the slugs published in this second are (sorted by slug within it)."""
        start = bisect.bisect_left(self.keys, -published)
        return start, bisect.bisect_right(self.keys, -published, start)

    def apply_changes(self) -> None:
        """Apply what big batches put off: one pass over the order instead of one insertion
        each (a cold start of 100,000 seeds would move the whole list 100,000 times)."""
        if self._gone:
            kept = [(slug, key) for slug, key in zip(self.order, self.keys, strict=True)
                    if slug not in self._gone]
            self.order = [slug for slug, _ in kept]
            self.keys = array("q", (key for _, key in kept))
            self._gone.clear()
        if not self._new:
            return
        new = self._new
        # By slug, then (stable) newest first: the same order as by (-published, slug), with
        # no key tuple per slug.
        added = sorted(new)
        added.sort(key=new.__getitem__, reverse=True)
        if self.order:
            merged = list(heapq.merge(zip(self.keys, self.order, strict=True),
                                      ((-new[slug], slug) for slug in added)))
            self.order = [slug for _, slug in merged]
            self.keys = array("q", (key for key, _ in merged))
        else:
            self.order = added
            self.keys = array("q", (-new[slug] for slug in added))
        self._new = {}

    def visible_from(self, now: int) -> int:
        """Index in the order of the first entry published by `now`: before it, scheduled."""
        return bisect.bisect_left(self.keys, -now)

    def next_due(self, now: int) -> datetime | None:
        """When the next scheduled entry is to appear (None: none is scheduled)."""
        start = self.visible_from(now)
        return datetime_of(-self.keys[start - 1]) if start else None

    def scheduled(self, start: int) -> tuple[tuple[str, datetime], ...]:
        """The scheduled entries (those before `start`), the soonest first, with their time
        (clamped: a state may hold a date from before the range)."""
        return tuple((slug, datetime_of(-key)) for slug, key in
                     zip(reversed(self.order[:start]), reversed(self.keys[:start]), strict=True))

    def appeared(self, start: int, now: int) -> list[str]:
        """The entries whose time came since the last call (the first one sees none); `start`:
        `visible_from(now)`."""
        before, self._visible_at = self._visible_at, max(self._visible_at, now)
        if not before or now <= before:
            return []
        return self.order[start:bisect.bisect_left(self.keys, -before, start)]
