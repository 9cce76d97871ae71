"""A real WebSub subscriber for tests: an aiohttp server on loopback, on a thread of its own,
that records every request it gets and answers as told (echo the challenge, a wrong one, a
status, or hang)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from aiohttp import web

from tests.conftest import free_port


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class Subscriber:
    """`answer`: "echo" (the challenge, 200), "wrong" (200, another body), "status" (the
    `status` code with the challenge as body), "hang" (never answers)."""

    def __init__(self, answer: str = "echo", status: int = 200) -> None:
        self.answer = answer
        self.status = status
        self.received: list[Received] = []
        #: Seconds to wait before answering a GET of this hub.mode.
        self.delays: dict[str, float] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.method, request.path, dict(request.query),
                                      dict(request.headers), await request.read()))
        if request.method != "GET":
            return web.Response(status=204)
        challenge = request.query.get("hub.challenge", "")
        await asyncio.sleep(self.delays.get(request.query.get("hub.mode", ""), 0))
        if self.answer == "hang":
            await asyncio.sleep(3600)
        if self.answer == "wrong":
            return web.Response(text=challenge + "x")
        if self.answer == "status":
            return web.Response(status=self.status, text=challenge)
        return web.Response(text=challenge)

    def gets(self, mode: str | None = None) -> list[Received]:
        return [r for r in list(self.received) if r.method == "GET"
                and (mode is None or r.query.get("hub.mode") == mode)]

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def post_form(url: str, params: dict[str, str] | list[tuple[str, str]],
              content_type: str = "application/x-www-form-urlencoded",
              body: bytes | None = None) -> tuple[int, str]:
    """POST a form; (status, body text)."""
    data = body if body is not None else urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
