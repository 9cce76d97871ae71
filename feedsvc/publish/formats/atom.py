"""Items → Atom 1.0 bytes, through feedgen (`_feedgen`). Pure and deterministic."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from feedgen.ext.base import BaseExtension
from lxml import etree

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, feed_updated
from feedsvc.publish.formats._feedgen import EntryReuse, add_entry, new_feed

#: RFC 6721 §2: the namespace of `at:deleted-entry`.
TOMBSTONES_NS = "http://purl.org/atompub/tombstones/1.0"

# Text a reader could take for markup: an end tag, an entity or character reference, a tag.
_MARKUP_LIKE_RE = re.compile(r"</?[A-Za-z]|&#?\w")


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


def _atom_bytes(info: FeedInfo, items: Sequence[Item], updated: datetime) -> bytes:
    feed = new_feed(info, updated, ATOM)
    feed.register_extension("markup", _DeclareMarkupAsHtml, _DeclareMarkupAsHtml, rss=False)
    for item in items:
        entry = add_entry(feed, info, item)
        entry.content(item.entry.content_html, type="html")
        if item.entry.lang and item.entry.lang != info.language:
            entry.markup.lang = item.entry.lang
    document = feed.atom_str(pretty=True, encoding="UTF-8")
    # RFC 6721 tombstones: feedgen cannot write them; added to its bytes (see insert_atom).
    return insert_atom(document, info.deleted) if info.deleted else document


def atom_elements(deleted: Iterable[tuple[str, datetime]], indent: bytes = b"  ") -> bytes:
    """The `at:deleted-entry` lines of a feed (RFC 6721 §2.1: `ref`, the deleted entry's
    atom:id, and `when`, an RFC 3339 date-time, both required). The namespace is declared on
    each element, so the root element stays as feedgen writes it."""
    return b"".join(
        indent + f'<at:deleted-entry xmlns:at="{TOMBSTONES_NS}" ref="{escape(ref)}" '
                 f'when="{when.isoformat()}"/>\n'.encode()
        for ref, when in deleted)


def insert_atom(document: bytes, deleted: Iterable[tuple[str, datetime]]) -> bytes:
    """The Atom document with these tombstones among the feed's metadata, before its first
    entry (RFC 4287 §4.1.1's grammar puts extension elements before the atom:entry elements):
    the head of a feed without entries ends with them, so documents made of a head and reused
    entries (`_feedgen.EntryReuse`) have the same bytes as one pass."""
    lines = atom_elements(deleted)
    if not lines:
        return document
    at = document.find(b"\n  <entry")  # `<entry>` or `<entry xml:lang=…>`
    if at < 0:
        at = document.rindex(b"\n", 0, document.rindex(b"</feed>"))
    return document[:at + 1] + lines + document[at + 1:]


class AtomRenderer(EntryReuse):
    _whole = staticmethod(lambda info, items, updated: _atom_bytes(info, items, updated))
    _opening, _closing, _root_end = b"<entry", b"</entry>", b"</feed>"


ATOM = FeedFormat(name="Atom", extension="atom",
                  content_type="application/atom+xml; charset=utf-8",
                  link_type="application/atom+xml", render=_atom_bytes, renderer=AtomRenderer)
