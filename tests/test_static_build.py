"""`feedsvc build` writes the whole site as static files: route `/p` at file `p` or
`p/index.html`, the bytes `serve` sends, each file dated with its Last-Modified, written only
when its bytes change, and what is no longer part of the site removed (publish/siteoutput.py,
publish/sitebuild.py)."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import brotli
import pytest

from feedsvc.model import Document
from feedsvc.publish.siteoutput import MANIFEST, SiteOutput, file_name, mtime_ns
from feedsvc.publish.snapshot import make_document

from .conftest import ServeProcess, free_port, run_cli, wait_until, write_config, write_seed

BASE = 1_790_000_000


def _site(tmp_path: Path, count: int = 5) -> Path:
    config = write_config(tmp_path, port=free_port(), max_entries=2, archive_page_entries=2,
                          language="en")
    seeds = tmp_path / "seeds"
    for n in range(count):
        tags = "tags: [Sky]\n" if n % 2 == 0 else ""
        write_seed(seeds, f"e{n}.md", f"---\ntitle: Entry {n}\n{tags}---\nBody {n}.\n",
                   mtime=BASE + n * 3600)
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_bytes(b"media file\n")
    text = config.read_text("utf-8").replace('output = "public"',
                                             'output = "public"\nmedia = "media"')
    config.write_text(text, "utf-8")
    return config


def _build(config: Path) -> str:
    result = run_cli("build", "--config", str(config), cwd=config.parent)
    assert result.returncode == 0, result.stderr
    return result.stderr


def _files(public: Path) -> dict[str, tuple[int, int, int]]:
    """name → (inode, mtime_ns, size) of every file feedsvc wrote."""
    return {p.relative_to(public).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns,
                                                p.stat().st_size)
            for p in public.rglob("*") if p.is_file() and p.name != MANIFEST}


ROUTES = ["/", "/page/1", "/page/2", "/entries/e0", "/entries/e1", "/entries/e4", "/tags/",
          "/tags/sky", "/tags/sky/page/1", "/feed.atom", "/feed.rss", "/feed.json",
          "/tags/sky.atom", "/tags/sky.rss", "/tags/sky.json", "/archive/2/1.atom",
          "/archive/2/2.rss", "/archive/2/2.json", "/feeds.opml", "/sitemap.xml"]


def _route_file(public: Path, route: str) -> Path:
    """What a static server maps `route` to: `p`, else `p/index.html`."""
    plain = public / route.lstrip("/")
    return plain if plain.is_file() else plain / "index.html"


def test_build_writes_every_route_as_serve_sends_it_dated_with_its_last_modified(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    config = _site(tmp_path)
    _build(config)
    public = tmp_path / "public"
    server = serve(config)
    wait_until(lambda: server.get("/feed.atom", {"Accept-Encoding": "gzip"})[1].get(
        "Content-Encoding") == "gzip")
    for route in ROUTES:
        status, headers, body = server.get(route)
        assert status == 200, route
        path = _route_file(public, route)
        assert path.read_bytes() == body, route
        assert gzip.decompress(Path(f"{path}.gz").read_bytes()) == body, route
        assert brotli.decompress(Path(f"{path}.br").read_bytes()) == body, route
        st = path.stat()
        if "Last-Modified" in headers:  # the file's mtime is the document's date
            assert int(st.st_mtime) == int(parsedate_to_datetime(
                headers["Last-Modified"]).timestamp()), route
            for suffix in (".gz", ".br"):
                assert Path(f"{path}{suffix}").stat().st_mtime_ns == st.st_mtime_ns, route
        else:  # the state-made pages: no Last-Modified; dated when written, never ahead
            assert st.st_mtime <= datetime.now(UTC).timestamp(), route
    # The stylesheets, the 404 page and the media, under their names.
    stylesheets = sorted(p.name for p in public.rglob("*.css"))
    assert len(stylesheets) == 2
    assert b"<html" in (public / "404.html").read_bytes()
    assert (public / "media/a.txt").read_bytes() == server.get("/media/a.txt")[2]
    assert not [p for p in public.rglob(".*") if p.name != MANIFEST]  # no temporary file left


def test_a_second_build_rewrites_nothing_and_an_edit_moves_only_its_files(
        tmp_path: Path) -> None:
    config = _site(tmp_path)
    _build(config)
    public = tmp_path / "public"
    first = _files(public)
    log = _build(config)
    assert _files(public) == first  # same inodes, same mtimes: nginx's ETags stay
    assert "0 files written, 0 redated" in log

    # An edit of the oldest entry (in the archive, not in the feeds): its page, its archive
    # page and what lists it (the sitemap, a front page) move; the other entries' pages not.
    write_seed(tmp_path / "seeds", "e0.md", "---\ntitle: Entry 0\ntags: [Sky]\n---\nNew.\n",
               mtime=BASE + 10 * 3600)
    _build(config)
    second = _files(public)
    moved = {name for name in first if second.get(name) != first[name]}
    assert "entries/e0/index.html" in moved and "entries/e0/index.html.gz" in moved
    assert moved.isdisjoint({f"entries/e{n}/index.html" for n in range(1, 5)})
    assert moved.isdisjoint({"feed-style", "media/a.txt", "404.html"})
    assert second["entries/e0/index.html"][1] > first["entries/e0/index.html"][1]
    assert b"New." in (public / "entries/e0/index.html").read_bytes()
    assert "feed.atom" not in moved  # the feeds show e3 and e4 only


def test_a_deleted_seed_takes_its_files_and_nothing_a_user_put_there(tmp_path: Path) -> None:
    config = _site(tmp_path)
    _build(config)
    public = tmp_path / "public"
    (public / "robots.txt").write_text("User-agent: *\n")
    (public / "entries" / "e3" / "notes.txt").write_text("mine\n")
    (public / "entries" / "e1" / "notes.txt").write_text("mine\n")
    (tmp_path / "seeds" / "e3.md").unlink()
    (tmp_path / "seeds" / "e2.md").unlink()
    (tmp_path / "media" / "a.txt").unlink()
    _build(config)
    assert not (public / "entries/e2").exists()  # its folder too, once empty
    assert sorted(p.name for p in (public / "entries/e3").iterdir()) == ["notes.txt"]
    assert (public / "entries/e1/index.html").is_file()
    assert (public / "robots.txt").read_text() == "User-agent: *\n"
    assert not (public / "media/a.txt").exists()
    names = set((public / MANIFEST).read_text().split())
    assert "entries/e1/index.html.br" in names and "robots.txt" not in names
    assert names == set(_files(public)) - {"robots.txt", "entries/e3/notes.txt",
                                           "entries/e1/notes.txt"}


def test_the_first_build_removes_the_old_layouts_pages(tmp_path: Path) -> None:
    """A build made before the manifest named route `/x` `x.html`; those pages go."""
    config = _site(tmp_path, count=3)
    public = tmp_path / "public"
    for name in ("entries/e0.html", "entries/gone.html.gz", "page/2.html", "tags/sky.html",
                 "tags/sky/page/2.html.br", "archive/1.atom", "archive/50/1.rss.gz"):
        (public / name).parent.mkdir(parents=True, exist_ok=True)
        (public / name).write_bytes(b"old")
    (public / "entries/readme.txt").write_bytes(b"a user's")
    _build(config)
    assert not [p for p in public.rglob("*") if p.is_file() and p.read_bytes() == b"old"]
    assert (public / "entries/readme.txt").read_bytes() == b"a user's"
    assert (public / "entries/e0/index.html").is_file()


@pytest.mark.parametrize(("path", "content_type", "name"), [
    ("/", "text/html; charset=utf-8", "index.html"),
    ("/tags/", "text/html; charset=utf-8", "tags/index.html"),
    ("/entries/x", "text/html; charset=utf-8", "entries/x/index.html"),
    ("/tags/a/page/2", "text/html; charset=utf-8", "tags/a/page/2/index.html"),
    ("/feed.atom", "application/xml; charset=utf-8", "feed.atom"),
    ("/archive/50/3.json", "application/feed+json", "archive/50/3.json"),
    ("/sitemaps/2.xml", "application/xml; charset=utf-8", "sitemaps/2.xml"),
])
def test_route_to_file(path: str, content_type: str, name: str) -> None:
    assert file_name(path, content_type) == name


def _page(body: bytes, when: datetime, dated: bool = True) -> Document:
    document = make_document("/p", "text/html; charset=utf-8", body, when)
    if dated:
        return document
    from feedsvc.publish.sitepages import _etag_only
    return _etag_only(document)


def test_a_changed_undated_page_always_gets_a_later_second(tmp_path: Path) -> None:
    """nginx's ETag is mtime-size: two versions of a page of the same size written within
    one second must not share it."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for body in (b"aaaa", b"bbbb", b"cccc"):
        out = SiteOutput(tmp_path)
        out.put(_page(body, when, dated=False))
        out.finish()
    mtimes = []
    out = SiteOutput(tmp_path)
    for body in (b"dddd", b"eeee"):
        out.put(_page(body, when, dated=False))
        mtimes.append((tmp_path / "p/index.html").stat().st_mtime_ns)
    assert mtimes[1] // 10**9 > mtimes[0] // 10**9
    assert mtimes[1] <= (datetime.now(UTC) + timedelta(seconds=5)).timestamp() * 10**9


