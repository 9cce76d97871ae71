"""store: a real SQLite file; what is saved survives closing and reopening."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from feedsvc.errors import StoreError
from feedsvc.model import US, Content, Revision, Stamp
from feedsvc.state.store import SCHEMA_VERSION, Store


def test_stamps_and_meta_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.sqlite3"
    store = Store.open(path)
    assert store.load_stamps() == {}
    assert store.setdefault_meta("feed_id", "urn:uuid:a") == "urn:uuid:a"
    assert store.setdefault_meta("feed_id", "urn:uuid:b") == "urn:uuid:a"  # kept, not replaced
    stamps = [Stamp("one", 100, 100, "h1", "1.txt"), Stamp("two", 200, 300, "h2", "2.txt")]
    store.save_stamps(stamps, {"one": Content("Title", ("p1", "p2\nsoft"))})
    store.save_stamps([Stamp("one", 100, 150, "h1b", "renamed.txt")], {})
    store.close()

    again = Store.open(path)
    assert again.load_stamps() == {"one": Stamp("one", 100, 150, "h1b", "renamed.txt"),
                                   "two": stamps[1]}
    assert again.get_meta("feed_id") == "urn:uuid:a"
    assert again.load_content("one") == Content("Title", ("p1", "p2\nsoft"))  # kept by the 2nd save
    assert again.load_content("two") is None
    again.close()


def test_state_uses_wal(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    store.save_stamps([Stamp("a", 1, 1, "h", "a.txt")], {})
    bad = [Stamp("b", 2, 2, "h", "b.txt"), Stamp("c", 3, 3, None, "c.txt")]  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="cannot write"):
        store.save_stamps(bad, {})
    assert set(store.load_stamps()) == {"a"}
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer feedsvc"):
        Store.open(path)


def test_unwritable_path_keeps_state_in_memory_until_it_can_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    store = Store.open(blocker / "state.db")
    assert not store.writable and "cannot create the state folder" in str(store.problem)
    assert store.setdefault_meta("feed_id", "urn:uuid:a") == "urn:uuid:a"  # from memory
    with pytest.raises(StoreError):
        store.save_stamps([Stamp("a", 1, 1, "h", "a.txt")], {})
    blocker.unlink()  # the disk is fixed: the next write catches up, meta included
    store.save_stamps([Stamp("a", 1, 1, "h", "a.txt")], {"a": Content("T", ("b",))})
    assert store.writable
    store.close()
    again = Store.open(blocker / "state.db")
    assert again.get_meta("feed_id") == "urn:uuid:a" and set(again.load_stamps()) == {"a"}
    again.close()


def test_garbage_state_opens_as_a_corrupt_empty_view_and_is_never_written(
        tmp_path: Path) -> None:
    """A file that is not a database is a corrupt state, not a reason to stop: it is read as
    empty, writes wait in memory, and the file is left as it was for `feedsvc state repair`."""
    garbage = b"this is not a database" * 100
    (tmp_path / "garbage.db").write_bytes(garbage)
    store = Store.open(tmp_path / "garbage.db")
    assert store.corrupt and not store.writable
    assert "corrupt: file is not a database" in str(store.problem)
    assert "feedsvc state repair" in str(store.problem)
    assert store.load_stamps() == {}
    with pytest.raises(StoreError, match="corrupt"):
        store.save_stamps([Stamp("a", 1, 1, "h", "a.txt")], {})
    assert not store.retry()
    store.close()
    assert (tmp_path / "garbage.db").read_bytes() == garbage


def test_a_state_with_the_earlier_without_rowid_table_still_works(tmp_path: Path) -> None:
    """States written before stamps became a rowid table keep their layout; the same SQL
    reads and writes them, and the index on `updated` is added at open."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stamps (slug TEXT PRIMARY KEY, published INTEGER NOT NULL, "
                   "updated INTEGER NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, "
                   "live INTEGER NOT NULL DEFAULT 1, title TEXT NOT NULL DEFAULT '', "
                   "body TEXT NOT NULL DEFAULT '') WITHOUT ROWID")
        db.execute("INSERT INTO stamps VALUES ('a', 1, 2, 'h', 'a.txt', 1, 'T', 'p')")
        db.execute("PRAGMA user_version = 1")
    store = Store.open(path)
    assert store.writable
    assert store.stamps_of(["a", "b"]) == {"a": Stamp("a", 1, 2 * US, "h", "a.txt")}
    store.save_stamps([Stamp("b", 3, 4, "h2", "b.txt")], {"b": Content("T2", ("q",))})
    assert store.slugs_updated_at(4) == ["b"] and store.slugs_updated_at(5) == []
    assert store.load_content("b") == Content("T2", ("q",))
    store.close()


