"""[server] workers = N: several processes on one port serve the same snapshots."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .conftest import copy_sample, http_get, seed, wait_until, write_seed


def with_workers(site: Path, workers: int) -> Path:
    config = site / "config.toml"
    config.write_text(config.read_text().replace("[server]\n", f"[server]\nworkers = {workers}\n"))
    return config


def pids_and_bodies(url: str, path: str, connections: int = 40) -> tuple[set[int], set[bytes]]:
    """Fresh connections each time, so SO_REUSEPORT spreads them over the processes."""
    pids, bodies = set(), set()
    for _ in range(connections):
        pids.add(json.loads(http_get(url + "/healthz")[2])["pid"])
        bodies.add(http_get(url + path)[2])
    return pids, bodies


def test_workers_share_one_port_and_serve_every_change(site: Path, serve) -> None:
    copy_sample(site / "seeds")
    for n in range(3):
        write_seed(site / "seeds", f"{n}.txt", seed(f"old-{n}", f"Ancien {n}", "Corps."),
                   mtime=1_700_000_000 + n)
    server = serve(with_workers(site, 3))
    # Followers start a moment after the leader; then leader and followers all answer.
    pids = wait_until(lambda: _at_least(pids_and_bodies(server.url, "/healthz")[0], 3))
    assert server.process.pid in pids
    assert len(pids_and_bodies(server.url, "/feed.atom")[1]) == 1  # one snapshot everywhere

    write_seed(site / "seeds", "new.txt", seed("fresh", "Tout frais « ici »", "Corps."))
    started = time.monotonic()
    wait_until(lambda: all(b"Tout frais" in body
                           for body in pids_and_bodies(server.url, "/feed.atom", 20)[1]))
    assert time.monotonic() - started < 10
    # ETags agree across processes, and so does a 304.
    etags = {http_get(server.url + "/feed.rss")[1]["ETag"] for _ in range(20)}
    assert len(etags) == 1
    etag = etags.pop()
    assert {http_get(server.url + "/feed.rss", {"If-None-Match": etag})[0]
            for _ in range(20)} == {304}
    # The long tail is readable from any process.
    status, _, body = http_get(server.url + "/entries/old-0")
    assert status == 200 and "Ancien 0" in body.decode()

    children = _children(server.process.pid)
    assert len(children) >= 2
    assert server.stop() == 0
    wait_until(lambda: not any(_alive(pid) for pid in children), timeout=15)
    assert "Traceback" not in server.log()


def _at_least(pids: set[int], count: int) -> set[int] | None:
    return pids if len(pids) >= count else None


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
