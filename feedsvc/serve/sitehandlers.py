"""The site's files beside the feeds: the feeds' stylesheet, `/feeds.opml`, `/sitemap.xml` and
its files (publish/sitefiles.py makes them)."""

from __future__ import annotations

from aiohttp import web

from feedsvc.publish.sitemap import SITEMAPS
from feedsvc.serve.handlers import not_found, respond
from feedsvc.serve.keys import LIVE, SITE_FILES


async def serve_feed_style(request: web.Request) -> web.StreamResponse:
    document = request.app[SITE_FILES].stylesheet
    if request.rel_url.path != document.path:  # another version's URL: never other bytes
        raise not_found(request)
    return respond(request, document)


async def serve_opml(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current
    document = await request.app[SITE_FILES].opml(snapshot) if snapshot.documents else None
    if document is None:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})  # nothing yet
    return respond(request, document)


async def serve_sitemap(request: web.Request) -> web.StreamResponse:
    snapshot = request.app[LIVE].current
    number = None
    if request.rel_url.path.startswith(SITEMAPS):
        name = request.match_info["name"]
        digits = name.removesuffix(".xml")
        if (not name.endswith(".xml") or not digits.isascii() or not digits.isdigit()
                or digits.startswith("0") or len(digits) > 9):
            raise not_found(request)
        number = int(digits)
    document = await request.app[SITE_FILES].sitemap(snapshot, number) \
        if snapshot.documents else None
    if document is None:
        if number is not None and snapshot.documents:
            raise not_found(request)
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"})
    return respond(request, document)