def _schema_1_state(path: Path) -> None:
    """A state as feedsvc wrote it before authored seeds: no `text` column, no `tags`."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stamps (slug TEXT PRIMARY KEY, published INTEGER NOT NULL, "
                   "updated INTEGER NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, "
                   "live INTEGER NOT NULL DEFAULT 1, title TEXT NOT NULL DEFAULT '', "
                   "body TEXT NOT NULL DEFAULT '')")
        db.execute("INSERT INTO stamps VALUES ('a', 1, 2, 'h', 'a.txt', 1, 'T', 'p')")
        db.execute("PRAGMA user_version = 1")


def test_a_schema_1_state_is_read_as_it_is_and_migrated_when_written(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    _schema_1_state(path)
    reader = Store.open_for_reading(path)  # read-only: nothing can be added to it
    assert reader.load_content("a") == Content("T", ("p",))
    assert reader.load_page("a", 10) == (1, 2 * US, Content("T", ("p",)))  # µs, as schema 3
    assert reader.slugs_updated_at(2 * US) == ["a"] and reader.slugs_updated_at(2) == []
    assert reader.tags_of(["a"]) == set() and reader.tagged("x", 10, 5) == []
    reader.close()
    store = Store.open(path)
    assert store.writable
    store.save_stamps([Stamp("b", 3, 4, "h2", "b.md")],
                      {"b": Content("B", ("q",), "---\ntitle: B\n---\n\nq", "", (("x", "X"),))})
    assert store.load_content("b") == Content("B", (), "---\ntitle: B\n---\n\nq", "b.md")
    assert store.tags_of(["a", "b"]) == {"x"}
    assert store.tagged("x", 10, 5) == [("b", "X")]
    assert store.tagged("x", 2, 5) == []  # not published yet at 2
    assert store.load_content("a") == Content("T", ("p",))  # old rows read as before
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT updated FROM stamps WHERE slug = 'a'").fetchone() == (2 * US,)


def test_migration_brings_updated_values_ahead_of_the_clock_back_distinct(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Schema-2 states of 10,000 seeds sharing one mtime held `updated` seconds hours ahead
    of the clock; opening one for writing brings them back to at most now, distinct, in the
    same order, and says so once. A scheduled entry's future `updated` (its date) stays."""
    path = tmp_path / "v2.sqlite3"
    now = int(time.time())
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stamps (slug TEXT PRIMARY KEY, published INTEGER NOT NULL, "
                   "updated INTEGER NOT NULL, content_hash TEXT NOT NULL, source TEXT NOT NULL, "
                   "live INTEGER NOT NULL DEFAULT 1, title TEXT NOT NULL DEFAULT '', "
                   "body TEXT NOT NULL DEFAULT '', text TEXT NOT NULL DEFAULT '')")
        db.executemany("INSERT INTO stamps (slug, published, updated, content_hash, source) "
                       "VALUES (?, ?, ?, 'h', ?)",
                       [(f"s{i:05d}", now - 60, now - 60 + i, f"s{i}.txt") for i in range(3000)])
        db.execute("INSERT INTO stamps (slug, published, updated, content_hash, source) "
                   "VALUES ('later', ?, ?, 'h', 'later.txt')", (now + 3600, now + 3600))
        db.execute("PRAGMA user_version = 2")
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        store = Store.open(path)
    assert store.writable
    stamps = store.load_stamps()
    store.close()
    clock = (int(time.time()) + 1) * US
    regular = [stamps[f"s{i:05d}"].updated for i in range(3000)]
    assert max(regular) <= clock
    assert regular == sorted(regular) and len(set(regular)) == 3000  # same order, distinct
    assert regular[:60] == [(now - 60 + i) * US for i in range(60)]  # the past ones unmoved
    assert stamps["later"].updated == (now + 3600) * US
    said = [r.message for r in caplog.records if "after the clock" in r.message]
    assert len(said) == 1 and "brought back to at most now" in said[0]


