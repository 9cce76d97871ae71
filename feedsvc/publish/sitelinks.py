"""The links the HTML pages give to the site's files beside the feeds: `/feeds.opml` and
`/sitemap.xml` (for the pages' head and footer; `pages` calls these). Pure."""

from __future__ import annotations

from html import escape

from feedsvc.publish.opml import OPML_PATH
from feedsvc.publish.sitemap import SITEMAP_PATH

#: (rel, media type, path): `<link>`s for a page's head. `rel="sitemap"` is the convention
#: crawlers read; the OPML list is an alternate of the site for readers that import lists.
HEAD_LINKS = (
    ("alternate", "text/x-opml", OPML_PATH),
    ("sitemap", "application/xml", SITEMAP_PATH),
)


def head_links(base_url: str, opml_title: str) -> str:
    """The `<link>` elements for a page's head, absolute against `base_url`."""
    return "".join(
        f'<link rel="{rel}" type="{kind}" href="{escape(base_url + path[1:])}"'
        + (f' title="{escape(opml_title)}"' if path == OPML_PATH else "") + ">\n"
        for rel, kind, path in HEAD_LINKS)


def opml_url(base_url: str) -> str:
    """The subscription list's URL, for a footer link ("all our feeds")."""
    return base_url + OPML_PATH[1:]
