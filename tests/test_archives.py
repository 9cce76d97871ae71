"""RFC 5005 archived feeds, through a real server and watcher, read by feedparser and the JSON
Feed checker: walking prev-archive (next_url) reaches every entry once; pages are stable."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import pytest

from feedsvc.cli import build
from feedsvc.config import load_config
from feedsvc.publish.archives import IMMUTABLE
from feedsvc.serve.app import make_app
from tests.conftest import ServeProcess, free_port, run_cli, wait_until, write_config, write_seed
from tests.feedcheck import check_atom, check_rss
from tests.jsonfeedcheck import check_json_feed
from tests.test_registry import plugin  # noqa: F401 (a fixture: the "Titles" plugin format)

SEEDS = 23
MAX_ENTRIES = 5
PER_PAGE = 4
FORMATS = ("atom", "rss", "json")


def _seed(i: int, text: str = "Corps") -> str:
    # One day apart, in order: entry-00 is the oldest.
    return (f"---\ndate: 2026-01-{i + 1:02d} 08:00\n---\nentry-{i:02d}\n"
            f"Titre {i}\n\n{text} {i}")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path, port=free_port(), max_entries=MAX_ENTRIES,
                 archive_page_entries=PER_PAGE)
    for i in range(SEEDS):
        write_seed(tmp_path / "seeds", f"{i:02d}.txt", _seed(i))
    return tmp_path


def _links(server: ServeProcess, path: str) -> tuple[bytes, dict[str, str]]:
    status, headers, body = server.get(path)
    assert status == 200, path
    return body, headers


def _walk_xml(server: ServeProcess, ext: str) -> list[tuple[str, list[str]]]:
    """(path, entry ids) of the subscription document, then each archive page it leads to."""
    path, seen, pages = f"/feed.{ext}", set(), []
    while path:
        assert path not in seen
        seen.add(path)
        body, _ = _links(server, path)
        url = server.url + path
        problems = (check_atom if ext == "atom" else check_rss)(body, url)
        assert problems == [], (path, problems)
        parsed = feedparser.parse(body)
        links = {link["rel"]: link["href"] for link in parsed.feed.get("links", [])}
        if path != f"/feed.{ext}":
            assert links["current"] == f"{server.url}/feed.{ext}"
            assert b"<fh:archive/>" in body
        else:
            assert b"fh:archive" not in body
        pages.append((path, [entry.id for entry in parsed.entries]))
        prev = links.get("prev-archive")
        path = prev[len(server.url):] if prev else ""
    return pages


def _walk_json(server: ServeProcess) -> list[tuple[str, list[str]]]:
    path, pages = "/feed.json", []
    while path:
        body, _ = _links(server, path)
        assert check_json_feed(body) == [], path
        feed = json.loads(body)
        assert feed["feed_url"] == f"{server.url}/feed.json"
        pages.append((path, [item["id"] for item in feed["items"]]))
        path = feed["next_url"][len(server.url):] if "next_url" in feed else ""
    return pages


def _all_ids(pages: list[tuple[str, list[str]]]) -> list[str]:
    return [entry_id for _, ids in pages for entry_id in ids]


def _etags(server: ServeProcess) -> dict[str, str]:
    """The ETag of every archive page in every format."""
    pages = load_pages(server)
    return {path[:-len("atom")] + ext: server.get(path[:-len("atom")] + ext)[1]["ETag"]
            for path in pages for ext in FORMATS}


def load_pages(server: ServeProcess) -> list[str]:
    return [path for path, _ in _walk_xml(server, "atom")[1:]]


def test_walking_prev_archive_reaches_every_entry_once(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    for ext in ("atom", "rss"):
        pages = _walk_xml(server, ext)
        ids = _all_ids(pages)
        assert len(ids) == SEEDS and len(set(ids)) == SEEDS, ext
        # 18 archived entries in pages of 4: 4 full pages, then the partial newest (2).
        assert [path for path, _ in pages] == [f"/feed.{ext}", *(
            f"/archive/4/{n}.{ext}" for n in (5, 4, 3, 2, 1))]
        assert [len(entries) for _, entries in pages] == [5, 2, 4, 4, 4, 4]
    json_pages = _walk_json(server)
    assert sorted(_all_ids(json_pages)) == sorted(_all_ids(_walk_xml(server, "atom")))
    # Oldest first inside a page; page 1 holds the oldest entries.
    page1 = feedparser.parse(server.get("/archive/4/1.atom")[2])
    assert [e.title for e in page1.entries] == [f"Titre {i}" for i in range(4)]
    headers = server.get("/archive/4/1.atom")[1]
    assert headers["Cache-Control"] == IMMUTABLE
    assert server.get("/archive/4/5.atom")[1]["Cache-Control"] == "public, max-age=60"
    for bad in ("/archive/4/6.atom", "/archive/4/0.atom", "/archive/4/01.atom", "/archive/4/1.xml",
                "/archive/4/x.atom", "/archive/4/-1.rss"):
        assert server.get(bad)[0] == 404, bad


def test_an_edit_changes_one_page_and_new_entries_no_full_page(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    before = _etags(server)
    modified = {path: server.get(path)[1]["Last-Modified"] for path in before}
    write_seed(site / "seeds", "00.txt", _seed(0, "Corps corrigé"))
    wait_until(lambda: _etags(server) != before)
    after = _etags(server)
    page1 = [f"/archive/4/1.{ext}" for ext in FORMATS]
    assert [path for path in before if before[path] != after[path]] == page1
    for path, etag in before.items():
        status = server.get(path, {"If-None-Match": etag})[0]
        assert status == (200 if path in page1 else 304), path
        status = server.get(path, {"If-Modified-Since": modified[path]})[0]
        assert status == (200 if path in page1 else 304), path
    modified = {path: server.get(path)[1]["Last-Modified"] for path in before}
    # A new entry: one more entry leaves the feed for the newest page; full pages stay.
    write_seed(site / "seeds", "99.txt", _seed(25))
    wait_until(lambda: "/archive/4/5.atom" in _etags(server)
               and _etags(server)["/archive/4/5.atom"] != after["/archive/4/5.atom"])
    newest = _etags(server)
    for n in (1, 2, 3, 4):
        for ext in FORMATS:
            path = f"/archive/4/{n}.{ext}"
            assert newest[path] == after[path]
            assert server.get(path)[1]["Last-Modified"] == modified[path]
            if n > 1:  # page 1 may have changed twice in one second: then 200 (RFC 9110)
                assert server.get(path, {"If-Modified-Since": modified[path]})[0] == 304
    ids = _all_ids(_walk_xml(server, "atom"))
    assert len(ids) == SEEDS + 1 == len(set(ids))


def test_deleting_an_archived_entry_changes_only_its_page(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """The deleted entry keeps its slot: Atom page 1 carries an RFC 6721 at:deleted-entry in
    its place, RSS and JSON Feed page 1 omit it; no other page moves (no shift)."""
    server = serve(site / "config.toml")
    before = _etags(server)
    headers = {path: server.get(path)[1] for path in before}
    gone_id = feedparser.parse(server.get("/archive/4/1.atom")[2]).entries[1].id
    (site / "seeds" / "01.txt").unlink()
    wait_until(lambda: len(_all_ids(_walk_xml(server, "atom"))) == SEEDS - 1)
    after = _etags(server)
    page1 = [f"/archive/4/1.{ext}" for ext in FORMATS]
    assert [path for path in before if before[path] != after[path]] == page1
    for path in before:
        status = server.get(path, {"If-Modified-Since": headers[path]["Last-Modified"]})[0]
        assert status == (200 if path in page1 else 304), path
    body = server.get("/archive/4/1.atom")[2]
    assert f'ref="{gone_id}"'.encode() in body and b"at:deleted-entry" in body
    assert check_atom(body, server.url + "/archive/4/1.atom") == []
    assert [e.title for e in feedparser.parse(body).entries] == ["Titre 0", "Titre 2", "Titre 3"]
    assert server.get("/archive/4/1.atom")[1]["Cache-Control"] == IMMUTABLE
    assert b"Titre 1" not in server.get("/archive/4/1.rss")[2]


def test_deleting_most_entries_at_once_leaves_fewer_than_the_feed_shows(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """Fewer entries left than `max_entries`: the archived ones all come back into the feed
    (this batch used to fail with an IndexError, retried forever)."""
    server = serve(site / "config.toml")
    for i in range(SEEDS - 2):
        (site / "seeds" / f"{i:02d}.txt").unlink()
    wait_until(lambda: json.loads(server.get("/healthz")[2])["entries_published"] == 2)
    assert json.loads(server.get("/healthz")[2])["pipeline"] == "ok"
    _walk_every_format_once(server, 2)


def _walk_every_format_once(server: ServeProcess, expected: int) -> None:
    """Walking prev-archive (RSS, Atom) and next_url (JSON Feed) meets every published entry
    exactly once, the same ones in every format."""
    atom = _all_ids(_walk_xml(server, "atom"))
    assert len(atom) == expected == len(set(atom)), sorted(atom)
    for ids in (_all_ids(_walk_xml(server, "rss")), _all_ids(_walk_json(server))):
        assert sorted(ids) == sorted(atom)


def _count(server: ServeProcess, expected: int) -> Callable[[], bool]:
    return lambda: len(_all_ids(_walk_xml(server, "atom"))) == expected


def test_every_entry_once_after_backdating_deletions_reentries_and_a_new_page_size(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """Slots: a back-dated entry joins the newest page, a deletion leaves a tombstone in its
    page, entries coming back into the subscription documents leave their slots, a slug that
    comes back takes a new slot, a new page size gives new URLs: full pages never change and
    every walk meets every entry exactly once."""
    server = serve(site / "config.toml")
    full = {path: server.get(path)[2] for path in _etags(server)
            if not path.startswith("/archive/4/5.")}
    write_seed(site / "seeds", "old.txt",  # dated before every archived entry
               "---\ndate: 2025-06-01 08:00\n---\nentry-old\nVieux\n\nCorps")
    wait_until(_count(server, SEEDS + 1))
    _walk_every_format_once(server, SEEDS + 1)
    newest = feedparser.parse(server.get("/archive/4/5.atom")[2])
    assert newest.entries[-1].title == "Vieux"  # slot 19: the newest end
    (site / "seeds" / "10.txt").unlink()  # on page 3
    wait_until(_count(server, SEEDS))
    _walk_every_format_once(server, SEEDS)
    for path, body in full.items():
        if "/3." not in path:
            assert server.get(path)[2] == body, path
    for name in ("22.txt", "21.txt"):  # the newest: entry-17, -16 come back from page 5
        (site / "seeds" / name).unlink()
    wait_until(_count(server, SEEDS - 2))
    _walk_every_format_once(server, SEEDS - 2)
    shown = [e.title for e in feedparser.parse(server.get("/feed.atom")[2]).entries]
    assert "Titre 17" in shown and "Titre 16" in shown
    write_seed(site / "seeds", "10.txt", _seed(10))  # back: a new slot, its tombstone goes
    wait_until(_count(server, SEEDS - 1))
    _walk_every_format_once(server, SEEDS - 1)
    assert b"at:deleted-entry" not in server.get("/archive/4/3.atom")[2]
    for path, body in full.items():
        if "/3." not in path and "/4/5" not in path:
            assert server.get(path)[2] == body, path
    server.stop()
    port = load_config(site / "config.toml").server.port
    write_config(site, port=port, max_entries=MAX_ENTRIES, archive_page_entries=3)
    server = serve(site / "config.toml")
    _walk_every_format_once(server, SEEDS - 1)
    assert server.get("/archive/4/1.atom")[0] == 404  # never other bytes at a held URL
    page1 = server.get("/archive/3/1.atom")
    assert page1[1]["Cache-Control"] == IMMUTABLE
    assert [e.title for e in feedparser.parse(page1[2]).entries] == [
        "Titre 0", "Titre 1", "Titre 2"]


def test_a_schema_4_state_gets_its_archive_numbered_oldest_first(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """A state of schema 4 (no `archive_slots`) is migrated to 5; the first batch numbers its
    archive in `published` order, oldest first: the pages are those schema 4 served."""
    assert run_cli("build", "--config", str(site / "config.toml"), cwd=site).returncode == 0
    state = load_config(site / "config.toml").paths.state
    db = sqlite3.connect(state)
    db.execute("DROP TABLE archive_slots")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    server = serve(site / "config.toml")
    _walk_every_format_once(server, SEEDS)
    for n in range(1, 5):
        titles = [e.title for e in feedparser.parse(server.get(f"/archive/4/{n}.atom")[2]).entries]
        assert titles == [f"Titre {i}" for i in range(4 * (n - 1), 4 * n)]
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    assert db.execute("SELECT slot, slug FROM archive_slots ORDER BY slot").fetchall() == [
        (i + 1, f"entry-{i:02d}") for i in range(SEEDS - MAX_ENTRIES)]
    db.close()


def test_build_writes_every_page_as_served(site: Path,
                                           serve: Callable[[Path], ServeProcess]) -> None:
    assert run_cli("build", "--config", str(site / "config.toml"), cwd=site).returncode == 0
    server = serve(site / "config.toml")
    output = load_config(site / "config.toml").paths.output
    for ext in FORMATS:
        for n in range(1, 6):
            status, _, body = server.get(f"/archive/4/{n}.{ext}")
            assert status == 200
            assert (output / f"archive/4/{n}.{ext}").read_bytes() == body, (n, ext)
            # A page rendered a moment ago may go out in identity while its gzip is made.
            gz = wait_until(lambda n=n, ext=ext: (got := server.get(
                f"/archive/4/{n}.{ext}", {"Accept-Encoding": "gzip"})) and
                got[1].get("Content-Encoding") == "gzip" and got)[2]
            assert (output / f"archive/4/{n}.{ext}.gz").read_bytes() == gz
        assert (output / f"archive/4/{n}.{ext}.br").exists()
        assert not (output / f"archive/4/6.{ext}").exists()


_SELF = "http://h/archive/2.atom"
_ATOM_HEAD = (b"<?xml version='1.0' encoding='UTF-8'?>\n"
              b'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:fh="%s" xml:lang="en">'
              b"<id>urn:uuid:12345678-1234-1234-1234-123456789abc</id><title>T</title><updated>2026-01-01T00:00:00Z</updated>"
              b"<author><name>A</name></author>"
              b'<link href="http://h/archive/2.atom" rel="self" type="application/atom+xml"/>')
_RSS_HEAD = (b"<?xml version='1.0' encoding='UTF-8'?>\n"
             b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:fh="%s">'
             b"<channel><title>T</title><link>http://h/</link><description>D</description>"
             b"<language>en</language>"
             b'<atom:link href="http://h/archive/2.rss" rel="self" '
             b'type="application/rss+xml"/>')
_GOOD_LINKS = ('<{a}link href="http://h/feed.{e}" rel="current"/>'
               '<{a}link href="http://h/archive/1.{e}" rel="prev-archive"/>'
               '<{a}link href="http://h/archive/3.{e}" rel="next-archive"/>')


def _doc(rss: bool, extra: str, fh: str = "http://purl.org/syndication/history/1.0") -> bytes:
    head = (_RSS_HEAD if rss else _ATOM_HEAD) % fh.encode()
    tail = b"</channel></rss>" if rss else b"</feed>"
    return head + extra.format(a="atom:" if rss else "", e="rss" if rss else "atom").encode() \
        + tail


@pytest.mark.parametrize("rss", [False, True], ids=["atom", "rss"])
@pytest.mark.parametrize(("extra", "fh", "problem"), [
    (_GOOD_LINKS + "<fh:archive/>", None, None),
    (_GOOD_LINKS + "<fh:archive/>", "http://example.com/not-history", "outside the fh"),
    (_GOOD_LINKS + "<fh:archive>x</fh:archive>", None, "must be empty"),
    (_GOOD_LINKS + "<fh:archive/><fh:complete/>", None, "fh:complete together"),
    ('<{a}link href="http://h/archive/1.{e}" rel="prev-archive"/><fh:archive/>', None,
     "without rel=current"),
    ('<{a}link href="/feed.{e}" rel="current"/><fh:archive/>', None, "not an absolute URL"),
    ('<{a}link href="http://h/feed.{e}" rel="current"/>'
     '<{a}link href="archive/1.{e}" rel="prev-archive"/><fh:archive/>', None,
     "not an absolute URL"),
    ('<{a}link href="http://h/archive/2.{e}" rel="current"/><fh:archive/>', None,
     "links the document to itself"),
    (_GOOD_LINKS + '<{a}link href="http://h/archive/4.{e}" rel="next-archive"/><fh:archive/>',
     None, "more than once"),
    ('<{a}link href="http://h/archive/1.{e}" rel="next-archive"/>', None,
     "subscription document (no fh:archive) with rel=next-archive"),
])
def test_feedcheck_archive_rules(rss: bool, extra: str, fh: str | None,
                                 problem: str | None) -> None:
    body = _doc(rss, extra, fh or "http://purl.org/syndication/history/1.0")
    url = _SELF.replace(".atom", ".rss") if rss else _SELF
    problems = [p for p in (check_rss if rss else check_atom)(body, url)
                if "RFC 4287 schema" not in p]
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_a_restart_keeps_every_page_and_its_date(site: Path,
                                                  serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    paths = [f"/archive/4/{n}.{ext}" for n in range(1, 6) for ext in FORMATS]
    before = {path: server.get(path)[1] for path in paths}
    server.stop()
    again = serve(site / "config.toml")
    for path in paths:
        headers = again.get(path)[1]
        assert (headers["ETag"], headers["Last-Modified"]) == (
            before[path]["ETag"], before[path]["Last-Modified"]), path


@pytest.mark.usefixtures("plugin")
async def test_a_plugin_format_gets_its_archive_pages(tmp_path: Path,
                                                      aiohttp_server: Any) -> None:
    config = load_config(write_config(tmp_path, port=free_port(), max_entries=2,
                                      archive_page_entries=2))
    for i in range(5):
        write_seed(config.paths.seeds, f"{i:02d}.txt", _seed(i))
    server = await aiohttp_server(make_app(config))
    base = f"http://127.0.0.1:{server.port}"
    served = {}
    async with aiohttp.ClientSession() as session:
        for n, titles in ((1, ["Titre 0", "Titre 1"]), (2, ["Titre 2"])):
            async with session.get(f"{base}/archive/2/{n}.titles") as response:
                assert response.status == 200
                body = served[n] = await response.read()
                assert body.decode().splitlines()[2:] == titles
        async with session.get(f"{base}/archive/2/3.titles") as response:
            assert response.status == 404
    await server.close()
    assert build(config) == 0
    for n, body in served.items():
        assert (config.paths.output / f"archive/2/{n}.titles").read_bytes() == body


def test_a_page_rendered_again_after_an_edit_is_the_pages_fresh_render(tmp_path: Path) -> None:
    """Archive pages keep their entries' XML between renders (an edited page renders one entry
    anew): the bytes are those of a fresh render, in every format, page after page."""
    from feedsvc.publish.archives import ArchivePages
    from feedsvc.publish.publisher import Publisher
    from feedsvc.publish.registry import formats

    write_config(tmp_path, max_entries=2, archive_page_entries=3)
    config = load_config(tmp_path / "config.toml")
    for i in range(11):
        write_seed(config.paths.seeds, f"{i:02d}.txt", _seed(i), mtime=1_700_000_000 + 60 * i)
    publisher = Publisher.open(config)
    kept = ArchivePages(config)
    try:
        span = publisher.scan().archive
        assert span is not None and span.pages >= 3
        kept.start(publisher.info)
        for fmt in formats():
            for page in (1, 2, 1):
                assert kept.render(span, page, fmt) is not None
        write_seed(config.paths.seeds, "01.txt", _seed(1, "Corps modifié, « avec » des ’"),
                   mtime=1_700_000_000 + 60)
        span = publisher.update([config.paths.seeds / "01.txt"]).archive
        assert span is not None
        fresh = ArchivePages(config)
        fresh.start(publisher.info)
        try:
            for fmt in formats():
                for page in (1, 2, 3):
                    again, anew = kept.render(span, page, fmt), fresh.render(span, page, fmt)
                    assert again is not None and anew is not None
                    assert again.body == anew.body, (fmt.extension, page)
                    if page == 1:
                        assert "Corps modifié".encode() in again.body
        finally:
            fresh.close()
    finally:
        kept.close()
        publisher.close()
