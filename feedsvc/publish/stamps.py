"""Every slug's dates: the stamps kept in the state (StampTable) and the rule that gives a slug
its dates when it is seen (`next_stamp`, pure). `updated` moments are handed out by Moments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from feedsvc.model import US, Stamp
from feedsvc.publish.moments import Moments


class StampStorage(Protocol):
    """What the stamps need from the state (feedsvc.state.store.Store is one)."""

    def stamps_of(self, slugs: Iterable[str]) -> Mapping[str, Stamp]:
        """The stamps stored for these slugs (those that have one)."""
        ...

    def slugs_updated_at(self, moment: int) -> Iterable[str]:
        """The slugs whose stored `updated` is this microsecond."""
        ...


class StampTable:
    """Every slug's stamp, read from the state when a batch needs it. Stamps not written yet
    (the state is not writable, or the batch is not over) are kept in memory and read first,
    so the state plus them is always the truth. Also holds a few recently used stamps."""

    def __init__(self, store: StampStorage) -> None:
        self.store = store
        self.unsaved: dict[str, Stamp] = {}
        self._unsaved_at: dict[int, str] = {}  # updated → slug, of the unsaved stamps
        self._cache: dict[str, Stamp | None] = {}
        self.taken = Moments(self._recorded)

    def get(self, slug: str) -> Stamp | None:
        stamp = self.unsaved.get(slug)
        if stamp is not None:
            return stamp
        if slug not in self._cache:
            self._cache[slug] = self.store.stamps_of((slug,)).get(slug)
        return self._cache[slug]

    def load(self, slugs: Iterable[str]) -> None:
        """Read the stamps of these slugs at once, for the `get`s that follow."""
        missing = [slug for slug in slugs if slug not in self.unsaved and slug not in self._cache]
        if missing:
            found = self.store.stamps_of(missing)
            self._cache.update((slug, found.get(slug)) for slug in missing)

    def put(self, stamp: Stamp) -> None:
        """A stamp's new value, kept until `saved` says the state has it."""
        old = self.unsaved.get(stamp.slug)
        if old is not None and self._unsaved_at.get(old.updated) == stamp.slug:
            del self._unsaved_at[old.updated]
        self.unsaved[stamp.slug] = stamp
        self._unsaved_at[stamp.updated] = stamp.slug
        self.taken.settle(stamp.updated)
        self._cache[stamp.slug] = stamp

    def saved(self) -> None:
        """The state now holds every unsaved stamp."""
        self.unsaved.clear()
        self._unsaved_at.clear()

    def retain(self, slugs: Iterable[str]) -> None:
        """Forget the cached stamps but these (the ones the documents show)."""
        keep = {slug: self._cache[slug] for slug in slugs if slug in self._cache}
        self._cache = keep

    def _recorded(self, moment: int) -> bool:
        """Whether some slug's `updated` is this moment, in memory or in the state."""
        if moment in self._unsaved_at:
            return True
        # In the state, unless that slug has moved since (its unsaved stamp says where).
        return any(slug not in self.unsaved for slug in self.store.slugs_updated_at(moment))



def next_stamp(previous: Stamp | None, slug: str, content_hash: str, file_name: str,
               seen_at: int, taken: Moments, date: int | None = None,
               updated: int | None = None, now: int | None = None) -> Stamp:
    """The dates a slug has after this sighting. Pure, apart from updating `taken`.

    `seen_at`, `date` and `updated` (the author's) are Unix seconds; `now` (the clock) and the
    stamp's `updated` are microseconds; `now=None` sets no bound (tests).

    `published` is fixed at first sight (never after the clock), unless the author gives a
    `date` (their word, also when it changes later; in the future, the entry is scheduled).
    `updated` moves only when the content does, forward, by at least one microsecond, and
    never past the clock. No two slugs share a computed `updated` (feed validators flag that):
    a clash takes the nearest free microsecond (see Moments.allocate), never one after the
    clock. A computed `updated` is never before `published` (a post scheduled for later is
    updated when it appears). An author's `updated` is taken as it is, unless it is later than
    the clock: that is not true yet, so a new or changed text is stamped with the clock
    instead (stored, so deterministic from then on) and an unchanged one keeps its date.
    """
    hi = _NO_LIMIT if now is None else now
    if previous is None:
        # `published` is never pushed ahead of the clock (only an author's date is in the
        # future: that one is scheduled); the distinct moment goes to `updated`.
        published = date if date is not None else seen_at
        moment = _authored(updated, published, hi, taken, published * US)
        if moment is None:
            moment = taken.allocate(published * US, published * US, hi)
        return Stamp(slug, published, moment, content_hash, file_name)
    published = date if date is not None else previous.published
    if previous.content_hash != content_hash:
        lo = max(previous.updated + 1, published * US)
        moment = _authored(updated, published, hi, taken, lo)
        if moment is None:
            moment = taken.allocate(max(seen_at * US, lo), lo, hi)
        taken.release(previous.updated)
        return replace(previous, published=published, updated=moment,
                       content_hash=content_hash, file_name=file_name, live=True)
    if (updated is not None and updated * US != previous.updated
            and updated * US <= max(hi, published * US)):
        taken.release(previous.updated)
        return replace(previous, published=published, updated=updated * US, file_name=file_name,
                       live=True)
    if (published != previous.published and previous.updated < published * US
            and updated is None):
        # Moved later than its last change: it changes when it appears.
        moment = taken.allocate(published * US, published * US, hi)
        taken.release(previous.updated)
        return replace(previous, published=published, updated=moment, file_name=file_name,
                       live=True)
    if published != previous.published or previous.file_name != file_name or not previous.live:
        return replace(previous, published=published, file_name=file_name, live=True)
    return previous


#: No clock bound (pure uses of next_stamp in tests): year 9999 in microseconds.
_NO_LIMIT = 253_402_300_799 * US


def _authored(updated: int | None, published: int, hi: int, taken: Moments,
              lo: int) -> int | None:
    """The `updated` an author's `updated:` gives a new or changed text (None: none given).
    Later than the clock (or than a scheduled entry's own date), it is not true yet: the
    stamp gets the latest free moment up to the clock instead."""
    if updated is None:
        return None
    limit = max(hi, published * US)
    if updated * US <= limit:
        return updated * US
    return taken.allocate(limit, min(lo, limit), limit)

