"""The built-in WebSub hub's subscriptions (W3C WebSub §5.1, §6): who gets which topic, until
when, with which secret. They live in the state file, so a restart keeps them.

`Subscription` and the `SubscriptionStorage` Protocol are the interface the hub's parts share;
`SQLiteSubscriptions` implements it on a connection of its own to the state file (WAL, busy
timeout: the pipeline's connection keeps writing meanwhile). Its table is `SCHEMA`, which the
state's schema includes (store.py `_SCHEMA`), and which this connection also creates when it
opens (CREATE … IF NOT EXISTS: whichever opens first). Use from one thread at a time (the hub
runs it on a thread of its own).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import quote, urlsplit

from feedsvc.durable import file_identity
from feedsvc.errors import StoreError

T = TypeVar("T")

#: One row per (topic, callback): §5.1 "each subsequent request … MUST override the previous
#: subscription state for a specific topic URL and callback URL combination". `host`: the
#: callback's host, lowercased, for the per-host bound. No ";" in here: the state's schema is
#: run statement by statement, split on it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS websub_subscriptions (
    topic         TEXT NOT NULL,
    callback      TEXT NOT NULL,
    host          TEXT NOT NULL,
    secret        BLOB,
    expires       INTEGER NOT NULL,
    failing_since INTEGER,
    PRIMARY KEY (topic, callback)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS websub_subscriptions_by_expires ON websub_subscriptions (expires);
CREATE INDEX IF NOT EXISTS websub_subscriptions_by_host ON websub_subscriptions (host)
"""


@dataclass(frozen=True, slots=True)
class Subscription:
    """An active subscription: verified (§5.3), not expired."""

    topic: str  # the feed document's self URL
    callback: str  # the subscriber's URL, as it gave it
    #: HMAC key of the deliveries' X-Hub-Signature (§5.1: fewer than 200 bytes); None: unsigned.
    secret: bytes | None
    #: Microseconds since the epoch (as every date in the state).
    expires_us: int
    #: When its deliveries started failing without a success since; None: not failing.
    failing_since_us: int | None = None


class SubscriptionStorage(Protocol):
    """What the hub needs of the state; every method may raise StoreError."""

    def subscribe(self, subscription: Subscription) -> None:
        """Add or renew (same topic and callback: replaced, lease and secret included)."""

    def unsubscribe(self, topic: str, callback: str) -> bool:
        """Remove; whether it was there."""

    def active(self, topic: str, now_us: int) -> list[Subscription]:
        """The topic's unexpired subscriptions."""

    def expire(self, now_us: int) -> int:
        """Remove the expired ones; how many."""

    def failing(self, topic: str, callback: str, since_us: int | None) -> None:
        """Record that deliveries to it fail since `since_us` (None: they work again)."""


def callback_host(callback: str) -> str:
    """The host a callback's bound counts against: its hostname, lowercased ("" if none)."""
    try:
        return urlsplit(callback).hostname or ""
    except ValueError:
        return ""


_COLUMNS = "topic, callback, secret, expires, failing_since"


def _subscription(row: tuple[object, ...]) -> Subscription:
    topic, callback, secret, expires, failing_since = row
    assert isinstance(topic, str) and isinstance(callback, str) and isinstance(expires, int)
    assert secret is None or isinstance(secret, bytes)
    assert failing_since is None or isinstance(failing_since, int)
    return Subscription(topic, callback, secret, expires, failing_since)


