"""Issue 11, defect 1: Atom titles, subtitles and summaries are type="text" unless the W3C
validator's `nonhtml` rule would warn (then type="html"); readers read each back unchanged."""

from __future__ import annotations

import html
from pathlib import Path

import feedparser
import pytest
from lxml import etree
from reader import make_reader

from feedsvc.publish.formats.atom import looks_like_html

from .conftest import free_port, seed, wait_until, write_config, write_seed
from .feedcheck import _plain_text, check_atom, check_rss

A = "{http://www.w3.org/2005/Atom}"

#: title → (Atom type, the element's text as an XML parser reads it).
TITLES = {
    "R&D: Q&A with AT&T": ("text", "R&D: Q&A with AT&T"),
    "Fish & chips": ("text", "Fish & chips"),
    "a < b": ("text", "a < b"),
    "1 </ 2": ("text", "1 </ 2"),
    "« guillemets » ’": ("text", "« guillemets » ’"),
    "</foo> is no HTML element": ("text", "</foo> is no HTML element"),
    "café&thé": ("text", "café&thé"),  # `&thé`: letters, not an entity name
    "x &amp; y": ("html", "x &amp;amp; y"),
    "<b>gras</b>": ("html", "&lt;b&gt;gras&lt;/b&gt;"),
    "Tom &nbsp; Jerry": ("html", "Tom &amp;nbsp; Jerry"),
    "a&b2": ("html", "a&amp;b2"),  # `&b2`: not all letters
    "&#38 without a semicolon": ("html", "&amp;#38 without a semicolon"),
    "an </SECTION> end tag": ("html", "an &lt;/SECTION&gt; end tag"),
}


@pytest.mark.parametrize("title", TITLES)
def test_looks_like_html_is_the_validators_rule(title: str) -> None:
    kind, _ = TITLES[title]
    assert looks_like_html(title) == (kind == "html")
    # The offline copy of the validator's rule agrees (it warns exactly on the html ones).
    assert bool(_plain_text(title, "t", rss=False)) == (kind == "html")


#: (text, RSS?, source line, what the validator's `nonhtml` says) — the checker must fail here.
PLAIN_TEXT_RULES = [
    ("R&D", False, b"", None),
    ("x &amp; y", False, b"", "ContainsUndeclaredHTML (entity)"),
    ("x &amp; y", False, b"<title>x &#x26;amp; y</title>", None),  # hex: marked plain
    ("x &amp", True, b"", "ContainsUndeclaredHTML (entity)"),  # no `;` needed
    ("&apos;", False, b"", "ContainsUndeclaredHTML (entity)"),
    ("&#1", False, b"", "ContainsUndeclaredHTML (entity)"),
    ("<b>gras</b>", False, b"<title>&#x3C;b>gras&#x3C;/b></title>", "ContainsUndeclaredHTML"),
    ("see </section>", True, b"", "ContainsUndeclaredHTML"),  # any tag in htmltags
    ("</foo>", False, b"", None),
    ("a <b", True, b"", "CharacterData"),  # RSS 2 only
    ("a <b", False, b"", None),
    ("a <b", True, b"<title>a &#x3C;b</title>", None),
    ("R&D <b", True, b"", None),  # an `&word` was seen: the RSS rule is not reached
    ("", False, b"", "NotBlank"),
]


@pytest.mark.parametrize(("value", "rss", "source", "expected"), PLAIN_TEXT_RULES)
def test_feedcheck_plain_text_follows_nonhtml(value: str, rss: bool, source: bytes,
                                              expected: str | None) -> None:
    problems = _plain_text(value, "w", rss=rss, source=source)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(f"w: {expected}")


def test_checker_fails_on_an_undeclared_entity_in_an_atom_title(tmp_path: Path) -> None:
    body = _atom_with_title("x &amp;amp; y")  # text type, text "x &amp; y"
    assert any("ContainsUndeclaredHTML (entity)" in p for p in check_atom(body, _SELF))
    assert not any("title" in p for p in check_atom(_atom_with_title("R&amp;D"), _SELF))


