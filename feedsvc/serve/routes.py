"""The route table. The feed documents' paths come from the document registry: a format
registered there is routed here with no other change."""

from __future__ import annotations

from aiohttp import web

from feedsvc.publish.feedstyle import STYLESHEET_ROUTE
from feedsvc.publish.opml import OPML_PATH
from feedsvc.publish.pages import STYLESHEET_PATH
from feedsvc.publish.registry import ARCHIVES, ENTRIES, INDEX, MAIN, TAGS, formats
from feedsvc.publish.sitemap import SITEMAP_PATH, SITEMAPS
from feedsvc.serve.handlers import (
    document_handler,
    serve_archive,
    serve_document,
    serve_entry,
    serve_health,
    serve_neighbour,
    serve_not_found,
    serve_site_page,
    serve_stylesheet,
)
from feedsvc.serve.keys import CONFIG, LIVE
from feedsvc.serve.media import ROUTE_PREFIX, serve_media
from feedsvc.serve.metrics import METRICS, serve_metrics
from feedsvc.serve.sitehandlers import serve_feed_style, serve_opml, serve_sitemap
from feedsvc.serve.websub.hub import serve_hub
from feedsvc.serve.websub.topics import HUB_PATH


def setup_routes(app: web.Application) -> None:
    router = app.router
    live = app.get(LIVE)  # bound to the documents' handler: the hot path (handlers.py)
    documents = serve_document if live is None else document_handler(live)
    router.add_get(INDEX, documents)
    for fmt in formats():  # the feed in every registered format
        router.add_get(fmt.path(MAIN), documents)
    router.add_get(f"/{ENTRIES}{{slug}}", serve_entry)
    # An entry page's "previous"/"next" links: 303 to the neighbour (handlers.py).
    router.add_get(f"/{ENTRIES}{{slug}}/{{direction}}", serve_neighbour)
    # The site's pages made from the state: older front pages, the tags (HTML; a tag slug
    # has no dot, so `/tags/{tag}.{ext}` still goes to the documents below).
    router.add_get("/page/{number}", serve_site_page)
    router.add_get(f"/{TAGS}", serve_site_page)
    router.add_get(f"/{TAGS}{{tag:[^./]+}}", serve_site_page)
    router.add_get(f"/{TAGS}{{tag:[^./]+}}/page/{{number}}", serve_site_page)
    # A tag's documents, every format: {tag}.{extension}, as the snapshot holds them.
    router.add_get(f"/{TAGS}{{name}}", documents)
    # RFC 5005 archive pages, every format: {page size}/{n}.{extension}, from the state.
    router.add_get(f"/{ARCHIVES}{{size}}/{{name}}", serve_archive)
    router.add_get("/healthz", serve_health)
    if METRICS in app:  # `[server] metrics = true`; else /metrics is the site's 404
        router.add_get("/metrics", serve_metrics)
    # The feeds' stylesheet (its URL carries its hash), the subscription list, the sitemap.
    router.add_get(STYLESHEET_ROUTE, serve_feed_style)
    router.add_get(OPML_PATH, serve_opml)
    router.add_get(SITEMAP_PATH, serve_sitemap)
    router.add_get(f"{SITEMAPS}{{name}}", serve_sitemap)
    config = app.get(CONFIG)  # (an app without one: the registry's routes alone)
    if config is not None and config.websub.builtin_hub:
        # The built-in WebSub hub (websub/hub.py) at {base_url}websub: paths here are those
        # under base_url, as every document's.
        router.add_post(f"/{HUB_PATH}", serve_hub)
        # Else the site's 404 below would answer a GET: the hub is there, for POST alone.
        router.add_get(f"/{HUB_PATH}", _post_only)
    # The media folder's files, from disk (not the snapshot): see media.py.
    router.add_get(ROUTE_PREFIX + "{path:.+}", serve_media)
    # The site's one stylesheet, at its hashed URL (publish/pages.py).
    router.add_get(STYLESHEET_PATH, serve_stylesheet)
    # Anything else: the site's 404 page (last: routes match in the order added).
    router.add_get("/{tail:.*}", serve_not_found)


async def _post_only(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMethodNotAllowed(request.method, ["POST"])