def test_a_dated_page_takes_its_date_and_is_not_rewritten_for_a_date(tmp_path: Path) -> None:
    when = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    out = SiteOutput(tmp_path)
    out.put(_page(b"x", when))
    out.finish()
    path = tmp_path / "p/index.html"
    assert path.stat().st_mtime_ns == mtime_ns(when)
    inode = path.stat().st_ino
    os.utime(path, (0, 0))  # touched by someone: the date is put back, the file kept
    out = SiteOutput(tmp_path)
    out.put(_page(b"x", when))
    assert out.finish().touched == 1
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime_ns(when))


def _on_change(config: Path) -> None:
    with config.open("a", encoding="utf-8") as f:
        f.write("\n[build]\non_change = true\n")


def test_serve_keeps_the_output_current_on_every_change(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """`[build] on_change`: a dropped seed's files appear, dated as served; an edit moves
    only what it changes; a deleted seed's page goes; the bytes are what `build` writes."""
    config = _site(tmp_path)
    _on_change(config)
    public = tmp_path / "public"
    server = serve(config)
    wait_until(lambda: (public / "entries/e4/index.html").is_file()
               and (public / MANIFEST).is_file(), timeout=30)
    write_seed(tmp_path / "seeds", "new.md", "---\ntitle: Dropped\ntags: [Sea]\n---\nHello.\n")
    page = public / "entries/new/index.html"
    wait_until(lambda: page.is_file() and (public / "tags/sea.atom.br").is_file(), timeout=30)
    for route in ("/entries/new", "/feed.atom", "/tags/sea.atom", "/tags/sea"):
        status, headers, _ = wait_until(lambda route=route: (got := server.get(route))
                                           and _route_file(public, route).is_file()
                                           and _route_file(public, route).read_bytes()
                                           == got[2] and got)
        assert status == 200
        if "Last-Modified" in headers:
            assert int(_route_file(public, route).stat().st_mtime) == int(
                parsedate_to_datetime(headers["Last-Modified"]).timestamp()), route
    assert b"Dropped" in (public / "feed.atom").read_bytes()
    before = _files(public)
    # An edit of an entry of the long tail: its page follows; the others' files stay.
    write_seed(tmp_path / "seeds", "e0.md", "---\ntitle: Entry 0\ntags: [Sky]\n---\nEdited.\n",
               mtime=BASE + 20 * 3600)
    wait_until(lambda: b"Edited." in (public / "entries/e0/index.html").read_bytes())
    wait_until(lambda: (public / "entries/e0/index.html.br").stat().st_mtime_ns
               == (public / "entries/e0/index.html").stat().st_mtime_ns)
    after = _files(public)
    for n in (1, 2, 3):
        assert after[f"entries/e{n}/index.html"] == before[f"entries/e{n}/index.html"]
    (tmp_path / "seeds" / "e1.md").unlink()
    wait_until(lambda: not (public / "entries/e1").exists())
    assert server.stop() == 0
    # What serve left is what build writes: a build now rewrites no file (same inodes and
    # sizes). (A date may differ: after a deletion, the sitemap's and archive pages' dates
    # that a running serve sends can differ from those a later start gives them.)
    kept = _files(public)
    log = _build(config)
    assert "0 files written" in log and ", 0 removed" in log, log
    assert {k: (v[0], v[2]) for k, v in _files(public).items()} == \
        {k: (v[0], v[2]) for k, v in kept.items()}
    assert not [p for p in public.rglob(".*") if p.name != MANIFEST]


def _changed(before: dict[str, tuple[int, int, int]],
             after: dict[str, tuple[int, int, int]], prefix: str) -> set[str]:
    """The page files under `prefix` (and their siblings) new, gone or rewritten."""
    names = {n for n in {*before, *after}
             if n.startswith(prefix) and not n.rsplit("/", 1)[-1].startswith(".")}
    return {n.removesuffix(".gz").removesuffix(".br") for n in names
            if before.get(n) != after.get(n)}


def _settled(public: Path, route: str, body: bytes) -> bool:
    """The route's file and its .gz and .br hold `body`."""
    path = _route_file(public, route)
    try:
        return (path.read_bytes() == body
                and gzip.decompress(Path(f"{path}.gz").read_bytes()) == body
                and brotli.decompress(Path(f"{path}.br").read_bytes()) == body)
    except (OSError, EOFError, brotli.error):
        return False


def test_on_change_rewrites_only_the_older_pages_a_change_touches(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """`[build] on_change`, 9 entries 2 a page (older pages 1-4; tag sky: e0 e2 e4 e6 e8,
    pages 1-2): a new entry leaves every older page's files alone (same inode, same mtime),
    the front page and the tag's follow; the 11th makes page 5 and relinks page 4 only; an
    edit of e0 rewrites page 1 and the tag's page 1 only. The pages not touched are not even
    rendered: a byte changed by hand in one stays until a `build` compares everything."""
    config = _site(tmp_path, count=9)
    _on_change(config)
    public, seeds = tmp_path / "public", tmp_path / "seeds"
    server = serve(config)
    wait_until(lambda: (public / MANIFEST).is_file() and (public / "page/4/index.html").is_file(),
               timeout=30)
    tampered = public / "page/2/index.html"
    st = tampered.stat()
    original = tampered.read_bytes()
    tampered.write_bytes(original.replace(b"<main>", b"<MAIN>"))
    os.utime(tampered, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = _files(public)
    write_seed(seeds, "e9.md", "---\ntitle: Entry 9\ntags: [Sky]\n---\nBody 9.\n",
               mtime=BASE + 9 * 3600)
    wait_until(lambda: "entries/e9/index.html.br" in (public / MANIFEST).read_text())
    wait_until(lambda: server.get("/tags/sky")[2] == (public / "tags/sky/index.html").read_bytes())
    after = _files(public)
    assert _changed(before, after, "page/") == set()
    assert _changed(before, after, "tags/sky/page/") == set()
    assert "tags/sky/index.html" in _changed(before, after, "tags/")
    assert sorted(p.relative_to(public).as_posix() for p in public.glob("page/*")) == [
        f"page/{n}" for n in range(1, 5)]
    # The 11th entry: page 5 (e9 e8), page 4's "newer" link now page 5.
    before = after
    write_seed(seeds, "e10.md", "---\ntitle: Entry 10\n---\nBody 10.\n",
               mtime=BASE + 10 * 3600)
    wait_until(lambda: "page/5/index.html.br" in (public / MANIFEST).read_text())
    assert b"/page/5" in (public / "page/4/index.html").read_bytes()
    after = _files(public)
    assert _changed(before, after, "page/") == {"page/4/index.html", "page/5/index.html"}
    for n in range(1, 6):
        route = f"/page/{n}"
        assert server.get(route)[2] == _route_file(public, route).read_bytes() or n == 2, route
    # An edit of the oldest entry: its page, the tag's page holding it, nothing else.
    before = after
    write_seed(seeds, "e0.md", "---\ntitle: Entry 0\ntags: [Sky]\n---\nEdited.\n",
               mtime=BASE + 20 * 3600)
    wait_until(lambda: b"Edited." in (public / "entries/e0/index.html").read_bytes())
    for route in ("/page/1", "/tags/sky/page/1"):
        served = wait_until(lambda route=route: server.get(route)[2])
        wait_until(lambda route=route, served=served: _settled(public, route, served))
    after = _files(public)
    assert _changed(before, after, "page/") == {"page/1/index.html"}
    assert _changed(before, after, "tags/sky/page/") == {"tags/sky/page/1/index.html"}
    assert b"<MAIN>" in tampered.read_bytes()  # never rendered again since
    assert server.stop() == 0
    log = _build(config)  # a build compares every page: it puts the byte back
    assert tampered.read_bytes() == original
    assert ", 0 removed" in log, log


def test_an_output_that_cannot_be_written_is_logged_and_caught_up(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """`on_change` with a file in the output's way: serving goes on, the log says why, and
    once the way is clear the next change writes the whole site."""
    config = _site(tmp_path, count=2)
    _on_change(config)
    public = tmp_path / "public"
    public.write_bytes(b"in the way")
    server = serve(config)
    wait_until(lambda: "static output" in server.log() and "not updated" in server.log())
    assert server.get("/feed.atom")[0] == 200
    public.unlink()
    write_seed(tmp_path / "seeds", "later.md", "---\ntitle: Later\n---\nBody.\n")
    wait_until(lambda: (public / "entries/later/index.html").is_file()
               and (public / "entries/e0/index.html").is_file()
               and (public / MANIFEST).is_file(), timeout=30)
    assert server.stop() == 0
    log = _build(config)
    assert "0 files written" in log, log


@pytest.mark.parametrize(("text", "expected"), [
    ("", False), ("[build]\non_change = true\n", True), ("[build]\non_change = false\n", False),
])
def test_build_on_change_is_read(tmp_path: Path, text: str, expected: bool) -> None:
    from feedsvc.config import load_config

    config = write_config(tmp_path)
    config.write_text(config.read_text("utf-8") + "\n" + text, "utf-8")
    assert load_config(config).build.on_change is expected


@pytest.mark.parametrize("text", ['[build]\non_change = "yes"\n', "[build]\nonchange = true\n",
                                  "build = 1\n"])
def test_a_bad_build_table_stops_with_its_key(tmp_path: Path, text: str) -> None:
    config = write_config(tmp_path)
    config.write_text(text + config.read_text("utf-8"), "utf-8")
    result = run_cli("build", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "build" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("count", "pages_read"), [(11, 2), (12, 2), (10, 1), (4, 3), (2, 5),
                                                   (1, 1)])
def test_pages_read_in_parts_are_the_pages_served(tmp_path: Path, count: int,
                                                  pages_read: int) -> None:
    """`build` reads the older pages and the tag pages several at a time: the same pages
    (newest first), the versions `SitePages.versions` reads from the index, and the same end
    (no older page when at most `max_entries` are published)."""
    from feedsvc.config import load_config
    from feedsvc.publish.pageblocks import FRONT
    from feedsvc.publish.sitepages import SitePages

    config = _site(tmp_path, count=count)
    _build(config)
    site = SitePages(load_config(config))
    from feedsvc.publish.publisher import Publisher
    publisher = Publisher.open(load_config(config))
    info = publisher.info
    publisher.close()
    site.start(info)
    try:
        versions = site.versions()
        for tag in (None, "sky"):
            kind = "index" if tag is None else "tag"
            last = 0
            while site.render_now(kind, tag or "", last + 1) is not None:
                last += 1
            assert last == max(0, ((count if tag is None else (count + 1) // 2) - 1) // 2)
            numbers = [*([FRONT] if tag else []), *range(last, 0, -1)]
            one_by_one = [site.render_now(kind, tag or "", n) for n in numbers]
            parts = list(site.pages_of(tag, pages_read=pages_read))
            assert [(d.path, d.body) for _, _, d in parts] == \
                [(d.path, d.body) for d in one_by_one if d is not None]
            assert [n for n, _, _ in parts] == numbers
            assert {(tag, n): v for n, v, _ in parts} == \
                {key: v for key, v in versions.items() if key[0] == tag}
            # Some pages only: the same bytes.
            some = [n for n in numbers if n % 2]
            assert [(n, d.body) for n, _, d in site.pages_of(tag, some, pages_read)] == \
                [(n, d.body) for n, _, d in parts if n in some]
    finally:
        site.close()


def test_a_reload_rewrites_the_output_with_the_new_config(
        tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """SIGHUP with a new title: the files `on_change` keeps follow, the long tail's pages too
    (which no snapshot holds: the writer starts over with the reloaded publisher's info and
    the config in force)."""
    import signal

    config = _site(tmp_path)
    _on_change(config)
    public = tmp_path / "public"
    server = serve(config)
    tail_page = public / "entries/e0/index.html"  # not in the feeds (max_entries = 2)
    wait_until(lambda: tail_page.is_file() and (public / MANIFEST).is_file(), timeout=30)
    assert b"Test feed" in tail_page.read_bytes()
    config.write_text(config.read_text("utf-8").replace('title = "Test feed"',
                                                        'title = "Renamed feed"'), "utf-8")
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: b"Renamed feed" in (public / "feed.atom").read_bytes(), timeout=60)
    wait_until(lambda: b"Renamed feed" in tail_page.read_bytes(), timeout=60)
    assert tail_page.read_bytes() == server.get("/entries/e0")[2]
    assert b"Test feed" not in (public / "index.html").read_bytes()
    assert server.stop() == 0


@pytest.mark.parametrize("name", [
    "a", "a/b.html", ".feedsvc", "a/.well-known/x", "/a", "a//b", "a/", "./a", "../a",
    "a/./b", "a/../b", "a/..", "a/.", ".", "..", "a..b", "..a", "a/..b/c", "a/b..",
])
def test_the_manifest_is_read_at_once_as_line_by_line(tmp_path: Path, name: str) -> None:
    """The manifest is checked with a few looks at its whole text (a 324,000-line one took
    1.7 s line by line), which never take a line `_inside` refuses; the lines are those
    read one by one."""
    from feedsvc.publish.siteoutput import MANIFEST, SiteOutput, _all_inside, _inside

    text = f"x/index.html\n{name}\nz\n"
    assert _inside(name) or not _all_inside(text)
    tmp_path.joinpath(MANIFEST).write_text(text, "utf-8")
    assert SiteOutput(tmp_path).previous() == {"x/index.html", "z"} | (
        {name} if _inside(name) else set())
