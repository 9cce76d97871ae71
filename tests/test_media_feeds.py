"""Front matter `image:` and `enclosure:` in every format, read back by feedparser and the
checkers from a real server; media paths in Markdown made absolute and served; seeds naming a
missing media file rejected with the line; `build` copying the media folder."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from feedsvc.ingest.parser import ParseOptions, parse_seed
from feedsvc.model import Enclosure, Entry
from tests.conftest import ServeProcess, run_cli, wait_until, write_seed

from .feedcheck import check_atom, check_rss
from .jsonfeedcheck import check_json_feed

A = "{http://www.w3.org/2005/Atom}"
MRSS = "{http://search.yahoo.com/mrss/}"
EPISODE = bytes(range(256)) * 4099 + b"end"  # any bytes: an .mp3 is taken by its extension
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500

PODCAST = """---
title: Épisode 1
slug: episode-1
image: media/carte.png
enclosure: media/episode.mp3
---

Le premier épisode. ![carte](media/carte.png)

<img src="media/carte.png" alt="la carte">
"""


def _site(site: Path, rescan_s: int | None = None) -> Path:
    media = site / "media"
    media.mkdir()
    (media / "episode.mp3").write_bytes(EPISODE)
    (media / "carte.png").write_bytes(PNG)
    if rescan_s is not None:
        config = site / "config.toml"
        config.write_text(config.read_text() + f"rescan_s = {rescan_s}\n")
    return media


def _path_of(server: ServeProcess, url: str) -> str:
    base = server.config.feed.base_url
    assert url.startswith(base), url
    return "/" + url[len(base):]


def _published(server: ServeProcess, slug: str) -> bool:
    return f"/entries/{slug}".encode() in server.get("/feed.atom")[2]


def test_a_podcast_in_every_format(site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    _site(site)
    write_seed(site / "seeds", "episode-1.md", PODCAST)
    server = serve(site / "config.toml")
    wait_until(lambda: _published(server, "episode-1"))
    base = server.config.feed.base_url
    episode_url, image_url = f"{base}media/episode.mp3", f"{base}media/carte.png"

    status, _, rss = server.get("/feed.rss")
    assert status == 200 and check_rss(rss, f"{base}feed.rss") == []
    item = etree.fromstring(rss).find("channel/item")
    enclosure = item.find("enclosure")
    assert enclosure.attrib == {"url": episode_url, "length": str(len(EPISODE)),
                                "type": "audio/mpeg"}
    assert item.find(f"{MRSS}thumbnail").get("url") == image_url
    assert item.find(f"{MRSS}content").attrib == {"url": image_url, "medium": "image",
                                                  "type": "image/png"}
    parsed = feedparser.parse(rss)
    assert not parsed.bozo
    assert [(e.href, e.length, e.type) for e in parsed.entries[0].enclosures] == \
        [(episode_url, str(len(EPISODE)), "audio/mpeg")]

    status, _, atom = server.get("/feed.atom")
    assert status == 200 and check_atom(atom, f"{base}feed.atom") == []
    entry = etree.fromstring(atom).find(f"{A}entry")
    links = entry.findall(f"{A}link[@rel='enclosure']")
    assert [link.attrib for link in links] == [
        {"rel": "enclosure", "href": episode_url, "type": "audio/mpeg",
         "length": str(len(EPISODE))}]
    assert entry.find(f"{MRSS}thumbnail").get("url") == image_url
    parsed = feedparser.parse(atom)
    assert not parsed.bozo
    assert [(e.href, e.length, e.type) for e in parsed.entries[0].enclosures] == \
        [(episode_url, str(len(EPISODE)), "audio/mpeg")]
    assert parsed.entries[0].media_thumbnail[0]["url"] == image_url

    status, _, body = server.get("/feed.json")
    assert status == 200 and check_json_feed(body, f"{base}feed.json") == []
    item_json = json.loads(body)["items"][0]
    assert item_json["image"] == image_url
    assert item_json["attachments"] == [{"url": episode_url, "mime_type": "audio/mpeg",
                                         "size_in_bytes": len(EPISODE)}]

    # Markdown's image and raw <img> are absolute against base_url, and load from the server.
    content = entry.findtext(f"{A}content")
    assert f'src="{image_url}"' in content and 'src="media/' not in content
    for url in (image_url, episode_url, item_json["image"], enclosure.get("url")):
        status, headers, data = server.get(_path_of(server, url))
        assert status == 200 and data in (PNG, EPISODE)
        assert int(headers["Content-Length"]) == len(data)


def test_enclosures_elsewhere_and_several(site: Path,
                                          serve: Callable[[Path], ServeProcess]) -> None:
    """An absolute URL: no length in Atom and JSON Feed, 0 in RSS (the RSS profile); several
    files: all in Atom and JSON Feed, the first in RSS."""
    _site(site)
    write_seed(site / "seeds", "two.txt", """---
