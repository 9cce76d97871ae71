"""Issue 13's extras: the feeds readable in a browser through `<?xml-stylesheet?>` CSS (no
XSLT, no content negotiation), `/feeds.opml` (OPML 2.0) and `/sitemap.xml` (sitemaps.org 0.9,
an index beyond 50,000 URLs), served and built. A real server and watcher, feedparser as the
reader, the offline feed checker."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import feedparser
import pytest

from feedsvc.cli import build
from feedsvc.config import load_config
from feedsvc.model import Snapshot
from feedsvc.publish.feedstyle import add_stylesheet, stylesheet_css, stylesheet_path
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.sitefiles import SiteFiles
from feedsvc.publish.sitelinks import head_links, opml_url
from feedsvc.publish.sitemap import SITEMAP_PATH, sitemap_file_path
from tests.conftest import ServeProcess, free_port, wait_until, write_config, write_seed
from tests.feedcheck import check_atom, check_rss

SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
#: What Chromium sends for a page it navigates to.
BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
PI_RE = re.compile(rb'<\?xml-stylesheet type="text/css" href="([^"]+)"\?>')


def _seed(slug: str, day: int, tags: str = "", extra: str = "") -> str:
    tag_line = f"tags: [{tags}]\n" if tags else ""
    return (f"---\ntitle: Titre {slug}\ndate: 2026-11-{day:02d} 08:30\n{tag_line}{extra}---\n"
            f"{slug}\n\nCorps de {slug}.\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A French feed in Europe/Paris: 4 entries, 2 tags, 2 shown (so archive pages exist)."""
    write_config(tmp_path, port=free_port(), timezone="Europe/Paris", max_entries=2,
                 archive_page_entries=2)
    seeds = tmp_path / "seeds"
    write_seed(seeds, "a.txt", _seed("alpha", 1, "Vie du projet"))
    write_seed(seeds, "b.txt", _seed("beta", 2, "Astronomie, Vie du projet"))
    write_seed(seeds, "c.txt", _seed("gamma", 3))
    write_seed(seeds, "d.txt", _seed("delta", 4, "Astronomie"))
    write_seed(seeds, "e.txt", _seed("futur", 28, extra="date: 2099-01-01 08:00\n")
               .replace("date: 2026-11-28 08:30\n", ""))
    write_seed(seeds, "f.txt", _seed("brouillon", 5, extra="draft: true\n"))
    return tmp_path


def _health(server: ServeProcess) -> dict:
    return json.loads(server.get("/healthz")[2])


# -- the stylesheet -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/feed.atom", "/feed.rss", "/tags/astronomie.atom",
                                  "/tags/vie-du-projet.rss", "/archive/2/1.atom",
                                  "/archive/2/1.rss"])
def test_every_xml_feed_carries_the_stylesheet_served_with_a_long_cache(
        site: Path, serve: Callable[[Path], ServeProcess], path: str) -> None:
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    status, _, body = server.get(path)
    assert status == 200
    # Right after the XML declaration, before the root element (XML 1.0 §2.8).
    declaration, instruction, root = body.split(b"\n", 3)[:3]
    assert declaration.startswith(b"<?xml ") and root.startswith((b"<feed", b"<rss"))
    href = PI_RE.fullmatch(instruction).group(1).decode()
    assert href == f"{server.url}{stylesheet_path('fr')}"
    # Readers still read it, and it is still valid.
    parsed = feedparser.parse(body)
    assert not parsed.bozo and parsed.entries
    check = check_atom if path.endswith(".atom") else check_rss
    assert check(body, server.url + path) == []

    status, css_headers, css = server.get(href.removeprefix(server.url))
    assert status == 200
    assert css_headers["Content-Type"] == "text/css; charset=utf-8"
    assert css_headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert css == stylesheet_css("fr")
    text = css.decode()
    assert "Ceci est un fil d’actualité" in text and "copiez son adresse" in text
    assert 'content: attr(href)' in text  # the address to copy, from the self link
    # CSS only: no XSLT, and nothing fetched from anywhere (no third-party request).
    assert "xsl" not in text.lower() and "url(" not in text and "@import" not in text


