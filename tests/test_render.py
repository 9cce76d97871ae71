"""render: items → Atom and RSS bytes. Pure, deterministic, valid, read by feedparser."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import feedparser
import pytest

from feedsvc.ingest.parser import parse_seed
from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish.docformat import feed_updated
from feedsvc.publish.formats.atom import ATOM, render_atom
from feedsvc.publish.formats.rss import RSS, render_rss
from feedsvc.publish.ids import entry_id
from feedsvc.publish.pages import render_entry, render_index

from .conftest import SAMPLE_SEED
from .feedcheck import check_atom, check_rss

BASE = "https://news.example.org/"
T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)

INFO = FeedInfo(id="urn:uuid:9b4c5a52-1f6e-5d0e-8a55-5b8d6c1e2f00", title="Les dépêches",
                subtitle="Actualité « internationale »", language="fr",
                author_name="La rédaction", author_email=None, base_url=BASE,
                created=T0 - timedelta(days=30))


def newest_first(items: Sequence[Item], limit: int) -> list[Item]:
    """The items a document shows: newest `published` first, ties by slug, at most `limit`
    (what the publisher's timeline keeps, for rendering test items directly)."""
    return sorted(items, key=lambda item: (-item.published.timestamp(), item.slug))[:limit]


def make_item(entry: Entry, published: datetime, updated: datetime | None = None) -> Item:
    return Item(entry=entry, id=entry_id(INFO.id, entry.slug), link=f"{BASE}entries/{entry.slug}",
                published=published, updated=updated or published)


def entry(slug: str, title: str = "Un titre", body: str = "Un corps.") -> Entry:
    result = parse_seed(f"{slug}.txt", f"{slug}\n{title}\n\n{body}".encode())
    assert isinstance(result, Entry), result
    return result


def sample_items() -> list[Item]:
    sample = parse_seed(str(SAMPLE_SEED), SAMPLE_SEED.read_bytes())
    assert isinstance(sample, Entry)
    tricky = entry("tricky", 'A <b>bold "title" & co',
                   "x < y && <script>alert(1)</script>\nsoft break\n\nsecond paragraph ]]> &amp;")
    return [
        make_item(sample, T0, T0 + timedelta(hours=2)),
        make_item(tricky, T0 + timedelta(minutes=5)),
        make_item(entry("plain"), T0 - timedelta(days=1)),
    ]


def test_documents_are_valid_and_deterministic() -> None:
    items = newest_first(sample_items(), 50)
    atom, rss = render_atom(INFO, items), render_rss(INFO, items)
    assert check_atom(atom, ATOM.url(INFO)) == []
    assert check_rss(rss, RSS.url(INFO)) == []
    # Same items, same bytes: no "now" anywhere (feedgen would stamp it by default).
    assert render_atom(INFO, list(items)) == atom
    assert render_rss(INFO, list(items)) == rss
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
    assert now.encode() not in atom


@pytest.mark.parametrize("render", [render_atom, render_rss], ids=["atom", "rss"])
def test_feedparser_reads_every_field(render) -> None:
    items = newest_first(sample_items(), 50)
    parsed = feedparser.parse(render(INFO, items))
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.feed.title == INFO.title
    assert parsed.feed.subtitle == INFO.subtitle
    assert parsed.feed.language == "fr"
    assert parsed.feed.link == BASE
    self_url = ATOM.url(INFO) if render is render_atom else RSS.url(INFO)
    assert [link.href for link in parsed.feed.links if link.rel == "self"] == [self_url]
    assert parsed.feed.updated_parsed[:6] == (T0 + timedelta(hours=2)).timetuple()[:6]
    assert [e.id for e in parsed.entries] == [i.id for i in items]
    sample, by_id = items[1], {e.id: e for e in parsed.entries}
    got = by_id[sample.id]
    assert got.title == sample.entry.title
    assert got.link == sample.link
    assert got.author == "La rédaction"
    assert got.published_parsed[:6] == sample.published.timetuple()[:6]
    assert got.summary == sample.entry.summary
    assert got.content[0].value == sample.entry.content_html
    assert "« dans les prochains jours »" in got.content[0].value
    if render is render_atom:
        assert got.updated_parsed[:6] == sample.updated.timetuple()[:6]
    tricky = by_id[items[0].id]
    # Text, never markup: what a reader shows is exactly the seed's characters.
    assert shown(tricky.title_detail) == 'A <b>bold "title" & co'
    assert shown(tricky.summary_detail) == "x < y && <script>alert(1)</script> soft break"
    assert "&lt;script&gt;" in tricky.content[0].value


def shown(detail) -> str:
    """The text a reader displays for a feedparser text construct."""
    return html.unescape(detail.value) if detail.type == "text/html" else detail.value


def test_atom_and_rss_share_ids_and_rss_guids_are_not_permalinks() -> None:
    items = newest_first(sample_items(), 50)
    atom = feedparser.parse(render_atom(INFO, items))
    rss = feedparser.parse(render_rss(INFO, items))
    assert [e.id for e in atom.entries] == [e.id for e in rss.entries]
    assert b'isPermaLink="false"' in render_rss(INFO, items)
    assert all(not e.guidislink for e in rss.entries)


def test_rss_author_is_dc_creator_without_email_and_author_with_one() -> None:
    items = sample_items()
    without = render_rss(INFO, items)
    assert b"<dc:creator>La r\xc3\xa9daction</dc:creator>" in without
    assert b"<author>" not in without
    with_email = replace(INFO, author_email="news@example.org")
    rss = render_rss(with_email, items)
    assert b"<author>news@example.org (La r\xc3\xa9daction)</author>" in rss
    assert b"<managingEditor>news@example.org (La r\xc3\xa9daction)</managingEditor>" in rss
    assert b"dc:creator" not in rss
    assert check_rss(rss, RSS.url(INFO)) == []
    atom = render_atom(with_email, items)
    assert b"<email>news@example.org</email>" in atom
    assert check_atom(atom, ATOM.url(INFO)) == []


def test_empty_feed_is_valid_and_dated_by_the_state() -> None:
    atom, rss = render_atom(INFO, []), render_rss(INFO, [])
    assert check_atom(atom, ATOM.url(INFO)) == []
    assert check_rss(rss, RSS.url(INFO)) == []
    assert feedparser.parse(atom).feed.updated_parsed[:6] == INFO.created.timetuple()[:6]


def test_html_end_tag_in_a_title_is_declared_in_atom_and_a_known_warning_in_rss() -> None:
    item = make_item(entry("t", "Why </b> breaks pages", "a </p> in text"), T0)
    atom = render_atom(INFO, [item])
    assert b'<title type="html">Why &amp;lt;/b&amp;gt; breaks pages</title>' in atom
    assert check_atom(atom, ATOM.url(INFO)) == []
    parsed = feedparser.parse(atom)
    assert shown(parsed.entries[0].title_detail) == "Why </b> breaks pages"
    assert shown(parsed.entries[0].summary_detail) == "a </p> in text"
    # RSS 2.0 has no way to declare a title as text: the validator warns, the text survives.
    rss = render_rss(INFO, [item])
    assert check_rss(rss, RSS.url(INFO)) == ["item 1 title: ContainsUndeclaredHTML "
                                            "'Why </b> breaks pages'"]
    assert b"<title>Why &#x3C;/b&gt; breaks pages</title>" in rss


def test_literal_entities_in_atom_text_reach_the_reader_as_typed() -> None:
    item = make_item(entry("e", "Tom &nbsp; &#8217; &amp; Jerry", "x &lt; y"), T0)
    atom = render_atom(INFO, [item])
    assert check_atom(atom, ATOM.url(INFO)) == []
    parsed = feedparser.parse(atom).entries[0]
    assert shown(parsed.title_detail) == "Tom &nbsp; &#8217; &amp; Jerry"
    assert shown(parsed.summary_detail) == "x &lt; y"


def test_newest_first_orders_by_published_then_slug_and_caps() -> None:
    items = [make_item(entry(s), T0 + timedelta(seconds=sec))
             for s, sec in [("b", 0), ("a", 0), ("c", 10), ("d", -10)]]
    assert [i.slug for i in newest_first(items, 10)] == ["c", "a", "b", "d"]
    assert [i.slug for i in newest_first(items, 2)] == ["c", "a"]


def test_feed_updated_is_the_newest_shown_update_never_now() -> None:
    items = [make_item(entry("a"), T0, T0 + timedelta(days=3)), make_item(entry("b"), T0)]
    assert feed_updated(INFO, items) == T0 + timedelta(days=3)
    assert feed_updated(INFO, []) == INFO.created


def test_checker_catches_what_the_validator_flags() -> None:
    """The offline checker must be able to fail, or the validity tests prove nothing."""
    items = newest_first(sample_items(), 50)
    atom = render_atom(INFO, items)
    assert check_atom(atom, "https://elsewhere.example/feed.atom") != []  # self link
    same_updated = [make_item(entry("a"), T0), make_item(entry("b"), T0 + timedelta(1))]
    same_updated[1] = make_item(same_updated[1].entry, T0 + timedelta(days=1), T0)
    assert any("DuplicateUpdated" in p for p in
               check_atom(render_atom(INFO, same_updated), ATOM.url(INFO)))
    plain = render_atom(INFO, [make_item(entry("h", body="a b"), T0)])
    assert check_atom(plain, ATOM.url(INFO)) == []
    assert any("ContainsUndeclaredHTML" in p for p in check_atom(
        plain.replace(b"<summary>a b<", b"<summary>a &lt;/b&gt; b<"), ATOM.url(INFO)))
    assert any("InvalidRFC3339Date" in p for p in check_atom(
        atom.replace(b"2026-03-29T02:30:00+00:00", b"2026-03-29 02:30:00"), ATOM.url(INFO)))
    rss = render_rss(INFO, items)
    assert any("NotHtml" in p for p in check_rss(
        rss.replace(b"<description>Un corps.", b"<description>AT&amp;T &lt; b"), RSS.url(INFO)))
    assert check_rss(rss.replace(b"<language>fr</language>", b""), RSS.url(INFO)) != []


def test_pages_escape_text_and_link_both_feeds() -> None:
    items = newest_first(sample_items(), 50)
    index = render_index(INFO, items).decode()
    assert '<html lang="fr">' in index
    assert f'type="application/atom+xml" title="Les dépêches (Atom)" href="{ATOM.url(INFO)}"' \
        in index
    assert f'href="{RSS.url(INFO)}"' in index
    assert "A &lt;b&gt;bold" in index and "<b>bold" not in index
    page = render_entry(INFO, items[1]).decode()
    assert "<h1>Une rencontre entre Donald Trump" in page
    assert "« dans les prochains jours »" in page
    assert '<time datetime="2026-03-29T00:30:00+00:00">' in page
