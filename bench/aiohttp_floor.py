"""The least an aiohttp server can do per feed request: the bench's framework floor.

One handler, no routing beyond aiohttp's own, no negotiation: it answers GET /feed.atom with
the precompressed gzip body and its ETag, or 304 when If-None-Match names that ETag. Same
event loop (uvloop when installed), same access-log setting (off), same number of processes
on one port (SO_REUSEPORT) as feedsvc in the same run. Whatever feedsvc does on top of this
is its own cost; what this one cannot do, no aiohttp application can.

    python bench/aiohttp_floor.py PORT FEED_GZ_FILE PROCESSES
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


def make_app(body: bytes) -> web.Application:
    etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}-gzip"'
    ok = {"Content-Type": "application/atom+xml; charset=utf-8", "Content-Encoding": "gzip",
          "ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "public, max-age=60",
          "Last-Modified": "Tue, 24 Nov 2026 08:00:00 GMT"}
    not_modified = {k: v for k, v in ok.items() if k not in ("Content-Type", "Content-Encoding")}

    async def feed(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=not_modified)
        return web.Response(body=body, headers=ok)

    app = web.Application()
    app.router.add_get("/feed.atom", feed)
    return app


def serve(port: int, body: bytes) -> None:
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    web.run_app(make_app(body), host="127.0.0.1", port=port, reuse_port=True, access_log=None,
                print=None, loop=loop)


def main() -> None:
    port, body, processes = int(sys.argv[1]), Path(sys.argv[2]).read_bytes(), int(sys.argv[3])
    children = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            serve(port, body)
            os._exit(0)
        children.append(pid)

    def stop_children(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_children)
    try:
        serve(port, body)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
