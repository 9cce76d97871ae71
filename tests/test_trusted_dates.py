"""Issue 9, items 1 and 2: no date feedsvc sends may lie.

1. Seeds sharing one mtime (git clone, cp -r, rsync -t, unzip) cost a linear cold start and
   leave no `updated` and no document date after the clock; rapid edits neither.
2. A document's Last-Modified moves forward, strictly, whenever its bytes change (a deleted
   newest entry, a changed past `date:`), also within one second, and stays the same across
   restarts and `build`.

Real seed files, real SQLite files, a real `feedsvc serve` on loopback, feedparser as client.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
from lxml import etree

from feedsvc.config import load_config
from feedsvc.publish.publisher import Publisher

from .conftest import free_port, run_cli, seed, wait_until, write_config, write_seed

ATOM = "{http://www.w3.org/2005/Atom}"
US = 1_000_000  # `updated` is kept in microseconds
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _cold_start(folder: Path, count: int, mtime_of) -> tuple[int, Publisher, datetime]:
    """A cold start of `count` seeds on a fresh state; returns the SQL statements it ran."""
    folder.mkdir()
    config = load_config(write_config(folder, port=free_port()))
    for i in range(count):
        write_seed(config.paths.seeds, f"s{i:05d}.txt", seed(f"s{i:05d}", f"T{i}", "Body."),
                   mtime=mtime_of(i))
    publisher = Publisher.open(config)
    statements = [0]

    def count_statement(_: str) -> None:
        statements[0] += 1

    publisher.store._db.set_trace_callback(count_statement)
    publisher.scan()
    publisher.store._db.set_trace_callback(None)
    return statements[0], publisher, datetime.now(UTC)


def _atom_dates(body: bytes) -> list[datetime]:
    root = etree.fromstring(body)
    return [datetime.fromisoformat(e.text) for e in root.iter(f"{ATOM}updated")]


def test_a_cold_start_of_seeds_sharing_one_mtime_is_linear_and_never_ahead(
        tmp_path: Path) -> None:
    """2,000 seeds with one mtime 30 s ago (a fresh `git clone`) cost about the state
    look-ups the same seeds with spread mtimes do (it was quadratic: 324 s for 10,000), and
    every `updated` is distinct and not after the clock (it was hours ahead)."""
    count, base = 2000, int(time.time()) - 30
    spread, spread_publisher, _ = _cold_start(tmp_path / "spread", count,
                                              lambda i: base - 7 * i)
    spread_publisher.close()
    same, publisher, after = _cold_start(tmp_path / "same", count, lambda i: base)
    try:
        print(f"\nSQL statements of a cold start of {count} seeds: spread mtimes {spread}, "
              f"one mtime {same}")
        assert same <= 2 * spread + 200
        stamps = publisher.store.load_stamps()
        assert len(stamps) == count
        updated = [stamp.updated for stamp in stamps.values()]
        assert len(set(updated)) == count  # distinct (feed validators flag a shared one)
        assert max(updated) <= to_micros(after)
        assert all(stamp.published == base for stamp in stamps.values())  # never moved
        # The nearest free microseconds after the shared mtime, in file name order.
        assert sorted(updated) == [base * US + i for i in range(count)]
        for document in publisher.snapshot.documents.values():
            assert document.last_modified <= after, document.path
        assert max(_atom_dates(publisher.snapshot.documents["/feed.atom"].body)) <= after
    finally:
        publisher.close()


def _http_date(headers: dict[str, str], name: str) -> datetime:
    return parsedate_to_datetime(headers[name])


def test_rapid_edits_never_date_anything_after_the_response(tmp_path: Path, serve) -> None:
    """200 edits of one seed as fast as possible: `updated`, the feed's `<updated>`,
    `lastBuildDate` and Last-Modified never pass the response's Date (RFC 9110 §8.8.2.1);
    each edit stepped a second forward before (50 edits/s for 30 s: 18 minutes ahead)."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", seed("a", "A", "v0"))
    server = serve(config_path)

    def check() -> None:
        for path in ("/feed.atom", "/feed.rss", "/entries/a", "/"):
            status, headers, body = server.get(path)
            assert status == 200
            date = _http_date(headers, "Date")
            assert _http_date(headers, "Last-Modified") <= date, path
            if path == "/feed.atom":
                # The Date header has whole seconds; these may carry microseconds.
                assert max(_atom_dates(body)) < date + timedelta(seconds=1)
            if path == "/feed.rss":
                assert parsedate_to_datetime(
                    feedparser.parse(body).feed.updated) <= date

    for i in range(1, 201):
        write_seed(seeds, "a.txt", seed("a", "A", f"v{i}"))
        if i % 25 == 0:
            check()
    wait_until(lambda: b"v200" in server.get("/feed.atom")[2])
    check()
    server.stop()
    with sqlite3.connect(tmp_path / "state" / "feedsvc.sqlite3") as db:
        (updated,) = db.execute("SELECT updated FROM stamps WHERE slug = 'a'").fetchone()
    assert from_micros(updated) <= datetime.now(UTC)


def _lm(server, path: str) -> tuple[str, str, bytes]:
    status, headers, body = server.get(path)
    assert status == 200
    return headers["Last-Modified"], headers["ETag"], body


