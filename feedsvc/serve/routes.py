"""The route table. The feed documents' paths come from the document registry: a format
registered there is routed here with no other change."""

from __future__ import annotations

from aiohttp import web

from feedsvc.publish.registry import ARCHIVES, ENTRIES, INDEX, MAIN, TAGS, formats
from feedsvc.serve.handlers import serve_archive, serve_document, serve_entry, serve_health
from feedsvc.serve.keys import CONFIG
from feedsvc.serve.media import ROUTE_PREFIX, serve_media
from feedsvc.serve.websub.hub import serve_hub
from feedsvc.serve.websub.topics import HUB_PATH


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(INDEX, serve_document)
    for fmt in formats():  # the feed in every registered format
        router.add_get(fmt.path(MAIN), serve_document)
    router.add_get(f"/{ENTRIES}{{slug}}", serve_entry)
    # A tag's documents, every format: {tag}.{extension}, as the snapshot holds them.
    router.add_get(f"/{TAGS}{{name}}", serve_document)
    # RFC 5005 archive pages, every format: {page size}/{n}.{extension}, from the state.
    router.add_get(f"/{ARCHIVES}{{size}}/{{name}}", serve_archive)
    router.add_get("/healthz", serve_health)
    config = app.get(CONFIG)  # (an app without one: the registry's routes alone)
    if config is not None and config.websub.builtin_hub:
        # The built-in WebSub hub (websub/hub.py) at {base_url}websub: paths here are those
        # under base_url, as every document's.
        router.add_post(f"/{HUB_PATH}", serve_hub)
    # The media folder's files, from disk (not the snapshot): see media.py.
    router.add_get(ROUTE_PREFIX + "{path:.+}", serve_media)
