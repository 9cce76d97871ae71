"""The facade: seeds folder + state → snapshots. One call per batch of changes.

`scan()` reconciles the whole folder; `update(paths)` looks only at the named files. Both parse
what changed, give every published slug its durable id and dates, render once, and return the
new Snapshot. Work is proportional to what changed plus the shown entries, whatever the
number of seeds: owners, dates and the order of entries are kept up to date incrementally, and
only the entries the documents show are held in memory as text. Dates stay in the state and
are read for the slugs a batch touches (an index on `updated` answers clash checks), so memory
per seed is its file's record, its owner and its place in the order. Runs in one worker thread;
never call it from two threads at once.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import functools
import heapq
import logging
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import Rejection, StoreError
from feedsvc.ingest.catalog import Catalog, Changes, Record
from feedsvc.ingest.parser import ParseOptions, rebuild_entry, stored_content
from feedsvc.ingest.source import FolderMissing
from feedsvc.logtext import escape, is_utf8
from feedsvc.model import (
    US,
    Content,
    Document,
    Entry,
    FeedInfo,
    Item,
    Snapshot,
    Stamp,
    from_micros,
    to_micros,
)
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.docformat import feed_updated
from feedsvc.publish.moments import Moments
from feedsvc.publish.pages import HTML_TYPE, render_entry, render_index
from feedsvc.publish.registry import INDEX, MAIN, TAGS, entry_path, formats
from feedsvc.publish.snapshot import Rendered, make_documents, make_snapshot
from feedsvc.state.store import Store
from feedsvc.timerange import datetime_of

log = logging.getLogger("feedsvc")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_options(config: Config) -> ParseOptions:
    feed = config.feed
    return ParseOptions.from_feed(feed.timezone, feed.dayfirst, feed.language, feed.base_url)


def derive_feed_id(base_url: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base_url)}"


@functools.lru_cache(maxsize=4096)
def entry_id(feed_id: str, slug: str) -> str:
    """Stable forever for a slug within a feed: not from the file name, not from the content."""
    return f"urn:uuid:{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, feed_id), slug)}"


#: Texts of entries shown by tag documents (not by the main ones) kept between batches.
TAG_ENTRIES_KEPT = 1024


@functools.lru_cache(maxsize=1024)
def tag_feed_id(feed_id: str, tag: str) -> str:
    """A tag's documents' id: stable, and never an entry's (slugs have no ':')."""
    return f"urn:uuid:{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, feed_id), 'tag:' + tag)}"


#: Files read per chunk of a full scan (the text of one chunk at most is held at once).
SCAN_CHUNK = 500
#: Above this many changes in one batch, the order of entries is rebuilt by one sort rather
#: than kept by insertions (a cold start, a burst).
_RESORT_ABOVE = 64


