"""Writing a batch to the state: its stamps, texts and documents' dates, in one transaction.

While the state cannot be written they stay in memory (served from there, read first), and
every batch tries again: the next successful write catches up.
"""

from __future__ import annotations

import logging

from feedsvc.errors import StoreError
from feedsvc.publish.archives import ArchiveDates
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.stamps import StampTable
from feedsvc.publish.texts import EntryTexts
from feedsvc.publish.tombstones import Tombstones
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")


class StateWrites:
    def __init__(self, store: Store, stamps: StampTable, texts: EntryTexts,
                 dates: DocumentDates, tombstones: Tombstones, archives: ArchiveDates) -> None:
        self._archives = archives
        self._store = store
        self._tombstones = tombstones
        self._stamps = stamps
        self._texts = texts
        self._dates = dates

    @property
    def pending(self) -> int:
        """Changes kept in memory because the state could not be written."""
        return (len(self._stamps.unsaved) + len(self._dates.unsaved)
                + len(self._tombstones.unsaved) + self._archives.unsaved_count)

    @property
    def needed(self) -> bool:
        """Whether the state waits for a write that works (changes, or just its writability)."""
        return (bool(self._stamps.unsaved) or bool(self._dates.unsaved)
                or bool(self._tombstones.unsaved) or bool(self._archives.unsaved_count)
                or not self._store.writable)

    def write(self) -> None:
        unsaved, dates = self._stamps.unsaved, self._dates
        if (not unsaved and not dates.unsaved and not self._tombstones.unsaved
                and not self._archives.unsaved_count):
            self._store.retry()
            return
        try:
            self._store.save_stamps(unsaved.values(), self._texts.unsaved, dates.unsaved.values(),
                                    self._tombstones.unsaved, self._archives.slot_rows())
        except StoreError as e:
            # Keep serving from memory; the next successful write catches up. A corrupt state
            # was said once, plainly, when found: not again at every retry.
            (log.debug if self._store.corrupt else log.error)(
                "%s; %d change(s) kept in memory, retrying", e,
                len(unsaved) + len(dates.unsaved))
            return
        self._stamps.saved()
        self._texts.unsaved.clear()
        dates.unsaved.clear()
        self._tombstones.saved()
        self._archives.saved()
