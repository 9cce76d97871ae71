"""Pages of published entries older than the feeds show: the long tail.

The snapshot holds the documents readers poll and the pages of the entries they show. Every
other published entry keeps its page at `/entries/{slug}` too, but its text lives in the state,
not in memory: such a page is read from SQLite on request, rendered in a thread of its own
(never on the event loop, never in the pipeline's thread) and kept in a small LRU cache.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.ingest.parser import rebuild_entry
from feedsvc.ingest.seedrules import is_slug
from feedsvc.model import Document, FeedInfo, from_micros
from feedsvc.publish.doccache import DocumentCache
from feedsvc.publish.ids import make_item
from feedsvc.publish.pages import (
    HTML_TYPE,
    render_entry,
    render_gone,
    render_not_found,
    render_removed,
)
from feedsvc.publish.registry import entry_path
from feedsvc.publish.snapshot import make_document
from feedsvc.publish.statereader import StateReader

log = logging.getLogger("feedsvc")

#: Entry pages kept, in bytes of every coding (~12 KB a page: about 85 pages; one asked for
#: again after it left is made anew from the state in about a millisecond).
CACHE_BYTES = 1024 * 1024


class EntryPages(StateReader):
    def __init__(self, config: Config, cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(config, "feedsvc-pages")
        # slug → (the version it was made of, the page): published (a change of `date:` alone
        # moves it and the page's revision, not `updated`), updated, Last-Modified, previous;
        # None for a 410 page.
        self._not_found: tuple[FeedInfo, bytes] | None = None
        self._removed: tuple[FeedInfo, bytes] | None = None
        self._cache: DocumentCache[str, tuple[int, int, datetime, int | None] | None] = \
            DocumentCache(cache_bytes)

    def not_found(self) -> bytes | None:
        """The body of a 404, in the site's language (None before the feed's info is known).
        Made once: it depends on the feed's info only."""
        if self.info is None:
            return None
        if self._not_found is None or self._not_found[0] is not self.info:
            self._not_found = (self.info, render_not_found(self.info))
        return self._not_found[1]

    def _forget(self) -> None:
        self._not_found = self._removed = None
        self._cache = DocumentCache(self._cache.max_bytes)

    def render_now(self, slug: str) -> Document | None:
        """`page`, synchronously (`build`)."""
        return self._page(slug) if is_slug(slug) else None

    def page_moments(self, slugs: list[str]) -> dict[str, datetime]:
        """The Last-Modified of these entries' pages, those published now, without rendering
        them (two queries for all: a static output keeps a page whose file has this date,
        `sitebuild`)."""
        now = int(datetime.now(UTC).timestamp())
        store = self._state()
        with store.reading():
            stamps = store.stamps_of(slugs)
            revisions = store.load_revisions(entry_path(slug) for slug in stamps)
        moments = {}
        for slug, stamp in stamps.items():
            if not stamp.live or stamp.published > now:
                continue
            # As `_page` dates it.
            revision = revisions.get(entry_path(slug))
            moments[slug] = from_micros(revision.modified if revision is not None
                                        and revision.modified >= stamp.updated
                                        else stamp.updated)
        return moments

    def live_slugs(self, after: str | None, limit: int) -> list[str]:
        """The published slugs after `after`, in slug order, at most `limit` (`build`)."""
        return self._state().live_slugs(after, limit)

    def removed(self) -> bytes | None:
        """The body of a 410 for a tag's documents gone for good (None before the info)."""
        if self.info is None:
            return None
        if self._removed is None or self._removed[0] is not self.info:
            self._removed = (self.info, render_removed(self.info))
        return self._removed[1]

    async def page(self, slug: str) -> Document | None:
        """The page of a published entry; a 410 Gone page for a deleted one (its tombstone
        is in the state); or None (never published, or no text for it)."""
        if not is_slug(slug):
            return None
        return await self._on_thread(self._page, slug)

    def _page(self, slug: str) -> Document | None:
        assert self.info is not None
        path = entry_path(slug)
        try:
            store = self._state()
            # One read transaction: the text and the page's date of one and the same version
            # (the pipeline commits on its own connection meanwhile).
            with store.reading():
                # Not before its time: a scheduled entry's page stays hidden until published.
                row = store.load_page(slug, int(datetime.now(UTC).timestamp()))
                if row is None:
                    return self._gone(slug)
                # The page's own revision, when the publisher moved its date without rendering
                # it (a change of `date:` alone while no feed showed it): never before the
                # entry's updated.
                revision = store.load_revisions((path,)).get(path)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None
        published, updated, content = row
        if revision is not None and revision.modified >= updated:
            moment, previous = from_micros(revision.modified), revision.previous
        else:
            moment, previous = from_micros(updated), None
        version = (published, updated, moment, previous)
        cached = self._cache.get(slug)
        if cached is not None and cached[0] == version:
            return cached[1]
        entry = rebuild_entry(slug, content, self.options)
        if entry is None:
            return None
        item = make_item(self.info, entry, published, moment, self.config.entry_link)
        # A fraction means another version may share its second: If-Modified-Since of that
        # second then gets 200 (RFC 9110 §8.8.2.2).
        if previous is not None:
            since = from_micros(previous)
        else:
            since = moment - timedelta(microseconds=1) if moment.microsecond else None
        document = make_document(entry_path(slug), HTML_TYPE, render_entry(self.info, item),
                                 moment, self.config.server.cache_max_age, previous=since)
        self._cache.put(slug, version, document)
        return document

    def _gone(self, slug: str) -> Document | None:
        """The 410 page of a deleted entry (RFC 9110 §15.5.11: gone, and on purpose), dated
        when it was deleted; kept after its tombstone left the feeds (the state keeps it)."""
        assert self.info is not None and self._store is not None
        try:
            deleted = self._store.tombstone_of(slug)
        except StoreError as e:
            log.error("%s", e)
            deleted = None
        if deleted is None:
            self._cache.pop(slug)
            return None
        moment = from_micros(deleted)
        cached = self._cache.get(slug)
        if cached is not None and cached[1].status == 410 and cached[1].last_modified == moment:
            return cached[1]
        info = self.info
        body = render_gone(info, slug, moment)
        document = replace(make_document(entry_path(slug), HTML_TYPE, body, moment,
                                         self.config.server.cache_max_age), status=410)
        self._cache.put(slug, None, document)
        return document

