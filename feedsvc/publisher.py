"""The facade: seeds folder + state → snapshots. One call per batch of changes.

`scan()` reconciles the whole folder; `update(paths)` looks only at the named files. Both parse
what changed, give every published slug its durable id and dates, render once, and return the
new Snapshot. Runs in one worker thread; never call it from two threads at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import SeedError, StoreError
from feedsvc.model import Document, Entry, FeedInfo, Item, Snapshot, Stamp
from feedsvc.pages import render_entry, render_index
from feedsvc.parser import build_entry, parse_seed
from feedsvc.render import feed_updated, newest_first, render_atom, render_rss
from feedsvc.snapshot import (
    ATOM_TYPE,
    HTML_TYPE,
    RSS_TYPE,
    make_document,
    make_snapshot,
)
from feedsvc.source import (
    FolderMissing,
    Signature,
    is_seed_name,
    list_seeds,
    read_seed,
    stat_seed,
)
from feedsvc.store import Store

log = logging.getLogger("feedsvc")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def derive_feed_id(base_url: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base_url)}"


def entry_id(feed_id: str, slug: str) -> str:
    """Stable forever for a slug within a feed: not from the file name, not from the content."""
    return f"urn:uuid:{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, feed_id), slug)}"


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the catalog knows about one seed file."""

    result: Entry | SeedError
    signature: Signature | None  # None: read again next time (errors are retried)
    mtime: int
    read_at_ns: int = 0  # wall clock when it was read

    def settled(self, signature: Signature) -> bool:
        """The file is as it was read, for sure. Timestamps are coarse: a file rewritten (same
        size) within a clock tick of its read would show the same stat, so a file modified
        shortly before it was read is not trusted to be settled."""
        return (self.signature == signature
                and signature.mtime_ns + RACY_NS < self.read_at_ns)


#: How close to its read a file's mtime may be before its stat is not trusted (racy git).
RACY_NS = 2_000_000_000


class Catalog:
    """One parse result per seed file. A file is read again only when its stat has moved."""

    def __init__(self, folder: Path, max_seed_bytes: int) -> None:
        self.folder = folder
        self.max_seed_bytes = max_seed_bytes
        self.seen: dict[Path, _Seen] = {}

    def scan(self) -> None:
        """Re-read the whole folder (stat everything, read what moved). Raises FolderMissing."""
        paths = list_seeds(self.folder)
        for gone in self.seen.keys() - set(paths):
            del self.seen[gone]
        for path in paths:
            self._refresh(path)

    def update(self, paths: Iterable[Path]) -> None:
        """Re-read the named files: an event says they changed, whatever their stat says."""
        for path in sorted({self.folder / Path(p).name for p in paths}):
            if is_seed_name(path.name):
                self._refresh(path, trust_stat=False)

    def results(self) -> dict[Path, Entry | SeedError]:
        return {path: seen.result for path, seen in self.seen.items()}

    def _refresh(self, path: Path, trust_stat: bool = True) -> None:
        signature = stat_seed(path)
        if signature is None:
            self.seen.pop(path, None)
            return
        if isinstance(signature, SeedError):
            self.seen[path] = _Seen(signature, None, 0)
            return
        known = self.seen.get(path)
        if trust_stat and known is not None and known.settled(signature):
            return  # unchanged since it was last read
        read_at_ns = time.time_ns()
        seed = read_seed(path, self.max_seed_bytes)
        if seed is None:  # vanished between the stat and the read: not an error
            self.seen.pop(path, None)
            return
        if isinstance(seed, SeedError):
            self.seen[path] = _Seen(seed, None, 0)
            return
        result = parse_seed(str(path), seed.data)
        if isinstance(result, Entry) and (known is None or known.result != result):
            for line, message in result.warnings:  # once per version, not once per read
                log.warning("%s:%d: warning: %s", path, line, message)
        self.seen[path] = _Seen(result, seed.signature, seed.mtime, read_at_ns)


