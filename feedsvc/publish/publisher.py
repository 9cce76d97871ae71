"""The facade: seeds folder + state → snapshots. One call per batch of changes.

`scan()` reconciles the whole folder; `update(paths)` looks only at the named files. Both parse
what changed, give every published slug its durable id and dates, render once, and return the
new Snapshot. Work is proportional to what changed plus the shown entries, whatever the
number of seeds: owners, dates and the order of entries are kept up to date incrementally, and
only the entries the documents show are held in memory as text. Dates stay in the state and
are read for the slugs a batch touches (an index on `updated` answers clash checks), so memory
per seed is its file's record, its owner and its place in the order. Runs in one worker thread;
never call it from two threads at once.

A batch goes through the parts in turn: `ownership` (which file publishes which slug),
`stamps` (every slug's dates), `timeline` (the order of entries, and scheduling), `texts` (the
shown entries), `rendering` (the capped documents and the pages, dated), `tagdocs` (per-tag
documents), `report` (the log lines) and `writes` (one transaction to the state).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import Rejection, StoreError
from feedsvc.ingest.catalog import Catalog, Changes, Record
from feedsvc.ingest.parser import stored_content
from feedsvc.ingest.source import FolderMissing
from feedsvc.model import Entry, Item, Snapshot, to_micros
from feedsvc.publish.archives import ArchiveDates, changed_documents, subscription_info
from feedsvc.publish.ids import hub_urls, make_feed_info, parse_options
from feedsvc.publish.ownership import Ownership
from feedsvc.publish.rendering import Rendering
from feedsvc.publish.report import Report
from feedsvc.publish.snapshot import make_snapshot
from feedsvc.publish.stamps import StampTable, next_stamp
from feedsvc.publish.tagdocs import TagDocuments
from feedsvc.publish.texts import EntryTexts
from feedsvc.publish.timeline import Timeline
from feedsvc.publish.tombstones import Tombstones, cutoff
from feedsvc.publish.writes import StateWrites
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


#: Files read per chunk of a full scan (the text of one chunk at most is held at once).
SCAN_CHUNK = 500
#: Above this many changes in one batch, the order of entries is rebuilt by one sort rather
#: than kept by insertions (a cold start, a burst).
_RESORT_ABOVE = 64
#: Slugs read at a time when looking for those whose file went while feedsvc was stopped.
_SWEEP_PART = 5000


class Publisher:
    """Runs each batch through the parts: the files' changes → slug ownership → dates → the
    timeline → the capped documents → the tags' documents → a snapshot."""

    def __init__(self, config: Config, store: Store, clock: Clock = utc_now) -> None:
        self.config = config
        self.store = store
        self.options = parse_options(config)
        self.catalog = Catalog(config.paths.seeds, config.watch.max_seed_bytes, self.options)
        self._clock = clock
        # Every slug's dates stay in the state; memory holds those not written yet and the
        # few the documents show (at 100,000 seeds, holding them all cost ~25 MB).
        self._stamps = StampTable(store)
        self._ownership = Ownership(self.catalog.folder, _StateHistory(store, self._stamps))
        self._timeline = Timeline()
        self.info = make_feed_info(config.feed, store.setdefault_meta, clock(), hub_urls(config))
        self._tombstones = _tombstones(config, store, clock)
        self._texts = EntryTexts(store, self._stamps, self._ownership, self.catalog.read_entry,
                                 self.options, self.info, config.entry_link)
        # Whether the entries of files deleted while feedsvc was stopped are still to remove.
        self._unswept = True
        # (changed, touched slugs, now) of batches absorbed but not yet logged and written.
        self._uncommitted: list[tuple[dict[str, str], set[str], int]] = []
        self._shown: tuple[Item, ...] = ()
        self._rejected: tuple[Rejection, ...] = ()
        self._snapshot = Snapshot()
        self._rendering = Rendering(self.info, store, config.server.cache_max_age,
                                    config.feed.max_entries)
        self._tags = TagDocuments(_TagSource(store, self._stamps, self._texts, self._tombstones),
                                  self.info, config.feed.max_entries, self._rendering.tag_feed,
                                  self._rendering.make_documents, **_tag_rules(config, clock))
        self._report = Report(self._ownership, self.catalog.records)
        self._archives = ArchiveDates(config, self.info, self._rendering.dates)  # RFC 5005
        self._writes = StateWrites(store, self._stamps, self._texts, self._rendering.dates,
                                   self._tombstones, self._archives)

    @classmethod
    def open(cls, config: Config, clock: Clock = utc_now) -> Publisher:
        return cls(config, Store.open(config.paths.state), clock)

    def close(self) -> None:
        self.catalog.close()
        self.store.close()

    # -- the two entry points -------------------------------------------------------------

    def scan(self, budget_s: float | None = None) -> Snapshot:
        """Publish what the seeds folder holds (past `budget_s`: see `catalog.left_over`)."""
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
            self._writes.write()
            return self._snapshot
        return self._finish({}, now, seeds_readable=True)

    def _sweep_gone(self, now: datetime) -> None:
        """After the first full scan: the entries the state still has published whose file is
        gone (deleted while feedsvc was stopped) are removed, as if their deletion had been
        seen (tombstones dated now). Put off while a seed could not be read (fds, budget)."""
        if (self.catalog.deferred or self.catalog.left_over
                or (gone := _gone(self.store, self._ownership.owner)) is None):
            return
        for start in range(0, len(gone), SCAN_CHUNK):
            part = gone[start:start + SCAN_CHUNK]
            self._tags.touch_entries(part)
            changed = self._resolve(part, {}, now, resort=True)
            self._uncommitted.append((changed, set(part), int(now.timestamp())))
            self._commit()
        self._unswept = False

    def update(self, paths: Iterable[Path], budget_s: float | None = None,
               coding: list[Future[None]] | None = None) -> Snapshot:
        """Apply changes to the named files only (created, modified, deleted or renamed);
        none: only retry writing the state. Files not read once `budget_s` is spent are left
        in `catalog.left_over`. `coding`: see `Rendering.deferring` (no wait for gzip, br)."""
        with self._rendering.deferring(coding):
            return self._apply(self.catalog.update(paths, budget_s),
                               self._snapshot.seeds_readable)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def take_changed(self) -> set[str]:
        """URL paths of the documents whose bytes changed since the last call (WebSub)."""
        return changed_documents(self._rendering.dates.take_redated(), self._archives.span)

    @property
    def pending_writes(self) -> int:
        """Changes kept in memory because the state could not be written."""
        return self._writes.pending

    @property
    def needs_retry(self) -> bool:
        """Whether the state waits for a write that works (changes, or just its writability)."""
        return self._writes.needed

    def next_due(self) -> datetime | None:
        """When the next scheduled entry is to appear or tombstone to leave the documents
        (None: neither). The caller applies an empty batch then: `update(())`."""
        return self._tombstones.sooner(self._timeline.next_due(int(self._clock().timestamp())))

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
        """_absorb; if it fails, the catalog hands these files out again (next batch, scan)."""
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
            touched.update(self._ownership.absorb(name, record))
            if record is not None and record.slug is not None:
                touched.add(record.slug)  # same slug, maybe new content
        # The tags these entries had and have: their documents are rendered again.
        self._tags.touch_entries(touched)
        changed = self._resolve(sorted(touched), fresh, now,
                                resort=len(changes) > _RESORT_ABOVE)
        self._uncommitted.append((changed, touched, int(now.timestamp())))
        if write:
            # A scan's chunk is committed now: the pages its changes moved go with it (an
            # entry that the scan's render then shows is dated again by its bytes, forward).
            self._rendering.date_unshown_pages(self._shown, self._stamps, to_micros(now))
            self._commit()
            self._stamps.retain(item.slug for item in self._shown)  # memory stays bounded
        return fresh

    def _resolve(self, slugs: list[str], fresh: dict[str, Entry], clock: datetime,
                 resort: bool) -> dict[str, str]:
        """New owners and dates for the touched slugs; returns what happened to each
        ("published", "updated", "removed", "republished")."""
        now, now_us = int(clock.timestamp()), to_micros(clock)
        changed: dict[str, str] = {}
        stamps, timeline, records = self._stamps, self._timeline, self.catalog.records
        stamps.load(slugs)  # one query for the batch, not one per slug
        owners = self._ownership.choose_owners(slugs)
        # Dates are given in file name order, so that clashes resolve the same way anywhere.
        for slug in sorted(slugs, key=lambda s: (owners.get(s, ""), s)):
            previous = stamps.get(slug)
            owner = owners.get(slug)
            was_owned = self._ownership.hand_over(slug, owner)
            if owner is None:
                self._archives.note(slug, previous, None)
                if was_owned and previous is not None:
                    timeline.drop(slug, previous.published, resort)
                if previous is not None and previous.live:
                    stamps.put(replace(previous, live=False))
                    changed[slug] = "removed"
                    if previous.published <= now:  # RFC 6721: readers may hold it
                        self._tombstones.bury(slug, now_us, now_us)
                continue
            record = records[owner]
            if record.slug is None:  # a broken file's last good version: nothing moves
                content_hash, seen_at = previous.content_hash if previous else "", now
                date = updated = None
            else:
                content_hash, seen_at = record.content_hash, min(record.mtime, now)
                date, updated = record.date, record.updated
            stamp = next_stamp(previous, slug, content_hash, owner, seen_at, stamps.taken,
                               date, updated, now_us)
            if previous is not None and not previous.live:
                self._tombstones.lift(slug)  # the same entry again (ids derive from slugs)
            if record.slug is not None and record.content_hash is not stamp.content_hash:
                # One string for both (equal after a restart, but read twice): a seed's
                # footprint is what 100,000 seeds multiply.
                records[owner] = replace(record, content_hash=stamp.content_hash)
            if not was_owned:
                timeline.add(slug, stamp.published, resort)
            elif previous is not None and previous.published != stamp.published:
                timeline.move(slug, previous.published, stamp.published, resort)
            self._archives.note(slug, previous, stamp)
            if stamp == previous:
                continue
            stamps.put(stamp)
            if previous is not None:
                self._rendering.moved(slug, previous.updated)
            entry = fresh.get(owner)
            if entry is None and record.slug is not None and (
                    previous is None or previous.content_hash != stamp.content_hash):
                # A file whose text was not kept takes the slug over: read it now.
                entry = self.catalog.read_entry(owner)
                if entry is not None:
                    fresh[owner] = entry
            if previous is None or previous.content_hash != stamp.content_hash:
                changed[slug] = "published" if previous is None else "updated"
                self._texts.replaced(slug, None if entry is None
                                     else stored_content(entry, owner))
                self._tags.forget_text(slug)
            elif not previous.live:
                changed[slug] = "republished"
        return changed

    def _commit(self) -> None:
        """Log what the absorbed changes did and write them to the state (with the documents'
        dates rendered so far); then the tags the touched entries have now, from the state."""
        uncommitted, self._uncommitted = self._uncommitted, []
        restarting = not self._snapshot.documents
        for changed, _, now in uncommitted:
            self._report.changes(changed, now, restarting)
        self._writes.write()
        for _, touched, _ in uncommitted:
            self._tags.touch_entries(touched)

    def _finish(self, fresh: dict[str, Entry], now: datetime, seeds_readable: bool) -> Snapshot:
        """Log, and render what changed: the capped documents if what they show did, and the
        documents of the tags the batch touched."""
        self._timeline.apply_changes()
        now_ts = int(now.timestamp())
        start = self._timeline.visible_from(now_ts)
        appeared = _appeared(self._timeline.appeared(start, now_ts), self._ownership.owner,
                             self.catalog.records, fresh)
        self._tags.touch_entries(appeared)  # their tags' documents change with them
        self._tags.touch_entries(self._tombstones.expire(to_micros(now)))
        # Before `rejected`: an entry that cannot be shown is rejected by these two.
        shown = self._texts.show(
            self._timeline.order[start:start + self.config.feed.max_entries], fresh)
        now_us = to_micros(now)
        rendering = self._rendering
        archive = self._archives.finish(self._timeline, start, now_us)
        info = subscription_info(rendering.info, archive)  # rel="prev-archive" to the newest
        relinked, rendering.info = info is not rendering.info, info
        tombstoned = self._tombstones.take_changed()  # always taken: it resets
        published_count = len(self._ownership.owner) - start
        # The front page links to the newest older page: a new one every `max_entries`
        # entries published (or one fewer, removed), whatever the entries shown.
        repaged = rendering.older_pages_of(published_count) != rendering.older_pages
        feeds = (rendering.render(self._shown, shown, now_us, self._tombstones.refs(self.info.id),
                                  published_count)
                 if tombstoned or shown != self._shown or relinked or not rendering.feeds
                 or repaged else None)
        rendering.date_unshown_pages(shown, self._stamps, now_us)
        # The batch's stamps and texts with the capped documents' dates: one transaction,
        # before the snapshot is handed out. Tag documents read their entries from the state,
        # so they come after it (and their dates in a second one, only when a tag changed).
        self._commit()
        self._stamps.retain(item.slug for item in shown)  # memory stays bounded
        tags_changed = self._tags.render(now_ts, now_us)
        rejected = self._ownership.rejected()
        self._report.batch(rejected, appeared)
        # What /healthz says beside the documents: a new value alone makes no new documents.
        aside = {"draft_count": len(self._ownership.drafts), "seeds_readable": seeds_readable,
                 "scheduled": self._timeline.scheduled(start),
                 "warnings": self.catalog.all_warnings()}
        if (shown == self._shown and rejected == self._rejected and not tags_changed
                and feeds is None and published_count == self._snapshot.published_count
                and not relinked and archive == self._snapshot.archive
                and self._snapshot.documents):
            if any(getattr(self._snapshot, key) != value for key, value in aside.items()):
                self._snapshot = replace(self._snapshot, **aside)
            return self._snapshot  # nothing shown changed: same object, no swap, same ETags
        if feeds is not None:
            rendering.feeds = feeds
        self._shown, self._rejected = shown, rejected
        rendering.retain({*shown, *self._tags.items()})  # hashed once
        self._snapshot = make_snapshot(
            documents=[*rendering.documents(), *self._tags.documents()],
            published_count=published_count, rejected=rejected, changed_at=now,
            generation=self._snapshot.generation + 1, gone_at=self._tags.gone_at,
            archive=archive, **aside)
        if rendering.retain_dates(self._snapshot.documents) and self.store.writable:
            self._writes.write()  # the tag documents' new dates
        return self._snapshot



