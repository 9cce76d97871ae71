"""Items → small readable HTML pages: the front page and one page per entry. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import reuse
from feedsvc.publish.registry import formats

_STYLE = (
    "body{font:1.1rem/1.55 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;"
    "color:#222;background:#fff}h1{line-height:1.2}time{color:#666;font-size:.9rem}"
    "li{margin:0 0 1.2rem}a{color:#1a5fb4}"
)

#: The Content-Type of the HTML pages (the feeds' live with their formats: `registry`).
HTML_TYPE = "text/html; charset=utf-8"


def render_index(info: FeedInfo, items: Sequence[Item],
                 rows_made: dict[Item, str] | None = None) -> bytes:
    """The front page: newest entries, with autodiscovery links to every feed format.
    `rows_made`: each item's row, kept between calls (see `docformat.reuse`; the caller
    forgets the rows of items no longer shown)."""
    rows = "\n".join(map(index_row, items) if rows_made is None
                     else reuse(rows_made, items, index_row))
    body = f"<ul>\n{rows}\n</ul>" if items else "<p>Nothing published yet.</p>"
    return _page(info, escape(info.title), f"<h1>{escape(info.title)}</h1>\n"
                 f"<p>{escape(info.subtitle, quote=False)}</p>\n{body}\n{_feeds(info)}")


def index_row(item: Item) -> str:
    """An entry's row on the front page: a function of the item alone."""
    return (f'<li><a href="{escape(item.link)}">{escape(item.entry.title)}</a><br>'
            f"{_time(item.published)}<br>{escape(item.entry.summary, quote=False)}</li>")


def render_entry(info: FeedInfo, item: Item) -> bytes:
    """One entry on its own: headline, date, body."""
    entry = item.entry
    article = (
        f"<article>\n<h1>{escape(entry.title, quote=False)}</h1>\n"
        f"<p>{_time(item.published)}</p>\n{entry.content_html}\n</article>\n"
        f'<p><a href="{escape(info.base_url)}">{escape(info.title, quote=False)}</a></p>'
    )
    return _page(info, f"{escape(entry.title)} · {escape(info.title)}", article)


def _page(info: FeedInfo, title: str, main: str) -> bytes:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{escape(info.language)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        f"{_discovery_links(info)}"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n{main}\n</main>\n</body>\n</html>\n"
    ).encode()


def _discovery_links(info: FeedInfo) -> str:
    """One autodiscovery link per registered format (the order of the registry)."""
    return "".join(
        f'<link rel="alternate" type="{escape(fmt.link_type)}" '
        f'title="{escape(info.title)} ({escape(fmt.name)})" href="{escape(fmt.url(info))}">\n'
        for fmt in formats())


def _feeds(info: FeedInfo) -> str:
    links = " · ".join(f'<a href="{escape(fmt.url(info))}">{escape(fmt.name, quote=False)}</a>'
                       for fmt in formats())
    return f"<p>Subscribe: {links}</p>"


def _time(moment: datetime) -> str:
    return f'<time datetime="{moment.isoformat()}">{moment:%Y-%m-%d %H:%M} UTC</time>'