class Publisher:
    def __init__(self, config: Config, store: Store, clock: Clock = utc_now) -> None:
        self.config = config
        self.store = store
        self.catalog = Catalog(config.paths.seeds, config.watch.max_seed_bytes)
        self._clock = clock
        self._stamps: dict[str, Stamp] = store.load_stamps()
        self._unsaved: dict[str, Stamp] = {}
        self._unsaved_content: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._items: dict[str, Item] = {}
        self._pages: dict[str, Document] = {}
        self._reported: set[SeedError] = set()
        self._rejected: tuple[SeedError, ...] = ()
        self._snapshot = Snapshot()
        self.info = self._feed_info()

    @classmethod
    def open(cls, config: Config, clock: Clock = utc_now) -> Publisher:
        return cls(config, Store.open(config.paths.state), clock)

    def close(self) -> None:
        self.store.close()

    # -- the two entry points -------------------------------------------------------------

    def scan(self) -> Snapshot:
        """Make what is published equal to what is in the seeds folder."""
        try:
            self.catalog.scan()
        except FolderMissing:
            # An unmounted folder is not a reason to unpublish everything: keep the last set.
            if self._snapshot.seeds_readable:
                self._snapshot = replace(self._snapshot, seeds_readable=False)
            self._retry_writes()
            return self._snapshot
        return self._publish(seeds_readable=True)

    def update(self, paths: Iterable[Path]) -> Snapshot:
        """Apply changes to the named files only (created, modified, deleted or renamed).
        With no paths, it only retries writing the state."""
        self.catalog.update(paths)
        return self._publish(seeds_readable=self._snapshot.seeds_readable)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def pending_writes(self) -> int:
        """Changes kept in memory because the state could not be written."""
        return len(self._unsaved)

    @property
    def needs_retry(self) -> bool:
        """Whether the state waits for a write that works (changes, or just its writability)."""
        return bool(self._unsaved) or not self.store.writable

    # -- publishing -----------------------------------------------------------------------

    def _publish(self, seeds_readable: bool) -> Snapshot:
        now = self._clock()
        results = self.catalog.results()
        fallbacks = self._last_good_versions(results)
        owners, rejected = resolve_owners(results, fallbacks, self._stamps)
        changed = self._save_stamps(owners, int(now.timestamp()))

        items: dict[str, Item] = {}
        for slug, (_, entry) in owners.items():
            stamp = self._stamps[slug]
            items[slug] = Item(
                entry=entry,
                id=entry_id(self.info.id, slug),
                link=self.config.entry_link(slug),
                published=_datetime(stamp.published),
                updated=_datetime(stamp.updated),
            )
        self._report(owners, items, rejected, changed, fallbacks)

        if items == self._items and rejected == self._rejected and self._snapshot.documents:
            if self._snapshot.seeds_readable != seeds_readable:
                self._snapshot = replace(self._snapshot, seeds_readable=seeds_readable)
            return self._snapshot  # nothing changed: same object, no swap, same ETags
        self._pages = {
            slug: self._pages[slug] if self._items.get(slug) == item else self._entry_page(item)
            for slug, item in items.items()
        }
        self._items, self._rejected = items, rejected
        self._snapshot = make_snapshot(
            documents=[*self.render_feeds(), *self._pages.values()],
            published=len(items),
            rejected=rejected,
            changed_at=now,
            seeds_readable=seeds_readable,
            generation=self._snapshot.generation + 1,
        )
        return self._snapshot

    def render_feeds(self) -> list[Document]:
        """The capped documents: Atom, RSS and the front page."""
        shown = newest_first(list(self._items.values()), self.config.feed.max_entries)
        updated = feed_updated(self.info, shown)
        max_age = self.config.server.cache_max_age
        return [
            make_document("/feed.atom", ATOM_TYPE, render_atom(self.info, shown), updated,
                          max_age),
            make_document("/feed.rss", RSS_TYPE, render_rss(self.info, shown), updated, max_age),
            make_document("/", HTML_TYPE, render_index(self.info, shown), updated, max_age),
        ]

    def _entry_page(self, item: Item) -> Document:
        return make_document(f"/entries/{item.slug}", HTML_TYPE,
                             render_entry(self.info, item), item.updated,
                             self.config.server.cache_max_age)

    def _last_good_versions(self, results: dict[Path, Entry | SeedError]) -> dict[Path, Entry]:
        """For each broken file that last published a slug: that slug's last good version,
        which stays published until the file is fixed or deleted."""
        broken = {path.name: path for path, result in results.items()
                  if isinstance(result, SeedError)}
        if not broken:
            return {}
        fallbacks: dict[Path, Entry] = {}
        # A file may have published several slugs over time: its latest one counts.
        for slug, stamp in sorted(self._stamps.items(), key=lambda pair: pair[1].updated):
            path = broken.get(stamp.source)
            if path is None:
                continue
            item = self._items.get(slug)
            if item is not None:
                fallbacks[path] = item.entry
            elif (content := self.store_content(slug)) is not None:
                fallbacks[path] = build_entry(slug, *content)
        return fallbacks

    def store_content(self, slug: str) -> tuple[str, tuple[str, ...]] | None:
        try:
            return self.store.load_content(slug)
        except StoreError as e:
            log.error("%s", e)
            return None

    def _save_stamps(self, owners: dict[str, tuple[Path, Entry]], now: int) -> dict[str, str]:
        """Give each owned slug its dates, and write the changed ones in one transaction.
        Returns "published" or "updated" for each slug first seen or with new content."""
        taken = {stamp.updated for stamp in self._stamps.values()}
        changed: dict[str, str] = {}
        for slug, (path, entry) in sorted(owners.items(), key=lambda pair: pair[1][0].name):
            previous = self._stamps.get(slug)
            seen = self.catalog.seen[path]
            # A last good version keeps its dates: its file's current mtime is not its own.
            seen_at = min(seen.mtime, now) if isinstance(seen.result, Entry) else now
            stamp = next_stamp(previous, entry, path.name, seen_at, taken)
            if stamp != previous:
                self._stamps[slug] = stamp
                self._unsaved[slug] = stamp
                if previous is None or previous.content_hash != stamp.content_hash:
                    changed[slug] = "published" if previous is None else "updated"
                    self._unsaved_content[slug] = (entry.title, entry.paragraphs)
        self._retry_writes()
        return changed

    def _retry_writes(self) -> None:
        if not self._unsaved:
            self.store.retry()
            return
        try:
            self.store.save_stamps(self._unsaved.values(), self._unsaved_content)
        except StoreError as e:
            # Keep serving from memory; the next successful write catches up.
            log.error("%s; %d change(s) kept in memory, retrying", e, len(self._unsaved))
            return
        self._unsaved.clear()
        self._unsaved_content.clear()

    def _report(self, owners: dict[str, tuple[Path, Entry]], items: dict[str, Item],
                rejected: tuple[SeedError, ...], changed: dict[str, str],
                fallbacks: dict[Path, Entry]) -> None:
        """One log line per published, updated or removed entry and per newly rejected seed.
        A restart that finds everything as it was says nothing per entry."""
        restarting = not self._snapshot.documents
        for slug in items:
            path = owners[slug][0]
            if slug in changed:
                log.info("%s %s from %s", changed[slug], slug, path)
            elif slug not in self._items and not restarting:
                log.info("published %s from %s", slug, path)  # its file came back
        for slug in self._items.keys() - items.keys():
            log.info("removed %s", slug)
        kept = {str(path): entry.slug for path, entry in fallbacks.items()
                if owners.get(entry.slug, (None,))[0] == path}
        for error in rejected:
            if error not in self._reported:
                if error.path in kept:
                    log.warning("%s (still publishing its last good version of %s)",
                                error, kept[error.path])
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
        )


