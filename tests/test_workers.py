"""[server] workers = N: several processes on one port serve the same snapshots."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import pytest

from feedsvc.errors import FeedsvcError
from feedsvc.model import FeedInfo, Snapshot
from feedsvc.publish.snapshot import make_document
from feedsvc.serve.health import HealthStatus
from feedsvc.serve.workers import Followers, MessageError, SnapshotMessage, receive, unpack

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


# -- the message to followers: a typed value, checked on arrival ---------------------------------

def _message(pending_writes: int = 0) -> SnapshotMessage:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    document = make_document("/feed.atom", "application/atom+xml; charset=utf-8",
                             "<feed>« un titre »</feed>".encode(), moment)
    snapshot = Snapshot(documents=MappingProxyType({document.path: document}),
                        published_count=1, changed_at=moment, generation=3,
                        scheduled=(("plus-tard", moment),))
    info = FeedInfo(id="urn:x", title="Le « flux »", subtitle="", language="fr",
                    author_name="A", author_email=None, base_url="http://x/", created=moment)
    status = HealthStatus(watching=False, pending_writes=pending_writes,
                          batch_problem="last batch failed: OSError: x")
    return SnapshotMessage(snapshot, status, info)


def test_a_snapshot_message_survives_the_pipe_whole() -> None:
    message = _message()
    received = unpack(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(received) is SnapshotMessage and received == message
    assert isinstance(received.snapshot.documents, MappingProxyType)  # still read-only
    assert received.snapshot.documents["/feed.atom"].variants["br"].body == \
        message.snapshot.documents["/feed.atom"].variants["br"].body


@pytest.mark.parametrize("data", [
    pickle.dumps((_message().snapshot, _message().status, _message().info)),  # as before
    pickle.dumps(_message().snapshot),
    pickle.dumps(None),
    b"not a pickle",
    b"",
])
def test_anything_else_from_the_leader_is_a_feedsvc_error(data: bytes) -> None:
    with pytest.raises(MessageError) as raised:
        unpack(data)
    assert isinstance(raised.value, FeedsvcError)


async def test_followers_are_sent_only_what_is_new() -> None:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    followers = Followers([sending])
    try:
        first = _message()
        await followers.send(first)
        await followers.send(first)  # nothing new: nothing sent
        await followers.send(SnapshotMessage(first.snapshot, first.status, first.info))
        assert (await receive(receiving)) == first
        assert not receiving.poll(0.05)
        changed = _message(pending_writes=2)  # a new status alone is news
        await followers.send(changed)
        assert (await receive(receiving)) == changed
        assert not receiving.poll(0.05)
    finally:
        followers.close()
    assert await receive(receiving) is None  # the leader gone
    receiving.close()
