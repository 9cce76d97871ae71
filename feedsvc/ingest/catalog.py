"""What is in the seeds folder, compactly: per file its slug, content hash, error and stat.

The text itself is not kept: an Entry lives only as long as the batch that parsed it (the
publisher keeps the few it shows and the state keeps the rest). A file is read again when an
event names it, or at a rescan when its stat moved (or was too fresh to be trusted).
"""

from __future__ import annotations

import bisect
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from feedsvc.errors import Rejection
from feedsvc.ingest.parser import DEFAULT_OPTIONS, ParseOptions, names_media, parse_seed
from feedsvc.ingest.source import (
    DescriptorsExhausted,
    SeedFolder,
    Signature,
    is_seed_name,
    list_seed_names,
    name_error,
    read_seed,
    stat_seed,
)
from feedsvc.logtext import escape, is_utf8
from feedsvc.model import Entry
from feedsvc.timerange import clamp_mtime

log = logging.getLogger("feedsvc")

#: How close to its read a file's mtime may be before its stat is not trusted (racy git):
#: timestamps are coarse, so a same-size rewrite within a tick of the read shows the same stat.
RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Record:
    """One seed file as last read."""

    slug: str | None  # None when the file cannot be used
    content_hash: str
    error: Rejection | None
    stat_key: int  # hash of the stat signature; 0: read again next time (errors are retried)
    mtime: int  # seconds
    racy: bool  # modified too close to its read for the stat to be trusted
    #: From a front matter, what the publisher decides dates and visibility with: the
    #: author's publication date, last-change date, and draft flag. One field, None for the
    #: usual plain seed: 100,000 records multiply every slot.
    authored: tuple[int | None, int | None, bool] | None = None

    @property
    def date(self) -> int | None:
        return None if self.authored is None else self.authored[0]

    @property
    def updated(self) -> int | None:
        return None if self.authored is None else self.authored[1]

    @property
    def draft(self) -> bool:
        return self.authored is not None and self.authored[2]


#: name → (new record or None when the file is gone, the Entry parsed just now if any)
Changes = dict[str, tuple[Record | None, Entry | None]]