class _StateHistory:
    """The ClaimHistory the state keeps (an unreadable state is logged, and claims nothing)."""

    def __init__(self, store: Store, stamps: StampTable) -> None:
        self._store = store
        self._stamps = stamps

    def last_slug_of(self, file_name: str) -> str | None:
        try:
            return self._store.last_slug_of(file_name)
        except StoreError as e:
            log.error("%s", e)
            return None

    def file_name_of(self, slug: str) -> str | None:
        try:
            stamp = self._stamps.get(slug)
        except StoreError as e:
            log.error("%s", e)
            return None
        return stamp.file_name if stamp is not None else None


def _tombstones(config: Config, store: Store, clock: Clock) -> Tombstones:
    """The tombstones shown now, from the state (none when it cannot say)."""
    def load(after: int) -> dict[str, int]:
        try:
            return store.tombstones_after(after)
        except StoreError as e:
            log.error("%s", e)
            return {}
    return Tombstones(config.feed.tombstone_days, load, to_micros(clock()),
                      config.feed.tombstones_max)


class _TagSource:
    """The TagSource of a publisher: tags and tagged entries from the state, texts, stamps."""

    def __init__(self, store: Store, stamps: StampTable, texts: EntryTexts,
                 tombstones: Tombstones) -> None:
        self._store = store
        self._stamps = stamps
        self._texts = texts
        self._tombstones = tombstones

    def deleted(self, tag: str, now_us: int) -> list[tuple[str, int, str]]:
        """(slug, deletion moment, label) of this tag's tombstones shown now, newest first."""
        return self._store.tag_tombstones(tag, cutoff(now_us, self._tombstones.days),
                                          self._tombstones.limit)

    def tags_of(self, slugs: list[str]) -> set[str]:
        try:
            return self._store.tags_of(slugs)
        except StoreError as e:
            log.error("%s", e)
            return set()

    def tagged(self, tag: str, now: int, limit: int) -> list[tuple[str, str]]:
        rows = self._store.tagged(tag, now, limit)
        self._stamps.load(slug for slug, _ in rows)
        return rows

    def shown_entry(self, slug: str) -> Entry | None:
        return self._texts.shown.get(slug)

    def load_entry(self, slug: str) -> Entry | None:
        return self._texts.load(slug)

    def item(self, slug: str, entry: Entry) -> Item | None:
        stamp = self._stamps.get(slug)
        return None if stamp is None else self._texts.item(entry, stamp)

    def tag_history(self, now: int) -> dict[str, tuple[str, int | None]]:
        return self._store.tag_history(now)

    def save_tag_history(self, rows: dict[str, tuple[str, int | None]]) -> bool:
        try:
            self._store.save_tag_history(rows)
        except StoreError as e:
            (log.debug if self._store.corrupt else log.error)(
                "%s; the history of %d tag(s) is kept in memory, retrying", e, len(rows))
            return False
        return True