def resolve_owners(results: Mapping[Path, Entry | SeedError], fallbacks: Mapping[Path, Entry],
                   stamps: Mapping[str, Stamp]
                   ) -> tuple[dict[str, tuple[Path, Entry]], tuple[SeedError, ...]]:
    """Which file publishes each slug (with the entry it publishes), and every rejected seed.

    A broken file still claims the slug of its last good version (`fallbacks`). A slug stays
    with the file the state says owns it while that file still claims it; otherwise the first
    claimant in name order gets it. Rejected seeds (errors and duplicates) come in name order.
    """
    claims: dict[str, list[tuple[Path, Entry]]] = {}
    errors: list[SeedError] = []
    for path in sorted(results, key=lambda p: p.name):
        result = results[path]
        if isinstance(result, SeedError):
            errors.append(result)
            fallback = fallbacks.get(path)
            if fallback is None:
                continue
            result = fallback
        claims.setdefault(result.slug, []).append((path, result))
    owners: dict[str, tuple[Path, Entry]] = {}
    for slug, claimants in claims.items():
        stored = stamps.get(slug)
        owner = next((c for c in claimants if stored and c[0].name == stored.source),
                     claimants[0])
        owners[slug] = owner
        errors.extend(
            SeedError(str(path), 1, f"duplicate slug '{slug}': {owner[0].name} already "
                                    "publishes it")
            for path, _ in claimants if path != owner[0] and path not in fallbacks
        )
    errors.sort(key=lambda e: (Path(e.path).name, e.line))
    return owners, tuple(errors)


def next_stamp(previous: Stamp | None, entry: Entry, source: str, seen_at: int,
               taken: set[int]) -> Stamp:
    """The dates a slug has after this sighting. Pure, apart from updating `taken`.

    `published` is fixed at first sight. `updated` moves only when the content does, and never
    backwards. No two slugs share an `updated` second (feed validators flag that): a clash moves
    the newcomer one second later.
    """
    if previous is None:
        moment = _free_second(seen_at, taken)
        return Stamp(entry.slug, moment, moment, entry.content_hash, source)
    if previous.content_hash != entry.content_hash:
        moment = _free_second(max(seen_at, previous.updated + 1), taken)
        taken.discard(previous.updated)
        return replace(previous, updated=moment, content_hash=entry.content_hash, source=source)
    if previous.source != source:
        return replace(previous, source=source)
    return previous


def _free_second(moment: int, taken: set[int]) -> int:
    while moment in taken:
        moment += 1
    taken.add(moment)
    return moment


def _datetime(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
