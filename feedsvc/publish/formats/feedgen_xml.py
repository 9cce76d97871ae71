"""Items → Atom 1.0 and RSS 2.0 bytes, through feedgen. Pure and deterministic.

feedgen stamps "now" on the feed and on every entry unless told otherwise; every date here is
set explicitly from the items, so the same items always give the same bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, forget, reuse

GENERATOR = "feedsvc"
GENERATOR_URI = "https://pypi.org/project/feedsvc/"


def newest_first(items: Sequence[Item], limit: int) -> list[Item]:
    """The items a document shows: newest `published` first, ties by slug, at most `limit`."""
    return sorted(items, key=lambda item: (-item.published.timestamp(), item.slug))[:limit]


def feed_updated(info: FeedInfo, items: Sequence[Item]) -> datetime:
    """The newest `updated` among the shown items; the feed's creation time when there is none."""
    return max((item.updated for item in items), default=info.created)


# Text a reader could take for markup: an end tag, an entity or character reference, a tag.
_MARKUP_LIKE_RE = re.compile(r"</?[A-Za-z]|&#?\w")
# In RSS, element text that is plain text but shows "<" or "&": say so with hex references
# (RSS best practice; the W3C validator then does not read it as HTML).
_RSS_PLAIN_TEXT_RE = re.compile(rb"<(title|description)>([^<]*)</\1>")


class _DeclareMarkupAsHtml(BaseExtension):
    """An Atom title, subtitle or summary whose plain text looks like markup is sent as escaped
    HTML (type="html"), so no reader shows it as markup and validators see it declared."""

    #: An entry's own language (front matter `lang`), when it differs from the feed's.
    lang: str | None = None

    def extend_atom(self, element: etree._Element) -> etree._Element:
        if self.lang:
            element.set("{http://www.w3.org/XML/1998/namespace}lang", self.lang)
        for name in ("title", "subtitle", "summary"):
            child = element.find(name)
            if child is not None and child.text and _MARKUP_LIKE_RE.search(child.text):
                child.text = html.escape(child.text, quote=False)
                child.set("type", "html")
        return element


def render_atom(info: FeedInfo, items: Sequence[Item]) -> bytes:
    """The whole Atom document in one feedgen pass (what `AtomRenderer` must equal)."""
    return _atom_bytes(info, items, feed_updated(info, items))


def render_rss(info: FeedInfo, items: Sequence[Item]) -> bytes:
    """The whole RSS document in one feedgen pass (what `RssRenderer` must equal)."""
    return _rss_bytes(info, items, feed_updated(info, items))


class _EntryReuse:
    """A format's documents of successive item lists, reusing each unchanged entry's XML.

    A feedgen pass over 50 entries costs a few milliseconds per document, and most changes touch
    one entry. So feedgen renders each entry once, inside a feed of its own, and its bytes are
    cut out of that feed; a document is the head of an entry-less feed with the right
    `updated`, the entries' bytes in order, and the closing tags. Pretty-printed XML indents by
    depth alone, so the result is byte for byte the one-pass rendering (tests hold it to that).
    Memory: the bytes of the entries shown last, no more."""

    #: (info, items, updated) → the whole document; the tags around an entry; the root's end.
    _whole: staticmethod
    _opening: bytes
    _closing: bytes
    _root_end: bytes

    def __init__(self, info: FeedInfo) -> None:
        self.info = info
        self._entries: dict[Item, bytes] = {}

    def render(self, items: Sequence[Item], updated: datetime,
               info: FeedInfo | None = None) -> bytes:
        """The document of these items with this feed-level date: the entries' XML is reused,
        only the head is rendered (a document is dated after its bytes are known, so it may be
        rendered twice with two dates). `info`: another document's head (a tag's feed) with
        the same author: entries render the same in every document."""
        head, tail = _split_at_line_of(self._whole(info or self.info, (), updated),
                                       self._root_end)
        return b"".join((head, *reuse(self._entries, items, self._entry), tail))

    def _entry(self, item: Item) -> bytes:
        return _fragment(self._whole(self.info, (item,), item.updated), self._opening,
                         self._closing)

    def retain(self, items: Iterable[Item]) -> None:
        """Forget the entries of documents no longer shown."""
        forget(self._entries, items)


class AtomRenderer(_EntryReuse):
    _whole = staticmethod(lambda info, items, updated: _atom_bytes(info, items, updated))
    _opening, _closing, _root_end = b"<entry", b"</entry>", b"</feed>"


class RssRenderer(_EntryReuse):
    """As Atom (`<lastBuildDate>` has whole seconds: RFC 822)."""

    _whole = staticmethod(lambda info, items, updated: _rss_bytes(info, items, updated))
    _opening, _closing, _root_end = b"<item", b"</item>", b"</channel>"


def _split_at_line_of(document: bytes, closing_tag: bytes) -> tuple[bytes, bytes]:
    """Split before the (indented) line of the last `closing_tag`."""
    cut = document.rindex(b"\n", 0, document.rindex(closing_tag)) + 1
    return document[:cut], document[cut:]