class Publisher:
    def __init__(self, config: Config, store: Store, clock: Clock = utc_now) -> None:
        self.config = config
        self.store = store
        self.options = parse_options(config)
        self.catalog = Catalog(config.paths.seeds, config.watch.max_seed_bytes, self.options)
        self._clock = clock
        # Every slug's dates stay in the state; memory holds those not written yet and the
        # few the documents show (at 100,000 seeds, holding them all cost ~25 MB).
        self._stamps = StampTable(store)
        # slug → the file name claiming it, or the sorted names when several do (duplicates).
        # One string, not a list, in the usual case: a compact entry per seed.
        self._claims: dict[str, str | list[str]] = {}
        self._claim_of: dict[str, str] = {}  # file name → slug it claims
        self._owner: dict[str, str] = {}  # slug → file name publishing it
        # Published slugs, newest `published` first, then by slug; beside them, each one's
        # -published (the sort key), so that keeping the order needs no stamp.
        self._order: list[str] = []
        self._order_keys = array("q")
        # Changes to the order put off by a big batch and applied at once by _finish.
        self._order_new: dict[str, int] = {}  # slug → published
        self._order_gone: dict[str, int] = {}  # slug → published, where it was
        self._errors: dict[str, Rejection] = {}  # file name → why it cannot be used
        self._duplicates: dict[str, Rejection] = {}  # file name → its duplicate slug
        self._entries: dict[str, Entry] = {}  # text of the shown entries only
        self._unsaved_content: dict[str, Content] = {}
        self._draft_files: set[str] = set()  # file names of drafts (they claim no slug)
        # Per-tag documents: rendered again only for the tags a batch touches.
        self._tag_docs: dict[str, tuple[Document, ...]] = {}
        self._tag_items: dict[str, tuple[Item, ...]] = {}
        self._dirty_tags: set[str] = set()
        self._visible_at = 0  # the time the visible entries were last chosen for
        self._tag_entries: OrderedDict[str, Entry] = OrderedDict()  # texts tag documents show
        self._feeds: list[Document] = []
        # Each document's Last-Modified, kept in the state with a hash of its bytes.
        self._dates = DocumentDates(store)
        # slug → its `updated` before this batch, for the entries whose stamp the batch moved.
        self._moved_pages: dict[str, int] = {}
        # Whether the entries of files deleted while feedsvc was stopped are still to remove.
        self._unswept = True
        # (changed, touched slugs, now) of batches absorbed but not yet logged and written.
        self._uncommitted: list[tuple[dict[str, str], set[str], int]] = []
        self._shown: tuple[Item, ...] = ()
        self._pages: dict[str, Document] = {}
        self._reported: set[Rejection] = set()
        self._rejected: tuple[Rejection, ...] = ()
        self._snapshot = Snapshot()
        self.info = self._feed_info()
        # One renderer per registered format (the registry's order), for every feed document.
        self._renderers = [(fmt, fmt.make_renderer(self.info)) for fmt in formats()]

    @classmethod
    def open(cls, config: Config, clock: Clock = utc_now) -> Publisher:
        return cls(config, Store.open(config.paths.state), clock)

    def close(self) -> None:
        self.catalog.close()
        self.store.close()

    # -- the two entry points -------------------------------------------------------------

    def scan(self, budget_s: float | None = None) -> Snapshot:
        """Make what is published equal to what is in the seeds folder (with a parsing
        budget: the files not compared once it is spent are left in `catalog.left_over`)."""
        now = self._clock()
        try:
            # In chunks: a cold start of many seeds never holds all their text at once; each
            # chunk is written to the state in one transaction, then let go.
            for changes in self.catalog.scan(chunk=SCAN_CHUNK, budget_s=budget_s):
                self._absorb_or_retry(changes, now)
                del changes
                _give_back_memory()
            if self._unswept:
                self._sweep_gone(now)
        except FolderMissing:
            # An unmounted folder is not a reason to unpublish everything: keep the last set.
            if self._snapshot.seeds_readable:
                self._snapshot = replace(self._snapshot, seeds_readable=False)
            self._retry_writes()
            return self._snapshot
        return self._finish({}, now, seeds_readable=True)

    def _sweep_gone(self, now: datetime) -> None:
        """After the first full scan: the entries the state still has published whose file is
        gone (deleted while feedsvc was stopped) are removed, as if their deletion had been
        seen; else their pages and tag feeds, read from the state, would go on showing them.
        Put off while some seed could not be read for lack of descriptors, or was left for the
        next batch by a parsing budget (its entry is not gone)."""
        if self.catalog.deferred or self.catalog.left_over:
            return
        try:
            live = self.store.live_slugs()
        except StoreError as e:
            log.error("%s", e)
            return
        gone = [slug for slug in live if slug not in self._owner]
        del live
        for start in range(0, len(gone), SCAN_CHUNK):
            part = gone[start:start + SCAN_CHUNK]
            self._dirty_tags |= self._tags_of(part)
            changed = self._resolve(part, {}, now, resort=True)
            self._uncommitted.append((changed, set(part), int(now.timestamp())))
            self._commit()
        self._unswept = False

    def update(self, paths: Iterable[Path], budget_s: float | None = None) -> Snapshot:
        """Apply changes to the named files only (created, modified, deleted or renamed).
        With no paths, it only retries writing the state. With a parsing budget, the files
        not read once it is spent are left in `catalog.left_over` (see Catalog.update)."""
        return self._apply(self.catalog.update(paths, budget_s), self._snapshot.seeds_readable)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def pending_writes(self) -> int:
        """Changes kept in memory because the state could not be written."""
        return len(self._stamps.unsaved) + len(self._dates.unsaved)

    @property
    def needs_retry(self) -> bool:
        """Whether the state waits for a write that works (changes, or just its writability)."""
        return (bool(self._stamps.unsaved) or bool(self._dates.unsaved)
                or not self.store.writable)

    # -- one batch --------------------------------------------------------------------------

    def _apply(self, changes: Changes, seeds_readable: bool) -> Snapshot:
        now = self._clock()
        try:
            # Written by _finish, with the documents' new dates: one transaction per batch.
            fresh = self._absorb(changes, now, write=False)
            return self._finish(fresh, now, seeds_readable)
        except Exception:
            # The catalog already holds these files' new records: without this, a failed
            # batch's changes would be lost until each file changes again.
            self.catalog.retry(changes)
            raise

    def _absorb_or_retry(self, changes: Changes, now: datetime) -> dict[str, Entry]:
        """_absorb; if it fails all the same, the catalog hands these files out again with
        the next batch or scan."""
        try:
            return self._absorb(changes, now)
        except Exception:
            self.catalog.retry(changes)
            raise

    def _absorb(self, changes: Changes, now: datetime, write: bool = True) -> dict[str, Entry]:
        """Take a batch of file changes into owners, dates and the state, and log them (a
        cold start logs chunk by chunk, holding nothing per seed until the end). `write=False`
        leaves the logging and the write to `_commit`."""
        fresh: dict[str, Entry] = {}  # file name → entry parsed in this batch
        touched: set[str] = set()
        for name, (record, entry) in changes.items():
            if entry is not None:
                fresh[name] = entry
            self._errors.pop(name, None)
            self._draft_files.discard(name)
            if record is not None and record.error is not None:
                self._errors[name] = record.error
            if record is not None and record.draft:
                self._draft_files.add(name)
            touched.update(self._reclaim(name, self._claim_for(name, record)))
            if record is not None and record.slug is not None:
                touched.add(record.slug)  # same slug, maybe new content
        # The tags these entries had and have: their documents are rendered again.
        self._dirty_tags |= self._tags_of(touched)
        changed = self._resolve(sorted(touched), fresh, now,
                                resort=len(changes) > _RESORT_ABOVE)
        self._uncommitted.append((changed, touched, int(now.timestamp())))
        if write:
            # A scan's chunk is committed now: the pages its changes moved go with it (an
            # entry that the scan's render then shows is dated again by its bytes, forward).
            self._date_unshown_pages(self._shown, to_micros(now))
            self._commit()
            self._stamps.retain(item.slug for item in self._shown)  # memory stays bounded
        return fresh

    def _date_unshown_pages(self, shown: tuple[Item, ...], now_us: int) -> None:
        """The entries a batch changed that no feed shows: their pages are made from the state
        on request (longtail.py), never rendered here, so their Last-Modified is moved forward
        here, in the state, without rendering (RFC 9110 §13.1.3: a date-only change must not
        get a 304 for If-Modified-Since)."""
        moved, self._moved_pages = self._moved_pages, {}
        for item in shown:
            moved.pop(item.slug, None)  # rendered by _render, dated by its bytes
        if not moved:
            return
        paths = {slug: entry_path(slug) for slug in moved}
        self._dates.load(paths.values())
        self._stamps.load(moved)
        for slug, before in moved.items():
            if (stamp := self._stamps.get(slug)) is not None:
                self._dates.touch(paths[slug], stamp.updated, before, now_us)

    def _commit(self) -> None:
        """Log what the absorbed changes did and write them to the state (with the documents'
        dates rendered so far); then the tags the touched entries have now, from the state."""
        uncommitted, self._uncommitted = self._uncommitted, []
        for changed, _, now in uncommitted:
            self._report_changes(changed, now)
        self._retry_writes()
        for _, touched, _ in uncommitted:
            self._dirty_tags |= self._tags_of(touched)

    def _finish(self, fresh: dict[str, Entry], now: datetime, seeds_readable: bool) -> Snapshot:
        """Log, and render what changed: the capped documents if what they show did, and the
        documents of the tags the batch touched."""
        self._apply_order_changes()
        now_ts = int(now.timestamp())
        start = self._visible_from(now_ts)
        appeared = self._appeared(start, now_ts, fresh)
        # Before `rejected`: an entry that cannot be shown is rejected by these two.
        shown = self._shown_items(fresh, start)
        now_us = to_micros(now)
        feeds = (self._render(shown, now_us) if shown != self._shown or not self._feeds
                 else None)
        self._date_unshown_pages(shown, now_us)
        # The batch's stamps and texts with the capped documents' dates: one transaction,
        # before the snapshot is handed out. Tag documents read their entries from the state,
        # so they come after it (and their dates in a second one, only when a tag changed).
        self._commit()
        self._stamps.retain(item.slug for item in shown)  # memory stays bounded
        tags_changed = self._render_tags(now_ts, now_us)
        rejected = tuple(sorted((*self._errors.values(), *self._duplicates.values()),
                                key=lambda e: (Path(e.path).name, e.line)))
        self._report(rejected, appeared)
        published = len(self._owner) - start
        scheduled = tuple((slug, _datetime(-key)) for slug, key in
                          zip(reversed(self._order[:start]),
                              reversed(self._order_keys[:start]), strict=True))
        draft_count = len(self._draft_files)
        if (shown == self._shown and rejected == self._rejected and not tags_changed
                and published == self._snapshot.published_count and self._snapshot.documents):
            old = self._snapshot
            if (old.draft_count, old.scheduled, old.seeds_readable) != (draft_count, scheduled,
                                                                   seeds_readable):
                self._snapshot = replace(old, draft_count=draft_count, scheduled=scheduled,
                                         seeds_readable=seeds_readable)
            return self._snapshot  # nothing shown changed: same object, no swap, same ETags
        if feeds is not None:
            self._feeds = feeds
        self._shown, self._rejected = shown, rejected
        kept = {*shown, *(i for items in self._tag_items.values() for i in items)}  # hashed once
        for _, renderer in self._renderers:
            renderer.retain(kept)
        self._snapshot = make_snapshot(
            documents=[*self._feeds, *self._pages.values(),
                       *(doc for docs in self._tag_docs.values() for doc in docs)],
            published_count=published,
            rejected=rejected,
            changed_at=now,
            seeds_readable=seeds_readable,
            generation=self._snapshot.generation + 1,
            draft_count=draft_count,
            scheduled=scheduled,
        )
        self._dates.retain(self._snapshot.documents)
        if self._dates.unsaved and self.store.writable:
            self._retry_writes()  # the tag documents' new dates
        return self._snapshot

    def next_due(self) -> datetime | None:
        """When the next scheduled entry is to appear (None: none is scheduled). The caller
        applies an empty batch then: `update(())`."""
        start = self._visible_from(int(self._clock().timestamp()))
        return _datetime(-self._order_keys[start - 1]) if start else None

    def _visible_from(self, now: int) -> int:
        """Index in the order of the first entry published by `now`: before it, scheduled."""
        return bisect.bisect_left(self._order_keys, -now)

    def _appeared(self, start: int, now: int, fresh: dict[str, Entry]) -> list[str]:
        """The scheduled entries whose time came since the last batch (their tags' documents
        change with them): dated by their author, and not just dropped or edited."""
        before, self._visible_at = self._visible_at, max(self._visible_at, now)
        if not before or now <= before:
            return []
        appeared = [
            slug for slug in self._order[start:bisect.bisect_left(self._order_keys, -before,
                                                                  start)]
            if (owner := self._owner[slug]) not in fresh
            and (record := self.catalog.records.get(owner)) is not None
            and record.date is not None]
        self._dirty_tags |= self._tags_of(appeared)
        return appeared

    def _tags_of(self, slugs: Iterable[str]) -> set[str]:
        slugs = list(slugs)
        if not slugs:
            return set()
        try:
            return self.store.tags_of(slugs)
        except StoreError as e:
            log.error("%s", e)
            return set()

    # -- per-tag documents ------------------------------------------------------------------

    def _render_tags(self, now: int, now_us: int) -> bool:
        """Render the documents of the tags touched since the last batch; True if any of
        them changed. Which entries a tag shows comes from the state (newest published
        first): no tag list per seed is held in memory."""
        if not self._dirty_tags:
            return False
        dirty, self._dirty_tags = sorted(self._dirty_tags), set()
        limit = self.config.feed.max_entries
        rendered: list[Rendered] = []
        paths_of: dict[str, list[str]] = {}  # tag → the paths of its documents
        changed = False
        for tag in dirty:
            try:
                rows = self.store.tagged(tag, now, limit)
                self._stamps.load(slug for slug, _ in rows)
            except StoreError as e:
                log.error("%s; the documents of tag %s are not updated", e, tag)
                continue
            items = tuple(item for slug, _ in rows if (item := self._tag_item(slug)))
            if not items:
                changed |= self._tag_docs.pop(tag, None) is not None
                self._tag_items.pop(tag, None)
                continue
            if items == self._tag_items.get(tag):
                continue
            info = self._tag_info(tag, rows[0][1])
            updated = feed_updated(info, items)
            feed_documents = self._feed_documents(info, items, updated, now_us)
            rendered += feed_documents
            self._tag_items[tag] = items
            paths_of[tag] = [doc.path for doc in feed_documents]
        documents = ({doc.path: doc for doc in
                      make_documents(rendered, self.config.server.cache_max_age)}
                     if rendered else {})
        for tag, paths in paths_of.items():
            self._tag_docs[tag] = tuple(documents[path] for path in paths)
        return changed or bool(documents)

    def _feed_documents(self, info: FeedInfo, items: list[Item] | tuple[Item, ...],
                     updated: datetime, now_us: int, changed: bool = False) -> list[Rendered]:
        """The feed documents of `info` (the feed's, or a tag's), one per registered format,
        dated by `DocumentDates`: a format whose bytes carry the date is rendered as a
        function of it."""
        self._dates.load([fmt.path(info.feed_path) for fmt, _ in self._renderers])
        rendered = []
        for fmt, renderer in self._renderers:
            render = functools.partial(renderer.render, items, info=info)
            rendered.append(self._dates.dated(fmt.path(info.feed_path), fmt.content_type,
                                            updated, now_us,
                                            render if fmt.dated else render(updated), changed))
        return rendered

    def _tag_item(self, slug: str) -> Item | None:
        entry = self._entries.get(slug) or self._tag_entries.get(slug)
        if entry is None:
            entry = self._load_entry(slug)
            if entry is None:
                return None
            self._tag_entries[slug] = entry
            while len(self._tag_entries) > TAG_ENTRIES_KEPT:
                self._tag_entries.popitem(last=False)
        stamp = self._stamps.get(slug)
        return None if stamp is None else self._item_or_reject(entry, stamp)

    def _tag_info(self, tag: str, label: str) -> FeedInfo:
        return replace(self.info, id=tag_feed_id(self.info.id, tag),
                       title=f"{self.info.title} — {label}", feed_path=f"{TAGS}{tag}")

    def _item_or_reject(self, entry: Entry, stamp: Stamp) -> Item | None:
        """The item, or None, its file rejected, when it cannot be shown: one entry never
        stops the others from publishing."""
        try:
            return self._item(entry, stamp)
        except Exception as e:
            self._reject_unexpected(self._owner.get(entry.slug) or stamp.file_name, e,
                                    f"cannot show {entry.slug}")
            return None

    def _reject_unexpected(self, name: str | None, error: Exception, doing: str) -> None:
        """An unexpected error (a bug some input found) while handling one file: the file is
        rejected, named, until it changes; the batch goes on without it."""
        log.debug("%s failed", doing, exc_info=True)
        if name:
            self._errors[name] = Rejection(
                str(self.catalog.folder / name), 1,
                f"{doing}: unexpected error {type(error).__name__}: {escape(str(error))} (a "
                "bug; run with -v for the traceback, and report it)")

    def _item(self, entry: Entry, stamp: Stamp) -> Item:
        return Item(entry=entry, id=entry_id(self.info.id, entry.slug),
                    link=entry.link or self.config.entry_link(entry.slug),
                    published=_datetime(stamp.published), updated=from_micros(stamp.updated))

    def _claim_for(self, name: str, record: Record | None) -> str | None:
        """The slug a file claims: its own, or, while it is broken, the slug of its last good
        version (which stays published until the file is fixed or deleted)."""
        if record is None or record.draft:
            return None  # a draft publishes nothing, not even a last good version
        if record.slug is not None:
            return record.slug
        # Broken now: the slug it published last (it still claims it), from memory or, after a
        # restart, from the state.
        slug = self._claim_of.get(name)
        if slug is None and is_utf8(name):  # a name SQLite cannot take published nothing
            try:
                slug = self.store.last_slug_of(name)
            except StoreError as e:
                log.error("%s", e)
        try:
            stamp = self._stamps.get(slug) if slug else None
        except StoreError as e:
            log.error("%s", e)
            return None
        return slug if stamp is not None and stamp.file_name == name else None

    def _reclaim(self, name: str, slug: str | None) -> tuple[str, ...]:
        """Move a file's claim; returns the slugs whose owner may change."""
        old = self._claim_of.get(name)
        if old == slug:
            return (slug,) if slug else ()
        if old is not None:
            claimants = self._claims[old]
            if isinstance(claimants, str):
                del self._claims[old]
            else:
                claimants.remove(name)
                if len(claimants) == 1:
                    self._claims[old] = claimants[0]
            del self._claim_of[name]
            self._duplicates.pop(name, None)
        if slug is not None:
            claimants = self._claims.get(slug)
            if claimants is None:
                self._claims[slug] = name
            elif isinstance(claimants, str):
                self._claims[slug] = sorted((claimants, name))
            else:
                bisect.insort(claimants, name)
            self._claim_of[name] = slug
        return tuple(s for s in (old, slug) if s)

    def _resolve(self, slugs: list[str], fresh: dict[str, Entry], clock: datetime,
                 resort: bool) -> dict[str, str]:
        """New owners and dates for the touched slugs; returns what happened to each
        ("published", "updated", "removed", "republished")."""
        now, now_us = int(clock.timestamp()), to_micros(clock)
        changed: dict[str, str] = {}
        owners = {}
        self._stamps.load(slugs)  # one query for the batch, not one per slug
        for slug in slugs:
            claimants = self._claims.get(slug)
            if isinstance(claimants, str):
                claimants = [claimants]
            if claimants:
                previous = self._stamps.get(slug)
                owners[slug] = choose_owner(claimants, previous.file_name if previous else None)
                for name in claimants:
                    if name != owners[slug] and name not in self._errors:
                        self._duplicates[name] = Rejection(
                            str(self.catalog.folder / name), 1,
                            f"duplicate slug '{slug}': {owners[slug]} already publishes it")
                    else:
                        self._duplicates.pop(name, None)
        # Dates are given in file name order, so that clashes resolve the same way anywhere.
        for slug in sorted(slugs, key=lambda s: (owners.get(s, ""), s)):
            previous = self._stamps.get(slug)
            owner = owners.get(slug)
            was_owned = self._owner.pop(slug, None) is not None
            if owner is None:
                if was_owned and previous is not None:
                    self._order_drop(slug, previous.published, resort)
                if previous is not None and previous.live:
                    self._stamps.put(replace(previous, live=False))
                    changed[slug] = "removed"
                continue
            self._owner[slug] = owner
            record = self.catalog.records[owner]
            if record.slug is None:  # a broken file's last good version: nothing moves
                content_hash, seen_at = previous.content_hash if previous else "", now
                date = updated = None
            else:
                content_hash, seen_at = record.content_hash, min(record.mtime, now)
                date, updated = record.date, record.updated
            stamp = next_stamp(previous, slug, content_hash, owner, seen_at, self._stamps.taken,
                               date, updated, now_us)
            if record.slug is not None and record.content_hash is not stamp.content_hash:
                # One string for both (equal after a restart, but read twice): a seed's
                # footprint is what 100,000 seeds multiply.
                self.catalog.records[owner] = replace(record, content_hash=stamp.content_hash)
            if not was_owned:
                self._order_add(slug, stamp.published, resort)
            elif previous is not None and previous.published != stamp.published:
                # The author moved the date: the entry moves in the order.
                self._order_drop(slug, previous.published, resort)
                self._order_add(slug, stamp.published, resort)
            if stamp == previous:
                continue
            self._stamps.put(stamp)
            if previous is not None:
                # Its page changed (text, dates or link): if no feed shows it, its page is
                # made from the state on request and is dated by _date_unshown_pages.
                self._moved_pages.setdefault(slug, previous.updated)
            entry = fresh.get(owner)
            if entry is None and record.slug is not None and (
                    previous is None or previous.content_hash != stamp.content_hash):
                # A file whose text was not kept takes the slug over: read it now.
                entry = self.catalog.read_entry(owner)
                if entry is not None:
                    fresh[owner] = entry
            if previous is None or previous.content_hash != stamp.content_hash:
                changed[slug] = "published" if previous is None else "updated"
                if entry is not None:
                    self._unsaved_content[slug] = stored_content(entry, owner)
                self._entries.pop(slug, None)  # the text shown must be the new one
                self._tag_entries.pop(slug, None)
            elif not previous.live:
                changed[slug] = "republished"
        return changed

    # -- the order of entries -----------------------------------------------------------------

    def _order_add(self, slug: str, published: int, later: bool) -> None:
        """Place a slug that became published; `later`: in a big batch, by _finish."""
        if self._order_gone.get(slug) == published:
            del self._order_gone[slug]  # dropped earlier in this batch: it is still in place
        elif later:
            self._order_new[slug] = published
        else:
            start, end = self._order_span(published)
            index = bisect.bisect_left(self._order, slug, start, end)
            self._order.insert(index, slug)
            self._order_keys.insert(index, -published)

    def _order_drop(self, slug: str, published: int, later: bool) -> None:
        if self._order_new.pop(slug, None) is not None:  # added earlier in this batch
            return
        if later:
            self._order_gone[slug] = published
            return
        start, end = self._order_span(published)
        index = bisect.bisect_left(self._order, slug, start, end)
        if index < end and self._order[index] == slug:
            del self._order[index]
            del self._order_keys[index]

    def _order_span(self, published: int) -> tuple[int, int]:
        """Where the slugs published in this second are (sorted by slug within it)."""
        start = bisect.bisect_left(self._order_keys, -published)
        return start, bisect.bisect_right(self._order_keys, -published, start)

    def _apply_order_changes(self) -> None:
        """Apply what big batches put off: one pass over the order instead of one insertion
        each (a cold start of 100,000 seeds would move the whole list 100,000 times)."""
        if self._order_gone:
            kept = [(slug, key) for slug, key in zip(self._order, self._order_keys, strict=True)
                    if slug not in self._order_gone]
            self._order = [slug for slug, _ in kept]
            self._order_keys = array("q", (key for _, key in kept))
            self._order_gone.clear()
        if not self._order_new:
            return
        new = self._order_new
        # By slug, then (stable) newest first: the same order as by (-published, slug), with
        # no key tuple per slug.
        added = sorted(new)
        added.sort(key=new.__getitem__, reverse=True)
        if self._order:
            merged = list(heapq.merge(zip(self._order_keys, self._order, strict=True),
                                      ((-new[slug], slug) for slug in added)))
            self._order = [slug for _, slug in merged]
            self._order_keys = array("q", (key for key, _ in merged))
        else:
            self._order = added
            self._order_keys = array("q", (-new[slug] for slug in added))
        self._order_new = {}

    def _shown_items(self, fresh: dict[str, Entry], start: int) -> tuple[Item, ...]:
        """The newest entries published by now (from `start` in the order), as the documents
        show them; only their text stays in memory."""
        items = []
        entries: dict[str, Entry] = {}
        for slug in self._order[start:start + self.config.feed.max_entries]:
            owner = self._owner[slug]
            entry = fresh.get(owner)
            if entry is None or entry.slug != slug:  # a broken owner shows its last good text
                entry = self._entries.get(slug) or self._load_entry(slug)
            if entry is None:
                continue  # no text anywhere (a state written before texts were kept)
            entries[slug] = entry
            stamp = self._stamps.get(slug)
            assert stamp is not None  # a published slug has its stamp
            if (item := self._item_or_reject(entry, stamp)) is not None:
                items.append(item)
        self._entries = entries
        return tuple(items)

    def _load_entry(self, slug: str) -> Entry | None:
        content = self._unsaved_content.get(slug)
        if content is None:
            try:
                content = self.store.load_content(slug)
            except StoreError as e:
                log.error("%s", e)
                return None
        entry = None if content is None else rebuild_entry(slug, content, self.options)
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
            entry = self.catalog.read_entry(name)
            if entry is not None and entry.content_hash != stamp.content_hash:
                entry = None
        if entry is None:
            log.error("no text kept for %s; it is left out until %s changes", slug, name)
        return entry

    def _render(self, shown: tuple[Item, ...], now_us: int) -> list[Document]:
        """The capped documents (the feed in every registered format, the front page) and the
        pages of the shown entries that changed, compressed together."""
        info, items = self.info, list(shown)
        updated = feed_updated(info, items)
        old = {item.slug: item for item in self._shown}
        pages = [item for item in items if old.get(item.slug) != item]
        self._dates.load([INDEX, *(entry_path(item.slug) for item in pages)])
        # The feeds last rendered by this process showed other ids, dates or texts: their
        # bytes surely differ from those last dated, so each is rendered once, with its new
        # date, instead of first with the stored one to compare (a millisecond and a half of
        # every published change).
        changed = bool(self._shown) and _rendered_keys(self._shown) != _rendered_keys(shown)
        capped = [
            *self._feed_documents(info, items, updated, now_us, changed),
            self._dates.dated(INDEX, HTML_TYPE, updated, now_us, render_index(info, items)),
        ]
        rendered = capped + [self._dates.dated(entry_path(item.slug), HTML_TYPE, item.updated,
                                             now_us, render_entry(info, item))
                           for item in pages]
        documents = {doc.path: doc for doc in
                     make_documents(rendered, self.config.server.cache_max_age)}
        self._pages = {item.slug: documents.get(entry_path(item.slug)) or self._pages[item.slug]
                       for item in items}
        return [documents[doc.path] for doc in capped]

    def _retry_writes(self) -> None:
        unsaved = self._stamps.unsaved
        if not unsaved and not self._dates.unsaved:
            self.store.retry()
            return
        try:
            self.store.save_stamps(unsaved.values(), self._unsaved_content,
                                   self._dates.unsaved.values())
        except StoreError as e:
            # Keep serving from memory; the next successful write catches up. A corrupt state
            # was said once, plainly, when found: not again at every retry.
            (log.debug if self.store.corrupt else log.error)(
                "%s; %d change(s) kept in memory, retrying", e,
                len(unsaved) + len(self._dates.unsaved))
            return
        self._stamps.saved()
        self._unsaved_content.clear()
        self._dates.unsaved.clear()

    def _report_changes(self, changed: dict[str, str], now: int) -> None:
        """One log line per published, scheduled, updated or removed entry. A restart that
        finds everything as it was says nothing per entry."""
        restarting = not self._snapshot.documents
        for slug in sorted(changed):
            what = changed[slug]
            if what == "removed":
                log.info("removed %s", slug)
                continue
            # Only an author's date is ever ahead (from the record: looking up every stamp
            # of a cold start would hold them all in memory).
            record = self.catalog.records.get(self._owner[slug])
            date = record.date if record is not None else None
            if date is not None and date > now:
                log.info("scheduled %s for %s from %s", slug, _datetime(date).isoformat(),
                         self.catalog.folder / self._owner[slug])
            elif what != "republished" or not restarting:
                log.info("%s %s from %s", "published" if what == "republished" else what,
                         slug, self.catalog.folder / self._owner[slug])

    def _report(self, rejected: tuple[Rejection, ...], appeared: list[str]) -> None:
        """A line per scheduled entry that appeared, and per newly rejected seed."""
        for slug in appeared:
            log.info("published %s (scheduled)", slug)
        for error in rejected:
            if error not in self._reported:
                name = Path(error.path).name
                slug = self._claim_of.get(name)
                record = self.catalog.records.get(name)
                # Its last good version is shown unless the error is in showing it.
                if (name in self._errors and slug and self._owner.get(slug) == name
                        and (record is None or record.slug is None)):
                    log.warning("%s (still publishing its last good version of %s)",
                                error, slug)
                else:
                    log.warning("%s", error)
        self._reported = set(rejected)

    def _feed_info(self) -> FeedInfo:
        feed = self.config.feed
        created = int(self.store.setdefault_meta("created", str(int(self._clock().timestamp()))))
        feed_id = feed.id or self.store.setdefault_meta("feed_id", derive_feed_id(feed.base_url))
        return FeedInfo(
            id=feed_id,
            title=feed.title,
            subtitle=feed.subtitle,
            language=feed.language,
            author_name=feed.author_name,
            author_email=feed.author_email,
            base_url=feed.base_url,
            created=_datetime(created),
            feed_path=MAIN,
        )


