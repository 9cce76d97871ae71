"""server: a real aiohttp server on 127.0.0.1, a real watcher on a temporary seeds folder."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import feedparser
import pytest

from feedsvc.config import Config
from feedsvc.httpdates import http_date, parse_http_date
from feedsvc.serve.app import make_app
from feedsvc.serve.negotiation import etag_matches, not_modified

from .conftest import SAMPLE_NAME, SAMPLE_SLUG, copy_sample, seed, write_seed
from .feedcheck import check_atom, check_rss


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def get(self, path: str, method: str = "GET", **headers: str
                  ) -> tuple[int, Any, bytes]:
        # Bodies as sent: ask for identity unless a test asks for a coding.
        headers = {"Accept-Encoding": "identity", **headers}
        async with self.session.request(method, self.base + path,
                                        headers=headers) as response:
            return response.status, response.headers, await response.read()

    async def entries(self, path: str = "/feed.atom") -> dict[str, Any]:
        status, _, body = await self.get(path)
        assert status == 200
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        return {e.link.rsplit("/", 1)[-1]: e for e in parsed.entries}

    async def health(self) -> dict[str, Any]:
        return json.loads((await self.get("/healthz"))[2])


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll an async condition until it is truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def client(config: Config, aiohttp_server) -> Client:
    copy_sample(config.paths.seeds)
    server = await aiohttp_server(make_app(config))
    assert server.host == "127.0.0.1"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield Client(session, f"http://127.0.0.1:{server.port}")


async def test_feeds_are_served_with_types_and_validators(client: Client, config: Config) -> None:
    for path, content_type, check in (
            ("/feed.atom", "application/xml; charset=utf-8", check_atom),
            ("/feed.rss", "application/xml; charset=utf-8", check_rss)):
        status, headers, body = await client.get(path)
        assert status == 200
        assert headers["Content-Type"] == content_type
        assert headers["Cache-Control"] == "public, max-age=60"
        assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')
        assert parse_http_date(headers["Last-Modified"]) is not None
        assert int(headers["Content-Length"]) == len(body)
        assert check(body, f"{config.feed.base_url}{path[1:]}") == []
        # HEAD: same headers, no body.
        status, head_headers, head_body = await client.get(path, method="HEAD")
        assert (status, head_body) == (200, b"")
        assert head_headers["ETag"] == headers["ETag"]
        assert head_headers["Content-Length"] == headers["Content-Length"]
    entries = await client.entries("/feed.rss")
    assert "« dans les prochains jours »" in entries[SAMPLE_SLUG].content[0].value


async def test_conditional_get(client: Client) -> None:
    _, headers, _ = await client.get("/feed.atom")
    etag, modified = headers["ETag"], headers["Last-Modified"]
    for request_headers in (
            {"If-None-Match": etag},
            {"If-None-Match": f'"nope", {etag}'},
            {"If-None-Match": f"W/{etag}"},
            {"If-None-Match": "*"},
            {"If-Modified-Since": modified},
    ):
        status, response_headers, body = await client.get("/feed.atom", **request_headers)
        assert (status, body) == (304, b""), request_headers
        assert response_headers["ETag"] == etag
        assert response_headers["Cache-Control"] == "public, max-age=60"
        assert "Content-Length" not in response_headers
    for request_headers in (
            {"If-None-Match": '"stale"'},
            {"If-None-Match": '"stale"', "If-Modified-Since": modified},  # INM decides alone
            {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
            {"If-Modified-Since": "garbage"},
            {"If-None-Match": "garbage"},
    ):
        status, _, body = await client.get("/feed.atom", **request_headers)
        assert status == 200 and body, request_headers
    status, _, body = await client.get("/feed.atom", method="HEAD", **{"If-None-Match": etag})
    assert (status, body) == (304, b"")


async def test_pages_health_and_nothing_else(client: Client) -> None:
    status, headers, body = await client.get("/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert 'rel="alternate" type="application/atom+xml"' in page
    assert 'rel="alternate" type="application/rss+xml"' in page
    status, _, body = await client.get(f"/entries/{SAMPLE_SLUG}")
    assert status == 200 and '<html lang="fr">' in body.decode()
    assert "« dans les prochains jours »" in body.decode()
    health = await client.health()
    assert health["status"] == "ok"
    assert health["entries_published"] == 1 and health["seeds_rejected"] == 0
    assert datetime.fromisoformat(health["last_change"]) > datetime.now(UTC) - timedelta(1)
    for path in ("/nope", "/entries/nope", "/config.toml", "/seeds/" + SAMPLE_NAME,
                 "/../config.toml", "/%2e%2e/config.toml", "//etc/passwd", "/feed.atom/x"):
        assert (await client.get(path))[0] == 404, path
    status, headers, _ = await client.get("/feed.atom", method="POST")
    assert status == 405 and "GET" in headers["Allow"]


async def test_drop_edit_delete_and_bad_seeds(client: Client, config: Config) -> None:
    seeds = config.paths.seeds
    _, headers, body0 = await client.get("/feed.atom")
    etag0 = headers["ETag"]

    # Drop → served.
    write_seed(seeds, "new.txt", seed("new-post", "Nouveau « titre »", "Premier paragraphe."),
               mtime=time.time() - 60)
    entries = await eventually(lambda: _with(client, "new-post"))
    first = entries["new-post"]
    assert first.title == "Nouveau « titre »"
    _, headers, _ = await client.get("/feed.atom")
    etag1 = headers["ETag"]
    assert etag1 != etag0

    # Edit → same id and published, new updated, new ETag.
    write_seed(seeds, "new.txt", seed("new-post", "Nouveau « titre »", "Corrigé."))
    edited = (await eventually(lambda: _changed(client, "new-post", first.updated)))["new-post"]
    assert edited.id == first.id
    assert edited.published == first.published
    assert edited.updated_parsed > first.updated_parsed
    _, headers, _ = await client.get("/feed.atom")
    assert headers["ETag"] not in (etag0, etag1)

    # A broken seed is rejected with path:line; everything else keeps being served.
    write_seed(seeds, "broken.txt", b"broken\nHeadline\n\nfine\n\xff")
    health = await eventually(lambda: _rejected(client, 1))
    assert health["rejected"] == [{
        "path": str(seeds / "broken.txt"), "line": 5,
        "message": "not valid UTF-8: invalid start byte at byte offset 22 (0xff)"}]
    assert set(await client.entries()) == {SAMPLE_SLUG, "new-post"}

    # Delete → gone, its page Gone (410, RFC 6721 tombstone in the state).
    (seeds / "new.txt").unlink()
    await eventually(lambda: _without(client, "new-post"))
    assert (await client.get("/entries/new-post"))[0] == 410
    _, headers, body = await client.get("/feed.atom")
    # Back to the entries shown before the drop, but dated later: the document changed
    # again, and a client that only sends If-Modified-Since must see that (issue 9).
    assert headers["ETag"] not in (etag0, etag1)
    assert [e.id for e in feedparser.parse(body).entries] == [e.id for e in feedparser.parse(
        body0).entries]


async def test_editor_saves_and_renames(client: Client, config: Config) -> None:
    seeds = config.paths.seeds
    # vim-style: write a swap file and a temp file, then rename over the target.
    (seeds / ".post.txt.swp").write_bytes(b"junk")
    tmp = seeds / "post.txt.tmp"
    tmp.write_text(seed("post", "Saved by an editor", "Body"), encoding="utf-8")
    os.rename(tmp, seeds / "post.txt")
    first = (await eventually(lambda: _with(client, "post")))["post"]
    # Renaming the file keeps the entry: same id, same dates.
    os.rename(seeds / "post.txt", seeds / "renamed.txt")
    await asyncio.sleep(0.3)  # give a wrong "removed" a chance to show up
    entries = await client.entries()
    assert entries["post"].id == first.id and entries["post"].updated == first.updated
    health = await client.health()
    assert health["seeds_rejected"] == 0 and health["entries_published"] == 2


async def test_seeds_folder_lost_and_back(client: Client, config: Config) -> None:
    seeds = config.paths.seeds
    aside = seeds.with_name("aside")
    seeds.rename(aside)
    # The watch is down and rescans fail: /healthz says so with 503 ...
    health = await eventually(lambda: _status(client, "down"), timeout=15)
    assert health["seeds_folder"] == "missing" and health["watching"] is False
    assert (await client.get("/healthz"))[0] == 503
    assert SAMPLE_SLUG in await client.entries()  # ... while the last good set is still served
    aside.rename(seeds)
    write_seed(seeds, "later.txt", seed("later", "After the outage", "Body"))
    await eventually(lambda: _with(client, "later"), timeout=15)
    assert (await client.health())["status"] == "ok"


async def test_seeds_folder_missing_from_the_start(config: Config, aiohttp_server) -> None:
    config.paths.seeds.rmdir()
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession() as session:
        client = Client(session, f"http://127.0.0.1:{server.port}")
        status, headers, _ = await client.get("/feed.atom")
        assert status == 503 and headers["Retry-After"] == "5"
        health = await eventually(lambda: _status(client, "down"), timeout=15)
        assert health["seeds_folder"] == "missing"
        config.paths.seeds.mkdir()
        copy_sample(config.paths.seeds)
        await eventually(lambda: _with_if_up(client, SAMPLE_SLUG), timeout=15)
        assert (await client.health())["status"] == "ok"


async def _with_if_up(client: Client, slug: str) -> bool:
    status, _, body = await client.get("/feed.atom")
    return status == 200 and slug in body.decode()


async def _with(client: Client, slug: str) -> dict[str, Any] | None:
    entries = await client.entries()
    return entries if slug in entries else None


async def _without(client: Client, slug: str) -> bool:
    return slug not in await client.entries()


async def _changed(client: Client, slug: str, updated: str) -> dict[str, Any] | None:
    entries = await client.entries()
    return entries if entries[slug].updated != updated else None


async def _rejected(client: Client, count: int) -> dict[str, Any] | None:
    health = await client.health()
    return health if health["seeds_rejected"] == count else None


async def _status(client: Client, status: str) -> dict[str, Any] | None:
    health = await client.health()
    return health if health["status"] == status else None


# -- conditional GET decisions, pure ----------------------------------------------------------

MODIFIED = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(("inm", "ims", "expected"), [
    (None, None, False),
    ('"abc"', None, True),
    ('W/"abc"', None, True),
    ('"x", "abc"', None, True),
    ('"x","abc"', None, True),
    ('"x", W/"y"', None, False),
    ("*", None, True),
    ('"abc', None, False),
    ("", None, False),
    ('"x"', http_date(MODIFIED), False),  # If-None-Match decides alone
    (None, http_date(MODIFIED), True),
    (None, http_date(MODIFIED + timedelta(seconds=1)), True),
    (None, http_date(MODIFIED - timedelta(seconds=1)), False),
    (None, "Sunday, 29-Mar-26 01:00:00 GMT", True),  # RFC 850 form
    (None, "not a date", False),
    (None, "Sun, 29 Mar 2026 01:00:00", False),  # no zone: not an HTTP-date
])
def test_not_modified(inm: str | None, ims: str | None, expected: bool) -> None:
    assert not_modified({'"abc"'}, MODIFIED, inm, ims) is expected


def test_etag_with_comma_inside() -> None:
    assert etag_matches({'"a,b"'}, '"x", "a,b"')
    assert not etag_matches({'"a,b"'}, '"a", "b"')


async def test_long_tail_pages_come_from_the_state(site, aiohttp_server) -> None:
    from feedsvc.config import load_config

    from .conftest import write_config
    write_config(site, max_entries=2)
    config = load_config(site / "config.toml")
    seeds = config.paths.seeds
    for n in range(4):
        write_seed(seeds, f"{n}.txt", seed(f"post-{n}", f"Titre {n} « ok »", f"Corps {n}’."),
                   mtime=1_700_000_000 + n)
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession() as session:
        client = Client(session, f"http://127.0.0.1:{server.port}")
        assert set(await client.entries()) == {"post-3", "post-2"}
        status, headers, body = await client.get("/entries/post-0")  # not in any feed
        assert status == 200 and "Titre 0 « ok »" in body.decode() and "Corps 0’." in body.decode()
        etag = headers["ETag"]
        assert (await client.get("/entries/post-0", **{"If-None-Match": etag}))[0] == 304
        assert (await client.get("/entries/never-published"))[0] == 404
        assert (await client.get("/entries/Not%20A%20Slug"))[0] == 404
        # Edited, it shows its new text; deleted, it is Gone (410) though no feed showed it.
        write_seed(seeds, "0.txt", seed("post-0", "Titre 0 corrigé", "Corps."))
        await eventually(lambda: _page_has(client, "/entries/post-0", "corrigé"))
        (seeds / "0.txt").unlink()
        await eventually(lambda: _page_status(client, "/entries/post-0", 410))


async def _page_has(client: Client, path: str, text: str) -> bool:
    status, _, body = await client.get(path)
    return status == 200 and text in body.decode()


async def _page_status(client: Client, path: str, expected: int) -> bool:
    return (await client.get(path))[0] == expected
