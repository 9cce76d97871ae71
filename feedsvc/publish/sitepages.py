"""The site's pages made from the state on request: the front page's older pages
(`/page/{n}`: every published entry is reachable from `/`), each tag's HTML pages
(`/tags/{tag}`, `/tags/{tag}/page/{n}`) and the list of tags with their counts (`/tags/`).

Older pages are blocks of `max_entries` entries numbered from the oldest (pageblocks.py): a
new entry changes none of them but the newest one's "newer" link, once every `max_entries`
entries; a complete page's bytes change only with its own entries.

As the long tail's entry pages (longtail.py): read from SQLite on a thread of their own, never
on the event loop, one page of entries at a time (memory stays bounded at any number of seeds),
kept in a small LRU cache. A cached page is served again as it is while `Store.site_version`
(what any of these pages changes with) says nothing changed; when it does, the page's own
version (`pageblocks.page_version`: its entries' keys, read from an index, its links, its
label) says whether its bytes can have changed, so an older page stays cached (the same
document, the same ETag) across changes to other entries: only what changed is rendered again.
(The snapshot's generation would not do, as an edit of an entry no feed shows changes the
state, not the snapshot.)

They are sent with a strong ETag and no Last-Modified (RFC 9110 §8.8.2: only "if a last
modification date can be reasonably and consistently determined"): a page's bytes change with
entries removed or back-dated before it, and no date kept in the state moves forward with
every such change (the newest `updated` does not when an old entry is edited), so a date
could make If-Modified-Since answer 304 for changed bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.ingest.parser import rebuild_entry
from feedsvc.ingest.seedrules import is_slug
from feedsvc.model import Content, Document, Item, from_micros
from feedsvc.publish.doccache import DocumentCache
from feedsvc.publish.ids import make_item
from feedsvc.publish.pageblocks import (
    FRONT,
    block_offset,
    exists,
    older_pages,
    page_version,
    runs,
    versions,
)
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
    """The URL path of the front page's older page `number` (FRONT: the front page)."""
    return "/" if number == FRONT else f"/page/{number}"