title: Deux fichiers
image: https://cdn.example.org/cover.jpg
enclosure:
  - https://cdn.example.org/show/ep2.ogg
  - media/episode.mp3
---

Corps.
""")
    server = serve(site / "config.toml")
    wait_until(lambda: _published(server, "two"))
    base = server.config.feed.base_url
    rss = server.get("/feed.rss")[2]
    assert check_rss(rss, f"{base}feed.rss") == []
    enclosures = etree.fromstring(rss).findall("channel/item/enclosure")
    assert [e.attrib for e in enclosures] == [
        {"url": "https://cdn.example.org/show/ep2.ogg", "length": "0", "type": "audio/ogg"}]
    atom = server.get("/feed.atom")[2]
    assert check_atom(atom, f"{base}feed.atom") == []
    links = etree.fromstring(atom).findall(f"{A}entry/{A}link[@rel='enclosure']")
    assert [link.attrib for link in links] == [
        {"rel": "enclosure", "href": "https://cdn.example.org/show/ep2.ogg",
         "type": "audio/ogg"},
        {"rel": "enclosure", "href": f"{base}media/episode.mp3", "type": "audio/mpeg",
         "length": str(len(EPISODE))}]
    item = json.loads(server.get("/feed.json")[2])["items"][0]
    assert item["image"] == "https://cdn.example.org/cover.jpg"
    assert item["attachments"] == [
        {"url": "https://cdn.example.org/show/ep2.ogg", "mime_type": "audio/ogg"},
        {"url": f"{base}media/episode.mp3", "mime_type": "audio/mpeg",
         "size_in_bytes": len(EPISODE)}]


def _rejections(server: ServeProcess) -> list[tuple[str, int, str]]:
    health = json.loads(server.get("/healthz")[2])
    return [(Path(r["path"]).name, r["line"], r["message"]) for r in health["rejected"]]


def test_a_missing_media_file_rejects_the_seed_with_its_line_until_it_is_there(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    media = _site(site, rescan_s=1)
    # Written long ago: its stat alone would never make a rescan read it again.
    write_seed(site / "seeds", "later.txt", mtime=time.time() - 3600, text="""---
title: Plus tard
enclosure:
  - media/episode.mp3
  - media/later.mp3
---

