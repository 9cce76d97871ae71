"""The durable state, in SQLite: feed id, and per slug its dates, content hash, file and last
good content.

This is the only module with SQL for our tables (salvage copies tables it does not know). It
decides nothing: the dates it stores are chosen by the publisher; it keeps them safe (WAL, one
transaction per batch) and gives them back. When the state cannot be written (read-only or
full disk), it still reads what it can and says so; every write retries opening it for
writing, so the next one that works catches up. A damaged file is read as far as it can be
and never written; a file deleted or replaced under it is written back (StateFile).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from feedsvc.durable import file_identity, fsync_path
from feedsvc.errors import StoreError
from feedsvc.model import US, Content, Revision, Stamp
from feedsvc.state.history import HistoryQueries
from feedsvc.state.salvage import SalvageReport, copy_readable, is_corruption
from feedsvc.state.sitequeries import SiteQueries
from feedsvc.state.subscriptions import SCHEMA as SUBSCRIPTIONS_SCHEMA

log = logging.getLogger("feedsvc")

# 2: `text` of authored seeds, `tags`; 3: `updated` in microseconds, `documents`;
# 4: `tombstones` (RFC 6721: when each deleted entry was removed; a state of 3 gets the table,
# empty: the moments of deletions made before it were never kept); 5: `archive_slots` (RFC 5005:
# each archived entry's place in the archive, given when it enters it; a state of 4 gets the
# table empty, and the publisher numbers its archive at the first batch, oldest first; the
# index `stamps_archived` that cut pages by position goes).
SCHEMA_VERSION = 5

# A rowid table, not WITHOUT ROWID: a row carries a seed's whole text (~2.4 KB), and SQLite
# stores such rows far better in a rowid table (appended, not spread over overflow pages of the
# slug index): writing 10,000 seeds took 0.09 s instead of 0.41 s here, in half the file size.
# States made before this keep their WITHOUT ROWID table; the SQL is the same for both.
# `stamps_by_updated`: the publisher asks whether a second is taken instead of holding every
# `updated` in memory. 8 KiB pages (set only when the file is created) suit these rows.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stamps (
    slug         TEXT PRIMARY KEY,
    published    INTEGER NOT NULL,
    updated      INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    source       TEXT NOT NULL,
    live         INTEGER NOT NULL DEFAULT 1,
    title        TEXT NOT NULL DEFAULT '',
    body         TEXT NOT NULL DEFAULT '',
    text         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS stamps_by_source ON stamps (source, updated);
CREATE INDEX IF NOT EXISTS stamps_by_updated ON stamps (updated);
-- The site's pages (publish/sitepages.py) read the published entries newest first, a page at
-- a time (without it, each page sorted every stamp: 65 ms at 100,000 entries), and what they
-- are made of from the index alone (publish/pageblocks.py): the published entries in the
-- site's order with their `updated`, for the number of pages, which pages a change touched
-- and the pages' cache (0.7 ms instead of 23 ms at 10,000 entries). Every such read is of
-- live entries: this index replaced stamps_by_published (published DESC, slug), one index
-- less to write for every stamp (a cold start writes 10,000 of them).
CREATE INDEX IF NOT EXISTS stamps_site ON stamps (published DESC, slug, updated) WHERE live = 1;
DROP INDEX IF EXISTS stamps_by_published;
-- The sitemap's files read the published entries in slug order, 50,000 at a time: from this
-- index alone (5.6 ms instead of 60 ms for 10,000 entries, and 4 s a write at 100,000).
CREATE INDEX IF NOT EXISTS stamps_sitemap ON stamps (slug, published, updated) WHERE live = 1;
CREATE TABLE IF NOT EXISTS tags (
    tag   TEXT NOT NULL,
    slug  TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (tag, slug)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_slug ON tags (slug);
-- Every tag that has shown an entry (issue 11): `emptied` is when it lost its last one (NULL
-- while it has some), so a tag that existed answers an empty feed, then 410, never 404.
CREATE TABLE IF NOT EXISTS tag_history (
    tag     TEXT PRIMARY KEY,
    label   TEXT NOT NULL,
    emptied INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    path     TEXT PRIMARY KEY,
    digest   TEXT NOT NULL,
    modified INTEGER NOT NULL,
    previous INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
    slug    TEXT PRIMARY KEY,
    deleted INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombstones_by_deleted ON tombstones (deleted);
-- RFC 5005 archive slots (publish/archives.py): `slot` (the rowid: pages are slot ranges)
-- numbered as entries enter the archive, only ever at the newest end. `state`: 0 holds the
-- entry, 1 its entry was deleted (an at:deleted-entry in Atom), 2 it left (back in the
-- subscription documents, or its slug came back after deletion): shown nowhere on the page.
CREATE TABLE IF NOT EXISTS archive_slots (
    slot    INTEGER PRIMARY KEY,
    slug    TEXT NOT NULL,
    state   INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_slots_by_slug ON archive_slots (slug, state);
""" + SUBSCRIPTIONS_SCHEMA  # the built-in WebSub hub's (state/subscriptions.py)
#: Columns added since the first schema, for states made before them: (table, column, type).
_ADDED_COLUMNS = (("stamps", "text", "TEXT NOT NULL DEFAULT ''"),)
_PAGE_SIZE = 8192

#: Slugs per `IN (…)` query: well under SQLite's limit on bound parameters.
_IN_CHUNK = 500

#: Paragraphs are stored joined by a blank line; a paragraph never contains one.
PARAGRAPH_SEPARATOR = "\n\n"

