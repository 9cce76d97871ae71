"""RFC 5005 §4 archived feeds: every published entry the subscription documents no longer show.

What the pages hold. The subscription documents (`/feed.{ext}` of every registered format) show
the newest `max_entries` entries, newest `published` first, then by slug (the timeline's
order). The archive holds exactly the other published (live, not scheduled) entries. Each
entry gets a *slot* in the state (`archive_slots`, schema 5) when it enters the archive: when
it leaves the subscription documents' newest `max_entries`, or arrives back-dated below them.
Slots are numbered 1, 2, … and only ever at the newest end; the entries entering in one batch
are numbered oldest first (`published` ascending, ties by slug descending: the feeds' order
reversed). A state without slots (schema 4, or a new one) numbers its whole archive that way
at the first batch. Page k of `[feed] archive_page_entries` (P) is slots (k-1)P+1..kP, so a
page only ever grows at its newest end: with S slots there are S // P full pages and one
newest page, partial (possibly empty): a full page always has a successor, and its
`next-archive` link never has to appear later.

A full page's membership never changes (RFC 5005 §4: such pages "SHOULD NOT change"): a
back-dated entry takes a new slot at the newest end (so pages are in order of arrival into the
archive, which is `published` order except for back-dated entries); an archived entry deleted
(or made a draft) keeps its slot, its state 1: the Atom page carries an RFC 6721
`at:deleted-entry` in its place (`when`: the batch that saw it go), RSS and JSON Feed pages just
omit it; an archived entry re-dated keeps its slot (an edit). An entry that comes back into the
subscription documents (newer ones deleted, its date moved later, or scheduled again) leaves
its slot (state 2: omitted everywhere), and a slug that comes back after its deletion turns
its tombstoned slot to state 2 (its tombstone goes, RFC 6721 §2, as in the subscription
documents); either gets a new slot when it enters the archive again. So each of these changes
only the page holding the slot (like an edit), and every published entry is reachable exactly
once: in the subscription document, or in the one slot it holds (state 0).

Each page, in every registered format (a plugin's too), at `/archive/{P}/{k}.{ext}`: the page
size is in the URL, so changing `archive_page_entries` gives new URLs (the old ones answer 404)
and never rewrites bytes a cache holds as immutable. Its own self link, `rel="current"` (the
subscription document of its format), `rel="prev-archive"` (k > 1) and `rel="next-archive"`
(full pages), and `<fh:archive/>` (RSS: as atom:link, RFC 5005 Appendix B; JSON Feed:
`next_url` to the older page, `feed_url` the subscription document's). Its bytes are a
function of P, k and its slots alone (its Atom `<updated>` is the newest of its entries'
`updated` and its tombstones' `when`), so its strong ETag changes only with them.

Memory. Pages are never held in the snapshot (100,000 seeds are 2,000 pages in 3 formats): the
snapshot carries an `ArchiveSpan` (the number of slots, P, and the oldest shown entry that
bounds the archive), and a page is read from the state on request (a rowid range of
`archive_slots`, each slot's stamp by slug), rendered in a thread of its own and kept in a
small LRU keyed by its rows and its Last-Modified, read again at every request: a cached page
is never served stale.

Last-Modified. The pipeline records, in the state's `documents` table, when pages change,
without rendering them: `/archive/{P}/{k}` for each page whose slots the batch changed (an
entry entered, left, was deleted, came back or was edited), and `/archive/after/1` when the
configuration's fingerprint changed (every page of every size). A page's Last-Modified is the
latest of these rows (never before its newest entry's `updated`, never after the clock); each
row is dated max(now, the last archive date + 1 µs), so it only moves forward, and its
`previous` makes a same-second If-Modified-Since answer 200 (make_document). `/archive/` keeps
the boundary the pipeline last saw (and the fingerprint), so a restart records nothing when
nothing moved: same state, same dates.

Cost per batch: the entries that may have crossed the boundary are the batch's own slugs and
those between the old and the new boundary in the timeline (a few bisections); their slots
are looked up through the index on slug, new slots appended at the top, one row per changed
page: nothing proportional to the number of seeds, slots or pages (except once, numbering the
archive of a state that has no slots yet). That first numbering (100,000 entries at a cold
start) is the archive's end of the timeline's order, reversed: no slot can be held yet, so no
slug is looked up, noted or sorted; the batch keeps one slice of the order (a pointer per
entry) and its rows are made one at a time as the state writes them (`_Numbered`).

Full pages are served with `Cache-Control: public, max-age=31536000, immutable`; the newest,
partial page with `[server] cache_max_age`. `build` writes every page of every format.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
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
from feedsvc.publish.doccache import DocumentCache
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.docformat import FeedFormat, Renderer, feed_updated
from feedsvc.publish.ids import discovery_link, entry_id, make_item
from feedsvc.publish.registry import ARCHIVES, MAIN, archive_feed_path, formats
from feedsvc.publish.snapshot import make_document, make_document_soon
from feedsvc.publish.statereader import StateReader
from feedsvc.publish.timeline import Timeline
from feedsvc.publish.tombstones import refs
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")

#: Cache-Control of a full archive page: its entries never change when new ones arrive.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Rendered pages kept (all formats together), in bytes of every coding: a 50-entry page is
#: ~240 KB in three codings, so about eight pages, the newest first asked for (RFC 5005
#: clients walk back from the newest). A full page is `immutable`: readers and caches in front
#: keep it; a page asked for again after it left is rendered anew in 2-3 ms.
CACHE_BYTES = 2 * 1024 * 1024
#: The state's rows: the span last dated, a page's own change, a shift from a page on.
SPAN_PATH = f"/{ARCHIVES}"
AFTER_PREFIX = f"/{ARCHIVES}after/"


def page_revision_path(page: int, per_page: int) -> str:
    return f"/{archive_feed_path(page, per_page)}"


def page_of(slot: int, per_page: int) -> int:
    """The page (1: the oldest) holding archive slot `slot` (1: the first numbered)."""
    return (slot - 1) // per_page + 1


def subscription_info(info: FeedInfo, span: ArchiveSpan | None) -> FeedInfo:
    """The subscription documents' head: rel="prev-archive" to the newest archive page."""
    prev = (archive_feed_path(span.pages, span.page_entries)
            if span is not None and span.pages else None)
    return info if info.prev_archive == prev else replace(info, prev_archive=prev)