def _fragment(document: bytes, opening: bytes, closing: bytes) -> bytes:
    """The lines of a one-entry document's entry element, indentation and newline included.
    Text is escaped in XML, so a literal `<entry`/`<item` is a tag (feed elements before it
    have other names)."""
    start = document.rindex(b"\n", 0, document.index(opening)) + 1
    end = document.index(b"\n", document.rindex(closing)) + 1
    return document[start:end]


def _atom_bytes(info: FeedInfo, items: Sequence[Item], updated: datetime) -> bytes:
    feed = _feed(info, updated, self_url=info.atom_url, self_type="application/atom+xml")
    feed.register_extension("markup", _DeclareMarkupAsHtml, _DeclareMarkupAsHtml, rss=False)
    for item in items:
        entry = _entry(feed, info, item)
        entry.content(item.entry.content_html, type="html")
        if item.entry.lang and item.entry.lang != info.language:
            entry.markup.lang = item.entry.lang
    return feed.atom_str(pretty=True, encoding="UTF-8")


def _rss_bytes(info: FeedInfo, items: Sequence[Item], updated: datetime) -> bytes:
    feed = _feed(info, updated, self_url=info.rss_url, self_type="application/rss+xml")
    if info.author_email:
        feed.managingEditor(f"{info.author_email} ({info.author_name})")
    # RSS <author> must be an email address; without one, the name goes in dc:creator. Loaded
    # whatever the feed's author: the root declares the namespace for every entry's sake.
    feed.load_extension("dc", atom=False, rss=True)
    for item in items:
        entry = _entry(feed, info, item)
        entry.guid(item.id, permalink=False)
        # RSS readers (and the W3C validator) treat <description> as HTML: escape the text.
        entry.description(html.escape(item.entry.summary, quote=False))
        # CDATA keeps content:encoded readable; the HTML is escaped text and sanitized
        # Markdown output has "]]>" escaped as text too, so it cannot occur.
        entry.content(item.entry.content_html, type="CDATA")
        name, email = _entry_author(info, item)
        if not email:
            entry.dc.dc_creator(name)
    # Element by element, so the same on a whole document and on its parts.
    return _RSS_PLAIN_TEXT_RE.sub(_hex_references, feed.rss_str(pretty=True, encoding="UTF-8"))


def _hex_references(match: re.Match[bytes]) -> bytes:
    # Same characters once decoded; only the spelling in the XML source changes.
    return match.group(0).replace(b"&lt;", b"&#x3C;").replace(b"&amp;", b"&#x26;")


def _feed(info: FeedInfo, updated: datetime, self_url: str, self_type: str) -> FeedGenerator:
    feed = FeedGenerator()
    feed.id(info.id)
    feed.title(info.title)
    feed.subtitle(info.subtitle)  # also RSS <description>
    feed.language(info.language)  # RSS <language> and Atom xml:lang
    feed.author(_author(info))
    feed.link(href=self_url, rel="self", type=self_type)
    feed.link(href=info.base_url, rel="alternate", type="text/html")
    feed.generator(GENERATOR, uri=GENERATOR_URI)
    # Sets Atom <updated> and RSS <lastBuildDate>; otherwise feedgen writes the current time.
    feed.updated(updated)
    return feed


def _entry(feed: FeedGenerator, info: FeedInfo, item: Item) -> FeedEntry:
    entry = feed.add_entry(order="append")
    entry.id(item.id)
    entry.title(item.entry.title)
    entry.link(href=item.link, rel="alternate", type="text/html")
    entry.published(item.published)  # also RSS <pubDate>
    entry.updated(item.updated)  # otherwise feedgen writes the current time
    name, email = _entry_author(info, item)
    entry.author({"name": name, "email": email} if email else {"name": name})
    entry.summary(item.entry.summary)  # Atom: plain text
    if item.entry.tags:
        from feedsvc.ingest.slugs import tag_slug  # slug tables, loaded once a seed has tags

        # term: the tag's slug, as in /tags/{slug}.atom; label: as the author wrote it
        # (RSS shows the label).
        entry.category([{"term": tag_slug(tag), "label": tag, "scheme": f"{info.base_url}tags/"}
                        for tag in item.entry.tags])
    return entry


def _entry_author(info: FeedInfo, item: Item) -> tuple[str, str | None]:
    """An entry's own author replaces the feed's (name and email together)."""
    if item.entry.author_name:
        return item.entry.author_name, item.entry.author_email
    return info.author_name, info.author_email


def _author(info: FeedInfo) -> dict[str, str]:
    author = {"name": info.author_name}
    if info.author_email:
        author["email"] = info.author_email
    return author


ATOM = FeedFormat(name="Atom", extension="atom",
                  content_type="application/atom+xml; charset=utf-8",
                  link_type="application/atom+xml", render=_atom_bytes, renderer=AtomRenderer)
RSS = FeedFormat(name="RSS", extension="rss",
                 content_type="application/rss+xml; charset=utf-8",
                 link_type="application/rss+xml", render=_rss_bytes, renderer=RssRenderer)