def test_document_revisions_are_saved_with_the_stamps_and_survive_a_reopen(
        tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store.open(path)
    assert store.load_revisions(["/feed.atom"]) == {}
    store.save_stamps([Stamp("a", 1, 2 * US, "h", "a.txt")], {},
                      [Revision("/feed.atom", "d1", 5 * US, None),
                       Revision("/", "d2", 6 * US, 5 * US + 3)])
    store.save_stamps([], {}, [Revision("/feed.atom", "d3", 5 * US + 1, 5 * US)])
    store.close()
    again = Store.open(path)
    assert again.load_revisions(["/feed.atom", "/", "/nope"]) == {
        "/feed.atom": Revision("/feed.atom", "d3", 5 * US + 1, 5 * US),
        "/": Revision("/", "d2", 6 * US, 5 * US + 3)}
    again.close()
    reader = Store.open_for_reading(path)
    assert reader.load_revisions(["/"]) == {"/": Revision("/", "d2", 6 * US, 5 * US + 3)}
    reader.close()


def test_tag_history_knows_the_tags_of_published_entries_and_survives_a_reopen(
        tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store.open(path)
    store.save_stamps(
        [Stamp("a", 100, 100, "h", "a.txt"), Stamp("b", 100, 100, "h", "b.txt", live=False),
         Stamp("later", 900, 900, "h", "l.txt")],
        {"a": Content("A", ("p",), "t", "a.txt", (("x", "X"),)),
         "b": Content("B", ("p",), "t", "b.txt", (("y", "Y"),)),
         "later": Content("L", ("p",), "t", "l.txt", (("z", "Z"),))})
    # Tags of entries published by now, removed ones too; not those of a scheduled entry.
    assert store.tag_history(500) == {"x": ("X", None), "y": ("Y", None)}
    store.save_tag_history({"y": ("Y", 400), "w": ("W", 300)})
    store.close()
    again = Store.open(path)
    # Derived rows were recorded: a tag stays known once the entry's tags change.
    again.save_stamps([Stamp("a", 100, 200, "h2", "a.txt")],
                      {"a": Content("A", ("p",), "t2", "a.txt", ())})
    assert again.tag_history(500) == {"x": ("X", None), "y": ("Y", 400), "w": ("W", 300)}
    again.close()


def test_live_slugs_are_read_a_part_at_a_time_in_slug_order(tmp_path: Path) -> None:
    """The sweep after a first scan reads the published slugs a part at a time (100,000 at
    once took 8 MiB more at the end of a cold start): the parts, after the last slug of the one
    before, are every live slug once, in order; removed ones never."""
    store = Store.open(tmp_path / "state.sqlite3")
    slugs = [f"{prefix}{n}" for prefix in ("a", "ab", "b", "é", "z-") for n in range(7)]
    store.save_stamps([Stamp(slug, 1, i, "h", f"{slug}.txt", live=i % 5 != 0)
                       for i, slug in enumerate(slugs)], {})
    live = sorted(slug for i, slug in enumerate(slugs) if i % 5 != 0)
    assert store.live_slugs() == live
    for limit in (1, 2, 3, 7, 100):
        found, after = [], None
        while part := store.live_slugs(after, limit):
            assert len(part) <= limit
            found.extend(part)
            after = part[-1]
        assert found == live, limit
    store.close()


def test_an_empty_state_answers_moments_until_it_holds_stamps(tmp_path: Path) -> None:
    """A first start asks, for each new seed, whether its moment is someone's `updated`: an
    empty state says no without a query, until stamps are written; a state written by
    another process before this one opened it is asked."""
    store = Store.open(tmp_path / "state.sqlite3")
    assert store.slugs_updated_at(4) == []
    store.save_stamps([Stamp("b", 3, 4, "h", "b.txt")], {"b": Content("T", ("p",))})
    assert store.slugs_updated_at(4) == ["b"]
    store.close()
    again = Store.open(tmp_path / "state.sqlite3")
    assert again.slugs_updated_at(4) == ["b"] and again.slugs_updated_at(5) == []
    again.close()