def _tag_rules(config: Config, clock: Clock) -> dict[str, int]:
    """How long a tag that lost its last entry keeps an empty feed (then 410), and the moment
    the tags that existed are read from the state: before the first scan changes them."""
    return {"tombstone_s": config.feed.tombstone_days * 86400,
            "history_at": int(clock().timestamp())}


def _gone(store: Store, owner: Mapping[str, str]) -> list[str] | None:
    """The slugs the state has published whose file no longer claims them (None: the state
    cannot say now)."""
    gone: list[str] = []
    after = None
    try:
        # A part at a time: on a cold start every one of 100,000 slugs is owned.
        while part := store.live_slugs(after, _SWEEP_PART):
            gone.extend(slug for slug in part if slug not in owner)
            after = part[-1]
        return gone
    except StoreError as e:
        log.error("%s", e)
        return None


def _appeared(slugs: Iterable[str], owner: Mapping[str, str], records: Mapping[str, Record],
              fresh: Mapping[str, Entry]) -> list[str]:
    """Of the entries whose time came since the last batch, those that appeared as scheduled:
    dated by their author, and not just dropped or edited in this batch."""
    return [slug for slug in slugs
            if (name := owner[slug]) not in fresh
            and (record := records.get(name)) is not None and record.date is not None]


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
