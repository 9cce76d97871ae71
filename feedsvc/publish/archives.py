"""RFC 5005 §4 archived feeds: every published entry the subscription documents no longer show.

What the pages hold. The subscription documents (`/feed.{ext}` of every registered format) show
the newest `max_entries` entries, newest `published` first, then by slug (the timeline's
order). The archive holds exactly the other published (live, not scheduled) entries: the
timeline's order after them, reversed, so oldest first (`published` ascending, ties by slug
descending: the feeds' own tie order, reversed). It is cut into pages of `[feed]
archive_page_entries` (P) from the oldest: page 1 holds positions 0..P-1, page k positions
(k-1)P..kP-1. With A archived entries there are A // P full pages and one newest page, partial
(possibly empty): a full page therefore always has a successor, and its `next-archive` link
never has to appear later. An entry that leaves the subscription document is the newest
archived one, so it joins the newest page: a full page's entries change only when an entry
older than them is deleted, re-dated or appears backdated (RFC 5005 §4: such pages "SHOULD NOT
change"; these are the only ways they do, and then every later page shifts by one entry).
Walking `prev-archive` from a subscription document (JSON Feed: `next_url` from /feed.json)
goes newest page → page 1 and meets every archived entry once; together with the subscription
document, every published entry exactly once.

Each page, in every registered format (a plugin's too), at `/archive/{k}.{ext}`: its own self
link, `rel="current"` (the subscription document of its format), `rel="prev-archive"` (k > 1)
and `rel="next-archive"` (full pages), and `<fh:archive/>` (RSS: as atom:link, RFC 5005
Appendix B; JSON Feed: `next_url` to the older page, `feed_url` the subscription document's).
Its bytes are a function of k and its entries alone (its Atom `<updated>` is its newest entry's
`updated`), so its strong ETag changes only with them.

Memory. Pages are never held in the snapshot (100,000 seeds are 2,000 pages in 3 formats): the
snapshot carries an `ArchiveSpan` (A, and the oldest shown entry that bounds the archive), and a
page is read from the state on request (`stamps_archived`, a partial index on (published, slug
DESC) WHERE live = 1: an index walk of at most half the archive, from whichever end is nearer,
no sort), rendered in a thread of its own and kept in a small LRU. A cached page is keyed by
the (slug, published, updated, content_hash) of its rows and its Last-Modified, read again at
every request (one index walk, no text): a cached page is never served stale.

Last-Modified. Derived from the page's entries (their newest `updated`) it would be wrong:
deleting an entry shifts later pages, whose bytes change while that date stays or even goes
back, so an If-Modified-Since would get 304 for changed bytes (RFC 9110 §13.1.3, §8.8.2). So
the pipeline records, in the state's `documents` table, when pages change, without rendering
them: an edit of an archived entry writes `/archive/{k}` (its page only); anything that moves
entries (a new archived entry at the top, a deletion, a re-dating, a change of configuration)
writes one row `/archive/after/{j}`, j the first page it shifts. A page's Last-Modified is the
latest of its own row and the `after` rows up to it (never before its newest entry's
`updated`, never after the clock); each row is dated max(now, the last archive date + 1 µs),
so it only moves forward, and its `previous` makes a same-second If-Modified-Since answer 200
(make_document). `/archive/` keeps the span the pipeline last dated (and the configuration's
fingerprint), so a restart records nothing when nothing moved: same state, same dates. Cost
per batch: a few bisections in the timeline per touched slug and at most one row per edited
page plus one `after` row; nothing proportional to the number of seeds or pages.

Full pages are served with `Cache-Control: public, max-age=31536000, immutable`; the newest,
partial page with `[server] cache_max_age`. `build` writes every page of every format.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.ingest.parser import rebuild_entry
from feedsvc.model import (
    ArchiveSpan,
    Document,
    FeedInfo,
    Item,
    Revision,
    Stamp,
    from_micros,
    to_micros,
)
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.docformat import FeedFormat, feed_updated
from feedsvc.publish.ids import make_item, parse_options
from feedsvc.publish.registry import ARCHIVES, MAIN, archive_feed_path, formats
from feedsvc.publish.snapshot import make_document
from feedsvc.publish.timeline import Timeline
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")

#: Cache-Control of a full archive page: its entries never change when new ones arrive.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Rendered pages kept (all formats together): ~100-300 KB each in three codings.
CACHE_DOCUMENTS = 48
#: The state's rows: the span last dated, a page's own change, a shift from a page on.
SPAN_PATH = f"/{ARCHIVES}"
AFTER_PREFIX = f"/{ARCHIVES}after/"


def page_revision_path(page: int) -> str:
    return f"/{ARCHIVES}{page}"


def page_of(position: int, per_page: int) -> int:
    """The page (1: the oldest) holding archive position `position` (0: the oldest entry)."""
    return position // per_page + 1


def subscription_info(info: FeedInfo, span: ArchiveSpan | None) -> FeedInfo:
    """The subscription documents' head: rel="prev-archive" to the newest archive page."""
    prev = archive_feed_path(span.pages) if span is not None and span.pages else None
    return info if info.prev_archive == prev else replace(info, prev_archive=prev)


