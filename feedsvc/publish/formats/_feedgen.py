"""What the Atom and RSS formats share: feedgen set up without a clock, and the reuse of each
entry's XML between documents. Private to `formats`: a format module imports it, nothing else.

feedgen stamps "now" on the feed and on every entry unless told otherwise; every date here is
set explicitly from the items, so the same items always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedsvc.ingest.mediafiles import FALLBACK_TYPE, media_type
from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, forget, reuse

#: RFC 5005 §4: the namespace of `<fh:archive/>`, and Atom's (RSS carries `atom:link`).
FH_NAMESPACE = "http://purl.org/syndication/history/1.0"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"

GENERATOR = "feedsvc"
GENERATOR_URI = "https://pypi.org/project/feedsvc/"


class EntryReuse:
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


def new_feed(info: FeedInfo, updated: datetime, fmt: FeedFormat) -> FeedGenerator:
    """A feed's head, the same in Atom and RSS but for its self link (`fmt`'s document)."""
    feed = FeedGenerator()
    feed.id(info.id)
    feed.title(info.title)
    feed.subtitle(info.subtitle)  # also RSS <description>
    feed.language(info.language)  # RSS <language> and Atom xml:lang
    feed.author(_author(info))
    feed.link(href=fmt.url(info), rel="self", type=fmt.link_type)
    feed.link(href=info.base_url, rel="alternate", type="text/html")
    feed.generator(GENERATOR, uri=GENERATOR_URI)
    # Entries' images and enclosures; declares no namespace: nothing changes without them.
    feed.register_extension("media_elements", MediaElements, MediaElements)
    # Sets Atom <updated> and RSS <lastBuildDate>; otherwise feedgen writes the current time.
    feed.updated(updated)
    if info.prev_archive or info.next_archive or info.current or info.hubs:
        _ArchiveLinks.add_to(feed, info, fmt)
    return feed


class _ArchiveLinks(BaseExtension):
    """WebSub §4 discovery and RFC 5005 §4 links (feedgen allows no such `rel`): after the
    feed's own links, one `rel="hub"` per hub (no type: a hub is not a feed), `rel="current"`
    (an archive page's subscription document), `prev-archive` and `next-archive`, then
    `<fh:archive/>` on an archive page. RSS carries them as atom:link (RFC 5005 Appendix B).
    Inserted after the last link, not appended: the same place whatever follows, so a
    document's head is the same with or without entries."""

    links: tuple[tuple[str, str], ...] = ()
    hubs: tuple[str, ...] = ()
    link_type = ""
    archive = False

    @classmethod
    def add_to(cls, feed: FeedGenerator, info: FeedInfo, fmt: FeedFormat) -> None:
        # Only an archive page declares the fh namespace (on the root, once).
        ext = type("ArchiveLinks", (cls,), {"archive": info.current is not None})
        feed.register_extension("archive_links", ext, BaseEntryExtension)
        inst = feed.archive_links
        inst.link_type = fmt.link_type
        inst.hubs = info.hubs
        inst.links = tuple((rel, f"{info.base_url}{path}.{fmt.extension}") for rel, path in (
            ("current", info.current), ("prev-archive", info.prev_archive),
            ("next-archive", info.next_archive)) if path)

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NAMESPACE} if self.archive else {}

    def extend_atom(self, feed: etree._Element) -> etree._Element:
        self._insert(feed, "link", "link")
        return feed

    def extend_rss(self, feed: etree._Element) -> etree._Element:
        self._insert(feed[0], f"{{{ATOM_NAMESPACE}}}link", f"{{{ATOM_NAMESPACE}}}link")
        return feed

    def _insert(self, parent: etree._Element, link_tag: str, after_tag: str) -> None:
        children = list(parent)
        index = max((i for i, child in enumerate(children) if child.tag == after_tag),
                    default=len(children) - 1) + 1
        made = []
        for href in self.hubs:  # WebSub §4: `<link rel="hub" href="…"/>`, atom:link in RSS
            made.append(etree.Element(link_tag, href=href, rel="hub"))
        for rel, href in self.links:
            link = etree.Element(link_tag)
            link.set("href", href)
            link.set("rel", rel)
            link.set("type", self.link_type)
            made.append(link)
        if self.archive:
            made.append(etree.Element(f"{{{FH_NAMESPACE}}}archive"))
        for offset, element in enumerate(made):
            parent.insert(index + offset, element)


