"""The texts of the entries the documents show, and of those not written to the state yet.

Only the shown entries' texts stay in memory between batches; any other one is read from the
state when needed (and, when the state's copy is not the version its stamp describes, from
its file).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from feedsvc.errors import StoreError
from feedsvc.ingest.parser import ParseOptions, rebuild_entry
from feedsvc.model import Content, Entry
from feedsvc.publish.stamps import StampTable
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")


class EntryTexts:
    def __init__(self, store: Store, stamps: StampTable, owner: Mapping[str, str],
                 read_entry: Callable[[str], Entry | None], options: ParseOptions) -> None:
        self._store = store
        self._stamps = stamps
        self._owner = owner  # slug → file name publishing it
        self._read_entry = read_entry  # from the seeds folder, by file name
        self._options = options
        self.shown: dict[str, Entry] = {}  # text of the shown entries only
        self.unsaved: dict[str, Content] = {}  # slug → text not written to the state yet

    def get(self, slug: str) -> Entry | None:
        """The entry's text: the shown one, else read."""
        return self.shown.get(slug) or self.load(slug)

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