def page_info(info: FeedInfo, page: int, full: bool) -> FeedInfo:
    """Archive page `page`'s head: its own path, current, its neighbours."""
    return replace(info, feed_path=archive_feed_path(page), current=MAIN,
                   prev_archive=archive_feed_path(page - 1) if page > 1 else None,
                   next_archive=archive_feed_path(page + 1) if full else None)


def fingerprint(config: Config, info: FeedInfo) -> str:
    """What every page's bytes depend on beyond its entries: when it changes, all pages may."""
    text = repr((info, config.feed.entry_url, config.feed.max_entries,
                 config.feed.archive_page_entries, [f.extension for f in formats()]))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class _Noted:
    published: int
    slug: str
    moved: bool  # entered, left or moved in the order; else its text or dates changed


class ArchiveDates:
    """The pipeline's side: which pages a batch changed, dated in the state without rendering
    them (`DocumentDates.unsaved`, written with the batch), and the span the snapshot carries."""

    def __init__(self, config: Config, info: FeedInfo, dates: DocumentDates) -> None:
        self._per_page = config.feed.archive_page_entries
        self._max_entries = config.feed.max_entries
        self._fingerprint = fingerprint(config, info)
        self._dates = dates
        self._noted: list[_Noted] = []
        self._last: Revision | None = None  # the `/archive/` row: span and latest date
        self._loaded = False
        self.span: ArchiveSpan | None = None

    def note(self, slug: str, before: Stamp | None, after: Stamp | None) -> None:
        """A batch saw this slug: `before`, its stamp in the state, `after`, its new one
        (None: not published). Published as the state says (`live`), not as this process
        saw it: a restart's first scan changes no page."""
        before = before if before is not None and before.live else None
        after = after if after is not None and after.live else None
        if before is None and after is None:
            return
        if before is None or after is None or before.published != after.published:
            self._noted.extend(_Noted(s.published, slug, True) for s in (before, after) if s)
        elif before != after:
            self._noted.append(_Noted(after.published, slug, False))

    def finish(self, timeline: Timeline, start: int, now_us: int) -> ArchiveSpan | None:
        """The span after this batch; the pages it changed dated (in `unsaved`)."""
        order, keys = timeline.order, timeline.keys
        first = start + self._max_entries  # the first archived index in the order
        count = max(0, len(order) - first)
        span = (ArchiveSpan(count, -keys[first - 1], order[first - 1], self._per_page)
                if count else None)
        noted, self._noted = self._noted, []
        self._load()
        key = self._key(span)
        old = self._last.digest if self._last is not None else None
        shift: int | None = None  # the first archive position moved
        edited: set[int] = set()
        if old != key:
            old_count, _, old_fp = _parse(old)
            if old_fp != self._fingerprint:
                shift = 0
            elif old_count != count:
                shift = min(old_count, count)
            else:
                shift = max(0, count - 1)  # the same number, another boundary: the top moved
        for item in noted:
            lo = bisect.bisect_left(keys, -item.published)
            hi = bisect.bisect_right(keys, -item.published, lo)
            index = bisect.bisect_left(order, item.slug, lo, hi)
            if index < first:
                continue  # shown or scheduled: the span's change says what moved
            present = index < hi and order[index] == item.slug
            position = len(order) - index - (1 if present else 0)
            if item.moved:
                shift = position if shift is None else min(shift, position)
            elif present:
                edited.add(page_of(position, self._per_page))
        self.span = span
        if shift is None and not edited and old == key:
            return span
        last = self._last.modified if self._last is not None else None
        moment = now_us if last is None else max(now_us, last + 1)
        rows = [page_revision_path(page) for page in sorted(edited)]
        if shift is not None:
            rows.append(f"{AFTER_PREFIX}{page_of(shift, self._per_page)}")
        for path in rows:
            self._dates.unsaved[path] = Revision(path, "", moment, last)
        self._last = self._dates.unsaved[SPAN_PATH] = Revision(SPAN_PATH, key, moment, last)
        return span

    def _key(self, span: ArchiveSpan | None) -> str:
        if span is None:
            return f"0||{self._fingerprint}"
        return f"{span.count}|{span.published} {span.slug}|{self._fingerprint}"

    def _load(self) -> None:
        if self._loaded:
            return
        try:
            self._last = self._dates.store.load_revisions((SPAN_PATH,)).get(SPAN_PATH)
        except StoreError as e:
            log.error("%s", e)  # dated as new: every page's date moves forward, once
        self._loaded = True


