"""The site's pages made from the state on request: the front page's older pages
(`/page/{n}`, n ≥ 2: every published entry is reachable from `/`), each tag's HTML page
(`/tags/{tag}`, `/tags/{tag}/page/{n}`) and the list of tags with their counts (`/tags/`).

As the long tail's entry pages (longtail.py): read from SQLite on a thread of their own, never
on the event loop, one page of entries at a time (memory stays bounded at any number of seeds),
kept in a small LRU cache keyed by what the site's pages change with (the number of entries
published, the newest `updated`, the newest deletion), which is also their Last-Modified: a
page's bytes only change when one of them does.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import UTC, datetime

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.ingest.parser import rebuild_entry
from feedsvc.ingest.seedrules import is_slug
from feedsvc.model import Document, Item, from_micros
from feedsvc.publish.ids import make_item
from feedsvc.publish.pages import HTML_TYPE, render_index, render_tag, render_tags
from feedsvc.publish.registry import TAGS
from feedsvc.publish.snapshot import make_document
from feedsvc.publish.statereader import StateReader
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")

CACHE_PAGES = 128
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
    def __init__(self, config: Config, capacity: int = CACHE_PAGES) -> None:
        super().__init__(config, "feedsvc-site")
        self.capacity = capacity
        self.page_entries = config.feed.max_entries
        # (kind, key, number) → (the snapshot generation it was last asked for in, what the
        # page was made of, the page).
        self._cache: OrderedDict[tuple[str, str, int],
                                 tuple[int | None, tuple[object, ...], Document]] = OrderedDict()

    # `generation`: the snapshot's (Snapshot.generation). A page asked for again in the same
    # generation is sent from the cache without a query (the state only changes with a new
    # snapshot); in another, its version is read (two aggregates over the published entries)
    # and it is made again only if that moved.

    async def index_page(self, number: int, generation: int | None = None) -> Document | None:
        """`/page/{number}` (number ≥ 2); None past the last page."""
        if number < 2:
            return None
        return await self._on_thread(self._made, "index", "", number, generation)

    async def tag_page(self, tag: str, number: int = 1,
                       generation: int | None = None) -> Document | None:
        """A tag's HTML page; None for a tag with no published entry, or past its last page."""
        if not is_slug(tag):
            return None
        return await self._on_thread(self._made, "tag", tag, number, generation)

    async def tags_index(self, generation: int | None = None) -> Document | None:
        return await self._on_thread(self._made, "tags", "", 1, generation)

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

    def tag_rows(self) -> list[tuple[str, str, int]]:
        """(tag, label, count) of every tag with published entries (`build`)."""
        return self._state().tag_counts(int(datetime.now(UTC).timestamp()))

    def _made(self, kind: str, key: str, number: int, generation: int | None = None
              ) -> Document | None:
        assert self.info is not None
        now = int(datetime.now(UTC).timestamp())
        cached = self._cache.get((kind, key, number))
        if cached is not None and generation is not None and cached[0] == generation:
            self._cache.move_to_end((kind, key, number))
            return cached[2]
        try:
            store = self._state()
            with store.reading():
                count, updated, deleted = store.site_counts(now)
                version = (count, updated, deleted)
                if cached is not None and cached[1] == version:
                    self._cache[(kind, key, number)] = (generation, version, cached[2])
                    self._cache.move_to_end((kind, key, number))
                    return cached[2]
                body = self._render(store, now, kind, key, number)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None
        if body is None:
            return None
        moments = [m for m in (updated, deleted) if m is not None]
        modified = from_micros(max(moments)) if moments else self.info.created
        path = {"index": index_page_path(number), "tag": tag_page_path(key, number),
                "tags": f"/{TAGS}"}[kind]
        document = make_document(path, HTML_TYPE, body, modified,
                                 self.config.server.cache_max_age)
        self._cache[(kind, key, number)] = (generation, version, document)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return document

    def _render(self, store: Store, now: int, kind: str, key: str, number: int) -> bytes | None:
        assert self.info is not None
        size = self.page_entries
        if kind == "tags":
            return render_tags(self.info, store.tag_counts(now))
        tag = key if kind == "tag" else None
        # One more than a page: whether an older page follows.
        rows = store.published_page(now, (number - 1) * size, size + 1, tag)
        if not rows and (number > 1 or tag is not None):
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

