"""The site's pages made from the state on request: the front page's older pages
(`/page/{n}`, n ≥ 2: every published entry is reachable from `/`), each tag's HTML page
(`/tags/{tag}`, `/tags/{tag}/page/{n}`) and the list of tags with their counts (`/tags/`).

As the long tail's entry pages (longtail.py): read from SQLite on a thread of their own, never
on the event loop, one page of entries at a time (memory stays bounded at any number of seeds),
kept in a small LRU cache keyed by what the site's pages change with (`Store.site_version`:
read at each request, aggregates over the stamps on the reader's thread; the snapshot's
generation would not do, as an edit of an entry no feed shows changes the state, not the
snapshot).

They are sent with a strong ETag and no Last-Modified (RFC 9110 §8.8.2: only "if a last
modification date can be reasonably and consistently determined"): a page's membership shifts
with entries published, removed or back-dated elsewhere, and no date kept in the state moves
forward with every such change (the newest `updated` does not when an old entry is edited),
so a date could make If-Modified-Since answer 304 for changed bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.ingest.parser import rebuild_entry
from feedsvc.ingest.seedrules import is_slug
from feedsvc.model import Document, Item, from_micros
from feedsvc.publish.doccache import DocumentCache
from feedsvc.publish.ids import make_item
from feedsvc.publish.pages import HTML_TYPE, render_index, render_tag, render_tags
from feedsvc.publish.registry import TAGS
from feedsvc.publish.snapshot import make_document
from feedsvc.publish.statereader import StateReader
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")

#: Pages kept, in bytes of every coding (a page of 50 entries is ~40 KB: about 25 pages).
CACHE_BYTES = 1024 * 1024
#: Pages read from the state at once by `pages_of` (`build`).
_PAGES_READ = 40
#: Page numbers past this are 404 without a query (a URL is at most 9 digits).
_MAX_DIGITS = 9


def index_page_path(number: int) -> str:
    """The URL path of the front page's page `number` (1: the front page itself)."""
    return "/" if number == 1 else f"/page/{number}"


def tag_page_path(tag: str, number: int = 1) -> str:
    return f"/{TAGS}{tag}" if number == 1 else f"/{TAGS}{tag}/page/{number}"


def page_number(text: str) -> int | None:
    """A page number from a URL: digits only, no sign, no leading zero (one URL per page)."""
    if (text.isascii() and text.isdigit() and not text.startswith("0")
            and len(text) <= _MAX_DIGITS):
        return int(text)
    return None


