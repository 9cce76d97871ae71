"""The durable state, in SQLite: feed id, and per slug its dates, content hash and file.

This is the only module with SQL. It decides nothing: the dates it stores are chosen by the
publisher; it keeps them safe (WAL, one transaction per batch) and gives them back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from feedsvc.errors import StoreError
from feedsvc.model import Stamp

SCHEMA_VERSION = 1

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
    source       TEXT NOT NULL
) WITHOUT ROWID;
"""


class Store:
    """One open state file. Use from one thread at a time."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the pipeline runs in one worker thread, not the opener's.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(f"{path}: state written by a newer feedsvc "
                                 f"(schema {version}, this one knows {SCHEMA_VERSION})")
            with _transaction(db):
                _create(db)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot open the state database: {e}") from e
        except OSError as e:
            raise StoreError(f"{path}: cannot create the state folder: {e.strerror}") from e
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    def get_meta(self, key: str) -> str | None:
        row = self._query("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def setdefault_meta(self, key: str, value: str) -> str:
        """Store `value` under `key` unless a value is there already; return the stored one."""
        try:
            with _transaction(self._db):
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                                 (key, value))
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from e
        stored = self.get_meta(key)
        assert stored is not None
        return stored

    def load_stamps(self) -> dict[str, Stamp]:
        rows = self._query("SELECT slug, published, updated, content_hash, source FROM stamps")
        return {row[0]: Stamp(*row) for row in rows}

    def save_stamps(self, stamps: Iterable[Stamp]) -> None:
        """Write all of `stamps` in one transaction: all of them land, or none."""
        rows = [(s.slug, s.published, s.updated, s.content_hash, s.source) for s in stamps]
        if not rows:
            return
        try:
            with _transaction(self._db):
                self._db.executemany(
                    "INSERT INTO stamps (slug, published, updated, content_hash, source) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (slug) DO UPDATE SET "
                    "published = excluded.published, updated = excluded.updated, "
                    "content_hash = excluded.content_hash, source = excluded.source",
                    rows,
                )
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write: {e}") from e

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot read: {e}") from e


def _create(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction first; run the statements one by one.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
