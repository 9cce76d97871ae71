"""Disk trouble: the state on a full or read-only file system. feedsvc keeps serving from
memory, says so on /healthz and in the log, retries every 5 s, and the next write that works
catches up: no date is lost.

Needs root (it mounts small tmpfs file systems under the test's temporary folder and always
unmounts them); skipped otherwise.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import wait_until
from .test_bursts import (
    drop,
    feed_entries,
    health,
    make_config,
    on_disk,
    seed_text,
    settle_on_disk,
)

#: server.WRITE_RETRY_S is 5 s: a catch-up comes within a few retries.
CATCH_UP_S = 20


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """mount(name, size) → a fresh tmpfs at tmp_path/name; all unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m") -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                                 "tmpfs", str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount(point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(point)], check=True,
                   capture_output=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system is full (ENOSPC)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    return filler


def stamps(state: Path) -> dict[str, int]:
    """slug → published, straight from the state file. On a read-only file system, where
    SQLite cannot make the WAL's shared-memory file, as an immutable file."""
    for mode in ("mode=ro", "immutable=1"):
        try:
            db = sqlite3.connect(f"file:{state}?{mode}", uri=True)
            try:
                return dict(db.execute("SELECT slug, published FROM stamps").fetchall())
            finally:
                db.close()
        except sqlite3.OperationalError:
            if mode == "immutable=1":
                raise
    raise AssertionError("unreachable")


def big_seeds(folder: Path, count: int, prefix: str) -> None:
    """Seeds with ~8 KiB bodies: writing their content to the state needs new pages."""
    body = "Du texte pour remplir la page, « encore » et encore. " * 150
    for i in range(count):
        drop(folder, f"{prefix}-{i:02d}.txt", seed_text(f"{prefix}-{i}", f"{prefix} {i}", body))


def test_a_full_disk_keeps_serving_from_memory_and_catches_up(
        tmp_path: Path, tmpfs, serve) -> None:
    statefs = tmpfs("statefs", "2m")
    state = statefs / "state.sqlite3"
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(state))
    for i in range(5):
        drop(seeds, f"old-{i}.txt", seed_text(f"old-{i}", f"Old {i}", "Body."))
    server = serve(config)
    settle_on_disk(server, seeds)
    assert health(server)["status"] == "ok"

    filler = fill(statefs)
    big_seeds(seeds, 40, "full")
    entries = settle_on_disk(server, seeds)  # published all the same, from memory
    full = wait_until(lambda: (h := health(server))["unsaved_changes"] > 0 and h)
    print(f"\n/healthz with the disk full: status {full['status']!r}, state "
          f"{full['state']!r}, unsaved_changes {full['unsaved_changes']}")
    assert full["status"] == "degraded" and full["entries_published"] == 45
    complaints = [line for line in server.log().splitlines() if "cannot write the state" in line]
    assert complaints and "kept in memory, retrying" in complaints[0], server.log()[-2000:]
    assert "full" in complaints[0]  # "database or disk is full"
    print(f"log: {complaints[0]}")

    filler.unlink()
    started = time.monotonic()
    wait_until(lambda: health(server)["unsaved_changes"] == 0, timeout=CATCH_UP_S)
    caught_up = time.monotonic() - started
    after = health(server)
    assert (after["status"], after["state"]) == ("ok", "ok")
    print(f"caught up {caught_up:.1f} s after the filler was removed")
    assert feed_entries(server) == entries  # catching up changed nothing readers see
    assert server.stop() == 0

    # Restarted: every date comes from the state.
    assert {slug: stamp for slug, stamp in stamps(state).items() if slug.startswith("full")}
    server = serve(config)
    assert feed_entries(server) == entries
    assert server.stop() == 0


def test_a_read_only_state_at_start_serves_and_catches_up(tmp_path: Path, tmpfs, serve) -> None:
    statefs = tmpfs("statefs", "2m")
    state = statefs / "state.sqlite3"
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(state))
    for i in range(5):
        drop(seeds, f"old-{i}.txt", seed_text(f"old-{i}", f"Old {i}", "Body."))
    server = serve(config)
    first = settle_on_disk(server, seeds)
    assert server.stop() == 0  # no process holds the state open for writing now

    remount(statefs, "ro")
    server = serve(config)
    assert feed_entries(server) == first  # served from a read-only view: same dates
    report = health(server)
    print(f"\n/healthz on a read-only state: status {report['status']!r}, "
          f"state {report['state']!r}")
    assert report["status"] == "degraded" and report["state"] != "ok"
    assert "read-only" in server.log() or "readonly" in server.log()

    drop(seeds, "new.txt", seed_text("new", "Arrived while read-only", "Body."))
    entries = settle_on_disk(server, seeds)
    assert health(server)["unsaved_changes"] > 0
    assert "new" not in stamps(state)

    remount(statefs, "rw")
    started = time.monotonic()
    wait_until(lambda: health(server)["unsaved_changes"] == 0, timeout=CATCH_UP_S)
    caught_up = time.monotonic() - started
    after = health(server)
    assert (after["status"], after["state"]) == ("ok", "ok")
    assert "the state is writable again" in server.log()
    print(f"caught up {caught_up:.1f} s after the remount")
    assert feed_entries(server) == entries
    assert server.stop() == 0

    assert stamps(state).keys() == on_disk(seeds).keys()
    server = serve(config)
    assert feed_entries(server) == entries
    assert server.stop() == 0