class SitePages(StateReader):
    def __init__(self, config: Config, cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(config, "feedsvc-site")
        self.page_entries = config.feed.max_entries
        # ((the connection, its data_version, the second), what `site_version` said then).
        self._version: tuple[tuple[int, int, int], tuple[int, ...]] | None = None
        self._cache: DocumentCache[tuple[str, str, int], tuple[object, ...]] = \
            DocumentCache(cache_bytes)

    def _forget(self) -> None:
        self.page_entries = self.config.feed.max_entries
        self._version = None
        self._cache = DocumentCache(self._cache.max_bytes)

    async def index_page(self, number: int) -> Document | None:
        """`/page/{number}` (number ≥ 2); None past the last page."""
        if number < 2:
            return None
        return await self._on_thread(self._made, "index", "", number)

    async def tag_page(self, tag: str, number: int = 1) -> Document | None:
        """A tag's HTML page; None for a tag with no published entry, or past its last page."""
        if not is_slug(tag):
            return None
        return await self._on_thread(self._made, "tag", tag, number)

    async def tags_index(self) -> Document | None:
        return await self._on_thread(self._made, "tags", "", 1)

    async def neighbour(self, slug: str, newer: bool) -> str | None:
        """The slug of the entry just newer (or older) than this one, if any."""
        if not is_slug(slug):
            return None
        return await self._on_thread(self._neighbour, slug, newer)

    def _neighbour(self, slug: str, newer: bool) -> str | None:
        now = int(datetime.now(UTC).timestamp())
        try:
            return self._state().neighbour(slug, now, newer)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None

    def render_now(self, kind: str, key: str, number: int) -> Document | None:
        """The same, synchronously (`build`): kind "index", "tag" (key: the tag) or "tags"."""
        return self._made(kind, key, number)

    def pages_of(self, tag: str | None, pages_read: int = 0) -> Iterator[Document]:
        """Every page of a tag (1, 2…), or the front page's older pages (2, 3…; tag None), as
        `render_now` makes them one by one, but read from the state `_PAGES_READ` pages at a
        time (`build`): one query per page skips all the rows before it (OFFSET), which at
        100,000 entries made the 2,000 older pages cost 100 s; this costs 1/40 of that."""
        assert self.info is not None
        size, now = self.page_entries, int(datetime.now(UTC).timestamp())
        pages_read = pages_read or _PAGES_READ
        number = 1 if tag is not None else 2
        store = self._state()
        label = self._label(store, tag, now) if tag is not None else ""
        count = store.site_version(now)[0]
        while True:
            rows = store.published_page(now, (number - 1) * size, pages_read * size + 1, tag)
            for first in range(0, min(max(len(rows), 1), pages_read * size), size):
                page = rows[first:first + size + 1]
                if not page and (number > 2 or tag is not None or count < size):
                    return
                older = len(page) > size
                items = self._items(page[:size])
                body = (render_index(self.info, items, number=number, older=older)
                        if tag is None else
                        render_tag(self.info, tag, label, items, number=number, older=older))
                path = index_page_path(number) if tag is None else tag_page_path(tag, number)
                yield _etag_only(make_document(path, HTML_TYPE, body, self.info.created,
                                               self.config.server.cache_max_age))
                number += 1
                if not older:
                    return

    def tag_rows(self) -> list[tuple[str, str, int]]:
        """(tag, label, count) of every tag with published entries (`build`)."""
        return self._state().tag_counts(int(datetime.now(UTC).timestamp()))

    def _made(self, kind: str, key: str, number: int) -> Document | None:
        assert self.info is not None
        now = int(datetime.now(UTC).timestamp())
        try:
            store = self._state()
            with store.reading():
                version = self._site_version(store, now)
                count = version[0]
                cached = self._cache.get((kind, key, number))
                if cached is not None and cached[0] == version:
                    return cached[1]
                body = self._render(store, now, kind, key, number, count)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None
        if body is None:
            return None
        path = {"index": index_page_path(number), "tag": tag_page_path(key, number),
                "tags": f"/{TAGS}"}[kind]
        document = _etag_only(make_document(path, HTML_TYPE, body, self.info.created,
                                            self.config.server.cache_max_age))
        self._cache.put((kind, key, number), version, document)
        return document

    def _site_version(self, store: Store, now: int) -> tuple[int, ...]:
        """`store.site_version`, read again only once the state has had a commit since (or
        a second has passed: a scheduled entry's time comes without one)."""
        seen = (id(store), store.data_version(), now)
        if self._version is None or self._version[0] != seen:
            self._version = (seen, store.site_version(now))
        return self._version[1]

    def _render(self, store: Store, now: int, kind: str, key: str, number: int, count: int
                ) -> bytes | None:
        assert self.info is not None
        size = self.page_entries
        if kind == "tags":
            return render_tags(self.info, store.tag_counts(now))
        tag = key if kind == "tag" else None
        # One more than a page: whether an older page follows.
        rows = store.published_page(now, (number - 1) * size, size + 1, tag)
        # The front page links to page 2 when it is full: with exactly `max_entries`
        # entries, page 2 is there, empty ("no older entries"), never a dead link.
        if not rows and (number > 2 or tag is not None or (number == 2 and count < size)):
            return None
        items = self._items(rows[:size])
        older = len(rows) > size
        if tag is None:
            return render_index(self.info, items, number=number, older=older)
        label = self._label(store, tag, now)
        return render_tag(self.info, tag, label, items, number=number, older=older)

    def _items(self, rows: list[tuple[str, int, int, object]]) -> list[Item]:
        assert self.info is not None
        items = []
        for slug, published, updated, content in rows:
            entry = rebuild_entry(slug, content, self.options)  # type: ignore[arg-type]
            if entry is not None:
                items.append(make_item(self.info, entry, published, from_micros(updated),
                                       self.config.entry_link))
        return items

    @staticmethod
    def _label(store: Store, tag: str, now: int) -> str:
        found = store.tagged(tag, now, 1)
        return found[0][1] if found else tag



#: `Document.unchanged_since` of a document sent without Last-Modified: If-Modified-Since
#: never gets 304 (only If-None-Match can).
_NEVER = datetime(9999, 12, 31, tzinfo=UTC)


def _etag_only(document: Document) -> Document:
    """The document without its Last-Modified header (its ETags stay)."""
    variants = {
        coding: replace(variant, headers=_without_date(variant.headers),
                        not_modified_headers=_without_date(variant.not_modified_headers))
        for coding, variant in document.variants.items()}
    return replace(document, variants=MappingProxyType(variants), unchanged_since=_NEVER)


def _without_date(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({k: v for k, v in headers.items() if k != "Last-Modified"})