class Catalog:
    def __init__(self, folder: Path, max_seed_bytes: int,
                 options: ParseOptions = DEFAULT_OPTIONS) -> None:
        self.folder = folder
        self.max_seed_bytes = max_seed_bytes
        self.options = options
        self.records: dict[str, Record] = {}
        # Names whose last change a batch failed to apply: read and reported again by the next
        # batch or scan, whatever their stat says, even if they are gone.
        self._retry: set[str] = set()
        # Seeds are opened relative to the folder's descriptor (see source.py), opened for a
        # batch or a scan and closed after it: between batches nothing is held open (an
        # unmount is not kept busy) and each batch reads the folder the path names now.
        self.seeds = SeedFolder(folder)
        #: Names that could not be read for lack of file descriptors: what was known of them
        #: is kept, and the pipeline reads them again within a second (not at the next rescan).
        self.deferred: set[str] = set()
        #: Names a batch or rescan left unread once its parsing budget was spent, each with
        #: whether its stat may spare the read (a rescan's may; an event's may not): the
        #: pipeline hands them to the very next batch, at once (no event will name them again).
        self.left_over: dict[str, bool] = {}
        #: name → its warnings (`path:line: warning: …`: an unknown front-matter key, removed
        #: characters), for the publishable files that have some: few, so kept apart from
        #: the records.
        self.warnings: dict[str, tuple[Rejection, ...]] = {}
        self._all_warnings: tuple[Rejection, ...] | None = ()  # None: to list again

    def scan(self, chunk: int = 2000, budget_s: float | None = None) -> Iterator[Changes]:
        """Compare the whole folder with what is known, `chunk` files at a time (the first
        chunk also has the files that are gone). Raises FolderMissing before any chunk.
        With a budget, the files not compared once it is spent are left in `left_over`."""
        names = list_seed_names(self.folder)
        return self._scan(names, chunk, budget_s)

    def _scan(self, names: list[str], chunk: int,
              budget_s: float | None = None) -> Iterator[Changes]:
        # Gone: known but not listed. Looked up in the sorted listing rather than in a set of
        # it: at 100,000 seeds such sets cost ~10 MB at once, 37 ms of bisection does not.
        retry, self._retry = self._retry, set()
        changes: Changes = {name: (None, None) for name in (*self.records, *retry)
                            if not _listed(names, name)}
        for name in changes:
            self.records.pop(name, None)
            self._set_warnings(name, ())
        if self.deferred:  # …and so is a deferred name that is not listed any more
            self.deferred = {name for name in self.deferred if _listed(names, name)}
        # A left-over name not listed any more is gone: reported above if it was known.
        self.left_over = {name: trust for name, trust in self.left_over.items()
                          if _listed(names, name)}
        start = time.perf_counter()
        try:
            for index, name in enumerate(names):
                if budget_s is not None and index and time.perf_counter() - start >= budget_s:
                    # Names an event left over stay to be read, whatever their stat.
                    self._leave(names[index:], retry, {
                        name for name in names[index:]
                        if name in self.records and self.left_over.get(name, True)})
                    break
                if budget_s is not None and name not in self.records and name not in retry:
                    # A new file (one the watch missed, or that landed as it started): read
                    # by the next batch, smallest first, like the files an event names.
                    self.left_over[name] = False
                    continue
                self.left_over.pop(name, None)
                self._refresh(name, changes, trust_stat=name not in retry, force=name in retry)
                if len(changes) >= chunk:
                    yield changes
                    changes = {}
        finally:
            self.seeds.close()
        yield changes

    def update(self, paths: Iterable[Path | str], budget_s: float | None = None) -> Changes:
        """Re-read the named files: an event says they changed, whatever their stat says.

        With a budget: smallest files first (a new small seed is the common case), and once
        `budget_s` seconds were spent reading and parsing, the files not read yet are left in
        `left_over` for the next batch. Seeds within every bound may still cost a second each
        (80,000 autolinks), so ten of them must not hold up the one small seed dropped with
        them: it waits for at most one of them."""
        changes: Changes = {}
        retry, self._retry = self._retry, set()
        named = {Path(p).name for p in paths} | retry
        left_over, self.left_over = self.left_over, {}
        # A name a rescan left over, and no event named since, is compared by its stat, as
        # the rescan would have; every other name is read.
        trusted = {name for name, trust in left_over.items() if trust and name not in named}
        start = time.perf_counter()
        names = sorted(name for name in named.union(left_over)
                       if name not in trusted and is_seed_name(name))
        if budget_s is not None:
            names.sort(key=self._size)  # stable: by name among equal sizes
        names += sorted(trusted)  # a rescan's order: only what changed costs a read
        try:
            for index, name in enumerate(names):
                if budget_s is not None and index and time.perf_counter() - start >= budget_s:
                    self._leave(names[index:], retry, trusted)
                    break
                self._refresh(name, changes, trust_stat=name in trusted, force=name in retry)
        finally:
            self.seeds.close()
        return changes

    def _leave(self, names: list[str], retry: set[str], trusted: Iterable[str]) -> None:
        """Leave these names for the next batch, `trusted` ones to be compared by their stat:
        a name to retry stays one (its change is reported whatever it reads)."""
        for name in names:
            if name in retry:
                self._retry.add(name)
            else:
                self.left_over[name] = name in trusted

    def _size(self, name: str) -> int:
        # lstat, not stat_seed: only an order, and a cheap one (no folder descriptor, no open);
        # a name that cannot be stat'ed costs nothing to read, so it goes first.
        try:
            return os.lstat(self.folder / name).st_size
        except (OSError, ValueError):
            return 0

    def retry(self, names: Iterable[str]) -> None:
        """These files' changes were not applied (the batch failed): hand them out again with
        the next batch or scan, as changes, whatever their stat says."""
        self._retry.update(names)

    def read_entry(self, name: str) -> Entry | None:
        """Parse a known file again, for when its text is needed but was not kept (a duplicate
        taking a slug over). None if it no longer matches its record."""
        record = self.records.get(name)
        try:
            seed = read_seed(self.folder / name, self.max_seed_bytes, self.seeds)
            if record is None or seed is None or isinstance(seed, Rejection):
                return None
            result = parse_seed(str(self.folder / name), seed.data, self.options)
        except DescriptorsExhausted:
            return None
        except Exception:  # as in _refresh: its record says why, at its next read
            log.debug("reading %s failed", self.folder / name, exc_info=True)
            return None
        finally:
            self.seeds.close()
        if isinstance(result, Rejection) or result.content_hash != record.content_hash:
            return None
        return result

    def close(self) -> None:
        self.seeds.close()

    def results(self) -> dict[Path, Record]:
        return {self.folder / name: record for name, record in self.records.items()}

    def _refresh(self, name: str, changes: Changes, trust_stat: bool,
                 force: bool = False) -> None:
        name = sys.intern(name)
        path = self.folder / name
        if not is_utf8(name) and (bad_name := name_error(path)) is not None:
            # Refused before anything reads it; gone is gone, as for any name.
            record = _failed(bad_name) if os.path.lexists(path) else None
            self._set(name, record, None, changes, force)
            return
        try:
            self._read(name, path, changes, trust_stat, force)
        except DescriptorsExhausted:
            # Out of descriptors (a flood of connections): the file is not at fault. Keep
            # what was known of it, and let the pipeline try it again shortly.
            self.deferred.add(name)
            return
        except Exception as e:
            # One file must never stop a batch: whatever went wrong reading or parsing it (a
            # bug the bad input found), it is rejected, named, and the others go on. Retried
            # at its next change and at every rescan, like every error (stat_key 0).
            log.debug("reading %s failed", path, exc_info=True)
            error = Rejection(str(path), 1,  # a UTF-8 name: checked above
                              f"unexpected error {type(e).__name__}: {escape(str(e))} (a "
                              "bug; run with -v for the traceback, and report it)")
            self._set(name, _failed(error), None, changes, force)
        self.deferred.discard(name)

    def _read(self, name: str, path: Path, changes: Changes, trust_stat: bool,
              force: bool) -> None:
        known = self.records.get(name)
        if trust_stat and known is not None:
            # Only a stat that can spare the read is worth its system call: a new file, or one
            # an event names, is read anyway, and read_seed reports what stat_seed would.
            signature = stat_seed(path, self.seeds)
            if signature is None:
                self._set(name, None, None, changes, force)
                return
            if isinstance(signature, Rejection):
                self._set(name, _failed(signature), None, changes, force)
                return
            if not known.racy and known.stat_key == _stat_key(signature) and not force:
                return
        read_at_ns = time.time_ns()
        seed = read_seed(path, self.max_seed_bytes, self.seeds)
        if seed is None:  # vanished between the stat and the read: not an error
            self._set(name, None, None, changes, force)
            return
        if isinstance(seed, Rejection):
            self._set(name, _failed(seed), None, changes, force)
            return
        result = parse_seed(str(path), seed.data, self.options)
        # A seed naming media files is read again at every rescan, whatever its stat: its
        # entry depends on those files (their lengths; a missing one rejects it), which the
        # watch does not follow. The cost: one read per such seed per rescan.
        racy = seed.signature.mtime_ns + RACY_NS > read_at_ns or names_media(result)
        stat_key = _stat_key(seed.signature)
        # st_mtime can be anything (negative, year 2446, more on other file systems): clamped
        # here, where it enters, so that no date computed from it can overflow (timerange.py).
        mtime = clamp_mtime(seed.mtime)
        if isinstance(result, Rejection):
            record = Record(None, "", result, stat_key, mtime, racy)
            self._set(name, record, None, changes, force)
            return
        # Interned: the same slug is a key in several of the publisher's maps.
        record = Record(sys.intern(result.slug), result.content_hash, None, stat_key,
                        mtime, racy, _authored(result))
        if known is None or (known.slug, known.content_hash) != (record.slug,
                                                                 record.content_hash):
            for line, message in result.warnings:  # once per version, not once per read
                log.warning("%s:%d: warning: %s", path, line, message)
        self._set(name, record, result, changes, force)

    def _set(self, name: str, record: Record | None, entry: Entry | None,
             changes: Changes, force: bool = False) -> None:
        known = self.records.get(name)
        if record is None:
            self.records.pop(name, None)
        else:
            self.records[name] = record
        if record is None or record.error is not None:
            self._set_warnings(name, ())  # a rejected file is reported as that
        elif entry is not None:  # parsed just now (else: unchanged since it was)
            self._set_warnings(name, tuple(Rejection(str(self.folder / name), line, message)
                                           for line, message in entry.warnings))
        if force or not _same(known, record):  # read again and nothing new: not a change
            changes[name] = (record, entry)


    def _set_warnings(self, name: str, warnings: tuple[Rejection, ...]) -> None:
        if self.warnings.get(name, ()) == warnings:
            return
        if warnings:
            self.warnings[name] = warnings
        else:
            del self.warnings[name]
        self._all_warnings = None

    def all_warnings(self) -> tuple[Rejection, ...]:
        """Every publishable file's warnings, by file name and line: listed again only when
        one changed (a batch costs nothing per seed)."""
        if self._all_warnings is None:
            self._all_warnings = tuple(sorted(
                (warning for warnings in self.warnings.values() for warning in warnings),
                key=lambda warning: (warning.path, warning.line, warning.message)))
        return self._all_warnings


def _listed(names: list[str], name: str) -> bool:
    index = bisect.bisect_left(names, name)
    return index < len(names) and names[index] == name


def _same(a: Record | None, b: Record | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.slug, a.content_hash, a.error, a.authored) == \
        (b.slug, b.content_hash, b.error, b.authored)


def _authored(entry: Entry) -> tuple[int | None, int | None, bool] | None:
    if entry.date is None and entry.updated is None and not entry.draft:
        return None
    return entry.date, entry.updated, entry.draft


def _failed(error: Rejection) -> Record:
    return Record(None, "", error, 0, 0, False)


def _stat_key(signature: Signature) -> int:
    return hash((signature.mtime_ns, signature.size, signature.inode, signature.ctime_ns))