class StampTable:
    """Every slug's stamp, read from the state when a batch needs it. Stamps not written yet
    (the state is not writable, or the batch is not over) are kept in memory and read first,
    so the state plus them is always the truth. Also holds a few recently used stamps."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.unsaved: dict[str, Stamp] = {}
        self._unsaved_at: dict[int, str] = {}  # updated → slug, of the unsaved stamps
        self._cache: dict[str, Stamp | None] = {}
        self.taken = Moments(self._recorded)

    def get(self, slug: str) -> Stamp | None:
        stamp = self.unsaved.get(slug)
        if stamp is not None:
            return stamp
        if slug not in self._cache:
            self._cache[slug] = self.store.stamps_of((slug,)).get(slug)
        return self._cache[slug]

    def load(self, slugs: Iterable[str]) -> None:
        """Read the stamps of these slugs at once, for the `get`s that follow."""
        missing = [slug for slug in slugs if slug not in self.unsaved and slug not in self._cache]
        if missing:
            found = self.store.stamps_of(missing)
            self._cache.update((slug, found.get(slug)) for slug in missing)

    def put(self, stamp: Stamp) -> None:
        """A stamp's new value, kept until `saved` says the state has it."""
        old = self.unsaved.get(stamp.slug)
        if old is not None and self._unsaved_at.get(old.updated) == stamp.slug:
            del self._unsaved_at[old.updated]
        self.unsaved[stamp.slug] = stamp
        self._unsaved_at[stamp.updated] = stamp.slug
        self.taken.settle(stamp.updated)
        self._cache[stamp.slug] = stamp

    def saved(self) -> None:
        """The state now holds every unsaved stamp."""
        self.unsaved.clear()
        self._unsaved_at.clear()

    def retain(self, slugs: Iterable[str]) -> None:
        """Forget the cached stamps but these (the ones the documents show)."""
        keep = {slug: self._cache[slug] for slug in slugs if slug in self._cache}
        self._cache = keep

    def _recorded(self, moment: int) -> bool:
        """Whether some slug's `updated` is this moment, in memory or in the state."""
        if moment in self._unsaved_at:
            return True
        # In the state, unless that slug has moved since (its unsaved stamp says where).
        return any(slug not in self.unsaved for slug in self.store.slugs_updated_at(moment))