def test_a_full_disk_at_start_serves_a_read_only_view_and_catches_up(
        tmp_path: Path, tmpfs, serve) -> None:
    statefs = tmpfs("statefs", "2m")
    state = statefs / "state.sqlite3"
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(state))
    for i in range(5):
        drop(seeds, f"old-{i}.txt", seed_text(f"old-{i}", f"Old {i}", "Body."))
    server = serve(config)
    first = settle_on_disk(server, seeds)
    assert server.stop() == 0

    filler = fill(statefs)
    server = serve(config)
    assert feed_entries(server) == first
    assert health(server)["status"] == "degraded"
    big_seeds(seeds, 10, "later")
    entries = settle_on_disk(server, seeds)
    assert health(server)["unsaved_changes"] > 0
    filler.unlink()
    wait_until(lambda: health(server)["unsaved_changes"] == 0, timeout=CATCH_UP_S)
    assert (health(server)["status"], health(server)["state"]) == ("ok", "ok")
    assert server.stop() == 0
    server = serve(config)
    assert feed_entries(server) == entries
    assert server.stop() == 0


def test_a_first_start_on_a_full_disk_serves_from_memory(tmp_path: Path, tmpfs, serve) -> None:
    """No state yet and no room to create it: serve from an empty state in memory (as when
    the state cannot be created at all), and write it all once there is room."""
    statefs = tmpfs("statefs", "1m")
    state = statefs / "state.sqlite3"
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(state))
    for i in range(5):
        drop(seeds, f"old-{i}.txt", seed_text(f"old-{i}", f"Old {i}", "Body."))
    filler = fill(statefs)
    server = serve(config)  # observed: exits 1, "... and it cannot be read either"
    entries = settle_on_disk(server, seeds)
    assert health(server)["status"] == "degraded"
    filler.unlink()
    wait_until(lambda: health(server)["unsaved_changes"] == 0, timeout=CATCH_UP_S)
    assert server.stop() == 0
    assert stamps(state).keys() == entries.keys()
    server = serve(config)
    assert feed_entries(server) == entries
    assert server.stop() == 0


def test_healthz_names_the_state_problem_while_the_disk_is_full(
        tmp_path: Path, tmpfs, serve) -> None:
    """/healthz "state" is "ok" only while the state can be written (HealthStatus,
    Store.problem: "why the state is not writable now")."""
    statefs = tmpfs("statefs", "2m")
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(statefs / "state.sqlite3"))
    drop(seeds, "old.txt", seed_text("old", "Old", "Body."))
    server = serve(config)
    settle_on_disk(server, seeds)
    fill(statefs)
    big_seeds(seeds, 40, "full")
    settle_on_disk(server, seeds)
    report = wait_until(lambda: (h := health(server))["unsaved_changes"] > 0 and h)
    assert report["state"] != "ok", report  # observed: "ok" while every write fails
    assert server.stop() == 0


def test_a_read_only_state_left_by_a_crash_still_serves(tmp_path: Path, tmpfs, serve) -> None:
    """kill -9 leaves the state's write-ahead log (and its -shm) behind; then the file system
    goes read-only. SQLite can read such a state (`mode=ro`, as `stamps()` here does), so the
    dates are there: serve them, degraded, and catch up once it is writable."""
    statefs = tmpfs("statefs", "2m")
    state = statefs / "state.sqlite3"
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path, state=str(state))
    for i in range(5):
        drop(seeds, f"old-{i}.txt", seed_text(f"old-{i}", f"Old {i}", "Body."))
    server = serve(config)
    first = settle_on_disk(server, seeds)
    server.stop(signal.SIGKILL)
    assert state.with_name(state.name + "-wal").stat().st_size > 0
    remount(statefs, "ro")
    published = stamps(state)  # readable as it is
    assert published.keys() == first.keys()
    # observed: serve exits 1, "... and its write-ahead log ...-wal cannot be merged"
    server = serve(config)
    assert feed_entries(server) == first
    assert health(server)["status"] == "degraded"
    remount(statefs, "rw")
    try:
        wait_until(lambda: health(server)["state"] == "ok", timeout=CATCH_UP_S)
    except AssertionError:
        raise AssertionError(f"{health(server)}\n{server.log()}") from None
    assert server.stop() == 0