Corps.
""")
    server = serve(site / "config.toml")
    rejected = wait_until(lambda: _rejections(server))
    assert rejected[0][:2] == ("later.txt", 5)
    assert "'media/later.mp3': no such file in the media folder" in rejected[0][2]
    assert not _published(server, "later")
    # The file arrives: the seed is read again at the next rescan and published.
    (media / "later.mp3").write_bytes(b"x" * 1000)
    wait_until(lambda: _published(server, "later"))
    assert _rejections(server) == []
    rss = server.get("/feed.rss")[2]
    updated = etree.fromstring(server.get("/feed.atom")[2]).findtext(f"{A}entry/{A}updated")
    # A new version of the file (another length) is found by a rescan too: the entry changes.
    time.sleep(1.1)
    (media / "episode.mp3").write_bytes(b"y" * 12345)
    wait_until(lambda: b'length="12345"' in server.get("/feed.rss")[2])
    assert server.get("/feed.rss")[2] != rss
    atom = etree.fromstring(server.get("/feed.atom")[2])
    assert atom.findtext(f"{A}entry/{A}updated") > updated  # the enclosure is in the hash


@pytest.mark.parametrize(("value", "line", "message"), [
    ("media/missing.mp3", 3, "no such file in the media folder"),
    ("media/sub", 3, "no such file in the media folder"),  # a folder
    ("media/link.mp3", 3, "no such file in the media folder"),  # a link leading out
    ("media/../seeds/a.txt", 3, "is neither a file in the media folder"),
    ("media/.secret.mp3", 3, "is neither a file in the media folder"),
    ("/etc/passwd", 3, "is neither a file in the media folder"),
    ("episode.mp3", 3, "is neither a file in the media folder"),
    ("ftp://example.org/a.mp3", 3, "is neither a file in the media folder"),
    ("[media/episode.mp3, media/nope.mp3]", 3, "'media/nope.mp3': no such file"),
    ("\n  - media/episode.mp3\n  - media/nope.mp3", 5, "'media/nope.mp3': no such file"),
])
def test_bad_media_references(tmp_path: Path, value: str, line: int, message: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "episode.mp3").write_bytes(b"abc")
    (media / ".secret.mp3").write_bytes(b"abc")
    (media / "sub").mkdir()
    (media / "link.mp3").symlink_to("/etc/passwd")
    options = ParseOptions(base_url="http://example.org/", media=media)
    seed = f"---\ntitle: T\nenclosure: {value}\n---\n\nCorps.\n"
    result = parse_seed("a.txt", seed.encode(), options)
    assert not isinstance(result, Entry), result
    assert result.line == line and message in result.message, result
    image = parse_seed("a.txt", seed.replace("enclosure:", "image:").encode(), options)
    if "\n" not in value and "[" not in value:
        assert not isinstance(image, Entry) and image.line == line


def test_media_in_the_entry_and_its_hash(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "2026").mkdir(parents=True)
    (media / "2026" / "mon épisode.mp3").write_bytes(b"abcd")
    options = ParseOptions(base_url="http://example.org/blog/", media=media)
    text = "---\ntitle: T\nenclosure: media/2026/mon épisode.mp3\n---\n\nCorps.\n"
    entry = parse_seed("a.txt", text.encode(), options)
    assert isinstance(entry, Entry)
    assert entry.enclosures == (Enclosure(
        "http://example.org/blog/media/2026/mon%20%C3%A9pisode.mp3", "audio/mpeg", 4),)
    plain = parse_seed("a.txt", b"---\ntitle: T\n---\n\nCorps.\n", options)
    assert isinstance(plain, Entry) and plain.content_hash != entry.content_hash
    (media / "2026" / "mon épisode.mp3").write_bytes(b"abcdef")
    again = parse_seed("a.txt", text.encode(), options)
    assert isinstance(again, Entry) and again.content_hash != entry.content_hash
    assert again.enclosures[0].length == 6


def test_build_copies_the_media_folder(site: Path) -> None:
    media = _site(site)
    (media / "2026").mkdir()
    (media / "2026" / "b.ogg").write_bytes(b"ogg")
    (media / ".hidden").write_bytes(b"secret")
    (media / "passwd").symlink_to("/etc/passwd")
    write_seed(site / "seeds", "episode-1.md", PODCAST)
    result = run_cli("build", "--config", str(site / "config.toml"), cwd=site)
    assert result.returncode == 0, result.stderr
    out = site / "public" / "media"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == \
        ["2026", "2026/b.ogg", "carte.png", "episode.mp3"]
    assert (out / "episode.mp3").read_bytes() == EPISODE
    # Same file system here: linked, not copied.
    assert os.stat(out / "episode.mp3").st_ino == os.stat(media / "episode.mp3").st_ino
    rss = (site / "public" / "feed.rss").read_bytes()
    assert f'length="{len(EPISODE)}"'.encode() in rss
    # Unchanged files are left alone; a replaced one is replaced.
    before = os.stat(out / "carte.png").st_ino
    (media / "episode.mp3.tmp").write_bytes(b"new")
    os.replace(media / "episode.mp3.tmp", media / "episode.mp3")
    result = run_cli("build", "--config", str(site / "config.toml"), cwd=site)
    assert result.returncode == 0, result.stderr
    assert os.stat(out / "carte.png").st_ino == before
    assert (out / "episode.mp3").read_bytes() == b"new"


def test_build_copies_across_file_systems(site: Path) -> None:
    """/dev/shm is another file system than the test's: a copy, mode and mtime kept."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(site).st_dev:
        pytest.skip("no second file system")
    from feedsvc.publish.mediacopy import copy_media

    media = _site(site)
    os.utime(media / "episode.mp3", (1_700_000_000, 1_700_000_000))
    output = Path(__import__("tempfile").mkdtemp(dir=shm))
    try:
        counts = copy_media(media, output)
        assert (counts.linked, counts.copied, counts.unchanged) == (0, 2, 0)
        assert (output / "media" / "episode.mp3").read_bytes() == EPISODE
        assert os.stat(output / "media" / "episode.mp3").st_mtime == 1_700_000_000
        assert copy_media(media, output).unchanged == 2
    finally:
        __import__("shutil").rmtree(output)