def page_info(info: FeedInfo, page: int, per_page: int, full: bool,
              deleted: tuple[tuple[str, datetime], ...] = ()) -> FeedInfo:
    """Archive page `page`'s head: its own path, current, its neighbours, its tombstones."""
    return replace(info, feed_path=archive_feed_path(page, per_page), current=MAIN,
                   prev_archive=archive_feed_path(page - 1, per_page) if page > 1 else None,
                   next_archive=archive_feed_path(page + 1, per_page) if full else None,
                   deleted=deleted)


def fingerprint(config: Config, info: FeedInfo) -> str:
    """What every page's bytes depend on beyond its entries: when it changes, all pages may."""
    text = repr((info, config.feed.entry_url, config.feed.max_entries,
                 config.feed.archive_page_entries, [f.extension for f in formats()]))
    if info.hubs:  # out of FeedInfo's repr: no hub, the fingerprint it always had
        text += repr(info.hubs)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


#: A slot's state (`archive_slots.state`).
HOLDS, DELETED, LEFT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Slot:
    slot: int
    slug: str
    state: int
    changed: int


SlotRow = tuple[int, str, int, int]  # (slot, slug, state, changed): an `archive_slots` row


class _Numbered:
    """A state's first numbering: `archived` (the timeline's order from the first archived
    entry on: newest first, ties by slug) takes slots `first`, `first` + 1, … from its end, so
    oldest first, ties by slug descending, as every batch numbers the entries it archives.
    Rows are made as they are read, never held: 100,000 of them would be 100,000 objects."""

    __slots__ = ("archived", "changed", "first")

    def __init__(self, first: int, archived: list[str], changed: int) -> None:
        self.first, self.archived, self.changed = first, archived, changed

    def __len__(self) -> int:
        return len(self.archived)

    def rows(self) -> Iterator[SlotRow]:
        return zip(itertools.count(self.first), reversed(self.archived),
                   itertools.repeat(HOLDS), itertools.repeat(self.changed))


