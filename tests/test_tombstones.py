"""Deletions readers can see (RFC 6721 tombstones) and 410 Gone pages.

The rules (tombstones.py, the Atom injection, the validator's RFC 6721 checks) are tested as
tables without SQLite; the publisher with real seeds, real SQLite and an injected clock; the
service with a real server, a real watcher, feedparser and lxml as clients."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.model import Entry, FeedInfo, from_micros, to_micros
from feedsvc.publish.docformat import feed_updated
from feedsvc.publish.formats.atom import ATOM, AtomRenderer, insert_atom, render_atom
from feedsvc.publish.ids import entry_id, make_item
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.tombstones import DAY_US, Tombstones, cutoff, newest, refs
from feedsvc.state.store import SCHEMA_VERSION, Store

from .conftest import free_port, seed, wait_until, write_config, write_seed
from .feedcheck import TOMBSTONES, check_atom

NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
NOW_US = to_micros(NOW)
INFO = FeedInfo(id="urn:uuid:0b9e4f4e-1c8a-5f0e-9d2a-000000000000", title="News",
                subtitle="News", language="en", author_name="News", author_email=None,
                base_url="https://news.example.org/",
                created=datetime(2026, 1, 1, tzinfo=UTC), feed_path="feed")
AT = f"{{{TOMBSTONES}}}"


def item(slug: str, minutes: int = 0):
    entry = Entry(slug, slug.title(), ("Body",), "Body", "<p>Body</p>", f"{slug}:1")
    return make_item(INFO, entry, int(NOW.timestamp()) - 3600,
                     NOW - timedelta(minutes=minutes), lambda s: f"{INFO.base_url}entries/{s}")


# -- the rules, without SQLite ---------------------------------------------------------------

@pytest.mark.parametrize(("days", "age_us", "shown"), [
    (30, 0, True),
    (30, 30 * DAY_US - 1, True),
    (30, 30 * DAY_US, False),  # exactly tombstone_days old: gone
    (1, DAY_US + 1, False),
    (0, 0, False),  # 0: never shown
])
def test_a_tombstone_is_shown_for_tombstone_days(days: int, age_us: int, shown: bool) -> None:
    tombstones = Tombstones(days, lambda after: {}, NOW_US)
    tombstones.bury("a", NOW_US - age_us, NOW_US)
    assert ("a" in tombstones.shown) is shown
    assert tombstones.unsaved == {"a": NOW_US - age_us}  # kept in the state all the same
    assert tombstones.take_changed() is shown
    assert tombstones.take_changed() is False


def test_tombstones_load_expire_lift_and_say_when_next() -> None:
    asked: list[int] = []

    def load(after: int) -> dict[str, int]:
        asked.append(after)
        return {"old": NOW_US - 2 * DAY_US, "new": NOW_US - DAY_US}

    tombstones = Tombstones(3, load, NOW_US)
    assert asked == [cutoff(NOW_US, 3)] == [NOW_US - 3 * DAY_US]
    assert tombstones.next_expiry() == NOW_US + DAY_US  # "old" leaves first
    assert tombstones.sooner(None) == from_micros(NOW_US + DAY_US)
    assert tombstones.sooner(NOW) == NOW  # a scheduled entry comes first
    assert tombstones.expire(NOW_US) == ["new", "old"]  # loaded: their tags are rendered
    assert tombstones.take_changed() is False
    assert tombstones.expire(NOW_US + DAY_US) == ["old"]
    assert tombstones.take_changed() and list(tombstones.shown) == ["new"]
    tombstones.lift("new")
    assert tombstones.unsaved == {"new": None} and tombstones.shown == {}
    assert tombstones.next_expiry() is None and tombstones.sooner(None) is None
    tombstones.lift("never-buried")  # deletes nothing shown: no re-render
    tombstones.take_changed()
    tombstones.lift("never-buried")
    assert tombstones.take_changed() is False


def test_refs_are_entry_ids_newest_first_in_one_order() -> None:
    buried = [("b", NOW_US), ("a", NOW_US), ("c", NOW_US + 5)]
    assert refs(INFO.id, buried, entry_id) == refs(INFO.id, reversed(buried), entry_id)
    assert [ref for ref, _ in refs(INFO.id, buried, entry_id)] == [
        entry_id(INFO.id, "c"), *sorted((entry_id(INFO.id, "a"), entry_id(INFO.id, "b")))]


@pytest.mark.parametrize(("buried", "limit", "kept"), [
    ([], 3, []),
    ([("a", 1), ("b", 2)], 5, ["b", "a"]),  # under the bound: all of them
    ([("a", 1), ("b", 2), ("c", 3)], 3, ["c", "b", "a"]),  # exactly the bound
    ([("a", 1), ("b", 2), ("c", 3), ("d", 4)], 2, ["d", "c"]),  # the newest by moment
    ([("d", 4), ("c", 3), ("b", 2), ("a", 1)], 2, ["d", "c"]),  # whatever the input order
    ([("z", 5), ("y", 5), ("x", 5), ("w", 1)], 2, ["x", "y"]),  # ties: by slug
    ([("y", 5), ("x", 5), ("z", 5)], 1, ["x"]),
    ([("old", 1), ("new", 9)], 1, ["new"]),
])
def test_at_most_limit_tombstones_the_newest(buried, limit: int, kept: list[str]) -> None:
    assert [slug for slug, _ in newest(buried, limit)] == kept


def test_the_main_feed_carries_the_newest_tombstones_the_state_keeps_all() -> None:
    shown = {f"s{n}": NOW_US - n for n in range(10)} | {"tie": NOW_US - 2}
    tombstones = Tombstones(30, lambda after: shown, NOW_US, limit=3)
    # "s2" and "tie" were deleted at the same moment: "s2" is kept ("s2" < "tie").
    assert tombstones.refs(INFO.id) == refs(
        INFO.id, [("s0", NOW_US), ("s1", NOW_US - 1), ("s2", NOW_US - 2)], entry_id)
    tombstones.bury("late", NOW_US + 1, NOW_US + 1)
    assert tombstones.refs(INFO.id)[0][0] == entry_id(INFO.id, "late")
    assert len(tombstones.refs(INFO.id)) == 3 and len(tombstones.shown) == 12
    assert tombstones.unsaved == {"late": NOW_US + 1}


@pytest.mark.parametrize("items", [(), ("a",), ("a", "b", "c")])
def test_atom_tombstones_precede_entries_and_reuse_gives_the_same_bytes(items) -> None:
    info = replace(INFO, deleted=refs(INFO.id, [("gone", NOW_US - 7), ("x", NOW_US)], entry_id))
    shown = [item(slug, n) for n, slug in enumerate(items)]
    whole = render_atom(info, shown)
    assert AtomRenderer(INFO).render(shown, feed_updated(info, shown), info=info) == whole
    assert check_atom(whole, ATOM.url(info), NOW) == []
    root = etree.fromstring(whole)
    tombstones = root.findall(f"{AT}deleted-entry")
    assert [t.get("ref") for t in tombstones] == [entry_id(INFO.id, "x"), entry_id(INFO.id, "gone")]
    assert tombstones[1].get("when") == from_micros(NOW_US - 7).isoformat()
    children = [c.tag for c in root]
    if items:
        assert max(i for i, t in enumerate(children) if t == f"{AT}deleted-entry") < children.index(
            "{http://www.w3.org/2005/Atom}entry")
    assert feedparser.parse(whole).bozo == 0
    assert render_atom(INFO, shown) == insert_atom(render_atom(INFO, shown), ())


_GOOD = f'<at:deleted-entry xmlns:at="{TOMBSTONES}" ref="urn:uuid:1" when="2026-11-24T08:30:00Z"/>'


@pytest.mark.parametrize(("tombstone", "problem"), [
    (_GOOD, None),
    (_GOOD.replace('ref="urn:uuid:1"', 'ref="not an iri"'), "ref is not an IRI"),
    (_GOOD.replace(' ref="urn:uuid:1"', ""), "ref is not an IRI"),
    (_GOOD.replace("2026-11-24T08:30:00Z", "24 Nov 2026 08:30"), "InvalidRFC3339Date"),
    (_GOOD.replace(' when="2026-11-24T08:30:00Z"', ""), "when: missing"),
    (_GOOD.replace(TOMBSTONES, "http://example.org/tombstones"), "not in the RFC 6721 namespace"),
    (_GOOD.replace("urn:uuid:1", "{entry}"), "is the id of an entry of the same document"),
    ("<author><name>x</name>" + _GOOD + "</author>", "must be a child of atom:feed"),
    ("<!--entry-->" + _GOOD, "MisplacedMetadata"),  # after the entry (placed below)
])
def test_the_validator_checks_rfc_6721(tombstone: str, problem: str | None) -> None:
    document = render_atom(INFO, [item("a")])
    entry = entry_id(INFO.id, "a")
    tombstone = tombstone.replace("{entry}", entry)
    marker = b"\n  <entry" if "<!--entry-->" not in tombstone else b"</feed>"
    at = document.index(marker)
    bad = document[:at] + tombstone.encode() + document[at:]
    problems = check_atom(bad, ATOM.url(INFO), NOW)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


# -- the state: schema 4, and a state of schema 3 ----------------------------------------------

def test_a_state_of_schema_3_is_migrated_to_4(site: Path) -> None:
    config = load_config(site / "config.toml")
    write_seed(config.paths.seeds, "a.txt", seed("a", "A", "Body"), mtime=1_700_000_000)
    publisher = Publisher.open(config)
    publisher.scan()
    publisher.close()
    db = sqlite3.connect(config.paths.state)
    db.execute("DROP TABLE tombstones")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    reader = Store.open_for_reading(config.paths.state)  # a worker reading the old file
    assert reader.tombstone_of("a") is None and reader.tombstones_after(0) == {}
    reader.close()
    publisher = Publisher.open(config)  # migrates
    publisher.scan()
    db = sqlite3.connect(config.paths.state)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    assert db.execute("SELECT slug, live FROM stamps").fetchall() == [("a", 1)]
    db.close()
    (config.paths.seeds / "a.txt").unlink()
    publisher.update([config.paths.seeds / "a.txt"])
    publisher.close()
    store = Store.open(config.paths.state)
    assert list(store.tombstones_after(0)) == ["a"]
    store.close()


# -- the publisher, with an injected clock -------------------------------------------------------

def test_a_tombstone_dated_by_the_state_expires_on_time(tmp_path: Path) -> None:
    write_config(tmp_path, tombstone_days=2)
    config = load_config(tmp_path / "config.toml")
    seeds = config.paths.seeds
    write_seed(seeds, "a.txt", seed("a", "A", "Body"), mtime=1_700_000_000)
    write_seed(seeds, "b.txt", "---\ntags: [Sport]\n---\nb\nB\n\nBody", mtime=1_700_000_000)
    clock = [NOW]
    publisher = Publisher.open(config, clock=lambda: clock[0])
    first = publisher.scan().documents
    assert publisher.next_due() is None
    clock[0] = NOW + timedelta(hours=1)
    (seeds / "b.txt").unlink()
    snapshot = publisher.update([seeds / "b.txt"])
    feed, tag = snapshot.documents["/feed.atom"], snapshot.documents["/tags/sport.atom"]
    for document in (feed, tag):
        [tombstone] = etree.fromstring(document.body).findall(f"{AT}deleted-entry")
        assert tombstone.get("ref") == entry_id(publisher.info.id, "b")
        assert tombstone.get("when") == clock[0].isoformat()
        # The document changed: its Last-Modified and <updated> move forward.
        assert document.last_modified > first[document.path].last_modified
        assert etree.fromstring(document.body).findtext(
            "{http://www.w3.org/2005/Atom}updated") == document.last_modified.isoformat()
        assert check_atom(document.body, f"{config.feed.base_url}{document.path[1:]}",
                          clock[0]) == []
    assert b"deleted-entry" not in snapshot.documents["/feed.rss"].body
    assert publisher.next_due() == clock[0] + timedelta(days=2)
    publisher.close()
    # A restart with the clock still before the end: the same bytes, dated as before.
    publisher = Publisher.open(config, clock=lambda: clock[0] + timedelta(hours=1))
    again = publisher.scan()
    assert again.documents["/feed.atom"].body == feed.body
    assert again.documents["/tags/sport.atom"].etag == tag.etag
    clock[0] = NOW + timedelta(hours=1, days=2)
    publisher._clock = lambda: clock[0]
    expired = publisher.update(())
    assert b"deleted-entry" not in expired.documents["/feed.atom"].body
    assert "/tags/sport.atom" not in expired.documents  # no entry, no tombstone left
    assert expired.documents["/feed.atom"].last_modified > feed.last_modified
    assert publisher.next_due() is None
    publisher.close()


def test_deleting_a_scheduled_entry_leaves_no_tombstone(site: Path) -> None:
    config = load_config(site / "config.toml")
    seeds = config.paths.seeds
    later = (NOW + timedelta(days=3)).isoformat()
    write_seed(seeds, "a.txt", f"---\ndate: {later}\n---\na\nA\n\nB")
    publisher = Publisher.open(config, clock=lambda: NOW)
    publisher.scan()
    (seeds / "a.txt").unlink()
    snapshot = publisher.update([seeds / "a.txt"])
    assert b"deleted-entry" not in snapshot.documents["/feed.atom"].body
    publisher.close()


def test_tombstone_days_is_checked(site: Path) -> None:
    assert load_config(site / "config.toml").feed.tombstone_days == 30
    for bad in ("-1", "36501", "true", '"30"'):
        (site / "config.toml").write_text(f"[feed]\ntombstone_days = {bad}\n")
        with pytest.raises(ConfigError, match=r"feed\.tombstone_days"):
            load_config(site / "config.toml")
    (site / "config.toml").write_text("[feed]\ntombstone_days = 0\n")
    assert load_config(site / "config.toml").feed.tombstone_days == 0


# -- the service: real server, real watcher ----------------------------------------------------

def _tombstones(body: bytes) -> list[tuple[str, str]]:
    return [(t.get("ref"), t.get("when"))
            for t in etree.fromstring(body).findall(f"{AT}deleted-entry")]


def test_a_deleted_seed_is_a_tombstone_and_a_410_across_restarts(site: Path, serve) -> None:
    config = load_config(site / "config.toml")
    seeds = config.paths.seeds
    write_seed(seeds, "keep.txt", seed("keep", "Keep", "Body"), mtime=1_700_000_000)
    text = "---\ntags: [Vie du projet]\n---\ngone\nGone soon\n\nBody"
    write_seed(seeds, "gone.txt", text, mtime=1_700_000_100)
    server = serve(site / "config.toml")
    before = feedparser.parse(server.get("/feed.atom")[2])
    old_id = next(e.id for e in before.entries if e.link.endswith("/entries/gone"))
    assert server.get("/entries/gone")[0] == 200
    (seeds / "gone.txt").unlink()

    def gone_everywhere() -> bool:
        return all(_tombstones(server.get(path)[2])
                   for path in ("/feed.atom", "/tags/vie-du-projet.atom"))

    wait_until(gone_everywhere)
    for path in ("/feed.atom", "/tags/vie-du-projet.atom"):
        status, headers, body = server.get(path)
        [(ref, when)] = _tombstones(body)
        assert ref == old_id and datetime.fromisoformat(when) <= datetime.now(UTC)
        assert check_atom(body, f"{config.feed.base_url}{path[1:]}") == []
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0 and old_id not in {e.id for e in parsed.entries}
    assert b"gone" not in server.get("/feed.rss")[2]
    status, headers, page = server.get("/entries/gone")
    assert status == 410 and headers["Content-Type"] == "text/html; charset=utf-8"
    # In the feed's language (fr), the date in its zone (UTC here).
    assert "a été supprimé le".encode() in page and when[:10].encode() in page
    assert server.get("/entries/never-was")[0] == 404
    tombstoned = server.get("/feed.atom")[2]
    server.stop()

    server = serve(site / "config.toml")  # the state keeps it
    assert server.get("/feed.atom")[2] == tombstoned
    assert server.get("/entries/gone")[0] == 410
    write_seed(seeds, "gone.txt", text, mtime=1_700_000_100)  # the same entry comes back
    wait_until(lambda: old_id in {e.id for e in feedparser.parse(
        server.get("/feed.atom")[2]).entries})
    for path in ("/feed.atom", "/tags/vie-du-projet.atom"):
        assert _tombstones(server.get(path)[2]) == []
    assert server.get("/entries/gone")[0] == 200
    server.stop()
    store = Store.open(config.paths.state)
    assert store.tombstone_of("gone") is None  # gone from the state too
    store.close()


def test_with_tombstone_days_0_no_tombstone_is_sent_but_the_page_is_gone(tmp_path: Path,
                                                                        serve) -> None:
    write_config(tmp_path, port=free_port(), tombstone_days=0)
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", seed("a", "A", "Body"), mtime=1_700_000_000)
    write_seed(seeds, "b.txt", seed("b", "B", "Body"), mtime=1_700_000_000)
    server = serve(tmp_path / "config.toml")
    (seeds / "a.txt").unlink()
    wait_until(lambda: server.get("/entries/a")[0] == 410)
    time.sleep(0.2)
    body = server.get("/feed.atom")[2]
    assert b"/entries/a<" not in body and _tombstones(body) == []


@pytest.mark.parametrize(("change", "gone", "tombstoned"), [
    ("delete", "a", True),
    ("new slug", "a", True),  # the old slug's entry is gone; the new one is another entry
    ("draft", "a", True),  # withdrawn: removed, to readers
    ("edit", None, False),
])
def test_what_leaves_a_tombstone(site: Path, change: str, gone: str | None,
                                 tombstoned: bool) -> None:
    config = load_config(site / "config.toml")
    seeds = config.paths.seeds
    path = write_seed(seeds, "a.txt", seed("a", "A", "Body"), mtime=1_700_000_000)
    publisher = Publisher.open(config, clock=lambda: NOW)
    publisher.scan()
    if change == "delete":
        path.unlink()
    else:
        write_seed(seeds, "a.txt", {"new slug": seed("a-2", "A", "Body"),
                                    "draft": "---\ndraft: true\n---\na\nA\n\nBody",
                                    "edit": seed("a", "A", "Body, edited")}[change])
    body = publisher.update([path]).documents["/feed.atom"].body
    refs_sent = [ref for ref, _ in _tombstones(body)]
    assert refs_sent == ([entry_id(publisher.info.id, gone)] if tombstoned else [])
    publisher.close()


def test_a_mass_deletion_carries_only_the_newest_tombstones(tmp_path: Path, serve) -> None:
    write_config(tmp_path, port=free_port(), max_entries=2, tombstones_max=3)
    config = load_config(tmp_path / "config.toml")
    seeds = config.paths.seeds
    slugs = [f"s{n:02}" for n in range(12)]
    for n, slug in enumerate(slugs):
        write_seed(seeds, f"{slug}.txt", f"---\ntags: [Lot]\n---\n{slug}\n{slug.upper()}\n\nBody",
                   mtime=1_700_000_000 + n)
    server = serve(tmp_path / "config.toml")
    for slug in slugs[:2]:  # an earlier deletion, then a batch of later ones
        (seeds / f"{slug}.txt").unlink()
    wait_until(lambda: server.get(f"/entries/{slugs[1]}")[0] == 410)
    time.sleep(0.05)  # later deletions get a later moment
    for slug in slugs[2:10]:
        (seeds / f"{slug}.txt").unlink()
    wait_until(lambda: all(server.get(f"/entries/{slug}")[0] == 410 for slug in slugs[:10]))
    store = Store.open(config.paths.state)
    deleted = store.tombstones_after(0)  # the state keeps every one
    store.close()
    assert sorted(deleted) == slugs[:10]
    feed_id = feedparser.parse(server.get("/feed.atom")[2]).feed.id  # entry ids derive from it
    expected = {entry_id(feed_id, slug) for slug, _ in newest(deleted.items(), 3)}
    assert entry_id(feed_id, slugs[0]) not in expected  # the earlier deletion is left out
    for path in ("/feed.atom", "/tags/lot.atom"):
        body = server.get(path)[2]
        assert {ref for ref, _ in _tombstones(body)} == expected
        assert check_atom(body, f"{config.feed.base_url}{path[1:]}") == []
        assert len(body) < 4000  # 10 tombstones would not fit
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0 and len(parsed.entries) == 2
    assert server.get(f"/entries/{slugs[0]}")[0] == 410  # left out of the feeds, still gone