RSS_ITEM = ("<?xml version='1.0' encoding='UTF-8'?>\n"
            '<rss version="2.0" '
            'xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title>'
            '<link>http://e.org/</link><description>d</description><language>fr</language>'
            '<atom:link href="http://e.org/feed.rss" rel="self" type="application/rss+xml"/>'
            '<item><title>x</title><link>http://e.org/x</link>'
            '<guid isPermaLink="false">urn:uuid:00000000-0000-0000-0000-000000000000</guid>'
            '<pubDate>Mon, 30 Nov 2026 00:00:00 +0000</pubDate>{}</item></channel></rss>')


@pytest.mark.parametrize(("element", "problem"), [
    ('<enclosure url="http://e.org/a.mp3" type="audio/mpeg"/>', "length must be an integer"),
    ('<enclosure url="http://e.org/a.mp3" length="1.5" type="audio/mpeg"/>',
     "length must be an integer"),
    ('<enclosure url="http://e.org/a.mp3" length="-1" type="audio/mpeg"/>',
     "length must be an integer"),
    ('<enclosure url="media/a.mp3" length="1" type="audio/mpeg"/>', "absolute url"),
    ('<enclosure url="http://e.org/a.mp3" length="1"/>', "media type"),
    ('<enclosure url="http://e.org/a.mp3" length="1" type="mp3"/>', "media type"),
    ('<enclosure url="http://e.org/a.mp3" length="1" type="audio/mpeg"/>' * 2,
     "more than one enclosure"),
    ('<media:thumbnail xmlns:media="http://search.yahoo.com/mrss/"/>', "media:thumbnail"),
])
def test_rss_enclosure_rules_fail_on_bad_input(element: str, problem: str) -> None:
    good = '<enclosure url="http://e.org/a.mp3" length="0" type="audio/mpeg"/>'
    assert check_rss(RSS_ITEM.format(good).encode(), "http://e.org/feed.rss") == []
    problems = check_rss(RSS_ITEM.format(element).encode(), "http://e.org/feed.rss")
    assert any(problem in p for p in problems), problems


ATOM_ENTRY = ("<?xml version='1.0' encoding='UTF-8'?>\n"
              '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr"><id>urn:uuid:'
              '00000000-0000-0000-0000-000000000001</id><title>t</title>'
              '<updated>2026-11-30T00:00:00Z</updated><author><name>a</name></author>'
              '<link href="http://e.org/feed.atom" rel="self" type="application/atom+xml"/>'
              '<entry><id>urn:uuid:00000000-0000-0000-0000-000000000002</id><title>x</title>'
              '<updated>2026-11-30T00:00:00Z</updated>'
              '<published>2026-11-30T00:00:00Z</published><link href="http://e.org/x"/>{}</entry>'
              '</feed>')


@pytest.mark.parametrize(("element", "problem"), [
    ('<link rel="enclosure" href="http://e.org/a.mp3"/>', "needs a media type"),
    ('<link rel="enclosure" href="a.mp3" type="audio/mpeg"/>', "absolute href"),
    ('<link rel="enclosure" href="http://e.org/a.mp3" type="audio/mpeg" length="x"/>',
     "non-negative integer"),
    ('<media:content xmlns:media="http://search.yahoo.com/mrss/" medium="image"/>',
     "media:content"),
])
def test_atom_enclosure_rules_fail_on_bad_input(element: str, problem: str) -> None:
    good = '<link rel="enclosure" href="http://e.org/a.mp3" type="audio/mpeg" length="3"/>'
    assert check_atom(ATOM_ENTRY.format(good).encode(), "http://e.org/feed.atom") == []
    problems = check_atom(ATOM_ENTRY.format(element).encode(), "http://e.org/feed.atom")
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("markdown", "expected"), [
    ("![carte](media/carte.png)", 'src="http://example.org/blog/media/carte.png"'),
    ("![carte](./media/carte.png)", 'src="http://example.org/blog/media/carte.png"'),
    ("![carte](/media/carte.png)", 'src="http://example.org/media/carte.png"'),
    ('<img src="media/2026/carte%20IGN.png" alt="c">',
     'src="http://example.org/blog/media/2026/carte%20IGN.png"'),
    ("[l'épisode](media/episode.mp3)", 'href="http://example.org/blog/media/episode.mp3"'),
])
def test_media_paths_in_markdown_resolve_against_base_url(markdown: str, expected: str) -> None:
    from feedsvc.ingest.markdown import render_markdown

    assert expected in render_markdown(markdown, "http://example.org/blog/").html
