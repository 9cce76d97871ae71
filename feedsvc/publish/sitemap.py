"""`/sitemap.xml`: every published entry's page with its `lastmod` (sitemaps.org protocol 0.9).
Pure.

A sitemap file holds at most 50,000 URLs (and 50 MB): up to that, `/sitemap.xml` is the one
`<urlset>`; beyond it, `/sitemap.xml` is a `<sitemapindex>` of `/sitemaps/{n}.xml` (1, 2…),
each of up to 50,000 entries in slug order. `lastmod` is the entry's `updated` in W3C Datetime
(a profile of ISO 8601: `2026-11-24T07:30:00+00:00`). The pages are read from the state on
request (`sitefiles.py`): nothing is rendered per change, whatever the number of entries.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from xml.sax.saxutils import escape

from feedsvc.model import from_micros
from feedsvc.publish.registry import entry_path

SITEMAP_PATH = "/sitemap.xml"
#: `/sitemaps/{n}.xml`, when there are more entries than one file may hold.
SITEMAPS = "/sitemaps/"
SITEMAP_TYPE = "application/xml; charset=utf-8"
#: sitemaps.org: "no more than 50,000 URLs and must be no larger than 50MB (52,428,800
#: bytes)". An entry's line is under 300 bytes (a slug is at most 128 characters).
URLS_PER_FILE = 50_000
NAMESPACE = "http://www.sitemaps.org/schemas/sitemap/0.9"


def files_for(count: int, per_file: int = URLS_PER_FILE) -> int:
    """How many sitemap files `count` entries take (0: `/sitemap.xml` is the only one)."""
    return 0 if count <= per_file else -(-count // per_file)


def sitemap_file_path(number: int) -> str:
    return f"{SITEMAPS}{number}.xml"


def lastmod(moment: datetime) -> str:
    """W3C Datetime, to the second (readers of sitemaps need no more)."""
    return moment.replace(microsecond=0).isoformat()


def render_urlset(base_url: str, pages: Iterable[tuple[str, int]]) -> bytes:
    """A `<urlset>` of these entries' pages: (slug, updated in microseconds)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<urlset xmlns="{NAMESPACE}">\n']
    for slug, updated in pages:
        lines.append(f"  <url><loc>{escape(base_url + entry_path(slug)[1:])}</loc>"
                     f"<lastmod>{lastmod(from_micros(updated))}</lastmod></url>\n")
    lines.append("</urlset>\n")
    return "".join(lines).encode()


def render_index(base_url: str, files: Iterable[tuple[int, datetime]]) -> bytes:
    """A `<sitemapindex>` of the sitemap files: (number, newest `updated` in it)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<sitemapindex xmlns="{NAMESPACE}">\n']
    for number, newest in files:
        lines.append(f"  <sitemap><loc>{escape(base_url + sitemap_file_path(number)[1:])}"
                     f"</loc><lastmod>{lastmod(newest)}</lastmod></sitemap>\n")
    lines.append("</sitemapindex>\n")
    return "".join(lines).encode()