#: States up to this size are checked whole at open: about 190,000 seeds of 2.4 KB; measured
#: here, 17 ms at 12,000 seeds (32 MiB) and 133 ms at 100,000 (267 MiB), from the page cache.
QUICK_CHECK_MAX_BYTES = 512 << 20

#: What the operator is told to do about a corrupt state.
REPAIR_HINT = "stop feedsvc and run `feedsvc state repair`"


class CorruptState(StoreError):
    """The state file is damaged: SQLite reported SQLITE_CORRUPT or SQLITE_NOTADB."""


class StateFile:
    """The connection to one state file, and what can happen to that file: it cannot be
    written (kept in memory, retried), it is damaged (salvaged, never written), it was
    deleted or replaced (written back). Store adds our tables' SQL. One thread at a time."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 problem: StoreError | None = None, *, lock: int | None = None) -> None:
        self._db = connection
        self.path = path
        #: Why the state is not writable now (None when it is).
        self.problem = problem
        self._pending_meta: dict[str, str] = {}
        #: The file the connection has open, as (st_dev, st_ino); None when it is not the
        #: file at `path` (a read-only or in-memory view). Set by `open`.
        self._identity: tuple[int, int] | None = None
        self._lock = lock  # a shared flock on the state's folder: `state repair` waits for it
        #: The file at `path` was deleted or replaced and writing ours back has not worked yet.
        self._orphaned = False
        self._reader = False  # a second, read-only connection (open_for_reading)
        self._schema_learned = True  # Store's _learn_schema says otherwise when it fails
        self._in_read = False  # within `reading`: one transaction, no following the file
        #: Writes that failed since the file was opened (/metrics).
        self.write_failures = 0
        self._learn_schema()

    @property
    def writable(self) -> bool:
        return self.problem is None

    @property
    def corrupt(self) -> bool:
        """The file is damaged: what could be read of it is served from a private copy, and
        nothing is written to it (changes wait in memory for `feedsvc state repair`)."""
        return isinstance(self.problem, CorruptState)

    def close(self) -> None:
        """Close the file; the writer first moves the write-ahead log into it and empties the
        log (PRAGMA wal_checkpoint(TRUNCATE)), so after a clean stop the .sqlite3 file alone is
        the whole state: copied without its -wal (which a plain `cp` forgets), it misses
        nothing. Readers still open elsewhere are not waited for beyond busy_timeout; the log
        is then folded in by the next checkpoint."""
        if not self._reader and self.writable and self._identity is not None:
            try:
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    log.info("%s: a reader kept the write-ahead log from being emptied at "
                             "close; it is folded in at the next start", self.path)
            except sqlite3.Error as e:
                log.warning("%s: cannot fold the write-ahead log into the state at close: %s",
                            self.path, e)
        self._db.close()
        _unlock(self._lock)  # after the connection: its locks are fcntl ones on another file
        self._lock = None

    def _learn_schema(self) -> None:
        """What the schema of the open database offers (Store says)."""

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """The reads within see one committed state: a write committed meanwhile (the
        pipeline's, on its own connection) is seen by all of them or by none. Without it,
        each query is a transaction of its own, and a page made of two reads can pair one
        version's text with the next one's date, and be cached so (SQLite §"Isolation"). A
        reader follows a replaced file before it starts, never in the middle."""
        if self._in_read:
            yield
            return
        if self._reader and self._identity is not None and self._moved():
            self._follow_file()
        db = self._db
        try:
            db.execute("BEGIN")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot read the state: {e}") from e
        self._in_read = True
        try:
            yield
        finally:
            self._in_read = False
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("COMMIT")  # a read transaction: COMMIT only ends it

    def retry(self) -> bool:
        """Try to make the state writable again (and write what waits), or write it back to
        its path if its file was deleted or replaced; True if it is writable."""
        if self.writable and not (self._identity is not None and self._moved()):
            return True
        with contextlib.suppress(StoreError):  # a lost file is written back by _write
            self._write(lambda: None)
        return self.writable

    # -- plumbing ---------------------------------------------------------------------------

    def _write(self, statements: Callable[[], None]) -> None:
        try:
            self._try_write(statements)
        except StoreError:
            self.write_failures += 1
            raise

    def _try_write(self, statements: Callable[[], None]) -> None:
        if self.corrupt:
            # Never write into a damaged file (it would spread the damage, and `state repair`
            # reads it): changes wait in memory.
            assert self.problem is not None
            raise self.problem
        if self._orphaned or (self._identity is not None and self._moved()):
            self._restore()
        if not self.writable:
            self._reopen_for_writing()
        try:
            with _transaction(self._db):
                self._db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                                     list(self._pending_meta.items()))
                statements()
        except sqlite3.Error as e:
            if is_corruption(e):
                self._salvage(e, self._db)
                assert self.problem is not None
                raise self.problem from e
            # Not writable until a write works again: the next one reopens and retries.
            self.problem = StoreError(f"{self.path}: cannot write the state: {e}")
            raise self.problem from e
        self._pending_meta.clear()

    # -- a damaged state --------------------------------------------------------------------

    def _salvage(self, error: BaseException, damaged: sqlite3.Connection | None) -> None:
        """Go on from a private copy of what can still be read of the damaged file; say so
        once. The file itself is left as it is for `feedsvc state repair`."""
        copy = _temporary_state()
        report = copy_readable(damaged, copy) if damaged is not None else SalvageReport(
            schema_lost=True)
        _salvaged_seconds_to_micros(copy)
        if damaged is not None:
            with contextlib.suppress(sqlite3.Error):
                damaged.close()
        if self._db is not damaged:
            self._db.close()
        self._db = copy
        self._identity = None
        cause = _sqlite_message(error)
        self.problem = CorruptState(
            f"{self.path}: corrupt: {cause}; publishing from what could be read "
            f"({'; '.join(report.lines())}), changes kept in memory; {REPAIR_HINT}")
        # Said once, by the pipeline's store; a reader's would only repeat it.
        (log.debug if self._reader else log.error)("%s", self.problem)
        self._learn_schema()

    # -- the file at `path` is not the one open ----------------------------------------------

    def _moved(self) -> bool:
        """Whether the file at `path` is no longer the one open (deleted, or replaced)."""
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return True  # deleted; or its folder deleted and a file put in its place
        except OSError:
            return False  # cannot tell (a folder lost its permissions): the write will say
        return (st.st_dev, st.st_ino) != self._identity

    def _restore(self) -> None:
        """Write the open database back to its path (SQLite's backup API reads it whole and
        consistent, write-ahead log included, even when its files were deleted), keeping any
        other file found there aside, then reopen on it. Failing that, changes wait in
        memory and the next write tries again."""
        path = self.path
        replaced = path.exists()
        if not self._orphaned:
            log.error("%s: the state file was %s while feedsvc was running; writing the open "
                      "state back to it", path, "replaced" if replaced else "deleted")
        tmp = path.with_name(f".{path.name}.restore.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.unlink(missing_ok=True)
            copy = sqlite3.connect(tmp)
            try:
                self._db.backup(copy)
            finally:
                copy.close()
            fsync_path(tmp)
            if replaced:  # someone else's file: kept, not overwritten (the -wal and -shm
                # there are the open connection's own, which closing it removes)
                os.rename(path, path.with_name(f"{path.name}.replaced-{_stamp_now()}"))
            os.replace(tmp, path)
            fsync_path(path.parent)
        except (OSError, sqlite3.Error) as e:
            self._orphaned = True
            self.problem = StoreError(f"{path}: the state file was deleted or replaced while "
                                      f"feedsvc was running, and cannot be written back: "
                                      f"{getattr(e, 'strerror', None) or e}")
            raise self.problem from e
        self._orphaned = False
        # The old connection goes (its write-ahead log with it), the restored file is opened.
        self._reopen_for_writing()
        if self._lock is not None:  # the folder may be a new one too (`rm -r state/`)
            _unlock(self._lock)
            self._lock = None
            with contextlib.suppress(StoreError):
                self._lock = _lock_folder(path)
        log.info("%s: the state was written back (%s)", path, self._size_note())

    def _follow_file(self) -> None:
        """A reader whose file was replaced (written back, repaired) reads the new one; while
        there is none at the path, it goes on reading the one it has."""
        try:
            db = _connect_read_only(self.path)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error:
            return
        self._db.close()
        self._db, self.problem = db, None
        self._identity = file_identity(self.path)
        self._learn_schema()

    def _size_note(self) -> str:
        try:
            return f"{self._query('SELECT count(*) FROM stamps')[0][0]} slugs"
        except StoreError:
            return "its slugs could not be counted"

    def _reopen_for_writing(self) -> None:
        # Close the read-only view first: SQLite shares one shared-memory mapping per file
        # within a process, and a read-only one would make the new connection read-only too.
        was_writable = self.writable
        self._db.close()
        try:
            self._db = _connect_for_writing(self.path)
        except StoreError as e:
            self.problem = e
            self._identity = None
            if is_corruption(e):
                self._db = _temporary_state()  # replaced by _salvage at once
                self._salvage(e, _open_damaged(self.path))
                raise self.problem from e
            self._db = _connect_for_reading(self.path, e, quiet=True)
            self._learn_schema()
            raise
        self.problem = None
        self._identity = file_identity(self.path)
        self._learn_schema()
        if not was_writable:
            log.info("%s: the state is writable again", self.path)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """All rows of a query. A damaged file found on the way is salvaged once, and the
        query answered from what could be read."""
        if (self._reader and not self._in_read and self._identity is not None
                and self._moved()):
            self._follow_file()
        if not self._schema_learned:
            self._learn_schema()  # it failed at open (the file busy a moment): again now
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            if is_corruption(e) and not self.corrupt:
                self._salvage(e, self._db)
                return self._query(sql, args)
            raise StoreError(f"{self.path}: cannot read the state: {e}") from e


class Store(StateFile, HistoryQueries, SiteQueries):
    """One state file: feed id, stamps, texts and tags. Use from one thread at a time."""

    #: The connection `_empty` was learnt on, and whether that state held no stamp.
    _empty_on: object = None
    _empty = False

    def _learn_schema(self) -> None:
        """A read-only view of a state made before `text` and `tags` reads without them."""
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(stamps)")}
            tables = {row[0] for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            self._schema_learned = True
        except sqlite3.Error:
            # Not known yet: read as the oldest schema for now, learnt again at the next
            # query (else a reader opened while the file was busy would never see the
            # documents table, and serve long-tail pages with stale dates).
            columns, tables = set(), set()
            self._schema_learned = False
        self._text = "text" if "text" in columns else "''"
        self._has_tags = "tags" in tables
        self._has_documents = "documents" in tables
        self._has_tag_history = "tag_history" in tables
        self._has_tombstones = "tombstones" in tables
        self._has_slots = "archive_slots" in tables
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error:
            version = SCHEMA_VERSION
        # A read-only view of a state older than schema 3 has `updated` in seconds.
        self._updated = "updated" if version >= 3 or not columns else f"(updated * {US})"

    @classmethod
    def open_for_reading(cls, path: Path) -> Store:
        """A second connection for readers in another thread or process (long-tail pages).
        It follows the file at `path` when that is written back or repaired, and reads a
        damaged one from a private copy of what can be read (the writer says it is damaged)."""
        try:
            store = cls(_connect_read_only(path), path)
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read the state: {e}") from e
        store._reader = True
        store._identity = file_identity(path)
        return store

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open for writing; failing that, open what can be read and remember the problem.
        A damaged file is never a reason not to start: what can be read of it is used."""
        with contextlib.suppress(OSError):  # else _connect_for_writing says why
            path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock_folder(path)
        try:
            store = cls(_connect_for_writing(path), path, lock=lock)
            store._identity = file_identity(path)
            return store
        except StoreError as problem:
            try:
                if is_corruption(problem):
                    return cls._salvaged(path, problem, lock)
                return cls(_connect_for_reading(path, problem), path, problem, lock=lock)
            except StoreError as unreadable:
                if is_corruption(unreadable):
                    return cls._salvaged(path, unreadable, lock)
                _unlock(lock)
                raise

    @classmethod
    def _salvaged(cls, path: Path, error: BaseException, lock: int | None) -> Store:
        store = cls(_temporary_state(), path, StoreError("not opened yet"), lock=lock)
        store._salvage(error, _open_damaged(path))
        return store

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        if key in self._pending_meta:
            return self._pending_meta[key]
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def setdefault_meta(self, key: str, value: str) -> str:
        """Store `value` under `key` unless a value is there already; return the stored one.
        When the state cannot be written, the value is kept and written with the next save."""
        stored = self.get_meta(key)
        if stored is not None:
            return stored
        self._pending_meta[key] = value
        with contextlib.suppress(StoreError):  # kept in _pending_meta for the next write
            self._write(lambda: None)
        return self.get_meta(key) or value

    # -- stamps -----------------------------------------------------------------------------

    def load_stamps(self) -> dict[str, Stamp]:
        rows = self._query(
            f"SELECT slug, published, {self._updated}, content_hash, source, live FROM stamps")
        # Interned: the same slugs and file names are keys all over the publisher's maps.
        return {(slug := sys.intern(row[0])): Stamp(slug, row[1], row[2], row[3],
                                                    sys.intern(row[4]), bool(row[5]))
                for row in rows}

    def stamps_of(self, slugs: Iterable[str]) -> dict[str, Stamp]:
        """The stamps stored for these slugs (those that have one), by primary key."""
        wanted = list(slugs)
        found: dict[str, Stamp] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start:start + _IN_CHUNK]
            rows = self._query(
                f"SELECT slug, published, {self._updated}, content_hash, source, live "
                f"FROM stamps WHERE slug IN ({', '.join('?' * len(part))})", tuple(part))
            for row in rows:
                found[row[0]] = Stamp(row[0], row[1], row[2], row[3], sys.intern(row[4]),
                                      bool(row[5]))
        return found

    def slugs_updated_at(self, moment: int) -> list[str]:
        """The slugs whose stored `updated` is this microsecond (by the publisher's rule, at
        most one), through the index on `updated`."""
        if self._updated != "updated":  # an old read-only view: seconds
            if moment % US:
                return []
            moment //= US
        if self._holds_no_stamp():
            return []
        return [row[0] for row in
                self._query("SELECT slug FROM stamps WHERE updated = ?", (moment,))]

    def _holds_no_stamp(self) -> bool:
        """Whether the state has no stamp at all: a first start asks `slugs_updated_at` for
        every new seed (its moment free?), 4 % of a cold start of 10,000 seeds in queries
        that find nothing. Asked once per connection (a file written back or replaced is
        another one) and until this Store writes stamps (`save_stamps`): it is the state's
        one writer."""
        if self._empty_on is not self._db:
            self._empty_on = self._db
            self._empty = not self._query("SELECT 1 FROM stamps LIMIT 1")
        return self._empty

    def last_slug_of(self, file_name: str) -> str | None:
        """The slug a file published last (its last good version while it is broken)."""
        rows = self._query("SELECT slug FROM stamps WHERE source = ? ORDER BY updated DESC "
                           "LIMIT 1", (file_name,))
        return rows[0][0] if rows else None

    def load_content(self, slug: str) -> Content | None:
        """The last good version stored for `slug`, if any."""
        rows = self._query(f"SELECT title, body, {self._text}, source FROM stamps "
                           "WHERE slug = ?", (slug,))
        return _content(rows[0]) if rows else None

    def load_page(self, slug: str, now: int) -> tuple[int, int, Content] | None:
        """published, updated and content of a slug that is published now (not scheduled
        later, not removed)."""
        rows = self._query(f"SELECT published, {self._updated}, title, body, {self._text}, "
                           "source FROM stamps WHERE slug = ? AND live = 1 AND published <= ?",
                           (slug, now))
        if not rows or (content := _content((row := rows[0])[2:])) is None:
            return None
        return row[0], row[1], content

    def _row_content(self, row: Sequence[object]) -> Content | None:
        return _content(row)  # type: ignore[arg-type]

    def tags_of(self, slugs: Iterable[str]) -> set[str]:
        """The tags (slugs) these entries have in the state."""
        if not self._has_tags:
            return set()
        wanted, found = list(slugs), set()
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start:start + _IN_CHUNK]
            found.update(row[0] for row in self._query(
                f"SELECT DISTINCT tag FROM tags WHERE slug IN ({', '.join('?' * len(part))})",
                tuple(part)))
        return found

    def live_slugs(self, after: str | None = None, limit: int = -1) -> list[str]:
        """The slugs the state has as published now (not removed), in slug order: those after
        `after`, at most `limit` (a caller reads 100,000 of them a part at a time: all at once,
        their rows and strings took 8 MiB more at the end of a cold start)."""
        if after is None:
            return [str(row[0]) for row in self._query(
                "SELECT slug FROM stamps WHERE live = 1 ORDER BY slug LIMIT ?", (limit,))]
        return [str(row[0]) for row in self._query(
            "SELECT slug FROM stamps WHERE live = 1 AND slug > ? ORDER BY slug LIMIT ?",
            (after, limit))]

    def published_pages(self, now: int, offset: int, limit: int) -> list[tuple[str, int]]:
        """(slug, updated in microseconds) of the entries published by `now` (Unix seconds),
        in slug order, `limit` of them from `offset`: a sitemap's file (publish/sitemap.py)."""
        return [(str(row[0]), int(row[1])) for row in self._query(  # type: ignore[call-overload]
            f"SELECT slug, {self._updated} FROM stamps WHERE live = 1 AND published <= ? "
            "ORDER BY slug LIMIT ? OFFSET ?", (now, limit, offset))]

    def count_published(self, now: int) -> tuple[int, int]:
        """How many entries are published by `now`, and the newest `updated` among them."""
        row = self._query(f"SELECT COUNT(*), MAX({self._updated}) FROM stamps "
                          "WHERE live = 1 AND published <= ?", (now,))[0]
        return int(row[0]), int(row[1] or 0)  # type: ignore[call-overload]

    def tag_labels(self) -> dict[str, str]:
        """tag → its label (as first written, by text order), of the tags entries have now."""
        if not self._has_tags:
            return {}
        return {str(row[0]): str(row[1]) for row in self._query(
            "SELECT tag, MIN(label) FROM tags GROUP BY tag")}

    def tagged(self, tag: str, now: int, limit: int) -> list[tuple[str, str]]:
        """(slug, label) of the newest published entries with this tag, newest first."""
        if not self._has_tags:
            return []
        return [(row[0], row[1]) for row in self._query(
            "SELECT s.slug, t.label FROM tags t JOIN stamps s ON s.slug = t.slug "
            "WHERE t.tag = ? AND s.live = 1 AND s.published <= ? "
            "ORDER BY s.published DESC, s.slug LIMIT ?", (tag, now, limit))]

    def load_revisions(self, paths: Iterable[str]) -> dict[str, Revision]:
        """The stored revisions of these documents (those that have one)."""
        if not self._has_documents:
            return {}
        wanted, found = list(paths), {}
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start:start + _IN_CHUNK]
            for row in self._query("SELECT path, digest, modified, previous FROM documents "
                                   f"WHERE path IN ({', '.join('?' * len(part))})",
                                   tuple(part)):
                found[row[0]] = Revision(*row)
        return found

    # -- tombstones (RFC 6721) ----------------------------------------------------------------

    def save_stamps(self, stamps: Iterable[Stamp], contents: Mapping[str, Content],
                    revisions: Iterable[Revision] = (),
                    tombstones: Mapping[str, int | None] | None = None,
                    slots: Iterable[tuple[int, str, int, int]] = ()) -> None:
        """Write all of `stamps`, the content of those in `contents`, documents' revisions
        and tombstones (slug → deletion moment; None: the slug came back, its tombstone goes),
        and archive slots (slot, slug, state, changed), in one transaction: all of it lands,
        or none. `slots` is read once, as it is written: a first numbering of the archive
        streams its rows, never held as a list."""
        self._empty = False  # (before writing: a failed write may have landed in part)
        revision_rows = [(r.path, r.digest, r.modified, r.previous) for r in revisions]
        buried = [(slug, when) for slug, when in (tombstones or {}).items() if when is not None]
        lifted = [(slug,) for slug, when in (tombstones or {}).items() if when is None]
        with_text, without_text, tag_rows = [], [], []
        for s in stamps:
            row = (s.slug, s.published, s.updated, s.content_hash, s.file_name, int(s.live))
            if (content := contents.get(s.slug)) is not None:
                with_text.append((*row, content.title,
                                  PARAGRAPH_SEPARATOR.join(content.paragraphs), content.text))
                tag_rows.extend((tag, s.slug, label) for tag, label in content.tags)
            else:
                without_text.append(row)
        upsert = ("INSERT INTO stamps (slug, published, updated, content_hash, source, live{}) "
                  "VALUES (?, ?, ?, ?, ?, ?{}) ON CONFLICT (slug) DO UPDATE SET "
                  "published = excluded.published, updated = excluded.updated, "
                  "content_hash = excluded.content_hash, source = excluded.source, "
                  "live = excluded.live{}")

        def write() -> None:  # one statement per row: the text goes with its dates
            self._db.executemany(upsert.format("", "", ""), without_text)
            self._db.executemany(upsert.format(
                ", title, body, text", ", ?, ?, ?",
                ", title = excluded.title, body = excluded.body, text = excluded.text"),
                with_text)
            # A new version's tags replace the old ones.
            self._db.executemany("DELETE FROM tags WHERE slug = ?",
                                 [(row[0],) for row in with_text])
            self._db.executemany("INSERT OR IGNORE INTO tags (tag, slug, label) "
                                 "VALUES (?, ?, ?)", tag_rows)
            self._db.executemany("INSERT OR REPLACE INTO documents (path, digest, modified, "
                                 "previous) VALUES (?, ?, ?, ?)", revision_rows)
            self._db.executemany("DELETE FROM tombstones WHERE slug = ?", lifted)
            self._db.executemany("INSERT OR REPLACE INTO tombstones (slug, deleted) "
                                 "VALUES (?, ?)", buried)
            self._db.executemany("INSERT OR REPLACE INTO archive_slots (slot, slug, state, "
                                 "changed) VALUES (?, ?, ?, ?)", slots)

        self._write(write)

