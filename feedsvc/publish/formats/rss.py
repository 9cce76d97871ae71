"""Items → RSS 2.0 bytes, through feedgen (`_feedgen`). Pure and deterministic."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, feed_updated
from feedsvc.publish.feedstyle import FEED_XML_TYPE, add_stylesheet
from feedsvc.publish.formats._feedgen import EntryReuse, add_entry, entry_author, new_feed

# In RSS, element text that is plain text but shows "<" or "&": say so with hex references
# (RSS Advisory Board profile, "Encoding": `&#x26;` and `&#x3C;` in plain text, `&amp;` and
# `&lt;` in HTML; the W3C validator's `nonhtml` then does not read `&amp;` as an entity).
# Plain text: every <title>, and the channel's <description>. An item's <description> is HTML
# (escaped), so its references stay `&amp;`/`&lt;`.
_RSS_PLAIN_TEXT_RE = re.compile(rb"<(title|description)>([^<]*)</\1>")
_RSS_TITLE_RE = re.compile(rb"<(title)>([^<]*)</\1>")


def render_rss(info: FeedInfo, items: Sequence[Item]) -> bytes:
    """The whole RSS document in one feedgen pass (what `RssRenderer` must equal)."""
    return _rss_bytes(info, items, feed_updated(info, items))


def _rss_bytes(info: FeedInfo, items: Sequence[Item], updated: datetime) -> bytes:
    feed = new_feed(info, updated, RSS)
    if info.author_email:
        feed.managingEditor(f"{info.author_email} ({info.author_name})")
    # RSS <author> must be an email address; without one, the name goes in dc:creator. Loaded
    # whatever the feed's author: the root declares the namespace for every entry's sake.
    feed.load_extension("dc", atom=False, rss=True)
    for item in items:
        entry = add_entry(feed, info, item)
        entry.guid(item.id, permalink=False)
        # RSS readers (and the W3C validator) treat <description> as HTML: escape the text.
        entry.description(html.escape(item.entry.summary, quote=False))
        # CDATA keeps content:encoded readable; the HTML is escaped text and sanitized
        # Markdown output has "]]>" escaped as text too, so it cannot occur.
        entry.content(item.entry.content_html, type="CDATA")
        name, email = entry_author(info, item)
        if not email:
            entry.dc.dc_creator(name)
    # Element by element, so the same on a whole document and on its parts.
    # A person who opens the feed in a browser sees a page, not raw XML (feedstyle.py).
    return add_stylesheet(_plain_text_references(feed.rss_str(pretty=True, encoding="UTF-8")),
                          info.base_url, info.language)


def _plain_text_references(document: bytes) -> bytes:
    head, item, items = document.partition(b"<item>")
    return (_RSS_PLAIN_TEXT_RE.sub(_hex_references, head) + item
            + _RSS_TITLE_RE.sub(_hex_references, items))


def _hex_references(match: re.Match[bytes]) -> bytes:
    # Same characters once decoded; only the spelling in the XML source changes.
    return match.group(0).replace(b"&lt;", b"&#x3C;").replace(b"&amp;", b"&#x26;")


class RssRenderer(EntryReuse):
    """As Atom (`<lastBuildDate>` has whole seconds: RFC 822)."""

    _whole = staticmethod(_rss_bytes)
    _opening, _closing, _root_end = b"<item", b"</item>", b"</channel>"


RSS = FeedFormat(name="RSS", extension="rss",
                 content_type=FEED_XML_TYPE,  # so that browsers apply the stylesheet
                 link_type="application/rss+xml", render=_rss_bytes, renderer=RssRenderer)