def add_entry(feed: FeedGenerator, info: FeedInfo, item: Item) -> FeedEntry:
    """An item's entry, with what Atom and RSS share (each format adds its own fields)."""
    entry = feed.add_entry(order="append")
    entry.id(item.id)
    entry.title(item.entry.title)
    entry.link(href=item.link, rel="alternate", type="text/html")
    entry.published(item.published)  # also RSS <pubDate>
    entry.updated(item.updated)  # otherwise feedgen writes the current time
    name, email = entry_author(info, item)
    entry.author({"name": name, "email": email} if email else {"name": name})
    entry.summary(item.entry.summary)  # Atom: plain text
    if item.entry.image or item.entry.enclosures:
        entry.media_elements.entry = item.entry
    if item.entry.tags:
        from feedsvc.ingest.slugs import tag_slug  # python-slugify, once a seed has tags

        # term: the tag's slug, as in /tags/{slug}.atom; label: as the author wrote it
        # (RSS shows the label).
        entry.category([{"term": tag_slug(tag), "label": tag, "scheme": f"{info.base_url}tags/"}
                        for tag in item.entry.tags])
    return entry


def entry_author(info: FeedInfo, item: Item) -> tuple[str, str | None]:
    """An entry's own author replaces the feed's (name and email together)."""
    if item.entry.author_name:
        return item.entry.author_name, item.entry.author_email
    return info.author_name, info.author_email


def _author(info: FeedInfo) -> dict[str, str]:
    author = {"name": info.author_name}
    if info.author_email:
        author["email"] = info.author_email
    return author


#: Media RSS (https://www.rssboard.org/media-rss), for an entry's feature image.
MEDIA_RSS_NS = "http://search.yahoo.com/mrss/"


class MediaElements(BaseExtension):
    """An entry's front matter `image:` and `enclosure:` files, in Atom and in RSS.

    Written here rather than through feedgen: feedgen's Atom <link> keeps only `href` (it
    drops rel, type and length), and its media extension declares its namespace on the root of
    every document. The Media RSS namespace is declared on each element that uses it, so the
    documents of entries without an image are byte for byte what they were, and an entry's
    XML is the same alone and inside a document (EntryReuse)."""

    entry: Entry | None = None

    def extend_atom(self, element: etree._Element) -> etree._Element:
        if self.entry is None:
            return element
        # RFC 4287 §4.2.7.2: rel="enclosure", a related resource potentially large in size;
        # `length` (§4.2.7.6) is advisory, so it is left out when it is not known.
        for enclosure in self.entry.enclosures:
            link = etree.SubElement(element, "link", rel="enclosure", href=enclosure.url,
                                    type=enclosure.type)
            if enclosure.length is not None:
                link.set("length", str(enclosure.length))
        _media_rss(element, self.entry.image)
        return element

    def extend_rss(self, element: etree._Element) -> etree._Element:
        if self.entry is None:
            return element
        if self.entry.enclosures:
            # The first only. RSS Advisory Board profile (rssboard.org/rss-profile-1,
            # element-channel-item-enclosure): "Support for the enclosure element in RSS
            # software varies significantly because of disagreement over whether the
            # specification permits more than one enclosure per item. ... For best support in
            # the widest number of aggregators, an item should not contain more than one
            # enclosure." Atom and JSON Feed carry them all. url, length and type are all
            # required; "When an enclosure's size cannot be determined, a publisher should use
            # a length of 0" (same section).
            first = self.entry.enclosures[0]
            etree.SubElement(element, "enclosure", url=first.url,
                             length=str(first.length or 0), type=first.type)
        _media_rss(element, self.entry.image)
        return element


def _media_rss(element: etree._Element, image: str | None) -> None:
    """<media:content medium="image"> and <media:thumbnail> for a feature image."""
    if image is None:
        return
    nsmap = {"media": MEDIA_RSS_NS}
    content = etree.SubElement(element, f"{{{MEDIA_RSS_NS}}}content", nsmap=nsmap, url=image,
                               medium="image")
    kind = media_type(image.rsplit("/", 1)[-1].split("?", 1)[0])
    if kind != FALLBACK_TYPE:
        content.set("type", kind)
    etree.SubElement(element, f"{{{MEDIA_RSS_NS}}}thumbnail", nsmap=nsmap, url=image)