def _parse(key: str | None) -> tuple[int, str, str | None]:
    if key is None:
        return 0, "", None
    count, boundary, fp = key.split("|", 2)
    return int(count), boundary, fp


class ArchivePages:
    """The serving side: archive pages read from the state on request, rendered in a thread
    of their own (never on the event loop, never in the pipeline's thread), in a small LRU."""

    def __init__(self, config: Config, capacity: int = CACHE_DOCUMENTS) -> None:
        self.config = config
        self.options = parse_options(config)
        self.capacity = capacity
        self.info: FeedInfo | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._store: Store | None = None
        # (page, extension) → (its rows, Last-Modified and previous, the document)
        self._cache: OrderedDict[tuple[int, str], tuple[object, Document]] = OrderedDict()

    def start(self, info: FeedInfo) -> None:
        self.info = info
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedsvc-archive")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.submit(self._close_store).result()
            self._executor.shutdown(wait=True)
            self._executor = None
        else:
            self._close_store()

    async def page(self, span: ArchiveSpan, page: int, fmt: FeedFormat) -> Document | None:
        """Archive page `page` in `fmt`, or None (no such page, or the state cannot say)."""
        if self._executor is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.render, span, page, fmt)

    def render(self, span: ArchiveSpan, page: int, fmt: FeedFormat) -> Document | None:
        """The page, from the state (blocking: `build` calls it directly)."""
        assert self.info is not None
        if not 1 <= page <= span.pages:
            return None
        try:
            if self._store is None:
                self._store = Store.open_for_reading(self.config.paths.state)
            rows = self._rows(self._store, span, page)
            revisions = self._store.load_revisions((page_revision_path(page),))
            recorded = [*revisions.values(), *self._store.archive_shifts(page)]
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None
        now_us = to_micros(datetime.now(UTC))
        newest = max((row[2] for row in rows), default=to_micros(self.info.created))
        latest = max(recorded, key=lambda r: r.modified, default=None)
        if latest is not None and latest.modified >= newest:
            modified, previous = latest.modified, latest.previous
        else:
            modified, previous = newest, None
        modified = min(modified, now_us)
        key = (tuple(rows), modified, previous)
        cached = self._cache.get((page, fmt.extension))
        if cached is not None and cached[0] == key:
            self._cache.move_to_end((page, fmt.extension))
            return cached[1]
        items = self._items(self._store, rows)
        if items is None:
            return None
        full = len(rows) == span.page_entries
        info = page_info(self.info, page, full)
        body = fmt.render(info, items, feed_updated(info, items))
        document = make_document(
            fmt.path(info.feed_path), fmt.content_type, body, from_micros(modified),
            self.config.server.cache_max_age,
            previous=from_micros(previous) if previous is not None else None,
            cache_control=IMMUTABLE if full else None)
        self._cache[(page, fmt.extension)] = (key, document)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return document

    @staticmethod
    def _rows(store: Store, span: ArchiveSpan, page: int) -> list[tuple[str, int, int, str]]:
        """The page's rows, oldest first, walking the index from the nearer end."""
        first = (page - 1) * span.page_entries
        end = min(page * span.page_entries, span.count)
        if end <= first:
            return []
        if first <= span.count - end:
            return store.archived(span.published, span.slug, first, end - first, True)
        rows = store.archived(span.published, span.slug, span.count - end, end - first, False)
        rows.reverse()
        return rows

    def _items(self, store: Store, rows: Sequence[tuple[str, int, int, str]]
               ) -> list[Item] | None:
        assert self.info is not None
        items = []
        for slug, published, updated, _ in rows:
            try:
                content = store.load_content(slug)
            except StoreError as e:
                log.error("%s", e)
                return None
            entry = rebuild_entry(slug, content, self.options) if content is not None else None
            if entry is None:
                continue  # no text kept for it (a state from before texts were kept)
            items.append(make_item(self.info, entry, published, from_micros(updated),
                                   self.config.entry_link))
        return items

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
