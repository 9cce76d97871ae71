"""WebSub subscribers for the bench's push section: one aiohttp process on 127.0.0.1 serving
N callbacks, `/cb/{i}`. Run by bench.py:

    python bench/subscribers.py PORT N

- GET /cb/{i}?hub.mode=subscribe&hub.challenge=…: verification of intent (WebSub §5.3),
  answered with the challenge.
- POST /cb/{i}: a content distribution (§7). Its arrival time (time.perf_counter: Linux's
  CLOCK_MONOTONIC, the same clock as the bench process's) is kept for the first POST whose
  body holds the needle being watched; its X-Hub-Signature is checked against the secret
  `bench-secret-{i}` (§7.1.2), mismatches counted.
- POST /control/watch (body: the needle): forget the previous needle, watch this one.
- GET /control/wait?timeout=S: wait until every callback got the needle (or S seconds), then
  {"times": {i: t}, "bad_signatures": n, "posts": n}.
- GET /control/verified: how many callbacks answered a verification.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import sys
import time

from aiohttp import web


def secret(i: int) -> bytes:
    return f"bench-secret-{i}".encode()


class Subscribers:
    def __init__(self, n: int) -> None:
        self.n = n
        self.needle = b"\0never"
        self.times: dict[int, float] = {}
        self.all_in = asyncio.Event()
        self.verified: set[int] = set()
        self.bad_signatures = 0
        self.unchecked: list[tuple[int, str, bytes]] = []
        self.posts = 0

    async def callback(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if request.method == "GET":
            if request.query.get("hub.mode") in ("subscribe", "unsubscribe"):
                self.verified.add(i)
            return web.Response(text=request.query.get("hub.challenge", ""))
        body = await request.read()
        now = time.perf_counter()
        self.posts += 1
        # Checked once the drop is timed (in `wait`): 100 subscribers are 100 machines in
        # real life, not one process whose HMACs delay the next callbacks' arrival.
        self.unchecked.append((i, request.headers.get("X-Hub-Signature", ""), body))
        if i not in self.times and self.needle in body:
            self.times[i] = now
            if len(self.times) >= self.n:
                self.all_in.set()
        return web.Response(status=204)

    def check_signatures(self) -> None:
        """§7.1.2: recompute the HMAC with the shared secret and the method given."""
        for i, given, body in self.unchecked:
            method, _, digest = given.partition("=")
            if method != "sha256" or not hmac.compare_digest(
                    digest, hmac.new(secret(i), body, hashlib.sha256).hexdigest()):
                self.bad_signatures += 1
        self.unchecked = []

    async def watch(self, request: web.Request) -> web.Response:
        self.needle = await request.read()
        self.times = {}
        self.all_in = asyncio.Event()
        return web.Response(status=204)

    async def wait(self, request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "15"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), timeout)
        self.check_signatures()
        return web.json_response({"times": self.times, "bad_signatures": self.bad_signatures,
                                  "posts": self.posts})

    async def count_verified(self, request: web.Request) -> web.Response:
        return web.json_response({"verified": len(self.verified)})


def main() -> None:
    with contextlib.suppress(ImportError):  # as feedsvc does, when installed
        import uvloop
        uvloop.install()
    port, n = int(sys.argv[1]), int(sys.argv[2])
    subs = Subscribers(n)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/cb/{i:\\d+}", subs.callback)
    app.router.add_post("/control/watch", subs.watch)
    app.router.add_get("/control/wait", subs.wait)
    app.router.add_get("/control/verified", subs.count_verified)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