def _ims(server, path: str, since: str) -> int:
    return server.get(path, {"If-Modified-Since": since})[0]


DOCUMENTS = ("/feed.atom", "/feed.rss", "/", "/tags/ciel.atom", "/tags/ciel.rss")
TAGGED = "---\ntags: [Ciel]\n{}---\n"


def test_last_modified_moves_forward_whenever_the_bytes_change(tmp_path: Path, serve) -> None:
    """Deleting the newest entry, or changing only a past `date:`, changes the bytes but not
    the newest `updated`: Last-Modified moved back, or stayed, and clients sending only
    If-Modified-Since got 304 for changed content. Now it moves forward; nothing changed →
    304; a restart and `build` give the same Last-Modified, ETags and bytes."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    hour_ago = int(time.time()) - 3600
    for i, slug in enumerate(("a", "b", "c")):
        write_seed(seeds, f"{slug}.txt",
                   TAGGED.format("") + seed(slug, slug.upper(), f"Body {slug}."),
                   mtime=hour_ago + i)
    server = serve(config_path)
    before = {path: _lm(server, path) for path in DOCUMENTS}
    for path, (lm, _, _) in before.items():
        assert _ims(server, path, lm) == 304, path  # nothing changed

    (seeds / "c.txt").unlink()  # the newest entry
    wait_until(lambda: b"Body c" not in server.get("/feed.atom")[2])
    after_delete = {path: _lm(server, path) for path in DOCUMENTS}
    for path in DOCUMENTS:
        old_lm, new_lm = before[path][0], after_delete[path][0]
        assert parsedate_to_datetime(new_lm) > parsedate_to_datetime(old_lm), path
        assert _ims(server, path, old_lm) == 200, path
        assert _ims(server, path, new_lm) == 304, path

    # Only a past `date:` changes: the entry's published date (in the bytes), not `updated`.
    write_seed(seeds, "b.txt",
               TAGGED.format("date: 2020-01-02\n") + seed("b", "B", "Body b."),
               mtime=hour_ago + 1)
    wait_until(lambda: server.get("/feed.atom")[1]["ETag"] != after_delete["/feed.atom"][1])
    for path in DOCUMENTS:
        wait_until(lambda p=path: server.get(p)[1]["ETag"] != after_delete[p][1])
    after_date = {path: _lm(server, path) for path in DOCUMENTS}
    for path in DOCUMENTS:
        assert after_date[path][1] != after_delete[path][1], path
        assert (parsedate_to_datetime(after_date[path][0])
                > parsedate_to_datetime(after_delete[path][0])), path
        assert _ims(server, path, after_delete[path][0]) == 200, path
        assert _ims(server, path, after_date[path][0]) == 304, path

    # Same seeds, same state: a restart serves the same bytes and dates.
    server.stop()
    server = serve(config_path)
    for path in DOCUMENTS:
        assert _lm(server, path) == after_date[path], path
    server.stop()
    built = run_cli("build", "--config", str(config_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "public" / "feed.atom").read_bytes() == after_date["/feed.atom"][2]
    assert (tmp_path / "public" / "feed.rss").read_bytes() == after_date["/feed.rss"][2]


def test_two_changes_within_one_second_never_get_304(tmp_path: Path, serve) -> None:
    """Last-Modified has whole seconds (RFC 9110 §8.8.2.2): when a document changes twice
    within one second, a client holding that second may hold the first version, so an
    If-Modified-Since of that second gets 200 until the document is dated in a later one."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    hour_ago = int(time.time()) - 3600
    write_seed(seeds, "a.txt", seed("a", "A", "Body a."), mtime=hour_ago)
    write_seed(seeds, "b.txt", seed("b", "B", "Body b."), mtime=hour_ago + 1)
    server = serve(config_path)
    same_second = 0
    for attempt in range(6):
        # At the start of a second: an edit (dated now), then a change of a past date only.
        while time.time() % 1 > 0.05:
            time.sleep(0.005)
        write_seed(seeds, "b.txt", seed("b", "B", f"Edit {attempt}."))
        wait_until(lambda a=attempt: f"Edit {a}.".encode() in server.get("/feed.atom")[2],
                   interval=0.005)
        first_lm, first_etag, _ = _lm(server, "/feed.atom")
        write_seed(seeds, "a.txt", f"---\ndate: 2020-01-{attempt + 1:02d}\n---\n"
                   + seed("a", "A", "Body a."), mtime=hour_ago)
        wait_until(lambda e=first_etag: server.get("/feed.atom")[1]["ETag"] != e,
                   interval=0.005)
        second_lm, _, _ = _lm(server, "/feed.atom")
        # Whether or not the second ticked meanwhile, the client holding the first version
        # must not be told it is current.
        assert _ims(server, "/feed.atom", first_lm) == 200
        if second_lm == first_lm:
            same_second += 1
            # Until the document changes in a later second, that second stays ambiguous.
            assert _ims(server, "/feed.atom", second_lm) == 200
        else:
            assert _ims(server, "/feed.atom", second_lm) == 304
        if same_second >= 2:
            break
    assert same_second, "the two changes never fell within one second"