def _content(row: Sequence[str]) -> Content | None:
    """(title, body, text, file name) → Content; None when no text was kept."""
    title, body, text, file_name = row
    if text:
        return Content(title, (), text, file_name)
    if not title or not body:
        return None
    return Content(title, tuple(body.split(PARAGRAPH_SEPARATOR)))


def peek_stamps(path: Path) -> dict[str, Stamp]:
    """The stamps in a state file, read without creating or changing anything ({} if none)."""
    if not path.exists():
        return {}
    for uri in (f"file:{quote(str(path))}?mode=ro", f"file:{quote(str(path))}?immutable=1"):
        try:
            db = sqlite3.connect(uri, uri=True)
            try:
                return Store(db, path).load_stamps()
            finally:
                db.close()
        except (sqlite3.Error, StoreError):
            continue
    return {}


def create_schema(db: sqlite3.Connection, path: Path | None = None) -> None:
    """The current schema, on a new or older state (inside the caller's transaction); an
    older state's `updated` seconds become microseconds (schema 3)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    had_stamps = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'stamps'").fetchone() is not None
    for statement in _SCHEMA.split(";"):  # executescript() would COMMIT early
        if statement.strip():
            db.execute(statement)
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if had_stamps and version < 3:
        _migrate_to_microseconds(db, path or Path("state"))
    db.execute("DROP INDEX IF EXISTS stamps_archived")  # schema 5: pages are slot ranges
    # Always written: this write is what tells, at open, a state that cannot be written.
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _salvaged_seconds_to_micros(db: sqlite3.Connection) -> None:
    """Rows salvaged from a state older than schema 3 carry `updated` in seconds, and the
    damaged file's version may be unreadable: tell them by size. Seconds of the years feedsvc
    takes (timerange: 1000..9998) are below 10^12 in magnitude; microseconds of any date after
    1970-01-12 are above it."""
    db.execute(f"UPDATE stamps SET updated = updated * {US} "
               "WHERE abs(updated) < 1000000000000")


def _connect_for_writing(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the state folder: {e.strerror}") from e
    db = None
    try:
        # check_same_thread=False: the pipeline runs in one worker thread, not the opener's.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # no effect on an existing file
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        _check_version(db, path)
        _quick_check(db, path)
        with _transaction(db):
            create_schema(db, path)
        return db
    except sqlite3.Error as e:
        if db is not None:
            db.close()
        raise StoreError(f"{path}: cannot open the state for writing: {e}") from e


def _quick_check(db: sqlite3.Connection, path: Path) -> None:
    """Find damage at open rather than at the first query that reaches it, when that is
    cheap: PRAGMA quick_check reads every page (133 ms for the 267 MiB state of 100,000 seeds
    here, from the page cache; a restart's scan reads most of those pages anyway). Above
    QUICK_CHECK_MAX_BYTES, damage is found when a query reaches it, as SQLite reports it then."""
    try:
        if path.stat().st_size > QUICK_CHECK_MAX_BYTES:
            return
    except OSError:
        return
    rows = db.execute("PRAGMA quick_check(1)").fetchall()
    if rows != [("ok",)]:
        first = " ".join(str(rows[0][0]).split())  # one log line, whatever SQLite says
        raise sqlite3.DatabaseError(f"database disk image is malformed ({first})")


def _connect_for_reading(path: Path, problem: StoreError,
                         quiet: bool = False) -> sqlite3.Connection:
    """A read-only view of the state, or an empty in-memory one when there is nothing to read.

    Read-only mode needs WAL's shared-memory file; when a read-only folder cannot hold one, the
    file is opened as immutable, which is only safe with no unmerged write-ahead log beside it."""
    if _has_no_state(path):
        if not quiet:
            log.error("%s; starting with an empty state kept in memory until it can be "
                      "written", problem)
        return _temporary_state(memory=True)
    wal = path.with_name(path.name + "-wal")
    uris = [f"file:{quote(str(path))}?mode=ro"]
    if not (wal.exists() and wal.stat().st_size > 0):
        uris.append(f"file:{quote(str(path))}?immutable=1")
    failure: sqlite3.Error | None = None
    for uri in uris:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            _check_version(db, path)
            db.execute("SELECT count(*) FROM stamps").fetchone()
        except sqlite3.Error as e:
            db.close()
            failure = e
            continue
        if not quiet:
            log.error("%s; serving from a read-only view of it, changes kept in memory until "
                      "it can be written", problem)
        return db
    raise StoreError(f"{problem}; and it cannot be read either: {failure}") from failure


def _has_no_state(path: Path) -> bool:
    """Nothing worth reading: no file, an empty one, or one whose schema was never written
    (a first start that failed half-way, on a full disk say)."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return True
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        return False
    return "stamps" not in names and version == 0


def _migrate_to_microseconds(db: sqlite3.Connection, path: Path) -> None:
    """Schema 3, inside the opening transaction: `updated` from seconds to microseconds.

    Older versions made every computed `updated` a distinct *second*, stepping forward past
    taken ones, so a folder of seeds sharing one mtime left values hours ahead of the clock.
    Those (ahead of now, on an entry already published: a scheduled entry's `updated` is its
    future `date` by right) are brought back to at most now, distinct, in the same order."""
    db.execute(f"UPDATE stamps SET updated = updated * {US}")
    now = time.time_ns() // 1000
    ahead = db.execute("SELECT slug, published, updated FROM stamps WHERE updated > ? AND "
                       "published * ? <= ? ORDER BY updated DESC, slug DESC",
                       (now, US, now)).fetchall()
    if not ahead:
        return
    moment, moved = now, []
    for slug, published, _ in ahead:  # newest first, each just below the one after it
        while db.execute("SELECT 1 FROM stamps WHERE updated = ?", (moment,)).fetchone():
            moment -= 1
        moved.append((max(moment, published * US), slug))
        moment -= 1
    db.executemany("UPDATE stamps SET updated = ? WHERE slug = ?", moved)
    log.warning("%s: %d entries had an `updated` after the clock (written by an older "
                "feedsvc); brought back to at most now", path, len(moved))


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        db.close()
        raise StoreError(f"{path}: state written by a newer feedsvc "
                         f"(schema {version}, this one knows {SCHEMA_VERSION})")


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


# -- a damaged or lost state file ------------------------------------------------------------

#: SQLite page cache of each read-only connection, in KiB.
READER_CACHE_KIB = 512


def _connect_read_only(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                         isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    # Several readers (long-tail, archive and site pages) each read a page's few rows by
    # index: 512 KiB of cache each instead of SQLite's 2 MiB; the OS caches the file anyway.
    db.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
    return db


def _temporary_state(memory: bool = False) -> sqlite3.Connection:
    """An empty state with the current schema, private to this connection: in memory, or in
    a temporary file SQLite deletes on close (a salvaged copy of 100,000 seeds' text would not
    fit in memory as well)."""
    db = sqlite3.connect(":memory:" if memory else "", isolation_level=None,
                         check_same_thread=False)
    with _transaction(db):
        create_schema(db)
    return db


def _open_damaged(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to a damaged state, for salvaging; None if it cannot be had."""
    for uri in (f"file:{quote(str(path))}?mode=ro", f"file:{quote(str(path))}?immutable=1"):
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            continue
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as e:
            if is_corruption(e):
                return db  # page 1 is damaged: copy_readable says nothing can be read
            db.close()
            continue
        return db
    return None


def _sqlite_message(error: BaseException) -> str:
    """The SQLite message at the root of an error (what the operator can search for)."""
    while error.__cause__ is not None and not isinstance(error, sqlite3.Error):
        error = error.__cause__
    return str(error)




def _lock_folder(path: Path, exclusive: bool = False) -> int | None:
    """A flock on the state's folder: shared by every process that writes the state, taken
    exclusively by `feedsvc state repair`. On the folder, not on the state file: closing any
    descriptor of a file drops the process's fcntl locks on it, which are SQLite's own. None
    when the folder cannot be opened (it is made later, or the write will say why)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if exclusive:
            raise StoreError(f"{path}: the state is in use by a running feedsvc (serve or "
                             "build); stop it first") from e
        raise StoreError(f"{path}: `feedsvc state repair` is running on this state; start "
                         "again when it is done") from e
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _stamp_now() -> str:
    return datetime.now().strftime("%Y%m%dT%H%M%S")


def _move_aside(path: Path, aside: Path) -> list[Path]:
    """Rename a state file and its -wal and -shm (names SQLite derives from the file's, so the
    set stays readable) to `aside`; returns the names used."""
    moved = []
    for suffix in ("-wal", "-shm", ""):  # the log first: the file never stands without it
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = aside.with_name(aside.name + suffix)
            os.rename(source, target)
            moved.append(target)
    return moved


def repair_state(path: Path) -> tuple[SalvageReport | None, list[Path]]:
    """`feedsvc state repair`: copy what can be read of the state into a fresh file with the
    current schema (temporary file, fsync, rename) and keep the damaged one aside as
    `{name}.corrupt-{YYYYmmddTHHMMSS}`. Returns (None, []) when the state is sound (nothing is
    changed), else what was saved and the names the damaged files were kept under. Refused
    while another process uses the state."""
    if not path.exists():
        raise StoreError(f"{path}: no state file to repair")
    lock = _lock_folder(path, exclusive=True)
    try:
        _merge_log(path)
        if _sound(path):
            return None, []
        damaged = _open_damaged(path)
        tmp = path.with_name(f".{path.name}.repair.tmp")
        tmp.unlink(missing_ok=True)
        fresh = sqlite3.connect(tmp, isolation_level=None)
        try:
            fresh.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            with _transaction(fresh):
                create_schema(fresh)
            report = (copy_readable(damaged, fresh) if damaged is not None
                      else SalvageReport(schema_lost=True))
            _salvaged_seconds_to_micros(fresh)
            meta = {row[0] for row in fresh.execute("SELECT key FROM meta")}
            if "created" not in meta:  # the feed's fallback date must stay in the past
                fresh.execute("INSERT INTO meta (key, value) VALUES ('created', ?)",
                              (str(int(datetime.now().timestamp())),))
        finally:
            fresh.close()
            if damaged is not None:
                damaged.close()
        _keep_owner(path, tmp)
        fsync_path(tmp)
        aside = path.with_name(f"{path.name}.corrupt-{_stamp_now()}")
        moved = _move_aside(path, aside)
        os.replace(tmp, path)
        fsync_path(path.parent)
        return report, moved
    except OSError as e:
        raise StoreError(f"{path}: cannot repair the state: {e.strerror or e}") from e
    finally:
        _unlock(lock)


def _keep_owner(old: Path, new: Path) -> None:
    """The repaired file gets the damaged one's owner and mode: run as root for a service
    with its own user, it must stay that user's to write."""
    st = old.stat()
    os.chmod(new, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(new, st.st_uid, st.st_gid)


def _merge_log(path: Path) -> None:
    """Fold a write-ahead log left by a killed process into the file, when SQLite still can:
    what it holds was committed, and the damaged file is then whole on its own."""
    if not path.with_name(path.name + "-wal").exists():
        return
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()


def _sound(path: Path) -> bool:
    """PRAGMA quick_check says the file is whole (it reads every page, without checking that
    indexes match their tables)."""
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        try:
            return db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        finally:
            db.close()
    except sqlite3.Error:
        return False


def _check_backup_target(path: Path, dest: Path) -> None:
    """A backup replaces `dest` by a rename: never the state itself (or its write-ahead log
    or shared memory, which would lose it), never a device, folder or FIFO (renaming over
    /dev/full replaces the device node)."""
    state_files = {path.resolve(), *(path.with_name(path.name + suffix).resolve()
                                     for suffix in ("-wal", "-shm"))}
    if dest.resolve() in state_files:
        raise StoreError(f"{dest}: is the state itself; give the backup another path")
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"cannot write {dest}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{dest}: not a regular file; a backup only replaces a file")


def backup_state(path: Path, dest: Path, *, overwrite: bool = False) -> int:
    """`feedsvc backup`: a consistent copy of the state at `dest`, also while feedsvc runs.
    SQLite's backup API copies it within one read transaction, write-ahead log included (a
    plain `cp` of the file alone can miss committed changes or catch half of one); written to
    a temporary file, fsynced, then linked to `dest` (refused if it exists: link(2) does not
    replace, so there is no window between a check and the write) or, with `overwrite`,
    renamed over it. Returns the number of slugs in the copy."""
    if not path.exists():
        raise StoreError(f"{path}: no state file to back up")
    _check_backup_target(path, dest)
    if not overwrite and os.path.lexists(dest):
        raise StoreError(f"{dest}: exists; give another path, or --force to replace it")
    source = _open_damaged(path)  # read-only: never changes the state
    if source is None:
        raise StoreError(f"{path}: cannot read the state")
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)
            # A rollback journal, not WAL: the copy is one file, and opening it (read-only,
            # on read-only media too) makes no -wal or -shm beside it. A restored copy is
            # switched back to WAL when feedsvc opens it.
            copy.execute("PRAGMA journal_mode = DELETE")
            sound = copy.execute("PRAGMA quick_check(1)").fetchall() == [("ok",)]
            slugs = copy.execute("SELECT count(*) FROM stamps").fetchone()[0] if sound else 0
        finally:
            copy.close()
        fsync_path(tmp)
        if overwrite:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)
            except FileExistsError as e:
                raise StoreError(f"{dest}: exists; give another path, or --force to replace "
                                 "it") from e
            finally:
                tmp.unlink(missing_ok=True)
        fsync_path(dest.parent)
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{path}: cannot back up the state: {e}") from e
    except OSError as e:
        raise StoreError(f"cannot write {dest}: {e.strerror or e}") from e
    finally:
        source.close()
    if not sound:
        raise CorruptState(f"{path}: the state is damaged, and so is its copy at {dest}; "
                           f"{REPAIR_HINT}")
    return int(slugs)


@dataclass(frozen=True)
class StateSummary:
    """What `feedsvc state check` says of a state file (a backup, before it is restored)."""

    problems: tuple[str, ...]  # empty: sound
    schema: int
    feed_id: str | None
    slugs: int
    published: int
    subscriptions: int

    @property
    def sound(self) -> bool:
        return not self.problems


def check_state(path: Path, now_us: int) -> StateSummary:
    """Read `path` without changing it (never a write, no -wal or -shm made: immutable when
    nothing else has it open) and check every page and index (PRAGMA integrity_check), the
    schema, and that what feedsvc needs is there."""
    if not path.is_file():
        raise StoreError(f"{path}: no such state file")
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"  # a live state's log is read too
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?{mode}", uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open: {e}") from e
    problems: list[str] = []
    schema, feed_id, slugs, published, subscriptions = 0, None, 0, 0, 0
    try:
        rows = db.execute("PRAGMA integrity_check(20)").fetchall()
        if rows != [("ok",)]:
            problems.extend(str(row[0]) for row in rows)
        schema = int(db.execute("PRAGMA user_version").fetchone()[0])
        if not 1 <= schema <= SCHEMA_VERSION:
            problems.append(f"schema {schema}: not a feedsvc state this version reads "
                            f"(1 to {SCHEMA_VERSION})")
        tables = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for needed in ("meta", "stamps"):
            if needed not in tables:
                problems.append(f"no table {needed}")
        if not problems:
            row = db.execute("SELECT value FROM meta WHERE key = 'feed_id'").fetchone()
            feed_id = None if row is None else str(row[0])
            slugs = int(db.execute("SELECT count(*) FROM stamps").fetchone()[0])
            published = int(db.execute(
                "SELECT count(*) FROM stamps WHERE live = 1 AND published <= ?",
                (now_us // US,)).fetchone()[0])
            if "subscriptions" in tables:
                subscriptions = int(db.execute(
                    "SELECT count(*) FROM subscriptions").fetchone()[0])
    except sqlite3.Error as e:
        problems.append(_sqlite_message(e))
    finally:
        db.close()
    return StateSummary(tuple(problems), schema, feed_id, slugs, published, subscriptions)
