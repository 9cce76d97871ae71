"""Copy what SQLite can still read of a damaged database into a sound one.

Used when the state turns out to be corrupt: by `serve` (into a private temporary database, to
go on publishing from what can be read) and by `feedsvc state repair` (into a fresh state file).
It knows no table of ours: it copies, table by table, the columns the source and the target
share, so a state of any schema version goes into whatever schema the target was made with.

SQLite reports damage as SQLITE_CORRUPT ("database disk image is malformed") or SQLITE_NOTADB
("file is not a database"), when a damaged page is reached, not when the file is opened. A
table is read in key order until the damage, then backwards from the end until the damage, and
the rows of a rowid table in between are then probed one key at a time: what lies in an
undamaged page is saved even when a page in the middle of the B-tree is garbage.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

#: Single-key probes at most per table when skipping a damaged region of a rowid table (rowids
#: of our tables are dense: a gap that wide is garbage, not rows).
MAX_PROBES = 1_000_000
#: Rows inserted into the target per statement batch.
_BATCH = 500


def is_corruption(error: BaseException | None) -> bool:
    """Whether this error (or what caused it) is SQLite reporting a damaged file."""
    while error is not None:
        if isinstance(error, sqlite3.DatabaseError):
            code = getattr(error, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _CORRUPT_CODES:
                return True
            text = str(error)
            if "malformed" in text or "not a database" in text:
                return True
        error = error.__cause__
    return False


@dataclass
class TableReport:
    """What was saved of one table; `expected` is the row count SQLite could still give (by
    the table or one of its indexes), None when it could not; `lost_keys`: primary keys an
    index still lists whose rows could not be read (the first few)."""

    name: str
    saved: int = 0
    expected: int | None = None
    damaged: bool = False
    lost_keys: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int | None:
        if self.expected is None:
            return None if self.damaged else 0
        return max(0, self.expected - self.saved)


@dataclass
class SalvageReport:
    tables: list[TableReport] = field(default_factory=list)
    #: The list of tables itself (page 1) could not be read: nothing could be saved.
    schema_lost: bool = False

    @property
    def saved(self) -> int:
        return sum(t.saved for t in self.tables)

    @property
    def complete(self) -> bool:
        return not self.schema_lost and not any(t.damaged or t.lost for t in self.tables)

    def lines(self) -> list[str]:
        """One line per table, for people."""
        if self.schema_lost:
            return ["the list of tables cannot be read: nothing could be saved"]
        out = []
        for t in self.tables:
            lost = t.lost
            if not t.damaged and not lost:
                out.append(f"{t.name}: {t.saved} rows saved")
                continue
            what = "an unknown number of rows lost" if lost is None else f"{lost} rows lost"
            line = f"{t.name}: {t.saved} rows saved, {what}"
            if t.lost_keys:
                more = ", …" if lost and lost > len(t.lost_keys) else ""
                line += f" ({', '.join(t.lost_keys)}{more})"
            out.append(line)
        return out


def copy_readable(source: sqlite3.Connection, target: sqlite3.Connection) -> SalvageReport:
    """Copy every readable row of the tables `target` has from `source` (same names, shared
    columns) in one transaction on `target`. Rows the target refuses (a NOT NULL column that
    came back NULL from a damaged page, a duplicate key) are skipped."""
    report = SalvageReport()
    # Read as leniently as SQLite can: with writable_schema on, a file shorter than its header
    # says (truncated) and a schema entry that does not parse are read rather than refused.
    # Nothing is ever written through `source`.
    with contextlib.suppress(sqlite3.Error):
        source.execute("PRAGMA writable_schema = ON")
    try:
        present = {row[0] for row in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
    except sqlite3.DatabaseError:
        report.schema_lost = True
        return report
    tables = [row[0] for row in target.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name").fetchall()]
    target.execute("BEGIN IMMEDIATE")
    try:
        for table in tables:
            table_report = TableReport(table)
            report.tables.append(table_report)
            if table in present:
                _copy_table(source, target, table, table_report)
        target.execute("COMMIT")
    except BaseException:
        target.execute("ROLLBACK")
        raise
    return report


def _copy_table(source: sqlite3.Connection, target: sqlite3.Connection, table: str,
                report: TableReport) -> None:
    try:
        info = source.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    except sqlite3.DatabaseError:
        report.damaged = True
        return
    wanted = [row[1] for row in target.execute(f"PRAGMA table_info({_quote(table)})")]
    have = {row[1] for row in info}
    columns = [c for c in wanted if c in have]
    pk = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
    rowid = _has_rowid(source, table)
    keys = ["rowid"] if rowid else pk
    if not columns or not keys:
        return
    insert = (f"INSERT OR IGNORE INTO {_quote(table)} ({', '.join(map(_quote, columns))}) "
              f"VALUES ({', '.join('?' * len(columns))})")
    seen: set[tuple[object, ...]] = set()
    batch: list[tuple[object, ...]] = []
    for row in _readable_rows(source, table, columns, keys, rowid, report):
        key, values = row[:len(keys)], row[len(keys):]
        if key in seen:
            continue
        seen.add(key)
        batch.append(values)
        if len(batch) >= _BATCH:
            report.saved += _insert(target, insert, batch)
            batch = []
    report.saved += _insert(target, insert, batch)
    report.expected = _count(source, table)
    if report.damaged and pk:
        report.lost_keys = _lost_keys(source, table, pk, seen if not rowid else None, target)


def _insert(target: sqlite3.Connection, insert: str, rows: list[tuple[object, ...]]) -> int:
    before = target.total_changes
    target.executemany(insert, rows)
    return target.total_changes - before


def _readable_rows(source: sqlite3.Connection, table: str, columns: Sequence[str],
                   keys: Sequence[str], rowid: bool, report: TableReport
                   ) -> Iterator[tuple[object, ...]]:
    """(key…, column…) of every row that can be read: forwards until damage, backwards until
    damage, then (rowid tables) key by key across the damaged region."""
    select = f"SELECT {', '.join(map(_quote, [*keys, *columns]))} FROM {_quote(table)}"
    order = ", ".join(map(_quote, keys))
    first_bad: tuple[object, ...] | None = None
    last: tuple[object, ...] | None = None
    try:
        for row in source.execute(f"{select} ORDER BY {order}"):
            last = row[:len(keys)]
            yield row
        return  # read whole: no damage on the way
    except sqlite3.DatabaseError:
        report.damaged = True
        first_bad = last
    high: tuple[object, ...] | None = None
    try:
        desc = ", ".join(f"{_quote(k)} DESC" for k in keys)
        for row in source.execute(f"{select} ORDER BY {desc}"):
            if first_bad is not None and row[:len(keys)] <= first_bad:  # type: ignore[operator]
                break
            high = row[:len(keys)]
            yield row
    except sqlite3.DatabaseError:
        pass
    if not rowid:
        return
    # Probe the rowids between the last good one read forwards and the lowest read backwards.
    low = int(first_bad[0]) if first_bad else 0  # type: ignore[call-overload]
    top = int(high[0]) if high else low + MAX_PROBES  # type: ignore[call-overload]
    probe = low + 1
    probes = 0
    while probe < top and probes < MAX_PROBES:
        probes += 1
        try:
            row = source.execute(f"{select} WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                                 (probe,)).fetchone()
        except sqlite3.DatabaseError:
            probe += 1
            continue
        if row is None or row[0] >= top:
            break
        yield row
        probe = int(row[0]) + 1  # type: ignore[call-overload]


def _count(source: sqlite3.Connection, table: str) -> int | None:
    """The row count SQLite still gives by the table or by any of its indexes (the largest)."""
    counts = []
    hints = [""]
    with contextlib.suppress(sqlite3.DatabaseError):
        hints += [f" INDEXED BY {_quote(row[1])}" for row in source.execute(
            f"PRAGMA index_list({_quote(table)})").fetchall()]
    for hint in hints:
        try:
            counts.append(source.execute(
                f"SELECT count(*) FROM {_quote(table)}{hint}").fetchone()[0])
        except sqlite3.DatabaseError:
            continue
    return max(counts) if counts else None


def _lost_keys(source: sqlite3.Connection, table: str, pk: Sequence[str],
               seen: set[tuple[object, ...]] | None, target: sqlite3.Connection,
               limit: int = 20) -> list[str]:
    """Primary keys an index still lists but whose rows were not saved (the first `limit`)."""
    cols = ", ".join(map(_quote, pk))
    if seen is None:  # rowid table: compare with what went into the target
        seen = set(target.execute(f"SELECT {cols} FROM {_quote(table)}").fetchall())
    lost: list[str] = []
    try:
        for row in source.execute(f"SELECT {cols} FROM {_quote(table)} ORDER BY {cols}"):
            if row not in seen:
                lost.append("/".join(map(str, row)))
                if len(lost) >= limit:
                    break
    except sqlite3.DatabaseError:
        pass
    return lost


def _has_rowid(db: sqlite3.Connection, table: str) -> bool:
    try:
        db.execute(f"SELECT rowid FROM {_quote(table)} LIMIT 0")
    except sqlite3.OperationalError:  # WITHOUT ROWID
        return False
    except sqlite3.DatabaseError:
        return True
    return True


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