class ArchiveDates:
    """The pipeline's side: which slots a batch numbered or changed (`unsaved_slots`, written
    with the batch), which pages that changed, dated in the state without rendering them
    (`DocumentDates.unsaved`), and the span the snapshot carries."""

    def __init__(self, config: Config, info: FeedInfo, dates: DocumentDates) -> None:
        self._per_page = config.feed.archive_page_entries
        self._max_entries = config.feed.max_entries
        self._fingerprint = fingerprint(config, info)
        self._dates = dates
        self._noted: dict[str, tuple[int | None, bool]] = {}  # slug → (published now, changed)
        self._last: Revision | None = None  # the `/archive/` row: boundary and latest date
        self._last_slot: int | None = None
        self.unsaved_slots: dict[int, _Slot] = {}
        self._numbered: _Numbered | None = None  # a first numbering not written yet
        self._loaded = False
        self.span: ArchiveSpan | None = None

    def note(self, slug: str, before: Stamp | None, after: Stamp | None) -> None:
        """A batch saw this slug: `before`, its stamp in the state, `after`, its new one
        (None: not published). Published as the state says (`live`), not as this process
        saw it: a restart's first scan changes no page."""
        before = before if before is not None and before.live else None
        after = after if after is not None and after.live else None
        if before == after:
            return  # nothing moved or changed (a restart's first scan: every slug)
        if self._first_numbering():
            return  # no slot yet: `finish` numbers the whole archive, whatever moved
        changed = before != after or self._noted.get(slug, (None, False))[1]
        self._noted[slug] = (after.published if after is not None else None, changed)

    @property
    def unsaved_count(self) -> int:
        """Slots numbered or changed, not written to the state yet."""
        return len(self.unsaved_slots) + (len(self._numbered) if self._numbered else 0)

    def saved(self) -> None:
        """The state now holds every unsaved slot."""
        self.unsaved_slots.clear()
        self._numbered = None

    def slot_rows(self) -> Iterator[SlotRow]:
        """The unsaved slots' rows, made as they are read (a first numbering's first)."""
        if self._numbered is not None:
            yield from self._numbered.rows()
        for s in self.unsaved_slots.values():
            yield s.slot, s.slug, s.state, s.changed

    def finish(self, timeline: Timeline, start: int, now_us: int) -> ArchiveSpan | None:
        """The span after this batch; the slots it numbered or changed (`unsaved_slots`) and
        the pages it changed dated (in `unsaved`)."""
        order, keys = timeline.order, timeline.keys
        first = start + self._max_entries  # the first archived index in the order
        count = max(0, len(order) - first)
        boundary = (-keys[first - 1], order[first - 1]) if count else None
        noted, self._noted = self._noted, {}
        self._load()
        key = self._key(count, boundary)
        old = self._last.digest if self._last is not None else None
        old_count, old_boundary, old_fp = _parse(old)
        assert self._last_slot is not None
        if self._last_slot == 0:
            pages = self._number_all(order[first:], now_us)
            return self._dated(pages, count, boundary, key, old, old_fp, now_us)
        if self._numbered is not None:  # not written (the state could not be): as objects now
            self.unsaved_slots.update(
                (row[0], _Slot(*row)) for row in self._numbered.rows())
            self._numbered = None
        # Where each candidate stands now: (index in the order, or None: not published).
        where: dict[str, int | None] = {}
        for slug, (published, _) in noted.items():
            where[slug] = _index(order, keys, slug, published) if published is not None else None
        if old is None:
            crossing = range(first, len(order))  # every archived entry (a lost `/archive/`)
        else:
            was = len(order)  # the first index archived before, for entries not in the batch
            if old_count and old_boundary:
                published, _, slug = old_boundary.partition(" ")
                _lo, hi, index = _bisect(order, keys, slug, int(published))
                was = index + (1 if index < hi and order[index] == slug else 0)
            # Not past the order's end: with fewer entries left than the feeds show, `first`
            # is beyond it (every archived entry came back into the feeds).
            crossing = range(min(was, first), min(max(was, first), len(order)))
        for index in crossing:
            where.setdefault(order[index], index)
        pages: set[int] = set()
        entering: list[tuple[int, str]] = []
        held: dict[str, list[_Slot]] = {}
        for found in self._slots_of(list(where)):
            held.setdefault(found.slug, []).append(found)
        for slug, index in where.items():
            slots = held.get(slug, [])
            active = next((s for s in slots if s.state == HOLDS), None)
            archived = index is not None and index >= first
            if archived and active is None:
                assert index is not None
                entering.append((-keys[index], slug))
            elif active is not None and not archived:
                self._put(replace(active, state=DELETED if index is None else LEFT,
                                  changed=now_us))
                pages.add(page_of(active.slot, self._per_page))
            elif active is not None and noted.get(slug, (None, False))[1]:
                pages.add(page_of(active.slot, self._per_page))  # an edit, or re-dated
            if index is not None:  # published again: its tombstones in the archive go
                for gone in (s for s in slots if s.state == DELETED):
                    self._put(replace(gone, state=LEFT, changed=now_us))
                    pages.add(page_of(gone.slot, self._per_page))
        entering.sort(key=lambda pair: (pair[0], _descending(pair[1])))
        for _, slug in entering:
            self._last_slot += 1
            self._put(_Slot(self._last_slot, slug, HOLDS, now_us))
            pages.add(page_of(self._last_slot, self._per_page))
        return self._dated(pages, count, boundary, key, old, old_fp, now_us)

    def _number_all(self, archived: list[str], now_us: int) -> range:
        """No slot is numbered yet (a new state, or one of schema 4): the whole archive enters
        now, oldest first (`_Numbered`), whatever the batch noted (no slot to leave or edit).
        Returns the pages changed: all of them."""
        if not archived:
            return range(0)
        self._numbered = _Numbered(1, archived, now_us)
        self._last_slot = len(archived)
        return range(1, page_of(self._last_slot, self._per_page) + 1)

    def _first_numbering(self) -> bool:
        """Whether no slot is numbered yet: the next `finish` numbers the whole archive."""
        self._load()
        return self._last_slot == 0

    def _dated(self, pages: Iterable[int], count: int, boundary: tuple[int, str] | None,
               key: str, old: str | None, old_fp: str | None, now_us: int
               ) -> ArchiveSpan | None:
        """The span after this batch, and the changed pages' dates (`unsaved`)."""
        assert self._last_slot is not None
        span = (ArchiveSpan(self._last_slot, boundary[0], boundary[1], self._per_page)
                if self._last_slot and boundary is not None else
                ArchiveSpan(self._last_slot, 0, "", self._per_page) if self._last_slot
                else None)
        self.span = span
        refingered = old_fp != self._fingerprint
        pages = sorted(pages)
        if not pages and not refingered and old == key:
            return span
        last = self._last.modified if self._last is not None else None
        moment = now_us if last is None else max(now_us, last + 1)
        rows = [page_revision_path(page, self._per_page) for page in pages]
        if refingered:
            rows.append(f"{AFTER_PREFIX}1")
        for path in rows:
            self._dates.unsaved[path] = Revision(path, "", moment, last)
        self._dates.redated.update(rows)  # their bytes changed: WebSub announces them
        self._last = self._dates.unsaved[SPAN_PATH] = Revision(SPAN_PATH, key, moment, last)
        return span

    def _put(self, slot: _Slot) -> None:
        self.unsaved_slots[slot.slot] = slot

    def _slots_of(self, slugs: list[str]) -> list[_Slot]:
        """These slugs' slots: the state's, as the unsaved ones change them."""
        found: dict[int, _Slot] = {}
        try:
            found = {row[0]: _Slot(*row) for row in self._dates.store.slots_of(slugs)}
        except StoreError as e:
            log.error("%s", e)
        wanted = set(slugs)
        found.update((n, s) for n, s in self.unsaved_slots.items() if s.slug in wanted)
        return [s for s in found.values() if s.slug in wanted]

    def _key(self, count: int, boundary: tuple[int, str] | None) -> str:
        if boundary is None:
            return f"0||{self._fingerprint}"
        return f"{count}|{boundary[0]} {boundary[1]}|{self._fingerprint}"

    def _load(self) -> None:
        if self._loaded:
            return
        self._last_slot = 0
        try:
            self._last = self._dates.store.load_revisions((SPAN_PATH,)).get(SPAN_PATH)
            self._last_slot = self._dates.store.last_slot()
        except StoreError as e:
            log.error("%s", e)  # dated as new: every page's date moves forward, once
        self._loaded = True


