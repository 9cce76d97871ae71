"""A symbolic link flipped between a file inside the seeds folder and a secret outside it, as
fast as a thread can, while the real pipeline reads it: the secret is never read, served,
stored, or kept as a last good version (issue 9, item 6)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from feedsvc.errors import Rejection
from feedsvc.ingest.source import SeedFile, SeedFolder, read_seed, stat_seed

from .conftest import ServeProcess, seed, wait_until, write_seed

MARKER = "TOPSECRET-7f3a9c"
INSIDE_TEXT = seed("race", "The public version", "Nothing to hide here.")
SECRET_TEXT = seed("race", f"Stolen {MARKER}", f"The private key is {MARKER}.")


def _layout(root: Path) -> tuple[Path, Path, Path]:
    """seeds/inside.dat (a file in the folder, not itself a seed), a secret outside the folder,
    and seeds/race.txt linking to the inside file."""
    seeds = root / "seeds"
    seeds.mkdir(exist_ok=True)
    inside = seeds / "inside.dat"
    inside.write_text(INSIDE_TEXT)
    secret = root / "secret.txt"
    secret.write_text(SECRET_TEXT)
    race = seeds / "race.txt"
    race.symlink_to("inside.dat")
    return seeds, inside, secret


@contextmanager
def flipping(link: Path, targets: tuple[str, str], times: int) -> Iterator[list[int]]:
    """A thread that points `link` at each target in turn, `times` times (each flip a rename
    of a new link over it, as atomic as an attacker can make it). Yields the count done."""
    done = [0]
    stop = threading.Event()

    def flip() -> None:
        tmp = link.parent / f".{link.name}.flip"
        for i in range(times):
            if stop.is_set():
                break
            with_target = targets[i % 2]
            try:
                os.symlink(with_target, tmp)
                os.replace(tmp, link)
            except FileExistsError:
                os.unlink(tmp)
            done[0] += 1
        # End on the inside file, so what is published at the end is known.
        with_target = targets[0]
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(with_target, tmp)
        os.replace(tmp, link)

    thread = threading.Thread(target=flip, name="flipper")
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join()


def test_read_and_stat_never_see_outside_whatever_the_race(tmp_path: Path) -> None:
    """read_seed and stat_seed called in a tight loop against the flipping link: each answer
    is the inside file or an error, never the secret's bytes nor its signature."""
    seeds, inside, secret = _layout(tmp_path)
    race = seeds / "race.txt"
    secret_inode = secret.stat().st_ino
    reads = outside_refusals = 0
    with SeedFolder(seeds) as folder, \
            flipping(race, ("inside.dat", str(secret)), times=20_000) as done:
        while done[0] < 20_000 and reads < 200_000:
            got = read_seed(race, folder=folder)
            reads += 1
            if isinstance(got, SeedFile):
                assert MARKER.encode() not in got.data
                assert got.signature.inode == inside.stat().st_ino
            elif isinstance(got, Rejection):
                outside_refusals += "outside the seeds folder" in got.message
            signature = stat_seed(race, folder)
            if not isinstance(signature, Rejection) and signature is not None:
                assert signature.inode != secret_inode
    assert reads > 1000 and outside_refusals > 0  # the race was really run, both ways


def test_links_inside_followed_one_level_and_outside_refused(tmp_path: Path) -> None:
    seeds, inside, secret = _layout(tmp_path)
    (seeds / "abs.txt").symlink_to(inside)  # absolute path, into the folder: followed
    (seeds / "dotdot.txt").symlink_to(Path("..") / "seeds" / "inside.dat")  # followed
    (seeds / "out.txt").symlink_to(secret)
    (seeds / "up.txt").symlink_to(Path("..") / "secret.txt")
    (seeds / "chain.txt").symlink_to("race.txt")  # a link to a link: refused
    (seeds / "dir.txt").symlink_to(".")
    for name in ("race.txt", "abs.txt", "dotdot.txt"):
        got = read_seed(seeds / name)
        assert isinstance(got, SeedFile) and got.data == INSIDE_TEXT.encode(), name
        assert stat_seed(seeds / name) == got.signature, name
    for name, fragment in (("out.txt", "outside the seeds folder"),
                           ("up.txt", "outside the seeds folder"),
                           ("chain.txt", "itself a symbolic link"),
                           ("dir.txt", "outside the seeds folder")):
        for check in (read_seed, stat_seed):
            got = check(seeds / name)
            assert isinstance(got, Rejection) and fragment in got.message, (name, check)


def _served(server: ServeProcess) -> bytes:
    bodies = []
    for path in ("/feed.atom", "/feed.rss", "/", "/entries/race", "/healthz"):
        bodies.append(server.get(path, {"Accept-Encoding": "identity"})[2])
    return b"\n".join(bodies)


def _state_bytes(site: Path) -> bytes:
    state = site / "state"
    return b"".join(p.read_bytes() for p in sorted(state.iterdir()) if p.is_file())


def test_flipping_link_under_the_real_pipeline_never_publishes_outside(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    seeds, _, secret = _layout(site)
    server = serve(site / "config.toml")
    wait_until(lambda: b"The public version" in server.get("/feed.atom")[2])
    seen: list[bytes] = []
    with flipping(seeds / "race.txt", ("inside.dat", str(secret)), times=4_000) as done:
        deadline = time.monotonic() + 30
        while done[0] < 4_000 and time.monotonic() < deadline:
            seen.append(server.get("/feed.atom")[2])
    # The watcher had thousands of events to read the link on; let it settle, then drop a
    # canary: published within seconds, so the pipeline is still going.
    write_seed(seeds, "canary.txt", seed("canary", "Canary after the race", "Still here."))
    wait_until(lambda: b"Canary after the race" in server.get("/feed.atom")[2], timeout=10)
    assert all(MARKER.encode() not in body for body in seen)
    assert MARKER.encode() not in _served(server)
    assert MARKER.encode() not in _state_bytes(site)  # database, -wal, -shm
    # A restart serves the last good version from the state: never the secret either.
    server.stop()
    assert MARKER.encode() not in _state_bytes(site)
    again = serve(site / "config.toml")
    wait_until(lambda: b"Canary after the race" in again.get("/feed.atom")[2])
    assert MARKER.encode() not in _served(again)
    assert b"The public version" in again.get("/feed.atom")[2]
