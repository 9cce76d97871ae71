"""Items → Atom 1.0 bytes, through feedgen (`_feedgen`). Pure and deterministic."""

from __future__ import annotations

import html
import html.entities
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from feedgen.ext.base import BaseExtension
from lxml import etree

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, feed_updated
from feedsvc.publish.feedstyle import FEED_XML_TYPE, add_stylesheet
from feedsvc.publish.formats._feedgen import EntryReuse, add_entry, new_feed

#: RFC 6721 §2: the namespace of `at:deleted-entry`.
TOMBSTONES_NS = "http://purl.org/atompub/tombstones/1.0"

# The W3C Feed Validation Service's rule for text that holds HTML (w3c/feedvalidator,
# src/feedvalidator/validators.py, class `nonhtml`, method `validate`, which Atom text
# constructs use through content.py's `textConstruct`): an end tag `</name>` whose name is in
# `HTMLValidator.htmltags`, or else `&` followed by word characters (no `;` needed) that are an
# HTML entity name, `apos`, or not all letters (`&#38`, `&x2`). `R&D`, `Fish & chips`, `a < b`,
# `1 </ 2` hold none of these. (Its RSS-only rule on `&#` and `<` is not one of them.)
_END_TAG_RE = re.compile(r"</(\w+)>")
_ENTITY_RE = re.compile(r"&(#?\w+)")
# HTMLValidator.htmltags, as in the validator (lower case).
_HTML_TAG_NAMES = """
    a abbr acronym address applet area article aside audio b base basefont bdi bdo big
    blockquote body br button canvas caption center cite code col colgroup command data
    datagrid datalist dd del details dfn dialog dir div dl dt em eventsource fieldset
    figcaption figure font footer form frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr
    html i iframe img input ins isindex kbd label legend li link m main mark map menu meta
    meter nav noframes noscript object ol optgroup option output p param picture pre progress
    q rp rt ruby s samp script section select slot small source span strike strong style sub
    summary sup table tbody td template textarea tfoot th thead time title tr track tt u ul
    var xmp plaintext embed comment listing video wbr"""
_HTML_TAGS = frozenset(_HTML_TAG_NAMES.split())


def looks_like_html(text: str) -> bool:
    """Whether the W3C validator warns that this plain text holds HTML (see above)."""
    if any(tag.lower() in _HTML_TAGS for tag in _END_TAG_RE.findall(text)):
        return True
    return any(name in html.entities.name2codepoint or name == "apos" or not name.isalpha()
               for name in _ENTITY_RE.findall(text))


class _DeclareMarkupAsHtml(BaseExtension):
    """An Atom title, subtitle or summary (RFC 4287 §3.1) is plain text, sent as
    type="text" (no attribute: its default). Only text the W3C validator would take for
    undeclared HTML (`looks_like_html`) is sent as escaped HTML (type="html"), its characters
    escaped once more so a reader shows them as they are. `R&D` stays text: escaped as HTML it
    read `R&amp;D` in readers that do not unescape a title twice (sfeed, feed2exec, reader)."""

    #: An entry's own language (front matter `lang`), when it differs from the feed's.
    lang: str | None = None

    def extend_atom(self, element: etree._Element) -> etree._Element:
        if self.lang:
            element.set("{http://www.w3.org/XML/1998/namespace}lang", self.lang)
        for name in ("title", "subtitle", "summary"):
            child = element.find(name)
            if child is not None and child.text and looks_like_html(child.text):
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
    # A person who opens the feed in a browser sees a page, not raw XML (feedstyle.py).
    document = add_stylesheet(feed.atom_str(pretty=True, encoding="UTF-8"), info.base_url,
                              info.language)
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
    _whole = staticmethod(_atom_bytes)
    _opening, _closing, _root_end = b"<entry", b"</entry>", b"</feed>"


ATOM = FeedFormat(name="Atom", extension="atom",
                  content_type=FEED_XML_TYPE,  # so that browsers apply the stylesheet
                  link_type="application/atom+xml", render=_atom_bytes, renderer=AtomRenderer)