def choose_owner(claimants: list[str], recorded: str | None) -> str:
    """Which of the files (sorted by name) claiming a slug publishes it: the one the state
    records while it still claims it, else the first by name."""
    return recorded if recorded in claimants else claimants[0]


def resolve_owners(records: Mapping[Path, Record], stamps: Mapping[str, Stamp]
                   ) -> tuple[dict[str, Path], tuple[Rejection, ...]]:
    """All owners and rejected seeds at once, as `feedsvc check` reports them."""
    claims: dict[str, list[str]] = {}
    errors: list[Rejection] = []
    folder = {path.name: path for path in records}
    for path in sorted(records, key=lambda p: p.name):
        record = records[path]
        if record.error is not None:
            errors.append(record.error)
        elif record.slug is not None:
            claims.setdefault(record.slug, []).append(path.name)
    owners: dict[str, Path] = {}
    for slug, names in claims.items():
        stamp = stamps.get(slug)
        owner = choose_owner(names, stamp.file_name if stamp else None)
        owners[slug] = folder[owner]
        errors.extend(Rejection(str(folder[name]), 1,
                                f"duplicate slug '{slug}': {owner} already publishes it")
                      for name in names if name != owner)
    errors.sort(key=lambda e: (Path(e.path).name, e.line))
    return owners, tuple(errors)