def changed_documents(redated: Iterable[str], span: ArchiveSpan | None) -> set[str]:
    """The URL paths of the documents whose bytes changed, from the paths DocumentDates
    re-dated: a feed's or a page's as they are; an archive page row `/archive/{P}/{k}` as the
    page in every format, while it is served (page size P now, k within the span); the
    fingerprint's row `/archive/after/1` as every page served (a new fingerprint: new bytes
    everywhere; the only case that costs one path per page, and only on a configuration
    change)."""
    extensions = [fmt.extension for fmt in formats()]
    per_page, pages = (span.page_entries, span.pages) if span is not None else (0, 0)
    served = range(1, pages + 1)
    changed: set[str] = set()
    for path in redated:
        if path == SPAN_PATH:
            continue
        if path.startswith(AFTER_PREFIX):
            numbers: Iterable[int] = served
        elif path.startswith(SPAN_PATH):
            size, _, page = path[len(SPAN_PATH):].partition("/")
            if not (size.isdigit() and page.isdigit() and int(size) == per_page
                    and int(page) in served):
                continue
            numbers = (int(page),)
        else:
            changed.add(path)
            continue
        changed.update(f"{page_revision_path(n, per_page)}.{ext}"
                       for n in numbers for ext in extensions)
    return changed


def _bisect(order: Sequence[str], keys: Sequence[int], slug: str, published: int
            ) -> tuple[int, int, int]:
    lo = bisect.bisect_left(keys, -published)
    hi = bisect.bisect_right(keys, -published, lo)
    return lo, hi, bisect.bisect_left(order, slug, lo, hi)


