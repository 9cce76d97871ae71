"""The site's HTML pages (issue 13): in the feed's language and time zone, complete, valid HTML5.

Pure rendering is checked from data tables, for a French feed in Europe/Paris and an English one
in UTC; the routes (stylesheet, 404) against a real server.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import html5lib
import pytest

from feedsvc.ingest.parser import parse_seed
from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish import pages
from feedsvc.publish.ids import entry_id
from feedsvc.publish.locale import page_locale
from feedsvc.publish.pages import (
    STYLESHEET_PATH,
    render_entry,
    render_gone,
    render_index,
    render_not_found,
)

from .conftest import wait_until, write_config, write_seed

LOCALES = Path(pages.__file__).parent / "locales"
T0 = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)  # 8h30 in Paris

FR = FeedInfo(id="urn:uuid:9b4c5a52-1f6e-5d0e-8a55-5b8d6c1e2f00", title="Les dépêches",
              subtitle="Actualité « internationale »", language="fr",
              author_name="La rédaction", author_email=None, base_url="https://news.example.fr/",
              created=T0 - timedelta(days=30), timezone="Europe/Paris")
EN = replace(FR, title="The Wire", subtitle="News", language="en", author_name="The desk",
             base_url="https://news.example.com/", timezone="UTC")

MARKDOWN = """\
---
title: Des étoiles et des tableaux
author: Marie Curie
tags: [Astronomie, Vie du projet]
image: https://news.example.fr/media/ciel.jpg
enclosure: https://news.example.fr/media/episode.mp3
lang: en
---
A *first* paragraph, in English.

| left | centre | right |
|:-----|:------:|------:|
| a    | b      | c     |

> A quote.