def next_stamp(previous: Stamp | None, slug: str, content_hash: str, file_name: str,
               seen_at: int, taken: Moments, date: int | None = None,
               updated: int | None = None, now: int | None = None) -> Stamp:
    """The dates a slug has after this sighting. Pure, apart from updating `taken`.

    `seen_at`, `date` and `updated` (the author's) are Unix seconds; `now` (the clock) and the
    stamp's `updated` are microseconds; `now=None` sets no bound (tests).

    `published` is fixed at first sight (never after the clock), unless the author gives a
    `date` (their word, also when it changes later; in the future, the entry is scheduled).
    `updated` moves only when the content does, forward, by at least one microsecond, and
    never past the clock. No two slugs share a computed `updated` (feed validators flag that):
    a clash takes the nearest free microsecond (see Moments.allocate), never one after the
    clock. A computed `updated` is never before `published` (a post scheduled for later is
    updated when it appears). An author's `updated` is taken as it is, unless it is later than
    the clock: that is not true yet, so a new or changed text is stamped with the clock
    instead (stored, so deterministic from then on) and an unchanged one keeps its date.
    """
    hi = _NO_LIMIT if now is None else now
    if previous is None:
        # `published` is never pushed ahead of the clock (only an author's date is in the
        # future: that one is scheduled); the distinct moment goes to `updated`.
        published = date if date is not None else seen_at
        moment = _authored(updated, published, hi, taken, published * US)
        if moment is None:
            moment = taken.allocate(published * US, published * US, hi)
        return Stamp(slug, published, moment, content_hash, file_name)
    published = date if date is not None else previous.published
    if previous.content_hash != content_hash:
        lo = max(previous.updated + 1, published * US)
        moment = _authored(updated, published, hi, taken, lo)
        if moment is None:
            moment = taken.allocate(max(seen_at * US, lo), lo, hi)
        taken.release(previous.updated)
        return replace(previous, published=published, updated=moment,
                       content_hash=content_hash, file_name=file_name, live=True)
    if (updated is not None and updated * US != previous.updated
            and updated * US <= max(hi, published * US)):
        taken.release(previous.updated)
        return replace(previous, published=published, updated=updated * US, file_name=file_name,
                       live=True)
    if (published != previous.published and previous.updated < published * US
            and updated is None):
        # Moved later than its last change: it changes when it appears.
        moment = taken.allocate(published * US, published * US, hi)
        taken.release(previous.updated)
        return replace(previous, published=published, updated=moment, file_name=file_name,
                       live=True)
    if published != previous.published or previous.file_name != file_name or not previous.live:
        return replace(previous, published=published, file_name=file_name, live=True)
    return previous


#: No clock bound (pure uses of next_stamp in tests): year 9999 in microseconds.
_NO_LIMIT = 253_402_300_799 * US


def _authored(updated: int | None, published: int, hi: int, taken: Moments,
              lo: int) -> int | None:
    """The `updated` an author's `updated:` gives a new or changed text (None: none given).
    Later than the clock (or than a scheduled entry's own date), it is not true yet: the
    stamp gets the latest free moment up to the clock instead."""
    if updated is None:
        return None
    limit = max(hi, published * US)
    if updated * US <= limit:
        return updated * US
    return taken.allocate(limit, min(lo, limit), limit)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _give_back_memory() -> None:
    """Texts of a scan chunk are freed between long-lived small objects; glibc keeps such
    holes unless asked. Returning them after each chunk keeps a cold start's peak low."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _rendered_keys(items: Iterable[Item]) -> list[tuple[object, ...]]:
    """What of each item a feed document always shows: its id, link, dates and text (through
    its content hash), in order."""
    return [(item.id, item.link, item.published, item.updated, item.entry.content_hash)
            for item in items]


def _datetime(seconds: int) -> datetime:
    return datetime_of(seconds)  # clamped: a state may hold a date from before the range
