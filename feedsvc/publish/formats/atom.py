"""Items → Atom 1.0 bytes, through feedgen (`_feedgen`). Pure and deterministic."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime

from feedgen.ext.base import BaseExtension
from lxml import etree

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, feed_updated
from feedsvc.publish.formats._feedgen import EntryReuse, add_entry, new_feed

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
    return feed.atom_str(pretty=True, encoding="UTF-8")


class AtomRenderer(EntryReuse):
    _whole = staticmethod(lambda info, items, updated: _atom_bytes(info, items, updated))
    _opening, _closing, _root_end = b"<entry", b"</entry>", b"</feed>"


ATOM = FeedFormat(name="Atom", extension="atom",
                  content_type="application/atom+xml; charset=utf-8",
                  link_type="application/atom+xml", render=_atom_bytes, renderer=AtomRenderer)
