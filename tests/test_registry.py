"""registry: each kind of feed document declared once; routes, build, the HTML pages'
autodiscovery links and the publisher's rendering all follow it (a format added by a plugin
is served, built and announced with no other change)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import aiohttp
import brotli
import pytest
from aiohttp import web

from feedsvc.cli import build
from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.model import FeedInfo, Item
from feedsvc.publish import registry
from feedsvc.publish.docformat import FeedFormat
from feedsvc.publish.feedstyle import FEED_XML_TYPE
from feedsvc.publish.registry import FormatError, formats, register_format, tag_of
from feedsvc.serve.app import make_app
from feedsvc.serve.routes import setup_routes

from .conftest import seed, write_seed


def _titles(info: FeedInfo, items: Sequence[Item], updated: datetime) -> bytes:
    """A toy format: the feed's title, its date, and one title per line."""
    lines = [info.title, updated.isoformat(), *(item.entry.title for item in items)]
    return "\n".join(lines).encode() + b"\n"


TITLES = FeedFormat(name="Titles", extension="titles", content_type="text/plain; charset=utf-8",
                    link_type="text/plain", render=_titles)


@pytest.fixture
def plugin() -> Iterator[FeedFormat]:
    saved = dict(registry._FORMATS)
    register_format(TITLES)
    yield TITLES
    registry._FORMATS.clear()
    registry._FORMATS.update(saved)
    assert TITLES not in formats()  # the next test sees the registry as it was


def test_every_format_has_its_own_extension_and_type() -> None:
    extensions = [fmt.extension for fmt in formats()]
    assert extensions[:2] == ["atom", "rss"]  # the order of links and files since 1.0
    assert len(set(extensions)) == len(extensions)
    for fmt in formats():
        assert fmt.path("feed") == f"/feed.{fmt.extension}"
        assert fmt.path("tags/vie-du-projet") == f"/tags/vie-du-projet.{fmt.extension}"
        assert tag_of(fmt.path("tags/vie-du-projet")) == "vie-du-projet"
        # Atom and RSS are served as application/xml, so that browsers apply their stylesheet
        # (publish/feedstyle.py); their links keep the registered types.
        assert fmt.content_type.startswith(fmt.link_type) or fmt.content_type == FEED_XML_TYPE
    assert tag_of("/feed.atom") is None and tag_of("/tags/x.html") is None


def test_a_format_is_registered_once(plugin: FeedFormat) -> None:
    with pytest.raises(FormatError, match="already registered by Titles"):
        register_format(plugin)
    with pytest.raises(FormatError, match="not letters and digits"):
        register_format(FeedFormat(name="Bad", extension="a/b", content_type="x/y",
                                   link_type="x/y", render=_titles))
    assert issubclass(FormatError, FeedsvcError)


def _routed() -> set[str]:
    app = web.Application()
    setup_routes(app)
    return {resource.canonical for resource in app.router.resources()}


def test_the_routes_come_from_the_registry() -> None:
    routed = _routed()
    assert {fmt.path(registry.MAIN) for fmt in formats()} <= routed
    assert "/feed.titles" not in routed
    assert {registry.INDEX, "/entries/{slug}", "/tags/{name}", "/healthz"} <= routed


def test_a_registered_format_gets_its_route(plugin: FeedFormat) -> None:
    assert "/feed.titles" in _routed()


async def test_a_plugin_format_is_served_built_and_announced(
        plugin: FeedFormat, config: Config, aiohttp_server) -> None:
    """The whole claim of the registry: this module's one format and its one registration
    (the `plugin` fixture) are enough for every route, coding, validator, file and link."""
    text = "---\ntags: [Vie du projet]\n---\n" + seed("bilan", "Le « bilan » d’automne",
                                                       "Un paragraphe.")
    write_seed(config.paths.seeds, "bilan.txt", text)
    server = await aiohttp_server(make_app(config))
    base = f"http://127.0.0.1:{server.port}"
    served: dict[str, bytes] = {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for path in ("/feed.titles", "/tags/vie-du-projet.titles"):
            identity = {"Accept-Encoding": "identity"}
            async with session.get(base + path, headers=identity) as response:
                assert response.status == 200, path
                assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert "Content-Encoding" not in response.headers
                body = served[path] = await response.read()
                assert body.endswith("Le « bilan » d’automne\n".encode())
                etag = response.headers["ETag"]
            assert etag.startswith('"') and etag.endswith('"'), etag  # strong, not W/
            async with session.get(base + path, headers={**identity, "If-None-Match": etag}
                                   ) as response:
                assert response.status == 304 and response.headers["ETag"] == etag
                assert await response.read() == b""
            for coding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
                async with session.get(base + path, headers={"Accept-Encoding": coding}
                                       ) as response:
                    assert response.status == 200
                    assert response.headers["Content-Encoding"] == coding
                    assert "Accept-Encoding" in response.headers["Vary"]
                    assert decode(await response.read()) == body
                    coded_etag = response.headers["ETag"]
                assert coded_etag == f'{etag[:-1]}-{coding}"'  # strong, one per coding
                async with session.get(base + path, headers={"Accept-Encoding": coding,
                                                             "If-None-Match": coded_etag}
                                       ) as response:
                    assert response.status == 304
        async with session.get(base + "/", headers={"Accept-Encoding": "identity"}
                               ) as response:
            page = (await response.read()).decode()
    assert (f'<link rel="alternate" type="text/plain" title="Test feed (Titles)" '
            f'href="{config.feed.base_url}feed.titles">') in page
    assert f'<a href="{config.feed.base_url}feed.titles">Titles</a></p>' in page
    await server.close()

    assert build(config) == 0
    output: Path = config.paths.output
    for path, body in served.items():
        name = path[1:]  # feed.titles, tags/vie-du-projet.titles
        assert (output / name).read_bytes() == body, name  # what serve sent, byte for byte
        assert gzip.decompress((output / f"{name}.gz").read_bytes()) == body
        assert brotli.decompress((output / f"{name}.br").read_bytes()) == body