def _index(order: Sequence[str], keys: Sequence[int], slug: str, published: int) -> int | None:
    """The slug's index in the timeline's order, if it is there (published or scheduled)."""
    _, hi, index = _bisect(order, keys, slug, published)
    return index if index < hi and order[index] == slug else None


def _descending(slug: str) -> tuple[int, ...]:
    """A sort key ordering slugs descending (ties in `published`: the feeds' order reversed)."""
    return (*tuple(-ord(c) for c in slug), 1)


def _parse(key: str | None) -> tuple[int, str, str | None]:
    if key is None:
        return 0, "", None
    count, boundary, fp = key.split("|", 2)
    return int(count), boundary, fp


class ArchivePages(StateReader):
    """The serving side: archive pages read from the state on request, rendered in a thread
    of their own (never on the event loop, never in the pipeline's thread), in a small LRU."""

    def __init__(self, config: Config, cache_bytes: int = CACHE_BYTES) -> None:
        super().__init__(config, "feedsvc-archive")
        # (page, extension) → (its rows, Last-Modified and previous, the document)
        self._cache: DocumentCache[tuple[int, str], object] = DocumentCache(cache_bytes)
        self._renderers: dict[str, Renderer] = {}  # extension → its renderer
        self._kept_items: dict[tuple[str, int, int, str | None], Item] = {}  # the last page's

    def _forget(self) -> None:
        self._cache = DocumentCache(self._cache.max_bytes)
        self._renderers = {}
        self._kept_items = {}

    async def page(self, span: ArchiveSpan, page: int, fmt: FeedFormat) -> Document | None:
        """Archive page `page` in `fmt`, or None (no such page, or the state cannot say)."""
        return await self._on_thread(self.render, span, page, fmt, True)

    def render(self, span: ArchiveSpan, page: int, fmt: FeedFormat,
               soon: bool = False) -> Document | None:
        """The page, from the state (blocking: `build` calls it directly). `soon`: returned
        with its identity variant alone, its gzip and br made by the compressor threads
        meanwhile (a request gets the best coding made: handlers._coded): a page changed
        by an edit is served ~3 ms sooner."""
        if not 1 <= page <= span.pages:
            return None
        try:
            store = self._state()
            # One read transaction: the rows, the dates and the texts of one committed state
            # (the pipeline commits on its own connection meanwhile).
            with store.reading():
                return self._render(store, span, page, fmt, soon)
        except StoreError as e:
            log.error("%s", e)
            self._close_store()
            return None

    def _render(self, store: Store, span: ArchiveSpan, page: int, fmt: FeedFormat,
                soon: bool = False) -> Document | None:
        assert self.info is not None
        per_page = span.page_entries
        rows = store.slot_rows((page - 1) * per_page + 1, page * per_page)
        revisions = store.load_revisions((page_revision_path(page, per_page),))
        recorded = [*revisions.values(), *store.archive_shifts(page)]
        now_us = to_micros(datetime.now(UTC))
        newest = max((row[5] if row[2] == HOLDS and row[5] is not None else
                      row[3] if row[2] == DELETED else 0 for row in rows),
                     default=0) or to_micros(self.info.created)
        latest = max(recorded, key=lambda r: r.modified, default=None)
        if latest is not None and latest.modified >= newest:
            modified, previous = latest.modified, latest.previous
        else:
            modified, previous = newest, None
        modified = min(modified, now_us)
        cached = self._cache.get((page, fmt.extension))
        served = cached[0][1] if cached is not None else None
        if served is not None and served < modified and (previous is None or served > previous):
            # The version this process served last, when the page's date came from an entry's
            # `updated` with no revision recorded yet: a reader holding its second must not
            # get 304 for If-Modified-Since (make_document's `previous`; seen in CI when an
            # edit landed within the second of the page's first date).
            previous = served
        key = (tuple(rows), modified, previous)
        if cached is not None and cached[0] == key:
            return cached[1]
        items = self._items(store, rows)
        if items is None:
            return None
        # Full: every slot of it numbered, in the state too (a page is never called immutable
        # while the state lacks some of its slots).
        full = page <= span.count // per_page and len(rows) == per_page
        deleted = refs(self.info.id, [(row[1], row[3]) for row in rows if row[2] == DELETED],
                       entry_id)
        info = page_info(self.info, page, per_page, full, deleted)
        updated = max([feed_updated(info, items), *(when for _, when in deleted)])
        # Each format's renderer keeps the XML of the page's entries between renders: a page
        # an edit changed renders one entry anew, not fifty (its bytes are the one pass's:
        # test_archives). It keeps only the last page's entries.
        renderer = self._renderers.get(fmt.extension)
        if renderer is None:
            renderer = self._renderers[fmt.extension] = fmt.make_renderer(self.info)
        body = renderer.render(items, updated, info=info)
        renderer.retain(items)
        document = (make_document_soon if soon else make_document)(
            fmt.path(info.feed_path), fmt.content_type, body, from_micros(modified),
            self.config.server.cache_max_age,
            previous=from_micros(previous) if previous is not None else None,
            cache_control=IMMUTABLE if full else None,
            link=discovery_link(info.hubs, fmt.url(info)))
        self._cache.put((page, fmt.extension), key, document)
        return document

    def _items(self, store: Store, rows: Sequence[tuple[int, str, int, int, int | None,
                                                        int | None, str | None]]
               ) -> list[Item] | None:
        assert self.info is not None
        items, made = [], {}
        for _, slug, state, _, published, updated, content_hash in rows:
            if state != HOLDS or published is None or updated is None:
                continue  # deleted (Atom: a tombstone), left, or not published now
            # The last page's items are kept: an edit reads and parses one entry again, not
            # fifty (a stamp's content hash and dates name its text: updated moves with it).
            key = (slug, published, updated, content_hash)
            item = self._kept_items.get(key)
            if item is None:
                try:
                    content = store.load_content(slug)
                except StoreError as e:
                    log.error("%s", e)
                    return None
                entry = (rebuild_entry(slug, content, self.options) if content is not None
                         else None)
                if entry is None:
                    continue  # no text kept for it (a state from before texts were kept)
                item = make_item(self.info, entry, published, from_micros(updated),
                                 self.config.entry_link)
            made[key] = item
            items.append(item)
        self._kept_items = made
        return items

