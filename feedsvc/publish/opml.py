"""`/feeds.opml`: the main feed and every tag's feed as an OPML 2.0 subscription list
(http://opml.org/spec2.opml), for one-click import into a feed reader. Pure.

One outline per feed, in its preferred format: Atom. A reader importing the list subscribes
to every outline it finds; the same feed in three formats would be three subscriptions to
the same entries. Atom is the one that carries the most (RFC 6721 tombstones, each entry's
language, RFC 5005 archives). Every outline is `type="rss"`, as OPML 2.0 says of
subscription lists whatever the feed's format, with `xmlUrl` (the feed) and `htmlUrl` (its
page: the front page, a tag's page).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import quoteattr

from feedsvc.model import FeedInfo
from feedsvc.publish.registry import MAIN, TAGS

OPML_PATH = "/feeds.opml"
#: OPML has no registered media type; `text/x-opml` is the one readers and browsers use
#: (Feedly, Inoreader, NetNewsWire), with XML's charset.
OPML_TYPE = "text/x-opml; charset=utf-8"
PREFERRED_EXTENSION = "atom"


def render_opml(info: FeedInfo, tags: Iterable[tuple[str, str]], modified: datetime) -> bytes:
    """The list: the main feed, then each tag's (tag slug, label), in the order given.
    `modified`: the head's `dateModified` (RFC 822, as OPML 2.0 says)."""
    base = info.base_url
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        '<opml version="2.0">\n',
        "  <head>\n",
        f"    <title>{_text(info.title)}</title>\n",
        f"    <dateModified>{format_datetime(modified, usegmt=True)}</dateModified>\n",
        f"    <ownerName>{_text(info.author_name)}</ownerName>\n",
        "    <docs>http://opml.org/spec2.opml</docs>\n",
        "  </head>\n",
        "  <body>\n",
        _outline(info.title, f"{base}{MAIN}.{PREFERRED_EXTENSION}", base),
    ]
    for tag, label in tags:
        lines.append(_outline(f"{info.title} — {label}",
                              f"{base}{TAGS}{tag}.{PREFERRED_EXTENSION}", f"{base}{TAGS}{tag}"))
    lines.append("  </body>\n</opml>\n")
    return "".join(lines).encode()


def _outline(title: str, xml_url: str, html_url: str) -> str:
    return (f'    <outline type="rss" text={quoteattr(title)} title={quoteattr(title)} '
            f"xmlUrl={quoteattr(xml_url)} htmlUrl={quoteattr(html_url)}/>\n")


def _text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
