"""The push section's floor: a bare WebSub sender, in a process of its own as the hub is, that
does only what any hub must for one change: POST the same document (the feed feedsvc serves
at that size, read on stdin) to the same N callbacks of bench/subscribers.py, each signed
with its subscriber's secret (HMAC-SHA256, on the loop as feedsvc signs a body under 1 MiB),
16 requests under way at once (feedsvc's healthy lane), with aiohttp and uvloop as feedsvc
uses them. No watcher, no state, no lookup, no retries, no health. Run by bench.py:

    python bench/push_floor.py SUBSCRIBERS_PORT N ROUNDS < body

Each round prepends a fresh needle to the body (a comment: the same size give or take a few
bytes), tells the subscribers to watch for it, sends, and takes their arrival times minus
the moment it started (time.perf_counter: CLOCK_MONOTONIC in both processes). Prints JSON:
{"every": [seconds, …], "first": […], "last": […]}.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sys
import time

import aiohttp

LANE = 16


def signature(i: int, body: bytes) -> str:
    return "sha256=" + hmac.new(f"bench-secret-{i}".encode(), body, hashlib.sha256).hexdigest()


async def main(port: int, n: int, rounds: int, document: bytes) -> dict[str, list[float]]:
    base = f"http://127.0.0.1:{port}"
    every: list[float] = []
    first: list[float] = []
    last: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     auto_decompress=False) as session:
        for r in range(rounds + 1):  # the first round warms the connections up, not counted
            needle = f"push-floor-{r}-{time.time_ns()}".encode()
            body = b"<!-- " + needle + b" -->" + document
            async with session.post(f"{base}/control/watch", data=needle) as response:
                await response.read()
            await asyncio.sleep(0.05)
            lane = asyncio.Semaphore(LANE)

            async def send(i: int, body: bytes = body, lane: asyncio.Semaphore = lane) -> None:
                async with lane:
                    signed = signature(i, body)
                    async with session.post(f"{base}/cb/{i}", data=body, headers={
                            "Content-Type": "application/atom+xml; charset=utf-8",
                            "X-Hub-Signature": signed}) as response:
                        await response.read()

            started = time.perf_counter()
            await asyncio.gather(*(send(i) for i in range(n)))
            async with session.get(f"{base}/control/wait?timeout=15") as response:
                got = json.loads(await response.read())
            if got["bad_signatures"] or got.get("unsupported"):
                raise SystemExit(f"push_floor: {got['bad_signatures']} bad signatures, "
                                 f"{got.get('unsupported')} requests not understood")
            times = sorted(float(t) - started for t in got["times"].values())
            if r and times:
                every.extend(times)
                first.append(times[0])
                if len(times) == n:
                    last.append(times[-1])
    return {"every": every, "first": first, "last": last}


if __name__ == "__main__":
    with contextlib.suppress(ImportError):  # as feedsvc does, when installed
        import uvloop
        uvloop.install()
    port, n, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(main(port, n, rounds, sys.stdin.buffer.read()))))
