"""WebSub subscribers for the bench's push section: one process on 127.0.0.1 serving N
callbacks, `/cb/{i}`. Run by bench.py:

    python bench/subscribers.py PORT N

- GET /cb/{i}?hub.mode=subscribe&hub.challenge=…: verification of intent (WebSub §5.3),
  answered with the challenge.
- POST /cb/{i}: a content distribution (§7). Its arrival time (time.perf_counter: Linux's
  CLOCK_MONOTONIC, the same clock as the bench process's) is taken once its whole body is
  in, and kept for the first POST whose body holds the needle being watched; its
  X-Hub-Signature is checked against the secret `bench-secret-{i}` (§7.1.2), mismatches
  counted.
- POST /control/watch (body: the needle): forget the previous needle, watch this one.
- GET /control/wait?timeout=S: wait until every callback got the needle (or S seconds), then
  {"times": {i: t}, "bad_signatures": n, "posts": n}.
- GET /control/verified: how many callbacks answered a verification.

Why not an aiohttp server: the 100 subscribers stand for 100 machines elsewhere, yet here they
share the hub's two cores. An aiohttp application reading a 160 KB body costs about 0.1 ms
more CPU than this bare protocol, a hundred bodies 10 ms per change, taken from the hub being
measured (2026-11-30, 2 cores: a bare sender's median callback came 4-6 ms later with the
aiohttp subscribers). This one still reads every byte of every request and checks every
signature (after the drop is timed). It speaks just the HTTP/1.1 a hub sends: requests with a
Content-Length (aiohttp's client sends bytes so), kept alive; anything else is answered 501
and counted, and the bench fails on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sys
import time
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 64 * 1024 * 1024


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
        self.unsupported = 0

    def delivered(self, i: int, signature: str, body: bytes, now: float) -> None:
        self.posts += 1
        # Checked once the drop is timed (in `wait`): 100 subscribers are 100 machines in
        # real life, not one process whose HMACs delay the next callbacks' arrival.
        self.unchecked.append((i, signature, body))
        if i not in self.times and self.needle in body:
            self.times[i] = now
            if len(self.times) >= self.n:
                self.all_in.set()

    def watch(self, needle: bytes) -> None:
        self.needle = needle
        self.times = {}
        self.all_in = asyncio.Event()

    def check_signatures(self) -> None:
        """§7.1.2: recompute the HMAC with the shared secret and the method given."""
        for i, given, body in self.unchecked:
            method, _, digest = given.partition("=")
            if method != "sha256" or not hmac.compare_digest(
                    digest, hmac.new(secret(i), body, hashlib.sha256).hexdigest()):
                self.bad_signatures += 1
        self.unchecked = []

    async def wait(self, timeout: float) -> bytes:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), timeout)
        self.check_signatures()
        return json.dumps({"times": self.times, "bad_signatures": self.bad_signatures,
                           "posts": self.posts, "unsupported": self.unsupported}).encode()


class Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection: head, then Content-Length bytes of body."""

    def __init__(self, subs: Subscribers) -> None:
        self.subs = subs
        self.buffer = bytearray()
        self.head: tuple[str, str, dict[str, str]] | None = None
        self.length = 0
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's: not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.head is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                del self.buffer[:end + 4]
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "transfer-encoding" in headers or int(
                        headers.get("content-length", "0")) > MAX_BODY:
                    self.subs.unsupported += 1
                    self.reply(501, b"only Content-Length bodies", close=True)
                    return
                self.head = method, target, headers
                self.length = int(headers.get("content-length", "0"))
            if len(self.buffer) < self.length:
                return
            body = bytes(self.buffer[:self.length])
            del self.buffer[:self.length]
            head, self.head = self.head, None
            self.handle(*head, body, time.perf_counter())

    def reply(self, status: int, body: bytes = b"", close: bool = False) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 %d -\r\nContent-Length: %d\r\n%s\r\n%s" % (
            status, len(body), b"Connection: close\r\n" if close else b"", body))
        if close:
            self.transport.close()

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes,
               now: float) -> None:
        subs = self.subs
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path.startswith("/cb/") and url.path[4:].isdigit():
            i = int(url.path[4:])
            if method == "POST":
                subs.delivered(i, headers.get("x-hub-signature", ""), body, now)
                return self.reply(204)
            if query.get("hub.mode") in ("subscribe", "unsubscribe"):
                subs.verified.add(i)
            return self.reply(200, query.get("hub.challenge", "").encode())
        if url.path == "/control/watch":
            subs.watch(body)
            return self.reply(204)
        if url.path == "/control/verified":
            return self.reply(200, json.dumps({"verified": len(subs.verified)}).encode())
        if url.path == "/control/wait":
            task = asyncio.ensure_future(subs.wait(float(query.get("timeout", "15"))))
            task.add_done_callback(lambda t: self.reply(200, t.result()))
            return None
        return self.reply(404)


async def serve(port: int, n: int) -> None:
    subs = Subscribers(n)
    server = await asyncio.get_running_loop().create_server(lambda: Connection(subs),
                                                            "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    with contextlib.suppress(ImportError):  # as feedsvc does, when installed
        import uvloop
        uvloop.install()
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
