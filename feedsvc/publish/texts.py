"""The entries the main documents show: their texts and items, and the texts not written to
the state yet.

Only the shown entries' texts stay in memory between batches; any other one is read from the
state when needed (and, when the state's copy is not the version its stamp describes, from
its file). An entry that cannot be shown rejects its file, never the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from feedsvc.errors import StoreError
from feedsvc.ingest.parser import ParseOptions, rebuild_entry
from feedsvc.model import Content, Entry, FeedInfo, Item, Stamp, from_micros
from feedsvc.publish.ids import make_item
from feedsvc.publish.ownership import Ownership
from feedsvc.publish.stamps import StampTable
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")


class EntryTexts:
    def __init__(self, store: Store, stamps: StampTable, ownership: Ownership,
                 read_entry: Callable[[str], Entry | None], options: ParseOptions,
                 info: FeedInfo, link_of: Callable[[str], str]) -> None:
        self._store = store
        self._stamps = stamps
        self._ownership = ownership
        self._owner = ownership.owner  # slug → file name publishing it
        self._read_entry = read_entry  # from the seeds folder, by file name
        self._options = options
        self._info = info
        self._link_of = link_of  # slug → the link of its page
        self.shown: dict[str, Entry] = {}  # text of the shown entries only
        self.unsaved: dict[str, Content] = {}  # slug → text not written to the state yet

    def replaced(self, slug: str, content: Content | None) -> None:
        """A slug's text changed (`content`: the new one, to write to the state; None when
        its file could not be read again): the text shown must be the new one."""
        if content is not None:
            self.unsaved[slug] = content
        self.shown.pop(slug, None)

    def show(self, slugs: Sequence[str], fresh: dict[str, Entry]) -> tuple[Item, ...]:
        """The items of these entries (the newest published by now), as the documents show
        them (`fresh`: file name → entry parsed in this batch); only their text stays in
        memory."""
        items = []
        entries: dict[str, Entry] = {}
        for slug in slugs:
            owner = self._owner[slug]
            entry = fresh.get(owner)
            if entry is None or entry.slug != slug:  # a broken owner shows its last good text
                entry = self.shown.get(slug) or self.load(slug)
            if entry is None:
                continue  # no text anywhere (a state written before texts were kept)
            entries[slug] = entry
            stamp = self._stamps.get(slug)
            assert stamp is not None  # a published slug has its stamp
            if (item := self.item(entry, stamp)) is not None:
                items.append(item)
        self.shown = entries
        return tuple(items)

    def item(self, entry: Entry, stamp: Stamp) -> Item | None:
        """The item, or None, its file rejected, when it cannot be shown: one entry never
        stops the others from publishing."""
        try:
            return make_item(self._info, entry, stamp.published, from_micros(stamp.updated),
                             self._link_of)
        except Exception as e:
            self._ownership.reject_unexpected(self._owner.get(entry.slug) or stamp.file_name,
                                              e, f"cannot show {entry.slug}")
            return None

    def load(self, slug: str) -> Entry | None:
        content = self.unsaved.get(slug)
        if content is None:
            try:
                content = self._store.load_content(slug)
            except StoreError as e:
                log.error("%s", e)
                return None
        entry = None if content is None else rebuild_entry(slug, content, self._options)
        try:
            stamp = self._stamps.get(slug)
        except StoreError as e:
            log.error("%s", e)
            stamp = None
        name = self._owner.get(slug)
        if entry is not None and stamp is not None and entry.content_hash != stamp.content_hash:
            # Not the version its stamp describes: a row salvaged from a damaged state can hold
            # garbage (NUL bytes that no document can carry). The file is the truth: read it.
            log.warning("the text kept for %s is not the version its dates describe (a damaged "
                        "state?); reading %s again", slug, name)
            entry = None
        if entry is None and name is not None and stamp is not None:
            entry = self._read_entry(name)
            if entry is not None and entry.content_hash != stamp.content_hash:
                entry = None
        if entry is None:
            log.error("no text kept for %s; it is left out until %s changes", slug, name)
        return entry
