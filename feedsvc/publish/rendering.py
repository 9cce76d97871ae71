"""Rendering and dating documents: the feed in every registered format (the main one and each
tag's), the front page and the pages of the shown entries, each dated by `DocumentDates`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import replace
from datetime import datetime

from feedsvc.model import Document, FeedInfo, Item
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.docformat import feed_updated
from feedsvc.publish.ids import discovery_link
from feedsvc.publish.pageblocks import older_pages
from feedsvc.publish.pages import HTML_TYPE, render_entry, render_index
from feedsvc.publish.registry import INDEX, entry_path, formats
from feedsvc.publish.snapshot import Rendered, make_documents
from feedsvc.publish.stamps import StampTable
from feedsvc.state.store import Store


class Rendering:
    def __init__(self, info: FeedInfo, store: Store, cache_max_age: int,
                 page_entries: int = 0) -> None:
        self.info = info
        # Entries per page of the site (`[feed] max_entries`): the front page links to the
        # newest of the older pages (pageblocks.py), of which there are `older_pages` now.
        self._page_entries = page_entries
        self.older_pages = 0
        self._cache_max_age = cache_max_age
        # Each document's Last-Modified, kept in the state with a hash of its bytes.
        self.dates = DocumentDates(store)
        # One renderer per registered format (the registry's order), for every feed document.
        self._renderers = [(fmt, fmt.make_renderer(info)) for fmt in formats()]
        self.feeds: list[Document] = []  # the capped documents
        self.pages: dict[str, Document] = {}  # slug → page, of the shown entries
        # slug → its `updated` before this batch, for the entries whose stamp the batch moved.
        self._moved_pages: dict[str, int] = {}
        #: When a list: documents are made without waiting for their compressions, whose
        #: futures go here (see `snapshot.make_documents`, `Publisher.update`).
        self.later: list[Future[None]] | None = None

    def make_documents(self, rendered: list[Rendered]) -> list[Document]:
        return make_documents(rendered, self._cache_max_age, self.later)

    @contextlib.contextmanager
    def deferring(self, coding: list[Future[None]] | None) -> Iterator[None]:
        """Within: documents are made without waiting for their gzip and br variants, whose
        compressions' futures are appended to `coding` (None: made whole, as outside); the
        identity bytes, ETags and dates are all there, and the state's commit is not put off.
        The caller must let them finish before the next batch. If the batch fails, they are
        waited for here: its documents may stay in the caches (`pages`) and be served later."""
        self.later = coding
        try:
            yield
        except BaseException:
            wait(coding or ())
            raise
        finally:
            self.later = None

    def feed_documents(self, info: FeedInfo, items: Sequence[Item], updated: datetime,
                       now_us: int, changed: bool = False) -> list[Rendered]:
        """The feed documents of `info` (the feed's, or a tag's), one per registered format,
        dated by `DocumentDates`: a format whose bytes carry the date is rendered as a
        function of it."""
        self.dates.load([fmt.path(info.feed_path) for fmt, _ in self._renderers])
        rendered = []
        for fmt, renderer in self._renderers:
            render = functools.partial(renderer.render, items, info=info)
            dated = self.dates.dated(fmt.path(info.feed_path), fmt.content_type, updated,
                                     now_us, render if fmt.dated else render(updated), changed)
            if info.hubs:
                dated = replace(dated, link=discovery_link(info.hubs, fmt.url(info)))
            rendered.append(dated)
        return rendered

    def tag_feed(self, info: FeedInfo, items: Sequence[Item], now_us: int) -> list[Rendered]:
        """A tag's feed documents."""
        return self.feed_documents(info, items, feed_updated(info, items), now_us)

    def render(self, before: tuple[Item, ...], shown: tuple[Item, ...], now_us: int,
               deleted: tuple[tuple[str, datetime], ...] = (), published: int = 0
               ) -> list[Document]:
        """The capped documents (the feed in every registered format, the front page) and the
        pages of the shown entries that changed, compressed together (`before`: the items
        shown until now; `deleted`: the feed's tombstones, see tombstones.py; `published`:
        how many entries are published, which says how many older pages the front page has:
        `older_pages_of`)."""
        info, items = replace(self.info, deleted=deleted), list(shown)
        self.older_pages = self.older_pages_of(published)
        updated = feed_updated(info, items)
        old = {item.slug: item for item in before}
        pages = [item for item in items if old.get(item.slug) != item]
        self.dates.load([INDEX, *(entry_path(item.slug) for item in pages)])
        # The feeds last rendered by this process showed other ids, dates or texts: their
        # bytes surely differ from those last dated, so each is rendered once, with its new
        # date, instead of first with the stored one to compare (a millisecond and a half of
        # every published change).
        changed = bool(before) and _rendered_keys(before) != _rendered_keys(shown)
        capped = [
            *self.feed_documents(info, items, updated, now_us, changed),
            self.dates.dated(INDEX, HTML_TYPE, updated, now_us,
                             render_index(info, items, pages=self.older_pages)),
        ]
        rendered = capped + [self.dates.dated(entry_path(item.slug), HTML_TYPE, item.updated,
                                              now_us, render_entry(info, item))
                             for item in pages]
        documents = {doc.path: doc for doc in self.make_documents(rendered)}
        self.pages = {item.slug: documents.get(entry_path(item.slug)) or self.pages[item.slug]
                      for item in items}
        return [documents[doc.path] for doc in capped]

    def older_pages_of(self, published: int) -> int:
        """The older pages the front page links to with `published` entries published."""
        return older_pages(published, self._page_entries) if self._page_entries else 0

    def documents(self) -> list[Document]:
        """The capped documents and the shown entries' pages, as last rendered."""
        return [*self.feeds, *self.pages.values()]

    def retain_dates(self, documents: Mapping[str, Document]) -> bool:
        """Keep in memory the dates of these documents only; whether some are still to be
        written to the state."""
        self.dates.retain(documents)
        return bool(self.dates.unsaved)

    def retain(self, kept: set[Item]) -> None:
        """Let the renderers forget what they kept of items no document shows any more."""
        for _, renderer in self._renderers:
            renderer.retain(kept)

    def moved(self, slug: str, before_us: int) -> None:
        """A batch moved this entry's stamp (text, dates or link); `before_us`: its `updated`
        before the batch. If no feed shows it, its page is made from the state on request and
        is dated by `date_unshown_pages`."""
        self._moved_pages.setdefault(slug, before_us)

    def date_unshown_pages(self, shown: Iterable[Item], stamps: StampTable, now_us: int) -> None:
        """The entries a batch changed that no feed shows: their pages are made from the state
        on request (longtail.py), never rendered here, so their Last-Modified is moved forward
        here, in the state, without rendering (RFC 9110 §13.1.3: a date-only change must not
        get a 304 for If-Modified-Since)."""
        moved, self._moved_pages = self._moved_pages, {}
        for item in shown:
            moved.pop(item.slug, None)  # rendered by render, dated by its bytes
        if not moved:
            return
        paths = {slug: entry_path(slug) for slug in moved}
        self.dates.load(paths.values())
        stamps.load(moved)
        for slug, before in moved.items():
            if (stamp := stamps.get(slug)) is not None:
                self.dates.touch(paths[slug], stamp.updated, before, now_us)


def _rendered_keys(items: Iterable[Item]) -> list[tuple[object, ...]]:
    """What of each item a feed document always shows: its id, link, dates and text (through
    its content hash), in order."""
    return [(item.id, item.link, item.published, item.updated, item.entry.content_hash)
            for item in items]