_SELF = "http://example.org/feed.atom"


def _atom_with_title(escaped: str) -> bytes:
    return ("<?xml version='1.0' encoding='UTF-8'?>\n"
            '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">\n'
            "  <id>urn:uuid:9b4c5a52-1f6e-5d0e-8a55-5b8d6c1e2f00</id>\n"
            f"  <title>{escaped}</title>\n"
            "  <updated>2026-01-01T00:00:00Z</updated>\n"
            "  <author><name>a</name></author>\n"
            f'  <link href="{_SELF}" rel="self"/>\n'
            "</feed>\n").encode()


def test_titles_through_the_server_read_back_unchanged(tmp_path: Path, serve) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port, subtitle="Q&A: R&D < 2")
    seeds = tmp_path / "seeds"
    titles = list(TITLES)
    for number, title in enumerate(titles):
        write_seed(seeds, f"t{number:02}.txt", seed(f"t{number:02}", title, f"{title} (body)"))
    server = serve(config)
    url = f"{server.url}/feed.atom"
    body = wait_until(lambda: (r := server.get("/feed.atom"))[0] == 200
                      and r[2].count(b"<entry>") == len(titles) and r[2])
    assert check_atom(body, url) == []
    root = etree.fromstring(body)
    assert root.find(f"{A}subtitle").get("type") is None  # R&D < 2: text
    assert root.find(f"{A}subtitle").text == "Q&A: R&D < 2"
    by_id = {}
    for element in root.findall(f"{A}entry"):
        title = element.find(f"{A}title")
        by_id[element.findtext(f"{A}id")] = (title.get("type", "text"), title.text)
    parsed = feedparser.parse(body)
    assert not parsed.bozo
    assert parsed.feed.subtitle == "Q&A: R&D < 2"
    read = {}
    for entry in parsed.entries:
        kind, text = by_id[entry.id]
        read[entry.link.rsplit("/", 1)[-1]] = (kind, text)
        detail = entry.title_detail
        value = html.unescape(detail.value) if detail.type == "text/html" else detail.value
        assert detail.type == ("text/html" if kind == "html" else "text/plain")
        assert value == titles[int(entry.link.rsplit("t", 1)[-1])]
    assert read == {f"t{n:02}": TITLES[title] for n, title in enumerate(titles)}
    # RSS: the same text; a title cannot be declared text there, so the validator's end-tag
    # rule is the only warning left (the entity rule is off: the line holds `&#x`).
    _, _, rss = server.get("/feed.rss")
    warned = {p.split(":")[0] for p in check_rss(rss, f"{server.url}/feed.rss")}
    rss_parsed = feedparser.parse(rss)
    numbers = {e.id: int(e.link.rsplit("t", 1)[-1]) for e in rss_parsed.entries}
    expected = {f"item {n + 1} title" for n, e in enumerate(rss_parsed.entries)
                if titles[numbers[e.id]] in ("<b>gras</b>", "an </SECTION> end tag")}
    assert warned == expected


def test_the_reader_library_reads_each_title_unchanged(tmp_path: Path, serve) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    seeds = tmp_path / "seeds"
    titles = list(TITLES)
    for number, title in enumerate(titles):
        write_seed(seeds, f"t{number:02}.txt", seed(f"t{number:02}", title, "body"))
    server = serve(config)
    wait_until(lambda: server.get("/feed.atom")[2].count(b"<entry>") == len(titles))
    reader = make_reader(str(tmp_path / "reader.sqlite"))
    try:
        reader.add_feed(f"{server.url}/feed.atom")
        reader.update_feeds()
        got = {entry.link.rsplit("/", 1)[-1]: entry.title for entry in reader.get_entries()}
    finally:
        reader.close()
    for number, title in enumerate(titles):
        kind, _ = TITLES[title]
        # `reader` keeps feedparser's value: text as is, declared HTML as HTML.
        shown = html.unescape(got[f"t{number:02}"]) if kind == "html" else got[f"t{number:02}"]
        assert shown == title
        if kind == "text":
            assert got[f"t{number:02}"] == title  # never `R&amp;D`