def test_a_browser_like_accept_header_still_gets_the_feed(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    for path in ("/feed.atom", "/feed.rss"):
        plain = server.get(path)
        browser = server.get(path, {"Accept": BROWSER_ACCEPT})
        assert browser[0] == 200
        assert browser[1]["Content-Type"] == plain[1]["Content-Type"]
        # application/xml: Chromium shows application/atom+xml and rss+xml as plain text.
        assert browser[1]["Content-Type"] == "application/xml; charset=utf-8"
        assert browser[2] == plain[2]
    assert b"xml-stylesheet" not in server.get("/feed.json")[2]  # JSON has no such thing
    # Only the current stylesheet's URL: another language's or version's is 404.
    assert server.get(stylesheet_path("en"))[0] == 404
    assert server.get("/feed-style.0123456789abcdef.css")[0] == 404


#: (language, a text of its stylesheet): English for a language without texts.
LANGUAGES = [
    ("en", "This is a web feed"), ("en-GB", "This is a web feed"), ("de", "This is a web feed"),
    ("fr", "Ceci est un fil d’actualité"), ("fr-CA", "Ceci est un fil d’actualité"),
]


@pytest.mark.parametrize(("language", "text"), LANGUAGES)
def test_the_stylesheet_speaks_the_feed_language(language: str, text: str) -> None:
    css = stylesheet_css(language).decode()
    assert text in css
    path = stylesheet_path(language)
    assert re.fullmatch(r"/feed-style\.[0-9a-f]{16}\.css", path)
    assert (path == stylesheet_path("en")) == text.startswith("This")  # hash of the bytes


def test_the_instruction_goes_after_the_declaration_with_its_url_escaped() -> None:
    doc = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed/>\n"
    assert add_stylesheet(doc, "https://example.org/a&b/", "en") == (
        b"<?xml version='1.0' encoding='UTF-8'?>\n<?xml-stylesheet type=\"text/css\" href=\""
        + f"https://example.org/a&amp;b{stylesheet_path('en')}".encode() + b'"?>\n<feed/>\n')
    assert add_stylesheet(b"<rss/>", "http://x/", "en").startswith(b"<?xml-stylesheet")


# -- OPML -------------------------------------------------------------------------------------

def _outlines(body: bytes) -> list[dict[str, str]]:
    root = ET.fromstring(body)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.find("head/title") is not None and root.find("head/dateModified") is not None
    outlines = [dict(o.attrib) for o in root.iterfind("body/outline")]
    assert all(o["type"] == "rss" and o["text"] and o["title"] == o["text"] for o in outlines)
    return outlines


def test_feeds_opml_lists_the_main_feed_and_every_tag_feed(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    status, headers, body = server.get("/feeds.opml")
    assert status == 200
    assert headers["Content-Type"] == "text/x-opml; charset=utf-8"
    base = server.url
    assert [(o["text"], o["xmlUrl"], o["htmlUrl"]) for o in _outlines(body)] == [
        ("Test feed", f"{base}/feed.atom", f"{base}/"),
        ("Test feed — Astronomie", f"{base}/tags/astronomie.atom", f"{base}/tags/astronomie"),
        ("Test feed — Vie du projet", f"{base}/tags/vie-du-projet.atom",
         f"{base}/tags/vie-du-projet"),
    ]
    for outline in _outlines(body):  # each one a feed a reader can subscribe to
        feed = feedparser.parse(server.get(outline["xmlUrl"].removeprefix(base))[2])
        assert not feed.bozo and feed.entries
    assert server.get("/feeds.opml", {"If-None-Match": headers["ETag"]})[0] == 304

    # A tag that lost its last entry (an empty feed, soon 410) is no longer offered.
    write_seed(site / "seeds", "d.txt", _seed("delta", 4))
    write_seed(site / "seeds", "b.txt", _seed("beta", 2, "Vie du projet"))
    wait_until(lambda: [o["xmlUrl"] for o in _outlines(server.get("/feeds.opml")[2])] == [
        f"{base}/feed.atom", f"{base}/tags/vie-du-projet.atom"])


# -- the sitemap ------------------------------------------------------------------------------

def _urls(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == f"{SM}urlset"
    return {url.findtext(f"{SM}loc"): url.findtext(f"{SM}lastmod")
            for url in root.iterfind(f"{SM}url")}


def test_sitemap_lists_every_published_entry_page_with_its_lastmod(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    status, headers, body = server.get("/sitemap.xml")
    assert status == 200 and headers["Content-Type"] == "application/xml; charset=utf-8"
    urls = _urls(body)
    # Every published entry, archived ones too; not the scheduled one, not the draft.
    assert sorted(urls) == [f"{server.url}/entries/{slug}"
                            for slug in ("alpha", "beta", "delta", "gamma")]
    # lastmod: the entry's updated (here its date: 8:30 in Paris), as Atom says it.
    atom = {e.link: e.updated for e in feedparser.parse(server.get("/feed.atom")[2]).entries}
    assert urls[f"{server.url}/entries/delta"] == "2026-11-04T07:30:00+00:00"
    assert datetime.fromisoformat(atom[f"{server.url}/entries/delta"]) == \
        datetime.fromisoformat(urls[f"{server.url}/entries/delta"])
    for loc in urls:  # every page it names is there
        assert server.get(loc.removeprefix(server.url))[0] == 200
    assert server.get("/sitemaps/1.xml")[0] == 404  # one file: no index

    (site / "seeds" / "a.txt").unlink()  # deleted: 410, and out of the sitemap
    wait_until(lambda: f"{server.url}/entries/alpha" not in _urls(server.get("/sitemap.xml")[2]))


def _snapshot(config_path: Path) -> tuple[Snapshot, Publisher]:
    publisher = Publisher.open(load_config(config_path))
    return publisher.scan(), publisher


def test_beyond_a_file_of_urls_the_sitemap_is_an_index_of_files(site: Path) -> None:
    """The bound is sitemaps.org's 50,000; 1 here, on the real state of a real scan."""
    config = load_config(site / "config.toml")
    snapshot, publisher = _snapshot(site / "config.toml")
    info = publisher.info
    publisher.close()
    files = SiteFiles(config, urls_per_file=1)
    files.start(info)
    try:
        assert files.paths(snapshot)[1:] == [SITEMAP_PATH,
                                             *(sitemap_file_path(n) for n in range(1, 5))]
        index = ET.fromstring(files.render(SITEMAP_PATH, snapshot).body)
        assert index.tag == f"{SM}sitemapindex"
        locs = [s.findtext(f"{SM}loc") for s in index.iterfind(f"{SM}sitemap")]
        assert locs == [f"{info.base_url}sitemaps/{n}.xml" for n in range(1, 5)]
        seen = []
        for n in range(1, 5):
            urls = _urls(files.render(sitemap_file_path(n), snapshot).body)
            assert len(urls) == 1
            seen += urls
        assert sorted(seen) == [f"{info.base_url}entries/{slug}"
                                for slug in ("alpha", "beta", "delta", "gamma")]
        assert files.render(sitemap_file_path(5), snapshot) is None
        assert files.render("/sitemaps/01.xml", snapshot) is None
    finally:
        files.close()


def test_build_writes_the_stylesheet_the_opml_and_the_sitemap(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    config = load_config(site / "config.toml")
    assert build(config) == 0
    output = config.paths.output
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    for path in (stylesheet_path("fr"), "/feeds.opml", "/sitemap.xml"):
        assert (output / path[1:]).read_bytes() == server.get(path)[2], path
        assert (output / f"{path[1:]}.gz").exists() and (output / f"{path[1:]}.br").exists()
    assert PI_RE.search((output / "feed.atom").read_bytes())


def test_the_pages_links_to_the_list_and_the_sitemap_answer(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """What `pages` puts in a page's head: each link leads to its file."""
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 4)
    links = re.findall(r'<link rel="([a-z]+)" type="([^"]+)" href="([^"]+)"',
                       head_links(f"{server.url}/", "Tous les flux « x & y »"))
    assert [(rel, kind) for rel, kind, _ in links] == [("alternate", "text/x-opml"),
                                                       ("sitemap", "application/xml")]
    for _, kind, href in links:
        status, headers, _ = server.get(href.removeprefix(server.url))
        assert status == 200 and headers["Content-Type"].startswith(kind)
    assert opml_url(f"{server.url}/") == f"{server.url}/feeds.opml"
    assert "« x &amp; y »" in head_links("http://x/", "« x & y »")