class SQLiteSubscriptions:
    """SubscriptionStorage in the state file. `open` for the hub (reads and writes),
    `open_for_reading` for `feedsvc check` (never creates or writes anything)."""

    def __init__(self, db: sqlite3.Connection, path: Path, *, has_table: bool = True) -> None:
        self._db = db
        self.path = path
        self._has_table = has_table
        #: The file open, as (st_dev, st_ino): when the state file is written back or
        #: repaired (store.py), the next use reopens on the new one (None: read-only view).
        self._identity = file_identity(path) if has_table else None

    @classmethod
    def open(cls, path: Path) -> SQLiteSubscriptions:
        db = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: opened on the loop's thread, used on the hub's own.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                db.execute(statement)
            db.execute("COMMIT")
        except (OSError, sqlite3.Error) as e:
            if db is not None:
                db.close()
            raise StoreError(f"{path}: cannot open the WebSub subscriptions: "
                             f"{getattr(e, 'strerror', None) or e}") from e
        return cls(db, path)

    @classmethod
    def open_for_reading(cls, path: Path) -> SQLiteSubscriptions:
        subscriptions = cls._open_for_reading(path)
        subscriptions._identity = None  # never reopened: a one-off read (`feedsvc check`)
        return subscriptions

    @classmethod
    def _open_for_reading(cls, path: Path) -> SQLiteSubscriptions:
        try:
            db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            has_table = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                "name = 'websub_subscriptions'").fetchone() is not None
        except sqlite3.Error as e:
            raise StoreError(f"{path}: cannot read the WebSub subscriptions: {e}") from e
        return cls(db, path, has_table=has_table)

    def close(self) -> None:
        self._db.close()

    # -- SubscriptionStorage ----------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        s = subscription
        self._write(lambda: self._db.execute(
            "INSERT OR REPLACE INTO websub_subscriptions "
            "(topic, callback, host, secret, expires, failing_since) VALUES (?, ?, ?, ?, ?, ?)",
            (s.topic, s.callback, callback_host(s.callback), s.secret, s.expires_us,
             s.failing_since_us)).rowcount)

    def unsubscribe(self, topic: str, callback: str) -> bool:
        return self._write(lambda: self._db.execute(
            "DELETE FROM websub_subscriptions WHERE topic = ? AND callback = ?",
            (topic, callback)).rowcount) > 0

    def active(self, topic: str, now_us: int) -> list[Subscription]:
        return [_subscription(row) for row in self._read(
            f"SELECT {_COLUMNS} FROM websub_subscriptions WHERE topic = ? AND expires > ? "
            "ORDER BY callback", (topic, now_us))]

    def expire(self, now_us: int) -> int:
        return self._write(lambda: self._db.execute(
            "DELETE FROM websub_subscriptions WHERE expires <= ?", (now_us,)).rowcount)

    def failing(self, topic: str, callback: str, since_us: int | None) -> None:
        self._write(lambda: self._db.execute(
            "UPDATE websub_subscriptions SET failing_since = ? WHERE topic = ? AND callback = ?",
            (since_us, topic, callback)).rowcount)

    # -- the hub's bounds, /healthz, `feedsvc check` ----------------------------------------

    def subscribe_within(self, subscription: Subscription, now_us: int, per_topic: int,
                         per_host: int) -> str | None:
        """`subscribe`, unless that would make more than `per_topic` active subscriptions
        to its topic or `per_host` on its callback's host (a renewal always passes): then
        nothing is written and the reason is returned. Checked and written in one
        transaction, so concurrent requests (other worker processes too) cannot overshoot."""
        s, host = subscription, callback_host(subscription.callback)

        def statements() -> str | None:
            def count(sql: str, *args: object) -> int:
                return int(self._db.execute(sql, args).fetchone()[0])

            renewal = count("SELECT count(*) FROM websub_subscriptions WHERE topic = ? AND "
                            "callback = ? AND expires > ?", s.topic, s.callback, now_us)
            if not renewal:
                if count("SELECT count(*) FROM websub_subscriptions WHERE topic = ? AND "
                         "expires > ?", s.topic, now_us) >= per_topic:
                    return f"this topic has its maximum of {per_topic} subscriptions"
                if count("SELECT count(*) FROM websub_subscriptions WHERE host = ? AND "
                         "expires > ?", host, now_us) >= per_host:
                    return f"callbacks on {host} have their maximum of {per_host} subscriptions"
            self._db.execute(
                "INSERT OR REPLACE INTO websub_subscriptions (topic, callback, host, secret, "
                "expires, failing_since) VALUES (?, ?, ?, ?, ?, ?)",
                (s.topic, s.callback, host, s.secret, s.expires_us, s.failing_since_us))
            return None

        return self._write(statements)

    def over_bounds(self, topic: str, callback: str, now_us: int, per_topic: int,
                    per_host: int) -> str | None:
        """What `subscribe_within` would refuse now, without writing (the hub denies before
        it bothers the subscriber with a verification)."""
        if self.get(topic, callback, now_us) is not None:
            return None
        if self.count_topic(topic, now_us) >= per_topic:
            return f"this topic has its maximum of {per_topic} subscriptions"
        host = callback_host(callback)
        if self.count_host(host, now_us) >= per_host:
            return f"callbacks on {host} have their maximum of {per_host} subscriptions"
        return None

    def get(self, topic: str, callback: str, now_us: int) -> Subscription | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM websub_subscriptions WHERE topic = ? AND "
                          "callback = ? AND expires > ?", (topic, callback, now_us))
        return _subscription(rows[0]) if rows else None

    def count_topic(self, topic: str, now_us: int) -> int:
        rows = self._read("SELECT count(*) FROM websub_subscriptions WHERE topic = ? AND "
                          "expires > ?", (topic, now_us))
        return int(rows[0][0])  # type: ignore[call-overload]

    def count_host(self, host: str, now_us: int) -> int:
        rows = self._read("SELECT count(*) FROM websub_subscriptions WHERE host = ? AND "
                          "expires > ?", (host, now_us))
        return int(rows[0][0])  # type: ignore[call-overload]

    def per_topic(self, now_us: int, limit: int) -> tuple[int, list[tuple[str, int]]]:
        """All active subscriptions counted, and the `limit` topics that have most, with
        their counts (most first, then by topic)."""
        total = self._read("SELECT count(*) FROM websub_subscriptions WHERE expires > ?",
                           (now_us,))
        rows = self._read("SELECT topic, count(*) AS n FROM websub_subscriptions "
                          "WHERE expires > ? GROUP BY topic ORDER BY n DESC, topic LIMIT ?",
                          (now_us, limit))
        return (int(total[0][0]),  # type: ignore[call-overload]
                [(str(topic), int(n)) for topic, n in rows])  # type: ignore[call-overload]

    def all_active(self, now_us: int) -> Iterator[Subscription]:
        """Every active subscription, by topic then callback."""
        for row in self._read(f"SELECT {_COLUMNS} FROM websub_subscriptions "
                              "WHERE expires > ? ORDER BY topic, callback", (now_us,)):
            yield _subscription(row)

    # -- plumbing ---------------------------------------------------------------------------

    def _follow_file(self) -> None:
        """Reopen when the file at `path` is another than the one open: the state was
        deleted and written back, or repaired, while the hub ran (a write into the old,
        unlinked file would be lost). While there is no file, go on with the open one."""
        if self._identity is None:
            return
        identity = file_identity(self.path)
        if identity is None or identity == self._identity:
            return
        fresh = SQLiteSubscriptions.open(self.path)
        self._db.close()
        self._db, self._identity = fresh._db, fresh._identity

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        self._follow_file()
        if not self._has_table:
            return [(0,)] if sql.startswith("SELECT count(*)") else []
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot read the WebSub subscriptions: {e}") from e

    def _write(self, statement: Callable[[], T]) -> T:
        self._follow_file()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            result = statement()
            self._db.execute("COMMIT")
            return result
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot write the WebSub subscriptions: {e}") from e
        finally:
            if self._db.in_transaction:  # the statement or the COMMIT failed
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")


