"""Issue 11, defect 2: a tag that had entries is never 404. It answers 200 with an empty feed
(every format, valid) once its last entry goes, across restarts, and 410 Gone once it has had
no entry for `[feed] tombstone_days`; a tag that never existed is 404. Real server, watcher,
state; feedparser as the reader."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser

from .conftest import free_port, wait_until, write_config, write_seed
from .feedcheck import check_atom, check_rss
from .jsonfeedcheck import check_json_feed


def front(text: str, **keys: str) -> str:
    return "---\n" + "\n".join(f"{k}: {v}" for k, v in keys.items()) + f"\n---\n\n{text}"


def _site(tmp_path: Path, tombstone_days: int) -> Path:
    config = write_config(tmp_path, port=free_port(), tombstone_days=tombstone_days)
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", front("Corps A", title="A", slug="a", tags="X, Y"))
    write_seed(seeds, "b.txt", front("Corps B", title="B", slug="b", tags="Y"))
    return config


def test_a_tag_that_loses_its_last_entry_answers_an_empty_feed_then_410(
        tmp_path: Path, serve) -> None:
    config = _site(tmp_path, tombstone_days=30)
    server = serve(config)
    status, headers, body = wait_until(lambda: (r := server.get("/tags/x.atom"))[0] == 200 and r)
    assert len(feedparser.parse(body).entries) == 1
    etag = headers["ETag"]
    (tmp_path / "seeds" / "a.txt").unlink()  # the last entry tagged x
    status, headers, body = wait_until(
        lambda: (r := server.get("/tags/x.atom"))[2].count(b"<entry") == 0 and r)
    assert status == 200 and headers["ETag"] != etag
    parsed = feedparser.parse(body)
    assert not parsed.bozo and parsed.entries == []
    assert parsed.feed.title == "Test feed — X" and parsed.feed.id
    assert check_atom(body, f"{server.url}/tags/x.atom") == []  # id, title, updated, author
    assert server.get("/tags/x.atom", {"If-None-Match": headers["ETag"]})[0] == 304
    status, _, rss = server.get("/tags/x.rss")
    assert status == 200 and check_rss(rss, f"{server.url}/tags/x.rss") == []
    assert feedparser.parse(rss).entries == [] and not feedparser.parse(rss).bozo
    status, _, js = server.get("/tags/x.json")
    assert status == 200 and json.loads(js)["items"] == []
    assert check_json_feed(js, f"{server.url}/tags/x.json") == []
    assert server.get("/tags/y.atom")[2].count(b"<entry>") == 1  # untouched
    assert server.get("/tags/never.atom")[0] == 404
    # A restart keeps it: still the same empty feed (same bytes, same ETag).
    server.stop()
    server = serve(config)
    status, again, body_again = server.get("/tags/x.atom")
    assert status == 200 and body_again == body and again["ETag"] == headers["ETag"]
    assert server.get("/tags/never.atom")[0] == 404
    # The tag comes back with an entry: simply back.
    write_seed(tmp_path / "seeds", "c.txt", front("Corps C", title="C", slug="c", tags="X"))
    wait_until(lambda: server.get("/tags/x.atom")[2].count(b"<entry>") == 1)
    server.stop()


def test_past_tombstone_days_the_tag_is_gone_for_good(tmp_path: Path, serve) -> None:
    config = _site(tmp_path, tombstone_days=30)
    server = serve(config)
    wait_until(lambda: server.get("/tags/x.atom")[0] == 200)
    (tmp_path / "seeds" / "a.txt").unlink()
    wait_until(lambda: server.get("/tags/x.atom")[2].count(b"<entry") == 0)
    server.stop()
    # The same state, now with tombstone_days = 0: the tag has been empty for long enough.
    text = config.read_text().replace("tombstone_days = 30", "tombstone_days = 0")
    config.write_text(text)
    server = serve(config)
    for path in ("/tags/x.atom", "/tags/x.rss", "/tags/x.json"):
        assert server.get(path)[0] == 410, path
    # An HTML page in the site's language (fr), with a link home.
    _, headers, body = server.get("/tags/x.atom")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<h1>Supprimé</h1>".encode() in body and "Retour à la une".encode() in body
    # Its HTML page too: 410 and the same page, not a 404 (it existed).
    for path in ("/tags/x", "/tags/x/page/2"):
        status, headers, page = server.get(path)
        assert (status, headers["Content-Type"]) == (410, "text/html; charset=utf-8"), path
        assert "<h1>Supprimé</h1>".encode() in page
    assert server.get("/tags/y.atom")[0] == 200 and server.get("/tags/y")[0] == 200
    assert server.get("/tags/never.atom")[0] == 404 and server.get("/tags/never")[0] == 404
    # While served: the tag that loses its entries now is gone at once, never 404.
    (tmp_path / "seeds" / "b.txt").unlink()
    wait_until(lambda: server.get("/tags/y.atom")[0] == 410)
    # `build` writes nothing for a gone tag and removes what an earlier build wrote.
    server.stop()
    public = tmp_path / "public" / "tags"
    public.mkdir(parents=True)
    (public / "x.atom").write_bytes(b"stale")
    (public / "x.atom.gz").write_bytes(b"stale")
    from .conftest import run_cli
    result = run_cli("build", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Only the (empty) list of tags (publish/sitebuild.py).
    assert sorted(p.name for p in public.iterdir()) == ["index.html", "index.html.br",
                                                        "index.html.gz"]


def test_build_writes_the_empty_feed_of_a_tag_that_lost_its_entries(tmp_path: Path) -> None:
    from .conftest import run_cli
    config = _site(tmp_path, tombstone_days=30)
    assert run_cli("build", "--config", str(config), cwd=tmp_path).returncode == 0
    (tmp_path / "seeds" / "a.txt").unlink()
    result = run_cli("build", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    body = (tmp_path / "public" / "tags" / "x.atom").read_bytes()
    parsed = feedparser.parse(body)
    assert parsed.entries == [] and not parsed.bozo
    assert (tmp_path / "public" / "tags" / "x.json").exists()


def test_a_tag_dropped_by_an_edit_while_stopped_is_still_known(tmp_path: Path, serve) -> None:
    config = _site(tmp_path, tombstone_days=30)
    server = serve(config)
    wait_until(lambda: server.get("/tags/x.atom")[0] == 200)
    server.stop()
    write_seed(tmp_path / "seeds", "a.txt", front("Corps A", title="A", slug="a", tags="Y"))
    server = serve(config)
    wait_until(lambda: server.get("/tags/y.atom")[2].count(b"<entry>") == 2)
    status, _, body = server.get("/tags/x.atom")
    assert status == 200 and feedparser.parse(body).entries == []
