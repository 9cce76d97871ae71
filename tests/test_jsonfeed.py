"""JSON Feed 1.1: /feed.json and /tags/{tag}.json, served by a real server like every other
document, written by `build` byte for byte, announced on the HTML pages, and held to the spec
by tests/jsonfeedcheck.py (which these tests also prove fails on bad input)."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import brotli
import pytest
from lxml import etree

from feedsvc.cli import build
from feedsvc.config import Config
from feedsvc.httpdates import parse_http_date
from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish.formats.jsonfeed import render_json_feed
from feedsvc.serve.app import make_app

from .conftest import seed, write_seed
from .jsonfeedcheck import check_json_feed

A = "{http://www.w3.org/2005/Atom}"
T = datetime(2026, 11, 20, 8, 30, tzinfo=UTC).timestamp()

VALID: dict[str, Any] = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Nouvelles",
    "home_page_url": "http://127.0.0.1:8080/",
    "feed_url": "http://127.0.0.1:8080/feed.json",
    "authors": [{"name": "Zoé", "url": "mailto:zoe@exemple.fr"}],  # the spec allows mailto:
    "language": "fr",
    "next_url": "http://127.0.0.1:8080/feed.json?page=2",
    "_ext": {"any": 1},
    "items": [{"id": "urn:uuid:1", "content_html": "<p>a</p>", "tags": ["Vie du projet"],
               "date_published": "2026-11-24T08:30:00+00:00",
               "date_modified": "2026-11-24T08:30:00.000123Z"},
              {"id": "urn:uuid:2", "content_text": "b", "url": "https://exemple.fr/b"}],
}


def _bad(change: Callable[[dict[str, Any]], object]) -> bytes:
    feed = copy.deepcopy(VALID)
    change(feed)
    return json.dumps(feed).encode()


@pytest.mark.parametrize(("change", "expected"), [
    (lambda f: f.update(version="https://jsonfeed.org/version/1"), "version"),
    (lambda f: f.pop("title"), "title missing"),
    (lambda f: f.pop("items"), "items missing"),
    (lambda f: f.update(items={}), "items: not an array"),
    (lambda f: f.update(title=3), "title: not a string"),
    (lambda f: f.update(home_page_url="/relative"), "not an absolute http(s) URL"),
    (lambda f: f.update(feed_url="mailto:a@b.c"), "not an absolute http(s) URL"),
    (lambda f: f.update(language="français"), "not a language tag"),
    (lambda f: f.update(expired="no"), "not a boolean"),
    (lambda f: f.update({"version": f.pop("version")}), "version: not the first key"),
    (lambda f: f.update(next_url=f["feed_url"]), "readers would loop"),
    (lambda f: f["authors"][0].update(url="ftp://exemple.fr/"), "not an absolute http(s) URL"),
    (lambda f: f.update({"_a.b": 1}), "unknown field '_a.b'"),
    (lambda f: f.update(authors=[{}]), "none of name, url, avatar"),
    (lambda f: f.update(authors={"name": "a"}), "authors: not an array"),
    (lambda f: f.update(author={"name": "a"}), "1.0's"),
    (lambda f: f.update(updated="2026-11-24T08:30:00Z"), "unknown field 'updated'"),
    (lambda f: f.update(_1="x"), "unknown field '_1'"),
    (lambda f: f["items"][0].pop("id"), "id missing"),
    (lambda f: f["items"][0].update(id=1), "not a string"),
    (lambda f: f["items"][0].update(id=""), "id is empty"),
    (lambda f: f["items"][0].update(id=" "), "id is empty"),
    (lambda f: f["items"][1].update(id="urn:uuid:1"), "not unique"),
    (lambda f: f["items"][0].pop("content_html"), "neither content_html nor content_text"),
    (lambda f: f["items"][0].update(date_published="2026-11-24 08:30"), "not an RFC 3339"),
    (lambda f: f["items"][0].update(date_published="2026-11-24T08:30:00"), "not an RFC 3339"),
    (lambda f: f["items"][0].update(date_modified="2026-02-30T08:30:00Z"), "not a real date"),
    (lambda f: f["items"][0].update(tags="a, b"), "tags: not an array"),
    (lambda f: f["items"][0].update(tags=["a", 2]), "not a string"),
    (lambda f: f["items"][0].update(attachments=[{"url": "https://a.b/c"}]), "mime_type missing"),
    (lambda f: f["items"][0].update(hubs=[]), "unknown field 'hubs'"),
    (lambda f: f["items"].append([]), "not an object"),
])
def test_the_checker_finds_each_fault(change: Callable[[dict[str, Any]], object],
                                      expected: str) -> None:
    assert check_json_feed(json.dumps(VALID).encode()) == []
    problems = check_json_feed(_bad(change))
    assert any(expected in problem for problem in problems), problems


def test_the_checker_refuses_what_is_not_a_json_feed() -> None:
    assert check_json_feed(b"\xff{}") != []
    assert check_json_feed(b'{"version": ') != []
    assert check_json_feed(b"[]") == ["top level: not an object"]
    assert check_json_feed(json.dumps(VALID).encode(), "http://127.0.0.1:8080/x.json") != []


def test_text_reaches_the_reader_as_written() -> None:
    info = FeedInfo(id="urn:uuid:f", title="« Nouvelles » & <co>", subtitle="Ce qu’on dit",
                    language="fr", author_name="L’équipe", author_email="a@b.fr",
                    base_url="http://127.0.0.1:8080/", created=datetime(2026, 1, 1, tzinfo=UTC))
    entry = Entry(slug="a", title="Titre « x » ’ & <b>", paragraphs=("3 < 4",),
                  content_html="<p>3 &lt; 4</p>",
                  summary="3 < 4 & ’", content_hash="h", tags=("Vie du projet",), lang="en")
    moment = datetime(2026, 11, 24, 8, 30, 0, 123, tzinfo=UTC)
    item = Item(entry=entry, id="urn:uuid:e", link="http://127.0.0.1:8080/entries/a",
                published=moment, updated=moment)
    body = render_json_feed(info, [item])
    assert check_json_feed(body, "http://127.0.0.1:8080/feed.json") == []
    assert "« Nouvelles » & <co>".encode() in body and "Titre « x » ’ & <b>".encode() in body
    feed = json.loads(body)
    assert feed["title"] == info.title and feed["description"] == "Ce qu’on dit"
    [got] = feed["items"]
    assert got["title"] == entry.title and got["summary"] == "3 < 4 & ’"
    assert got["date_published"] == "2026-11-24T08:30:00.000123+00:00"
    assert (got["language"], got["tags"]) == ("en", ["Vie du projet"])
    assert got["authors"] == [{"name": "L’équipe"}]


INFO = FeedInfo(id="urn:uuid:f", title="Nouvelles", subtitle="Ce qu’on dit", language="fr",
                author_name="L’équipe", author_email="equipe@exemple.fr",
                base_url="http://127.0.0.1:8080/", created=datetime(2026, 1, 1, tzinfo=UTC))
MOMENT = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def _item(**entry: Any) -> Item:
    fields = {"slug": "a", "title": "A", "paragraphs": ("Un.",), "content_html": "<p>Un.</p>",
              "summary": "Un.", "content_hash": "h", **entry}
    return Item(entry=Entry(**fields), id=f"urn:uuid:{fields['slug']}",
                link=f"http://127.0.0.1:8080/entries/{fields['slug']}", published=MOMENT,
                updated=MOMENT)


ITEM_FIELDS = ["id", "url", "title", "content_html", "summary", "date_published",
               "date_modified", "authors"]


@pytest.mark.parametrize(("entry", "fields", "authors"), [
    ({}, ITEM_FIELDS, [{"name": "L’équipe"}]),  # the feed's author, named in every item
    ({"author_name": "Zoé", "author_email": "zoe@exemple.fr"}, ITEM_FIELDS, [{"name": "Zoé"}]),
    ({"tags": ("Vie du projet", "vie-du-projet")}, [*ITEM_FIELDS, "tags"],
     [{"name": "L’équipe"}]),
    ({"lang": "en"}, [*ITEM_FIELDS, "language"], [{"name": "L’équipe"}]),
    ({"lang": "fr"}, ITEM_FIELDS, [{"name": "L’équipe"}]),  # the feed's own: not repeated
], ids=["feed-author", "own-author", "tags", "own-language", "feed-language"])
def test_each_item_has_the_fields_its_entry_gives(entry: dict[str, Any], fields: list[str],
                                                  authors: list[dict[str, str]]) -> None:
    item = _item(**entry)
    body = render_json_feed(INFO, [item])
    assert check_json_feed(body, "http://127.0.0.1:8080/feed.json") == []
    [got] = json.loads(body)["items"]
    assert list(got) == fields  # the spec's order; no field the entry does not give
    assert got["authors"] == authors
    assert got.get("tags", []) == list(item.entry.tags)  # as written, even when two share a slug


@pytest.mark.parametrize("feed_path", ["feed", "tags/vie-du-projet"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_feed_names_itself_and_nothing_it_does_not_have(feed_path: str, count: int) -> None:
    info = replace(INFO, feed_path=feed_path)
    items = [_item(slug=f"s{n}") for n in range(count)]
    url = f"http://127.0.0.1:8080/{feed_path}.json"
    body = render_json_feed(info, items)
    assert check_json_feed(body, url) == []
    feed = json.loads(body)
    # No `expired` (the feed goes on), `next_url` (no pages: the feed shows its newest
    # entries), `user_comment`, `icon` nor `favicon` (none configured).
    assert list(feed) == ["version", "title", "home_page_url", "feed_url", "description",
                          "language", "authors", "items"]
    assert (feed["feed_url"], feed["home_page_url"]) == (url, "http://127.0.0.1:8080/")
    assert feed["authors"] == [{"name": "L’équipe"}]  # JSON Feed authors have no email
    assert [item["id"] for item in feed["items"]] == [item.id for item in items]
    assert body.endswith(b"}\n") and body.count(b"\n") == 1 + count + (count > 0)


@pytest.mark.parametrize("name", ["feed.json", "tags__astronomie.json",
                                  "tags__vie-du-projet.json"])
def test_the_golden_json_feeds_pass_the_checker(name: str) -> None:
    body = (Path(__file__).parent / "data" / "golden" / name).read_bytes()
    assert check_json_feed(body, "http://127.0.0.1:8080/" + name.replace("__", "/")) == []


SEEDS = {
    "bilan.txt": "---\ntitle: \"Le « bilan » d’automne & <suite>\"\nslug: bilan\n"
                 "author: Zoé Martin\ntags: [Vie du projet, Astronomie]\nlang: en\n---\n\n"
                 "Un paragraphe, 3 < 4.\n",
    "nuit.md": "---\ntags: Astronomie\ndate: 2026-11-19 22:00\n---\n# La nuit\n\nDu *texte*.\n",
    # Two seeds of one mtime: distinct `updated` dates a microsecond apart (a fraction).
    "a.txt": seed("a", "Même minute", "Un."),
    "b.txt": seed("b", "Même minute encore", "Deux."),
}


async def _get(session: aiohttp.ClientSession, url: str, **headers: str
               ) -> tuple[int, Mapping[str, str], bytes]:
    # The identity bytes unless a test asks for a coding (aiohttp would ask for gzip).
    async with session.get(url, headers={"Accept-Encoding": "identity", **headers}) as response:
        return response.status, response.headers.copy(), await response.read()


def _atom_entries(body: bytes) -> dict[str, dict[str, str]]:
    """Per Atom entry id: its published and updated texts, as written."""
    root = etree.fromstring(body)
    return {e.findtext(f"{A}id"): {"published": e.findtext(f"{A}published"),
                                   "updated": e.findtext(f"{A}updated"),
                                   "title": e.findtext(f"{A}title")}
            for e in root.iter(f"{A}entry")}


async def test_json_feeds_are_served_checked_and_built(config: Config, aiohttp_server) -> None:
    for name, text in SEEDS.items():
        write_seed(config.paths.seeds, name, text, mtime=T)
    server = await aiohttp_server(make_app(config))
    base, served = f"http://127.0.0.1:{server.port}", {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for path in ("/feed.json", "/tags/astronomie.json", "/tags/vie-du-projet.json"):
            status, headers, body = await _get(session, base + path)
            assert status == 200, path
            assert headers["Content-Type"] == "application/feed+json"
            assert parse_http_date(headers["Last-Modified"]) is not None
            assert check_json_feed(body, config.feed.base_url + path[1:]) == []
            etag = headers["ETag"]
            status, headers, _ = await _get(session, base + path, **{"If-None-Match": etag})
            assert status == 304 and headers["ETag"] == etag
            for coding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
                status, headers, coded = await _get(session, base + path,
                                                    **{"Accept-Encoding": coding})
                assert headers["Content-Encoding"] == coding and decode(coded) == body
                assert headers["ETag"] == f'{etag[:-1]}-{coding}"'
            served[path] = body
        atom = _atom_entries((await _get(session, base + "/feed.atom"))[2])
        tag_atom = _atom_entries((await _get(session, base + "/tags/astronomie.atom"))[2])
        page = (await _get(session, base + "/"))[2].decode()
        entry_page = (await _get(session, base + "/entries/bilan"))[2].decode()
    await server.close()

    feed = json.loads(served["/feed.json"])
    assert feed["feed_url"] == f"{config.feed.base_url}feed.json"
    assert feed["home_page_url"] == config.feed.base_url
    assert (feed["language"], feed["authors"]) == ("fr", [{"name": "Test feed"}])
    assert [item["id"] for item in feed["items"]] == list(atom)  # same ids, same order
    for item in feed["items"]:
        assert item["date_published"] == atom[item["id"]]["published"]
        assert item["date_modified"] == atom[item["id"]]["updated"]
    assert any("." in item["date_modified"] for item in feed["items"])  # the clash's fraction
    bilan = next(item for item in feed["items"] if item["url"].endswith("/entries/bilan"))
    assert bilan["title"] == "Le « bilan » d’automne & <suite>"
    assert bilan["tags"] == ["Vie du projet", "Astronomie"]
    assert (bilan["language"], bilan["authors"]) == ("en", [{"name": "Zoé Martin"}])
    assert "3 &lt; 4" in bilan["content_html"] and bilan["summary"] == "Un paragraphe, 3 < 4."
    assert "language" not in feed["items"][-1]
    tagged = json.loads(served["/tags/astronomie.json"])
    assert tagged["title"] == "Test feed — Astronomie"
    assert tagged["feed_url"] == f"{config.feed.base_url}tags/astronomie.json"
    assert [item["id"] for item in tagged["items"]] == list(tag_atom)
    for html_page in (page, entry_page):
        assert ('<link rel="alternate" type="application/feed+json" title="Test feed (JSON Feed)" '
                f'href="{config.feed.base_url}feed.json">') in html_page

    assert build(config) == 0
    for path, body in served.items():
        assert (config.paths.output / path[1:]).read_bytes() == body, path


async def test_an_edit_dates_the_json_feed_anew(config: Config, aiohttp_server) -> None:
    write_seed(config.paths.seeds, "a.txt", seed("a", "Premier", "Un."), mtime=T)
    server = await aiohttp_server(make_app(config))
    url = f"http://127.0.0.1:{server.port}/feed.json"
    async with aiohttp.ClientSession() as session:
        _, before, _ = await _get(session, url)
        write_seed(config.paths.seeds, "a.txt", seed("a", "Premier, corrigé", "Un."),
                   mtime=T + 60)
        for _ in range(500):
            status, after, body = await _get(session, url)
            if after["ETag"] != before["ETag"]:
                break
            await asyncio.sleep(0.02)
        status, _, _ = await _get(session, url, **{"If-Modified-Since": before["Last-Modified"]})
    await server.close()
    assert "Premier, corrigé".encode() in body
    assert parse_http_date(after["Last-Modified"]) > parse_http_date(before["Last-Modified"])
    assert status == 200