def tag_page_path(tag: str, number: int = FRONT) -> str:
    return f"/{TAGS}{tag}" if number == FRONT else f"/{TAGS}{tag}/page/{number}"


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
        # (kind, key, number) → ((site_version then, the page's own version), the page).
        self._cache: DocumentCache[tuple[str, str, int], tuple[tuple[int, ...], int]] = \
            DocumentCache(cache_bytes)

    def _forget(self) -> None:
        self.page_entries = self.config.feed.max_entries
        self._version = None
        self._cache = DocumentCache(self._cache.max_bytes)

    async def index_page(self, number: int) -> Document | None:
        """`/page/{number}` (1: the oldest entries); None past the newest older page."""
        if number < 1:
            return None
        return await self._on_thread(self._made, "index", "", number)

    async def tag_page(self, tag: str, number: int = FRONT) -> Document | None:
        """A tag's HTML page (FRONT: its newest entries, `/tags/{tag}`); None for a tag with
        no published entry, or past its newest older page."""
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

    def reading(self) -> AbstractContextManager[None]:
        """One read transaction around several of the calls below (`[build] on_change`)."""
        return self._state().reading()

    def published_keys(self) -> list[tuple[int, str, int]]:
        """(published, slug, updated) of every entry published now, oldest first."""
        return self._state().published_keys(int(datetime.now(UTC).timestamp()))

    def versions(self, keys: list[tuple[int, str, int]] | None = None
                 ) -> dict[tuple[str | None, int], int]:
        """`pageblocks.page_version` of every page made from the state now: (None, n) the
        front page's older pages, (tag, FRONT) and (tag, n) each tag's pages, read from an
        index (`build` and `[build] on_change`: which pages a change touched). `keys`: the
        `published_keys` just read, if at hand."""
        now = int(datetime.now(UTC).timestamp())
        store, size = self._state(), self.page_entries
        found: dict[tuple[str | None, int], int] = {}
        with store.reading():
            if keys is None:
                keys = store.published_keys(now)
            found.update(((None, n), v) for n, v in versions(keys, size).items() if n != FRONT)
            rows = store.tagged_keys(now)
            start = 0
            while start < len(rows):
                tag = rows[start][0]
                end = start
                while end < len(rows) and rows[end][0] == tag:
                    end += 1
                # Its label: the newest entry's (as `_label` reads it).
                label = store.tag_label(tag, rows[end - 1][2])
                found.update(((tag, n), v) for n, v in versions(
                    [row[1:] for row in rows[start:end]], size, label).items())
                start = end
        return found

    def pages_of(self, tag: str | None, numbers: Iterable[int] | None = None,
                 pages_read: int = 0) -> Iterator[tuple[int, int, Document]]:
        """(number, version, page) of the pages `numbers` of a tag (FRONT, 1…), or of the
        front page's older pages (1…; tag None), as `render_now` makes them, with the
        `pageblocks.page_version` of what each shows; read from the state `_PAGES_READ` pages
        at a time (`build`): one query per page skips all the rows before it (OFFSET), which
        at 100,000 entries made the 2,000 older pages cost 100 s; this costs 1/40 of that.
        `numbers` None: every page there is; a number that is no page now is left out."""
        size, now = self.page_entries, int(datetime.now(UTC).timestamp())
        pages_read = pages_read or _PAGES_READ
        store = self._state()
        with store.reading():
            count = store.published_count(now, tag)
            label = self._label(store, tag, now) if tag is not None else ""
        pages = older_pages(count, size)
        wanted = (set(range(1, pages + 1)) if numbers is None
                  else {n for n in numbers if 1 <= n <= pages})
        if tag is not None and count and (numbers is None or FRONT in numbers):
            yield self._made_of(tag, label, FRONT, pages,
                                store.published_page(now, 0, size, tag))
        # Newest first: a run's newest page is the first `size` rows from its offset.
        for first, last in reversed(runs(sorted(wanted))):
            top = last
            while top >= first:
                bottom = max(first, top - pages_read + 1)
                rows = store.published_page(now, block_offset(count, size, top),
                                            (top - bottom + 1) * size, tag)
                for number in range(top, bottom - 1, -1):
                    at = (top - number) * size
                    yield self._made_of(tag, label, number, pages, rows[at:at + size])
                top = bottom - 1

    def _made_of(self, tag: str | None, label: str, number: int, pages: int,
                 rows: list[tuple[str, int, int, Content | None]]
                 ) -> tuple[int, int, Document]:
        keys = [(published, slug, updated) for slug, published, updated, _ in reversed(rows)]
        return (number, page_version(number, pages, keys, label),
                self._document(tag, label, number, pages, rows))

    def _document(self, tag: str | None, label: str, number: int, pages: int,
                  rows: list[tuple[str, int, int, Content | None]]) -> Document:
        assert self.info is not None
        items = self._items(rows)
        body = (render_index(self.info, items, number=number, pages=pages) if tag is None else
                render_tag(self.info, tag, label, items, number=number, pages=pages))
        path = index_page_path(number) if tag is None else tag_page_path(tag, number)
        return _etag_only(make_document(path, HTML_TYPE, body, self.info.created,
                                        self.config.server.cache_max_age))

    def tag_rows(self) -> list[tuple[str, str, int]]:
        """(tag, label, count) of every tag with published entries (`build`)."""
        return self._state().tag_counts(int(datetime.now(UTC).timestamp()))

    def _made(self, kind: str, key: str, number: int) -> Document | None:
        assert self.info is not None
        now = int(datetime.now(UTC).timestamp())
        cache_key = (kind, key, number)
        try:
            store = self._state()
            with store.reading():
                version = self._site_version(store, now)
                cached = self._cache.get(cache_key)
                if cached is not None and cached[0][0] == version:
                    return cached[1]
                if kind == "tags":
                    own, document = 0, self._tags_document(store, now)
                else:
                    made = self._block(store, now, key if kind == "tag" else None, number)
                    if made is None:
                        return None
                    own, pages, label, rows = made
                    if cached is not None and cached[0][1] == own:
                        document = cached[1]  # the same bytes: the same document
                    else:
                        document = self._document(key if kind == "tag" else None, label,
                                                  number, pages, rows)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None
        self._cache.put(cache_key, (version, own), document)
        return document

    def _block(self, store: Store, now: int, tag: str | None, number: int
               ) -> tuple[int, int, str, list[tuple[str, int, int, Content | None]]] | None:
        """(its version, the number of older pages, the label, its rows) of page `number`
        of the front page (tag None) or of a tag; None when it is not a page now."""
        size = self.page_entries
        count = store.published_count(now, tag)
        pages = older_pages(count, size)
        if number == FRONT and (tag is None or not count):
            return None  # (the front page itself is the snapshot's)
        if number != FRONT and not exists(count, size, number):
            return None
        rows = store.published_page(now, block_offset(count, size, number), size, tag)
        label = self._label(store, tag, now) if tag is not None else ""
        keys = [(published, slug, updated) for slug, published, updated, _ in reversed(rows)]
        return page_version(number, pages, keys, label), pages, label, rows

    def _tags_document(self, store: Store, now: int) -> Document:
        assert self.info is not None
        return _etag_only(make_document(f"/{TAGS}", HTML_TYPE,
                                        render_tags(self.info, store.tag_counts(now)),
                                        self.info.created, self.config.server.cache_max_age))

    def _site_version(self, store: Store, now: int) -> tuple[int, ...]:
        """`store.site_version`, read again only once the state has had a commit since (or
        a second has passed: a scheduled entry's time comes without one)."""
        seen = (id(store), store.data_version(), now)
        if self._version is None or self._version[0] != seen:
            self._version = (seen, store.site_version(now))
        return self._version[1]

    def _items(self, rows: list[tuple[str, int, int, Content | None]]) -> list[Item]:
        assert self.info is not None
        items = []
        for slug, published, updated, content in rows:
            if content is None:
                continue  # unreadable: left out, its place kept
            entry = rebuild_entry(slug, content, self.options)
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
