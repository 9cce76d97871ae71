"""Items → the site's HTML pages: the front page, one page per entry, the 404 and 410 pages.
Pure.

Every page is in the feed's language (`<html lang>`; an entry in another language carries its
own `lang` on its `<article>`), its dates in the feed's time zone as that language writes them
and its labels from the message catalogs (`locale.py`). The markup is HTML5 with no obsolete
attribute: a Markdown table's column alignment (`align`, which the feeds keep for readers) is a
class here. One stylesheet, at a URL carrying its hash (`STYLESHEET_PATH`), served with a year's
`immutable` cache; no third-party request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.pageblocks import FRONT, links
from feedsvc.publish.registry import ENTRIES, TAGS, formats

if TYPE_CHECKING:
    from feedsvc.publish.locale import PageLocale

#: The Content-Type of the HTML pages (the feeds' live with their formats: `registry`).
HTML_TYPE = "text/html; charset=utf-8"
CSS_TYPE = "text/css; charset=utf-8"

#: The site's one stylesheet: system fonts, readable from 360 px wide (long words, code, tables
#: and images never widen the page: wide tables and code scroll inside their own box).
STYLESHEET = """\
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font:1.1rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:44rem;
margin:0 auto;padding:1rem;color:#1d1d1f;background:#fff;overflow-wrap:break-word}
header.site{border-bottom:1px solid #ddd;margin:0 0 1.5rem;padding:0 0 .5rem}
header.site a{color:inherit;text-decoration:none;font-weight:700}
nav,footer{font-size:.95rem}
footer{border-top:1px solid #ddd;margin:2.5rem 0 0;padding:.75rem 0;color:#555}
h1{line-height:1.2;font-size:1.9rem;margin:.2rem 0 .6rem}
h2{line-height:1.25;font-size:1.3rem;margin:0 0 .3rem}
a{color:#1a5fb4}
time,.byline,.meta{color:#555;font-size:.92rem}
ol.entries{list-style:none;padding:0;margin:0}
ol.entries li{margin:0 0 1.6rem}
ul.tags{list-style:none;padding:0;margin:.5rem 0;display:flex;flex-wrap:wrap;gap:.4rem}
ul.tags a{display:inline-block;padding:.05rem .55rem;border:1px solid #c7d3e6;border-radius:1rem;
font-size:.9rem;text-decoration:none}
img,video,audio{max-width:100%;height:auto}
figure{margin:1rem 0}
blockquote{margin:1rem 0;padding:.2rem 1rem;border-left:4px solid #c7d3e6;color:#333;
background:#f6f8fb}
pre{overflow-x:auto;padding:.8rem;background:#f4f4f5;border-radius:4px;font-size:.9rem}
code,kbd,samp{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
:not(pre)>code{background:#f4f4f5;padding:.05rem .25rem;border-radius:3px}
table{border-collapse:collapse;margin:1rem 0;display:block;max-width:100%;overflow-x:auto}
th,td{border:1px solid #d0d0d5;padding:.35rem .6rem;vertical-align:top}
thead th{background:#f0f2f5}
tbody tr:nth-child(even){background:#fafafa}
.align-left{text-align:left}.align-center{text-align:center}.align-right{text-align:right}
.pager{display:flex;justify-content:space-between;gap:1rem;margin:2rem 0 0}
.subscribe a{margin:0 .3rem 0 0}
"""
_STYLE_HASH = hashlib.sha256(STYLESHEET.encode()).hexdigest()[:16]
#: Where the stylesheet is served: its hash in the name, so its cache never has to expire.
STYLESHEET_PATH = f"/assets/site.{_STYLE_HASH}.css"
STYLESHEET_CACHE = "public, max-age=31536000, immutable"

# nh3 writes a kept `align` as exactly this, on th and td only (ingest/markdown.py).
_ALIGN_RE = re.compile(r'(<t[hd]\b[^>]*?) align="(left|center|right)"')


def html_content(content_html: str) -> str:
    """An entry's sanitized HTML, made valid HTML5: `align` (obsolete, HTML5 §16) → a class."""
    return _ALIGN_RE.sub(r'\1 class="align-\2"', content_html)


def page_url(info: FeedInfo, slug: str) -> str:
    """The absolute URL of an entry's page on this site (whatever its feed link)."""
    return f"{info.base_url}{ENTRIES}{slug}"


def locale_of(info: FeedInfo) -> PageLocale:
    from feedsvc.publish.locale import page_locale  # Babel (60 ms) once a page is rendered

    return page_locale(info.language, info.timezone)


def render_index(info: FeedInfo, items: Sequence[Item], number: int = FRONT,
                 pages: int = 0) -> bytes:
    """The front page (`number` FRONT: the newest entries, as the feeds show them) or older
    page `number` (1: the oldest entries), made from the state (sitepages.py); `pages`: how
    many older pages there are now (pageblocks.py: what the "newer" and "older" links say).
    Following "older entries" from `/` reaches every published entry."""
    loc = locale_of(info)
    body = (_entry_list(info, loc, items) if items
            else f"<p>{_t(loc, 'Nothing published yet.')}</p>")
    subtitle = f"<p>{escape(info.subtitle, quote=False)}</p>\n" if info.subtitle else ""
    pager = _pager(info, loc, "", number, pages)
    if number == FRONT:
        return _page(info, loc, escape(info.title),
                     f"<h1>{escape(info.title, quote=False)}</h1>\n{subtitle}{body}{pager}",
                     canonical=info.base_url)
    heading = _t(loc, "Page {number}", number=number)
    return _page(info, loc, f"{heading} · {escape(info.title)}",
                 f"<h1>{escape(info.title, quote=False)} · {heading}</h1>\n{body}{pager}",
                 canonical=f"{info.base_url}page/{number}")


def tag_info(info: FeedInfo, tag: str, label: str) -> FeedInfo:
    """A tag's feeds (`tags/{tag}.{ext}`), which its page announces and links to."""
    return replace(info, title=f"{info.title} — {label}", feed_path=f"{TAGS}{tag}")


def render_tag(info: FeedInfo, tag: str, label: str, items: Sequence[Item],
               number: int = FRONT, pages: int = 0) -> bytes:
    """A tag's page: its newest entries (`number` FRONT) or its older page `number`, in
    blocks numbered from the oldest as the front page's (pageblocks.py); autodiscovery links
    to the tag's feeds in every registered format."""
    loc = locale_of(info)
    own = tag_info(info, tag, label)
    heading = _t(loc, "Entries tagged “{tag}”", tag=label)
    if number != FRONT:
        heading += " · " + _t(loc, "Page {number}", number=number)
    feeds = " ".join(f'<a href="{escape(fmt.url(own))}">{escape(fmt.name, quote=False)}</a>'
                     for fmt in formats())
    main = (f"<h1>{heading}</h1>\n<p>{_t(loc, 'Feeds of this tag:')} {feeds}</p>\n"
            f"{_entry_list(info, loc, items)}{_pager(info, loc, TAGS + tag, number, pages)}"
            f'<p><a href="{escape(info.base_url + TAGS)}">{_t(loc, "All tags")}</a></p>')
    url = f"{info.base_url}{TAGS}{tag}" + (f"/page/{number}" if number != FRONT else "")
    return _page(own, loc, f"{heading} · {escape(info.title)}", main, canonical=url,
                 home=info)


def render_tags(info: FeedInfo, tags: Sequence[tuple[str, str, int]]) -> bytes:
    """Every tag with its number of entries: (tag, label, count), in the order given."""
    loc = locale_of(info)
    rows = "\n".join(
        f'<li><a href="{escape(info.base_url + TAGS + tag)}">{escape(label, quote=False)}</a> '
        f'<span class="meta">({escape(loc.plural("{count} entry", "{count} entries", count))})'
        "</span></li>" for tag, label, count in tags)
    body = f"<ul>\n{rows}\n</ul>" if tags else f"<p>{_t(loc, 'Nothing published yet.')}</p>"
    return _page(info, loc, f"{_t(loc, 'All tags')} · {escape(info.title)}",
                 f"<h1>{_t(loc, 'All tags')}</h1>\n{body}", canonical=info.base_url + TAGS)


def _pager(info: FeedInfo, loc: PageLocale, base: str, number: int, pages: int) -> str:
    """Links to the newer and the older page (`base`: "" for the front page's, "tags/{tag}"),
    as pageblocks.links says."""
    first = info.base_url + base
    newer, older = links(number, pages)
    found = []
    if newer is not None:
        target = first if newer == FRONT else f"{first.rstrip('/')}/page/{newer}"
        found.append(f'<a href="{escape(target)}" rel="prev">← {_t(loc, "Newer entries")}</a>')
    if older is not None:
        found.append(f'<a href="{escape(first.rstrip("/"))}/page/{older}" rel="next">'
                     f"{_t(loc, 'Older entries')} →</a>")
    return f'\n<nav class="pager">{"".join(found)}</nav>' if found else ""


def render_entry(info: FeedInfo, item: Item) -> bytes:
    """One entry on its own: headline, date, author, tags, image, body, enclosures."""
    loc = locale_of(info)
    entry = item.entry
    url = page_url(info, item.slug)
    lang = f' lang="{escape(entry.lang)}"' if entry.lang and entry.lang != info.language else ""
    author = entry.author_name or info.author_name
    byline = [loc.when(item.published)]
    if author:
        byline.append(_t(loc, "By {author}", author=author))
    parts = [f"<article{lang}>\n<h1>{escape(entry.title, quote=False)}</h1>\n"
             f'<p class="byline">{" · ".join(byline)}</p>\n']
    if entry.tags:
        parts.append(_tag_links(info, loc, entry.tags))
    if entry.image:
        parts.append(f'<figure><img src="{escape(entry.image)}" alt=""></figure>\n')
    parts.append(f"{html_content(entry.content_html)}\n")
    if entry.enclosures:
        rows = "".join(
            f'<li><a href="{escape(e.url)}" type="{escape(e.type)}">'
            f"{escape(e.url.rsplit('/', 1)[-1] or e.url, quote=False)}</a> "
            f'<span class="meta">({escape(e.type, quote=False)}'
            f"{', ' + _size(loc, e.length) if e.length is not None else ''})</span></li>"
            for e in entry.enclosures)
        parts.append(f"<h2>{_t(loc, 'Attachments')}</h2>\n<ul>{rows}</ul>\n")
    if entry.link:
        parts.append(f'<p><a href="{escape(entry.link)}">{_t(loc, "Read the original")}</a></p>\n')
    parts.append("</article>\n")
    # Links that the server answers with a 303 to the neighbour (never the neighbour itself:
    # this page's bytes depend on this entry only).
    parts.append(f'<nav class="pager"><a href="{escape(url)}/newer" rel="prev">'
                 f'← {_t(loc, "Newer entry")}</a>'
                 f'<a href="{escape(url)}/older" rel="next">{_t(loc, "Older entry")} →</a>'
                 "</nav>")
    head = _open_graph(info, item, url)
    return _page(info, loc, f"{escape(entry.title)} · {escape(info.title)}", "".join(parts),
                 canonical=url, head=head)


def render_gone(info: FeedInfo, slug: str, when: datetime) -> bytes:
    """The page a deleted entry's URL answers with 410 Gone."""
    loc = locale_of(info)
    main = (f"<h1>{_t(loc, 'Removed')}</h1>\n<p>"
            + _t(loc, "The entry {slug} was removed on {date}.", slug="\0S\0", date="\0D\0")
            .replace("\0S\0", f"<code>{escape(slug, quote=False)}</code>")
            .replace("\0D\0", loc.when(when)) + "</p>\n"
            + _home_link(info, loc))
    return _page(info, loc, f"{_t(loc, 'Removed')} · {escape(info.title)}", main)


def render_removed(info: FeedInfo) -> bytes:
    """The page of a 410 for a tag gone for good: removed on purpose (RFC 9110 §15.5.11)."""
    loc = locale_of(info)
    main = (f"<h1>{_t(loc, 'Removed')}</h1>\n"
            f"<p>{_t(loc, 'This page was removed on purpose.')}</p>\n{_home_link(info, loc)}")
    return _page(info, loc, f"{_t(loc, 'Removed')} · {escape(info.title)}", main)


def render_not_found(info: FeedInfo) -> bytes:
    """The page of a 404: nothing was ever published at this address."""
    loc = locale_of(info)
    main = (f"<h1>{_t(loc, 'Page not found')}</h1>\n"
            f"<p>{_t(loc, 'There is nothing at this address.')}</p>\n{_home_link(info, loc)}")
    return _page(info, loc, f"{_t(loc, 'Page not found')} · {escape(info.title)}", main)


def _entry_list(info: FeedInfo, loc: PageLocale, items: Sequence[Item]) -> str:
    rows = []
    for item in items:
        entry = item.entry
        lang = (f' lang="{escape(entry.lang)}"' if entry.lang and entry.lang != info.language
                else "")
        summary = (f"<p>{escape(entry.summary, quote=False)}</p>" if entry.summary else "")
        rows.append(f'<li{lang}><h2><a href="{escape(page_url(info, item.slug))}">'
                    f"{escape(entry.title, quote=False)}</a></h2>"
                    f"{loc.when(item.published)}{summary}</li>")
    return '<ol class="entries">\n' + "\n".join(rows) + "\n</ol>"


def _tag_links(info: FeedInfo, loc: PageLocale, tags: Sequence[str]) -> str:
    from_label = _tag_slugs(tags)
    links = "".join(f'<li><a href="{escape(info.base_url + TAGS + slug)}" rel="tag">'
                    f"{escape(label, quote=False)}</a></li>" for label, slug in from_label)
    return f'<ul class="tags" aria-label="{_t(loc, "Tags")}">{links}</ul>\n'


def _tag_slugs(tags: Sequence[str]) -> list[tuple[str, str]]:
    from feedsvc.ingest.slugs import tag_slug  # python-slugify only for tagged entries

    seen: dict[str, str] = {}
    for label in tags:
        slug = tag_slug(label)
        if slug and slug not in seen:
            seen[slug] = label
    return [(label, slug) for slug, label in seen.items()]


def _open_graph(info: FeedInfo, item: Item, url: str) -> str:
    """Open Graph (ogp.me) so a shared link previews: og:type article, its title, summary,
    URL, image; `article:published_time` in ISO 8601."""
    entry = item.entry
    meta = [("og:type", "article"), ("og:site_name", info.title), ("og:title", entry.title),
            ("og:url", url)]
    if entry.summary:
        meta.append(("og:description", entry.summary))
    if entry.image:
        meta.append(("og:image", entry.image))
    meta.append(("article:published_time", item.published.isoformat()))
    if entry.updated is not None or item.updated != item.published:
        meta.append(("article:modified_time", item.updated.replace(microsecond=0).isoformat()))
    for tag in entry.tags:
        meta.append(("article:tag", tag))
    tags = "".join(f'<meta property="{name}" content="{escape(value)}">\n'
                   for name, value in meta)
    if entry.summary:
        tags += f'<meta name="description" content="{escape(entry.summary)}">\n'
    return tags


def _home_link(info: FeedInfo, loc: PageLocale) -> str:
    return (f'<p><a href="{escape(info.base_url)}">{_t(loc, "Back to the front page")}</a>'
            f" · {escape(info.title, quote=False)}</p>")


def _page(info: FeedInfo, loc: PageLocale, title: str, main: str, canonical: str | None = None,
          head: str = "", home: FeedInfo | None = None) -> bytes:
    """A whole page. `info`: the feed its autodiscovery links and subscribe line are for (a
    tag's, on a tag's page); `home`: the site's (when it is not `info`)."""
    site = home or info
    canonical_link = f'<link rel="canonical" href="{escape(canonical)}">\n' if canonical else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{escape(info.language)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        f'<link rel="stylesheet" href="{escape(info.base_url + STYLESHEET_PATH[1:])}">\n'
        f"{canonical_link}{head}{_discovery_links(info)}"
        "</head>\n<body>\n"
        f'<header class="site"><a href="{escape(site.base_url)}">'
        f"{escape(site.title, quote=False)}</a> · "
        f'<a href="{escape(site.base_url + TAGS)}">{_t(loc, "All tags")}</a></header>\n'
        f"<main>\n{main}\n</main>\n{_footer(info, loc)}\n</body>\n</html>\n"
    ).encode()


def _discovery_links(info: FeedInfo) -> str:
    """One autodiscovery link per registered format (the order of the registry)."""
    return "".join(
        f'<link rel="alternate" type="{escape(fmt.link_type)}" '
        f'title="{escape(info.title)} ({escape(fmt.name)})" href="{escape(fmt.url(info))}">\n'
        for fmt in formats())


def _footer(info: FeedInfo, loc: PageLocale) -> str:
    links = " ".join(f'<a href="{escape(fmt.url(info))}">{escape(fmt.name, quote=False)}</a>'
                     for fmt in formats())
    # /feeds.opml: every feed of the site, for a reader's import (publish/opml.py).
    opml = (f'<a href="{escape(info.base_url)}feeds.opml" type="text/x-opml">'
            f'{_t(loc, "All feeds (OPML)")}</a>')
    return (f'<footer>\n<p class="subscribe">{_t(loc, "Subscribe:")} {links}</p>\n'
            f"<p>{opml}</p>\n</footer>")


def _size(loc: PageLocale, length: int) -> str:
    if length < 1024 * 1024:
        return escape(_t_raw(loc, "{size} KB", size=loc.number(round(length / 1024, 1))),
                      quote=False)
    return escape(_t_raw(loc, "{size} MB", size=loc.number(round(length / 1024 / 1024, 1))),
                  quote=False)


def _t(loc: PageLocale, msgid: str, **values: object) -> str:
    """A label, escaped for HTML text and attributes."""
    return escape(loc.text(msgid, **values))


def _t_raw(loc: PageLocale, msgid: str, **values: object) -> str:
    return loc.text(msgid, **values)
