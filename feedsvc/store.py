"""The durable state, in SQLite: feed id, and per slug its dates, content hash, file and last
good content.

This is the only module with SQL. It decides nothing: the dates it stores are chosen by the
publisher; it keeps them safe (WAL, one transaction per batch) and gives them back. When the
state cannot be written (read-only or full disk), it still reads what it can and says so;
every write retries opening it for writing, so the next one that works catches up.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from feedsvc.errors import StoreError
from feedsvc.model import US, Content, Revision, Stamp

log = logging.getLogger("feedsvc")

# 2: `text` of authored seeds, `tags`; 3: `updated` in microseconds, `documents`.
SCHEMA_VERSION = 3

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
CREATE TABLE IF NOT EXISTS tags (
    tag   TEXT NOT NULL,
    slug  TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (tag, slug)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_by_slug ON tags (slug);
CREATE TABLE IF NOT EXISTS documents (
    path     TEXT PRIMARY KEY,
    digest   TEXT NOT NULL,
    modified INTEGER NOT NULL,
    previous INTEGER
) WITHOUT ROWID;
"""
#: Columns added since the first schema, for states made before them: (table, column, type).
_ADDED_COLUMNS = (("stamps", "text", "TEXT NOT NULL DEFAULT ''"),)
_PAGE_SIZE = 8192

#: Slugs per `IN (…)` query: well under SQLite's limit on bound parameters.
_IN_CHUNK = 500

#: Paragraphs are stored joined by a blank line; a paragraph never contains one.
PARAGRAPH_SEPARATOR = "\n\n"


class Store:
    """One state file. Use from one thread at a time."""

    def __init__(self, connection: sqlite3.Connection, path: Path,
                 problem: StoreError | None = None) -> None:
        self._db = connection
        self.path = path
        #: Why the state is not writable now (None when it is).
        self.problem = problem
        self._pending_meta: dict[str, str] = {}
        self._learn_schema()

    def _learn_schema(self) -> None:
        """A read-only view of a state made before `text` and `tags` reads without them."""
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(stamps)")}
            tables = {row[0] for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error:
            columns, tables = set(), set()
        self._text = "text" if "text" in columns else "''"
        self._has_tags = "tags" in tables
        self._has_documents = "documents" in tables
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error:
            version = SCHEMA_VERSION
        # A read-only view of a state older than schema 3 has `updated` in seconds.
        self._updated = "updated" if version >= 3 or not columns else f"(updated * {US})"

    @property
    def writable(self) -> bool:
        return self.problem is None

    @classmethod
    def open_for_reading(cls, path: Path) -> Store:
        """A second connection for readers in another thread or process (long-tail pages)."""
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                             isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        return cls(db, path)

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open for writing; failing that, open what can be read and remember the problem."""
        try:
            return cls(_connect_for_writing(path), path)
        except StoreError as problem:
            return cls(_connect_for_reading(path, problem), path, problem)

    def close(self) -> None:
        self._db.close()

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        if key in self._pending_meta:
            return self._pending_meta[key]
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

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
        return [row[0] for row in
                self._query("SELECT slug FROM stamps WHERE updated = ?", (moment,))]

    def last_slug_of(self, source: str) -> str | None:
        """The slug a file published last (its last good version while it is broken)."""
        row = self._query("SELECT slug FROM stamps WHERE source = ? ORDER BY updated DESC "
                          "LIMIT 1", (source,)).fetchone()
        return None if row is None else row[0]

    def load_content(self, slug: str) -> Content | None:
        """The last good version stored for `slug`, if any."""
        row = self._query(f"SELECT title, body, {self._text}, source FROM stamps WHERE slug = ?",
                          (slug,)).fetchone()
        return None if row is None else _content(row)

    def load_page(self, slug: str, now: int) -> tuple[int, int, Content] | None:
        """published, updated and content of a slug that is published now (not scheduled
        later, not removed)."""
        row = self._query(f"SELECT published, {self._updated}, title, body, {self._text}, source "
                          "FROM stamps WHERE slug = ? AND live = 1 AND published <= ?",
                          (slug, now)).fetchone()
        if row is None or (content := _content(row[2:])) is None:
            return None
        return row[0], row[1], content

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

    def save_stamps(self, stamps: Iterable[Stamp], contents: Mapping[str, Content],
                    revisions: Iterable[Revision] = ()) -> None:
        """Write all of `stamps`, the content of those in `contents`, and documents'
        revisions, in one transaction: all of it lands, or none."""
        revision_rows = [(r.path, r.digest, r.modified, r.previous) for r in revisions]
        with_text, without_text, tag_rows = [], [], []
        for s in stamps:
            row = (s.slug, s.published, s.updated, s.content_hash, s.source, int(s.live))
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

        self._write(write)

    def retry(self) -> bool:
        """Try to make the state writable again (and write what waits); True if it is."""
        if self.writable:
            return True
        with contextlib.suppress(StoreError):
            self._write(lambda: None)
        return self.writable

    # -- plumbing ---------------------------------------------------------------------------

    def _write(self, statements: Callable[[], None]) -> None:
        if not self.writable:
            self._reopen_for_writing()
        try:
            with _transaction(self._db):
                self._db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                                     list(self._pending_meta.items()))
                statements()
        except sqlite3.Error as e:
            # Not writable until a write works again: the next one reopens and retries.
            self.problem = StoreError(f"{self.path}: cannot write the state: {e}")
            raise self.problem from e
        self._pending_meta.clear()

    def _reopen_for_writing(self) -> None:
        # Close the read-only view first: SQLite shares one shared-memory mapping per file
        # within a process, and a read-only one would make the new connection read-only too.
        self._db.close()
        try:
            self._db = _connect_for_writing(self.path)
        except StoreError as e:
            self.problem = e
            self._db = _connect_for_reading(self.path, e, quiet=True)
            self._learn_schema()
            raise
        self.problem = None
        self._learn_schema()
        log.info("%s: the state is writable again", self.path)

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot read the state: {e}") from e


def _content(row: Sequence[str]) -> Content | None:
    """(title, body, text, source) → Content; None when no text was kept."""
    title, body, text, source = row
    if text:
        return Content(title, (), text, source)
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
        with _transaction(db):
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
                _migrate_to_microseconds(db, path)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db
    except sqlite3.Error as e:
        if db is not None:
            db.close()
        raise StoreError(f"{path}: cannot open the state for writing: {e}") from e


def _connect_for_reading(path: Path, problem: StoreError,
                         quiet: bool = False) -> sqlite3.Connection:
    """A read-only view of the state, or an empty in-memory one when there is nothing to read.

    Read-only mode needs WAL's shared-memory file; when a read-only folder cannot hold one, the
    file is opened as immutable, which is only safe with no unmerged write-ahead log beside it."""
    if _has_no_state(path):
        if not quiet:
            log.error("%s; starting with an empty state kept in memory until it can be "
                      "written", problem)
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db
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
    raise StoreError(f"{problem}; and it cannot be read either: {failure}") from problem


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
