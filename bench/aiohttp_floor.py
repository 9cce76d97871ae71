"""The least an aiohttp server can do per feed request: the bench's framework floor.

One handler, no routing beyond aiohttp's own, no real negotiation: it answers GET /feed.atom
with the precompressed gzip body when Accept-Encoding mentions gzip, else with the identity
body, each with the headers feedsvc sends for it (same names, same ETag scheme: the hash of the
identity bytes, `-gzip` appended for the gzip variant), or 304 when If-None-Match names that
variant's ETag. Same event loop (uvloop when installed), same access-log setting (off), same
number of processes on one port (SO_REUSEPORT) as feedsvc in the same run. Whatever feedsvc
does on top of this is its own cost; what this one cannot do, no aiohttp application can.

    python bench/aiohttp_floor.py PORT FEED_FILE FEED_GZ_FILE PROCESSES
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from pathlib import Path

from aiohttp import web


def _variant(etag: str, coding: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """The 200 and 304 headers of one variant, in feedsvc's order (publish/snapshot.py)."""
    validators = {"ETag": etag, "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT",
                  "Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"}
    ok = {"Content-Type": "application/atom+xml; charset=utf-8", **validators}
    if coding is not None:
        ok["Content-Encoding"] = coding
    return ok, validators


def make_app(plain: bytes, gzipped: bytes) -> web.Application:
    digest = hashlib.blake2b(plain, digest_size=16).hexdigest()
    gz_etag, id_etag = f'"{digest}-gzip"', f'"{digest}"'
    gz_ok, gz_304 = _variant(gz_etag, "gzip")
    id_ok, id_304 = _variant(id_etag, None)

    async def feed(request: web.Request) -> web.Response:
        headers = request.headers
        if "gzip" in headers.get("Accept-Encoding", ""):
            etag, body, ok, not_modified = gz_etag, gzipped, gz_ok, gz_304
        else:
            etag, body, ok, not_modified = id_etag, plain, id_ok, id_304
        if headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=not_modified)
        return web.Response(body=body, headers=ok)

    app = web.Application()
    app.router.add_get("/feed.atom", feed)
    return app


def serve(port: int, plain: bytes, gzipped: bytes) -> None:
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(make_app(plain, gzipped), host="127.0.0.1", port=port, reuse_port=True,
                access_log=None, print=None, loop=loop)


def main() -> None:
    port, processes = int(sys.argv[1]), int(sys.argv[4])
    plain, gzipped = Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
    children = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            serve(port, plain, gzipped)
            os._exit(0)
        children.append(pid)

    def stop_children(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_children)
    try:
        serve(port, plain, gzipped)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
