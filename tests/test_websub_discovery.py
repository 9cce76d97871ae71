"""W3C WebSub §4 discovery: every feed document (main, tags, archive pages; Atom, RSS, JSON
Feed) names its hubs and itself, in its bytes and in an HTTP `Link` header on every feed
response (200, 304, HEAD, every coding). Nothing when no hub is configured (the golden bytes
hold that)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import feedparser
import pytest

from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.publish.ids import discovery_link
from tests.conftest import (
    ServeProcess,
    free_port,
    run_cli,
    wait_until,
    write_config,
    write_seed,
)
from tests.feedcheck import check_atom, check_rss
from tests.jsonfeedcheck import check_json_feed

HUB = "https://hub.example.org/"
SEEDS = 7  # with max_entries 3 and pages of 2: archive pages /archive/2/1 and /archive/2/2


def websub_config(folder: Path, port: int, hubs: list[str], builtin: bool = False,
                  **feed: object) -> Path:
    path = write_config(folder, port=port, **feed)
    listed = ", ".join(f'"{hub}"' for hub in hubs)
    with path.open("a", encoding="utf-8") as f:
        f.write(f"\n[websub]\nhubs = [{listed}]\nbuiltin_hub = {str(builtin).lower()}\n")
    return path


def _seed(i: int) -> str:
    return f"---\ntags: [Ciel]\n---\nentry-{i}\nTitre {i}\n\nCorps {i}.\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    websub_config(tmp_path, free_port(), [HUB], builtin=True, max_entries=3,
                  archive_page_entries=2)
    for i in range(SEEDS):
        write_seed(tmp_path / "seeds", f"{i:02d}.txt", _seed(i), mtime=1_700_000_000 + 60 * i)
    return tmp_path


def _documents(server: ServeProcess) -> list[str]:
    return [f"/{stem}.{ext}" for stem in ("feed", "tags/ciel", "archive/2/1", "archive/2/2")
            for ext in ("atom", "rss", "json")]


def test_every_document_names_its_hubs_and_itself(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    builtin = f"{server.url}/websub"
    hubs = [HUB, builtin]  # the configured ones, then the built-in one
    wait_until(lambda: server.get("/archive/2/2.atom")[0] == 200)
    for path in _documents(server):
        status, headers, body = server.get(path)
        assert status == 200, path
        self_url = f"{server.url}{path}"
        # The Link header: every hub, then the document itself (RFC 8288, one field value).
        assert headers["Link"] == ", ".join(
            [f'<{hub}>; rel="hub"' for hub in hubs] + [f'<{self_url}>; rel="self"']), path
        if path.endswith(".json"):
            feed = json.loads(body)
            assert feed["hubs"] == [{"type": "WebSub", "url": hub} for hub in hubs], path
            assert check_json_feed(body) == [], path
            continue
        parsed = feedparser.parse(body)
        assert [link.href for link in parsed.feed.links if link.rel == "hub"] == hubs, path
        assert [link.href for link in parsed.feed.links if link.rel == "self"] == [self_url]
        check = check_rss if path.endswith(".rss") else check_atom
        assert check(body, self_url) == [], path
        # Hubs are the feed's own links: no entry carries one.
        assert all(link.rel != "hub" for entry in parsed.entries for link in entry.links)


def test_the_link_header_is_on_304_head_and_every_coding(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    wait_until(lambda: server.get("/archive/2/1.rss")[0] == 200)
    for path in ("/feed.atom", "/tags/ciel.json", "/archive/2/1.rss"):
        _, headers, _ = server.get(path)
        link = headers["Link"]
        assert f'<{server.url}{path}>; rel="self"' in link
        for coding in ("gzip", "br"):
            assert server.get(path, {"Accept-Encoding": coding})[1]["Link"] == link
        assert server.get(path, method="HEAD")[1]["Link"] == link
        status, not_modified, _ = server.get(path, {"If-None-Match": headers["ETag"]})
        assert status == 304 and not_modified["Link"] == link, path
        status, not_modified, _ = server.get(path, {"If-Modified-Since":
                                                    headers["Last-Modified"]})
        assert status == 304 and not_modified["Link"] == link, path
    # Not a feed document: no hub to name.
    assert "Link" not in server.get("/")[1]
    assert "Link" not in server.get("/entries/entry-6")[1]


def test_no_hub_no_discovery(tmp_path: Path, serve: Callable[[Path], ServeProcess]) -> None:
    websub_config(tmp_path, free_port(), [])
    write_seed(tmp_path / "seeds", "a.txt", _seed(1))
    server = serve(tmp_path / "config.toml")
    for path in ("/feed.atom", "/feed.rss", "/feed.json", "/tags/ciel.atom"):
        status, headers, body = server.get(path)
        assert status == 200 and "Link" not in headers, path
        assert b'rel="hub"' not in body and b'"hubs"' not in body, path


def test_a_hub_change_redates_the_archive_pages(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """The hubs are in every page's bytes: a new hub list is a new fingerprint (archives.py),
    so every page is dated again, and its new bytes name the new hub."""
    port = load_config(site / "config.toml").server.port
    server = serve(site / "config.toml")
    before = server.get("/archive/2/1.atom")
    server.stop()
    websub_config(site, port, ["https://other.example.net/hub"], max_entries=3,
                  archive_page_entries=2)
    again = serve(site / "config.toml")
    after = again.get("/archive/2/1.atom")
    assert after[1]["ETag"] != before[1]["ETag"]
    # Re-dated (maybe within the same second: then that second no longer answers 304).
    assert again.get("/archive/2/1.atom", {"If-Modified-Since": before[1]["Last-Modified"]}
                     )[0] == 200
    assert b'href="https://other.example.net/hub" rel="hub"' in after[2]
    assert HUB.encode() not in after[2]


@pytest.mark.parametrize(("hubs", "self_url", "expected"), [
    ((), "http://h/feed.atom", None),
    (("https://a/",), "http://h/feed.atom", '<https://a/>; rel="hub", <http://h/feed.atom>; '
                                            'rel="self"'),
    (("https://a/", "http://h/websub"), "http://h/tags/x.rss",
     '<https://a/>; rel="hub", <http://h/websub>; rel="hub", <http://h/tags/x.rss>; '
     'rel="self"'),
    # RFC 8288 wants URI-References: an IRI's characters percent-encoded (RFC 3987 §3.1).
    (("https://a/",), "http://h/café/feed.atom",
     '<https://a/>; rel="hub", <http://h/caf%C3%A9/feed.atom>; rel="self"'),
])
def test_discovery_link_syntax(hubs: tuple[str, ...], self_url: str,
                               expected: str | None) -> None:
    assert discovery_link(hubs, self_url) == expected


_SELF = "http://h/feed.atom"
_ATOM = ("<?xml version='1.0' encoding='UTF-8'?>\n"
         '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">'
         "<id>urn:uuid:12345678-1234-1234-1234-123456789abc</id><title>T</title>"
         "<updated>2026-01-01T00:00:00Z</updated><author><name>A</name></author>"
         "{self}{extra}</feed>")
_RSS = ("<?xml version='1.0' encoding='UTF-8'?>\n"
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">'
        "<channel><title>T</title><link>http://h/</link><description>D</description>"
        "<language>en</language>{self}{extra}</channel></rss>")


@pytest.mark.parametrize("rss", [False, True], ids=["atom", "rss"])
@pytest.mark.parametrize(("extra", "problem"), [
    ('<{a}link href="https://hub.example/" rel="hub"/>', None),
    ('<{a}link href="https://hub.example/" rel="hub"/><{a}link href="http://h/websub" '
     'rel="hub"/>', None),
    ('<{a}link href="/websub" rel="hub"/>', "not an absolute http(s) URL"),
    ('<{a}link href="ftp://hub/" rel="hub"/>', "not an absolute http(s) URL"),
    ('<{a}link href="https://hub.example/" rel="hub"/>'
     '<{a}link href="https://hub.example/" rel="hub"/>', "the same hub twice"),
    ('<{a}link href="{self}" rel="hub"/>', "names the document itself"),
])
def test_feedcheck_hub_rules(rss: bool, extra: str, problem: str | None) -> None:
    self_url = _SELF.replace(".atom", ".rss") if rss else _SELF
    a = "atom:" if rss else ""
    self_link = (f'<{a}link href="{self_url}" rel="self" '
                 f'type="application/{"rss" if rss else "atom"}+xml"/>')
    body = (_RSS if rss else _ATOM).format(self=self_link, extra=extra.format(
        a=a, self=self_url)).encode()
    problems = [p for p in (check_rss if rss else check_atom)(body, self_url)
                if "RFC 4287 schema" not in p]
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("rss", [False, True], ids=["atom", "rss"])
def test_feedcheck_hub_needs_one_self(rss: bool) -> None:
    a = "atom:" if rss else ""
    body = (_RSS if rss else _ATOM).format(
        self="", extra=f'<{a}link href="https://hub.example/" rel="hub"/>').encode()
    problems = (check_rss if rss else check_atom)(body, _SELF)
    assert any("rel=hub without exactly one rel=self" in p for p in problems), problems


@pytest.mark.parametrize(("hubs", "problem"), [
    ([{"type": "WebSub", "url": "https://hub.example/"}], None),
    ([{"type": "WebSub"}], "url missing"),
    ([{"url": "https://hub.example/"}], "type missing"),
    ([{"type": "WebSub", "url": "/websub"}], "not an absolute http(s) URL"),
    ([{"type": " ", "url": "https://hub.example/"}], "type: empty"),
    ([{"type": "WebSub", "url": "https://a/"}, {"type": "WebSub", "url": "https://a/"}],
     "the same hub url twice"),
    ({"type": "WebSub", "url": "https://a/"}, "not an array"),
])
def test_jsonfeedcheck_hub_rules(hubs: object, problem: str | None) -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "T",
                       "hubs": hubs, "items": []}).encode()
    problems = check_json_feed(body)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_check_lists_the_hubs(tmp_path: Path) -> None:
    port = free_port()
    websub_config(tmp_path, port, [HUB, "https://b.example/hub"], builtin=True)
    result = run_cli("check", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert result.returncode == 0
    assert [line for line in result.stdout.splitlines() if line.startswith("websub hub:")] == [
        f"websub hub: {HUB} (pinged on every change)",
        "websub hub: https://b.example/hub (pinged on every change)",
        f"websub hub: http://127.0.0.1:{port}/websub (built-in)",
    ]
    websub_config(tmp_path, port, [])
    result = run_cli("check", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert "websub hub" not in result.stdout


@pytest.mark.parametrize(("hubs", "problem"), [
    ('["https://hub.example/a b"]', "must be a URI"),
    ('["https://hub.example/<x>"]', "must be a URI"),
    ('["https://hub.example/é"]', "must be a URI"),
    ('["https://hub.example/x\\u000a"]', "must be a URI"),
    ('["ftp://hub.example/"]', "http:// or https://"),
    ('["https://a/", "https://a/"]', "lists a hub twice"),
])
def test_hub_urls_in_the_config_must_be_uris(tmp_path: Path, hubs: str, problem: str) -> None:
    path = write_config(tmp_path, port=free_port())
    with path.open("a", encoding="utf-8") as f:
        f.write(f"\n[websub]\nhubs = {hubs}\n")
    with pytest.raises(ConfigError, match=problem):
        load_config(path)