```
code()
```
"""


def _entry(info: FeedInfo, name: str = "etoiles.md", text: str = MARKDOWN) -> Item:
    entry = parse_seed(name, text.encode())
    assert isinstance(entry, Entry), entry
    return Item(entry=entry, id=entry_id(info.id, entry.slug),
                link=f"{info.base_url}entries/{entry.slug}", published=T0, updated=T0)


def _plain(info: FeedInfo, slug: str, published: datetime) -> Item:
    entry = parse_seed(f"{slug}.txt", f"{slug}\nTitre {slug}\n\nUn corps.".encode())
    assert isinstance(entry, Entry), entry
    return Item(entry=entry, id=entry_id(info.id, slug), link=f"{info.base_url}entries/{slug}",
                published=published, updated=published)


def strict_parse(page: bytes) -> None:
    """html5lib in strict mode: any parse error (broken markup) raises."""
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


# (language, zone, moment) → what the page shows, and the RFC 3339 of its <time datetime>.
DATES = [
    ("fr", "Europe/Paris", T0, "24 novembre 2026 à 08:30", "2026-11-24T08:30:00+01:00"),
    ("fr", "Europe/Paris", datetime(2026, 7, 1, 6, 5, tzinfo=UTC), "1 juillet 2026 à 08:05",
     "2026-07-01T08:05:00+02:00"),  # summer time
    ("en", "UTC", T0, "November 24, 2026 at 7:30\u202fAM", "2026-11-24T07:30:00+00:00"),
    ("en", "America/New_York", T0, "November 24, 2026 at 2:30\u202fAM",
     "2026-11-24T02:30:00-05:00"),
    ("de", "Europe/Berlin", T0, "24. November 2026 um 08:30", "2026-11-24T08:30:00+01:00"),
    ("es", "UTC", T0, "24 de noviembre de 2026, 7:30", "2026-11-24T07:30:00+00:00"),
    ("xx", "UTC", T0, "November 24, 2026 at 7:30\u202fAM", "2026-11-24T07:30:00+00:00"),
]


@pytest.mark.parametrize(("language", "zone", "moment", "shown", "rfc3339"), DATES)
def test_dates_are_written_as_the_language_writes_them_in_the_feeds_zone(
        language: str, zone: str, moment: datetime, shown: str, rfc3339: str) -> None:
    loc = page_locale(language, zone)
    assert loc.date_text(moment) == shown
    assert loc.when(moment) == f'<time datetime="{rfc3339}">{shown}</time>'
    assert datetime.fromisoformat(rfc3339) == moment


# language → labels of the pages, as its catalog says them (English for a language without one).
LABELS = [
    ("fr", "Rien n’a encore été publié.", "S’abonner\u00a0:"),
    ("fr-CA", "Rien n’a encore été publié.", "S’abonner\u00a0:"),
    ("en", "Nothing published yet.", "Subscribe:"),
    ("de", "Nothing published yet.", "Subscribe:"),
]


@pytest.mark.parametrize(("language", "empty", "subscribe"), LABELS)
def test_labels_come_from_the_catalog_of_the_feeds_language(
        language: str, empty: str, subscribe: str) -> None:
    page = render_index(replace(FR, language=language), []).decode()
    assert f'<html lang="{language}">' in page
    assert f"<p>{empty}</p>" in page and f'<p class="subscribe">{subscribe} ' in page


def _catalog(language: str) -> dict[str, str | tuple[str, ...]]:
    from babel.messages.pofile import read_po

    with (LOCALES / language / "LC_MESSAGES" / "feedsvc.po").open("rb") as handle:
        return {(m.id if isinstance(m.id, str) else m.id[0]): m.string
                for m in read_po(handle) if m.id}


def test_french_and_english_catalogs_are_complete() -> None:
    """Every label the pages use is in both catalogs, translated."""
    source = Path(pages.__file__).read_text("utf-8")
    used = set(re.findall(r'_t(?:_raw)?\(loc, "([^"]+)"', source))
    used |= set(re.findall(r"_t(?:_raw)?\(loc, '([^']+)'", source))
    used |= set(re.findall(r'loc\.plural\("([^"]+)"', source))
    assert len(used) > 10
    for language in ("fr", "en"):
        catalog = _catalog(language)
        assert used <= set(catalog), (language, used - set(catalog))
        assert all(catalog.values()), language
    assert set(_catalog("fr")) == set(_catalog("en"))


@pytest.mark.parametrize("info", [FR, EN], ids=["fr", "en"])
def test_every_page_is_valid_html5(info: FeedInfo) -> None:
    items = [_entry(info), _plain(info, "plain", T0 - timedelta(days=1))]
    for page in (render_index(info, items), render_index(info, []),
                 *(render_entry(info, item) for item in items),
                 render_gone(info, "gone", T0), render_not_found(info)):
        strict_parse(page)
        assert b" align=" not in page  # obsolete in HTML5 (§16)


def test_the_strict_parse_fails_on_broken_markup() -> None:
    good = render_not_found(FR)
    strict_parse(good)
    with pytest.raises(html5lib.html5parser.ParseError):
        strict_parse(good.replace(b"</h1>", b"</h2>"))


def test_an_entry_page_shows_author_tags_image_enclosures_and_previews() -> None:
    item = _entry(FR)
    page = render_entry(FR, item).decode()
    url = "https://news.example.fr/entries/etoiles"
    assert item.slug == "etoiles"
    assert '<article lang="en">' in page  # its own language, on its element
    assert '<html lang="fr">' in page
    assert "Par Marie Curie" in page
    assert '<time datetime="2026-11-24T08:30:00+01:00">24 novembre 2026 à 08:30</time>' in page
    assert ('<a href="https://news.example.fr/tags/astronomie" rel="tag">Astronomie</a>' in page
            and 'href="https://news.example.fr/tags/vie-du-projet"' in page)
    assert '<img src="https://news.example.fr/media/ciel.jpg" alt="">' in page
    assert 'href="https://news.example.fr/media/episode.mp3" type="audio/mpeg"' in page
    assert "<h2>Pièces jointes</h2>" in page
    assert f'<link rel="canonical" href="{url}">' in page
    for name, value in [("og:type", "article"), ("og:title", "Des étoiles et des tableaux"),
                        ("og:url", url), ("og:image", "https://news.example.fr/media/ciel.jpg"),
                        ("og:description", "A first paragraph, in English."),
                        ("article:published_time", "2026-11-24T07:30:00+00:00")]:
        assert f'<meta property="{name}" content="{value}">' in page
    # Table alignment as classes, styled by the stylesheet.
    assert '<th class="align-center">centre</th>' in page
    assert '<td class="align-right">c</td>' in page
    assert ".align-center{text-align:center}" in pages.STYLESHEET
    assert f'<link rel="stylesheet" href="https://news.example.fr{STYLESHEET_PATH}">' in page


def test_the_front_page_lists_entries_with_localized_dates() -> None:
    items = [_plain(EN, "b", T0), _plain(EN, "a", T0 - timedelta(days=1))]
    page = render_index(EN, items).decode()
    assert '<a href="https://news.example.com/entries/b">Titre b</a>' in page
    assert ">November 24, 2026 at 7:30\u202fAM</time>" in page
    assert ">November 23, 2026 at 7:30\u202fAM</time>" in page


@pytest.mark.parametrize(("language", "title", "home"), [
    ("fr", "Page introuvable", "Retour à la une"),
    ("en", "Page not found", "Back to the front page"),
])
def test_a_404_is_a_page_in_the_sites_language_with_a_link_home(
        language: str, title: str, home: str) -> None:
    info = replace(FR, language=language)
    page = render_not_found(info).decode()
    assert f"<h1>{title}</h1>" in page
    assert f'<a href="https://news.example.fr/">{home}</a>' in page


def test_the_server_sends_the_404_page_and_the_stylesheet_with_a_long_cache(
        tmp_path: Path, serve) -> None:
    write_config(tmp_path, port=_port(), timezone="Europe/Paris")
    write_seed(tmp_path / "seeds", "un.txt", "un\nUn titre\n\nUn corps.", mtime=1_790_000_000)
    server = serve(tmp_path / "config.toml")
    status, headers, body = server.get("/nowhere/at/all")
    assert status == 404 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>Page introuvable</h1>" in body
    strict_parse(body)
    status, headers, page = server.get("/entries/un")
    assert status == 200
    assert "2026 à".encode() in page  # 2026-09-21 14:13 UTC: 16:13 in Paris
    assert b">21 septembre 2026 \xc3\xa0 16:13</time>" in page
    href = re.search(rb'<link rel="stylesheet" href="([^"]+)">', page)
    assert href is not None
    path = href.group(1).decode().removeprefix(server.url)
    assert path == STYLESHEET_PATH
    status, headers, css = server.get(path)
    assert status == 200 and headers["Content-Type"] == "text/css; charset=utf-8"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert css == pages.STYLESHEET.encode()
    assert server.get("/assets/site.0000000000000000.css")[0] == 404


def _port() -> int:
    from .conftest import free_port

    return free_port()


def _links(page: bytes, rel: str) -> list[str]:
    return [m.decode() for m in re.findall(rb'<a href="([^"]+)" rel="' + rel.encode() + b'"', page)]


@pytest.mark.parametrize(("language", "older", "tagged"), [
    ("fr", "Articles plus anciens", "Articles classés «\u00a0Ciel\u00a0»"),
    ("en", "Older entries", "Entries tagged “Ciel”"),
])
def test_following_links_from_the_front_page_reaches_every_entry_and_tag(
        tmp_path: Path, serve, language: str, older: str, tagged: str) -> None:
    """7 entries, 2 per page: `/` (e6 e5) → /page/3 (e5 e4) → /page/2 → /page/1 (e1 e0):
    every entry, the front page's last one again on the newest older page (pageblocks.py);
    a tag's page lists its entries and announces its feeds; `/tags/` lists every tag with
    its count."""
    write_config(tmp_path, port=_port(), language=language, max_entries=2,
                 timezone="Europe/Paris")
    seeds = tmp_path / "seeds"
    for n in range(7):
        tags = "tags: [Ciel]\n" if n % 2 == 0 else ""
        write_seed(seeds, f"e{n}.md", f"---\ntitle: Entry {n}\n{tags}---\nBody {n}.\n",
                   mtime=1_790_000_000 + n * 3600)
    server = serve(tmp_path / "config.toml")
    seen: list[str] = []
    url, visited = "/", []
    while url:
        status, headers, page = server.get(url)
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8", url
        strict_parse(page)
        seen += re.findall(r'<h2><a href="[^"]+/entries/(e\d)">', page.decode())
        nexts = _links(page, "next")
        assert (older in page.decode()) == bool(nexts)
        visited.append(url)
        url = nexts[0].removeprefix(server.url) if nexts else ""
    assert visited == ["/", "/page/3", "/page/2", "/page/1"]
    assert seen == ["e6", "e5", "e5", "e4", "e3", "e2", "e1", "e0"]
    for gone in ("/page/4", "/page/03", "/page/0", "/page/x", "/page/-1", "/page/"):
        assert server.get(gone)[0] == 404, gone
    assert _links(server.get("/page/3")[2], "prev") == [f"{server.url}/"]
    assert _links(server.get("/page/1")[2], "prev") == [f"{server.url}/page/2"]
    assert _links(server.get("/page/1")[2], "next") == []
    # A tag's page: its entries and its feeds, in every format.
    status, _, page = server.get("/tags/ciel")
    assert status == 200 and f"<h1>{tagged}</h1>" in page.decode()
    strict_parse(page)
    assert re.findall(r'entries/(e\d)"', page.decode()) == ["e6", "e4"]
    for ext, kind in [("atom", "application/atom+xml"), ("rss", "application/rss+xml"),
                      ("json", "application/feed+json")]:
        assert (f'<link rel="alternate" type="{kind}" title="Test feed — Ciel'
                in page.decode()), ext
        assert f'href="{server.url}/tags/ciel.{ext}"' in page.decode()
    assert _links(page, "next") == [f"{server.url}/tags/ciel/page/1"]
    assert re.findall(r'entries/(e\d)"', server.get("/tags/ciel/page/1")[2].decode()) == [
        "e2", "e0"]
    assert server.get("/tags/ciel/page/2")[0] == 404
    assert server.get("/tags/ciel/page/01")[0] == 404
    # Served as application/xml, so that a browser applies the feed's stylesheet (EXTRAS).
    assert server.get("/tags/ciel.atom")[1]["Content-Type"].startswith("application/xml")
    assert server.get("/tags/nope")[0] == 404
    status, _, page = server.get("/tags/")
    assert status == 200
    strict_parse(page)
    count = "4 articles" if language == "fr" else "4 entries"
    assert f'<a href="{server.url}/tags/ciel">Ciel</a> <span class="meta">({count})' in \
        page.decode()
    # Every page links to the list of tags.
    assert f'href="{server.url}/tags/"'.encode() in server.get("/")[2]
    # A new entry changes no older page: same bytes, same ETags; the front page links to the
    # same newest older page (8 entries: 4 blocks, the 4th on the front page).
    before = {path: server.get(path) for path in ("/page/1", "/page/2", "/page/3")}
    write_seed(seeds, "e7.md", "---\ntitle: Entry 7\ntags: [Ciel]\n---\nBody 7.\n",
               mtime=1_790_000_000 + 7 * 3600)
    wait_until(lambda: b"entries/e7" in server.get("/")[2])
    for path, (_, headers, body) in before.items():
        status, after_headers, after = server.get(path)
        assert status == 200 and after == body and after_headers["ETag"] == headers["ETag"], path
        assert server.get(path, {"If-None-Match": headers["ETag"]})[0] == 304, path
    assert _links(server.get("/")[2], "next") == [f"{server.url}/page/3"]
    assert re.findall(r'entries/(e\d)"', server.get("/page/3")[2].decode()) == ["e5", "e4"]
    # The tag's 5th entry: its page 2 appears (e6 e4), page 1 (e2 e0) now leads to it.
    assert re.findall(r'entries/(e\d)"', server.get("/tags/ciel")[2].decode()) == ["e7", "e6"]
    assert re.findall(r'entries/(e\d)"', server.get("/tags/ciel/page/2")[2].decode()) == [
        "e6", "e4"]
    assert _links(server.get("/tags/ciel/page/1")[2], "prev") == [
        f"{server.url}/tags/ciel/page/2"]
    # An edit of an entry no feed shows: its older page follows (the snapshot does not move).
    status, headers, page = server.get("/page/1")
    assert status == 200 and b"Entry 0<" in page
    assert server.get("/page/1", {"If-None-Match": headers["ETag"]})[0] == 304
    # No Last-Modified: no date in the state moves with every change of such a page.
    assert "Last-Modified" not in headers
    assert server.get("/page/1", {"If-Modified-Since": "Fri, 31 Dec 9998 00:00:00 GMT"})[0] \
        == 200
    two = server.get("/page/2")
    write_seed(seeds, "e0.md", "---\ntitle: Entry zero\ntags: [Ciel]\n---\nBody 0.\n",
               mtime=1_790_000_000)
    wait_until(lambda: b"Entry zero<" in server.get("/page/1")[2])
    assert b"Entry zero<" in server.get("/tags/ciel/page/1")[2]
    assert server.get("/page/2")[1]["ETag"] == two[1]["ETag"]  # not its block


def test_an_entry_page_links_to_the_newer_and_the_older_entry(tmp_path: Path, serve) -> None:
    """The links answer 303 to the neighbour (published order, ties by slug), or home."""
    write_config(tmp_path, port=_port(), max_entries=2)
    seeds = tmp_path / "seeds"
    for n in range(4):  # e3 newest; e1 and e0 share a date (ties: by slug, e0 first)
        write_seed(seeds, f"e{n}.txt", f"e{n}\nEntry {n}\n\nBody.",
                   mtime=1_790_000_000 + max(n, 1) * 3600)
    server = serve(tmp_path / "config.toml")
    page = server.get("/entries/e2")[2].decode()
    assert f'<a href="{server.url}/entries/e2/newer" rel="prev">← Article plus récent</a>' in page
    assert f'<a href="{server.url}/entries/e2/older" rel="next">Article plus ancien →</a>' in page
    chain = [("e3", "older", "/entries/e2"), ("e2", "older", "/entries/e0"),
             ("e0", "older", "/entries/e1"), ("e1", "older", "/"),
             ("e1", "newer", "/entries/e0"), ("e0", "newer", "/entries/e2"),
             ("e3", "newer", "/")]
    for slug, direction, target in chain:
        status, headers, _ = _no_redirect(server.url, f"/entries/{slug}/{direction}")
        assert status == 303, (slug, direction)
        assert headers["Location"] == f"{server.url}{target}", (slug, direction)
    assert _no_redirect(server.url, "/entries/nope/older")[0] == 404
    assert _no_redirect(server.url, "/entries/e1/sideways")[0] == 404


def _no_redirect(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """A GET that does not follow a redirect."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_build_writes_every_page(tmp_path: Path) -> None:
    from .conftest import run_cli

    write_config(tmp_path, max_entries=2, language="en")
    seeds = tmp_path / "seeds"
    for n in range(5):
        tags = "tags: [Sky]\n" if n % 2 == 0 else ""
        write_seed(seeds, f"e{n}.md", f"---\ntitle: Entry {n}\n{tags}---\nBody {n}.\n",
                   mtime=1_790_000_000 + n * 3600)
    result = run_cli("build", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    public = tmp_path / "public"
    names = {p.relative_to(public).as_posix() for p in public.rglob("*.html")}
    assert names == {"index.html", "404.html", "page/1/index.html", "page/2/index.html",
                     *(f"entries/e{n}/index.html" for n in range(5)),
                     "tags/index.html", "tags/sky/index.html", "tags/sky/page/1/index.html"}
    for name in names:
        strict_parse((public / name).read_bytes())
        assert (public / f"{name}.gz").is_file() and (public / f"{name}.br").is_file()
    assert (public / STYLESHEET_PATH[1:]).read_bytes() == pages.STYLESHEET.encode()
    assert b"Page not found" in (public / "404.html").read_bytes()
    # An entry removed: its page goes with the next build.
    (seeds / "e1.md").unlink()
    result = run_cli("build", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (public / "entries/e1").exists()
    assert (public / "entries/e0/index.html").exists()
    # 4 entries: one older page (the 2 oldest, e2 and e0); page 2 is removed.
    assert not (public / "page/2").exists() and (public / "page/1/index.html").is_file()


@pytest.mark.parametrize(("info", "length", "shown"), [
    (FR, 1_572_864, "(audio/mpeg, 1,5\u00a0Mo)"), (EN, 1_572_864, "(audio/mpeg, 1.5 MB)"),
    (FR, 2048, "(audio/mpeg, 2\u00a0Ko)"), (EN, None, "(audio/mpeg)"),
])
def test_enclosure_sizes_are_written_as_the_language_writes_them(
        info: FeedInfo, length: int | None, shown: str) -> None:
    from feedsvc.model import Enclosure

    item = _entry(info)
    enclosure = Enclosure("https://news.example.fr/media/episode.mp3", "audio/mpeg", length)
    item = replace(item, entry=replace(item.entry, enclosures=(enclosure,)))
    page = render_entry(info, item).decode()
    assert f'<span class="meta">{shown}</span>' in page


def test_written_dates_are_kept_bounded_and_equal_to_fresh_ones() -> None:
    """The front page writes the same moments change after change: each is written once (Babel
    is slow), the same text as written afresh, and no more than WRITTEN_KEPT are kept."""
    from feedsvc.publish import locale

    kept = locale.PageLocale("fr", "Europe/Paris")
    moments = [datetime(2026, 11, 24, 7, 30, tzinfo=UTC) + timedelta(minutes=i)
               for i in range(locale.WRITTEN_KEPT + 10)]
    fresh = locale.PageLocale("fr", "Europe/Paris")
    for moment in moments:
        first = kept.when(moment)
        assert kept.when(moment) is first  # written once
        assert len(kept._written) <= locale.WRITTEN_KEPT
    for moment in moments[::97]:
        assert kept.when(moment) == fresh.when(moment)  # kept or written anew: the same
    paris = datetime(2026, 11, 24, 8, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert kept.when(paris) == kept.when(paris.astimezone(UTC))  # one instant, one text
    assert ">24 novembre 2026 à 08:30</time>" in kept.when(paris)
