"""Crash safety: `kill -9` during bursts, during a start-up scan and during `feedsvc build`.

After every kill: the SQLite state passes `PRAGMA integrity_check` and is in WAL mode; after
every restart: no entry lost or listed twice, no id or `published` date changed, `updated`
moved only for what was edited; `build` output is absent or whole, never half-written.
Run with `-s` to see the rounds.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import brotli
import pytest
from lxml import etree

from feedsvc.model import to_micros

from .conftest import ServeProcess
from .test_bursts import (
    Published,
    drop,
    feed_entries,
    health,
    make_config,
    on_disk,
    seed_text,
    settle_on_disk,
)

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "8"))
#: Kill times are random; a failure prints the seed, and CRASH_SEED=… replays it.
SEED = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 32))
NEW_PER_ROUND = 300
EDITS_PER_ROUND = 30
DELETES_PER_ROUND = 10
RETURNS_PER_ROUND = 5


def check_state(path: Path) -> dict[str, tuple[int, int]]:
    """Open the state as the next start would find it (read-only, so this check changes
    nothing), check it, and return slug → (published, updated)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute("SELECT slug, published, updated FROM stamps").fetchall()
    finally:
        db.close()
    return {slug: (published, updated) for slug, published, updated in rows}


def seconds(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp())


def micros(rfc3339: str) -> int:
    """`updated` is kept in microseconds (RFC 3339 time-secfrac when not whole)."""
    return to_micros(datetime.fromisoformat(rfc3339))


def kill_9(server: ServeProcess) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    server.stop()  # closes its log file


def wait_for_log(server: ServeProcess, offset: int, text: str, timeout: float = 10) -> None:
    """Poll the server's log, from byte `offset`, until `text` shows up (bounded)."""
    needle = text.encode()
    deadline = time.monotonic() + timeout
    with server.stderr_path.open("rb") as log:
        log.seek(offset)
        seen = b""
        while needle not in seen:
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s"
            seen = seen[-len(needle):] + log.read()
            time.sleep(0.001)


def start_and_kill(config: Path, delay: float) -> int | None:
    """Start `feedsvc serve` and SIGKILL it after `delay` s, wherever it is by then (imports,
    start-up scan, first commit, first render, listening). Returns its exit code if it had
    exited already (it should not have)."""
    with (config.parent / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "serve", "--config", str(config)],
            cwd=config.parent, stdout=subprocess.DEVNULL, stderr=log)
        time.sleep(delay)
        early = process.poll()
        process.kill()
        process.wait(timeout=10)
    return early


def new_temporary_file(output: Path, before: set[str]) -> bool:
    try:
        return any(name.endswith(".tmp") for name in set(os.listdir(output)) - before)
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_kill_9_during_bursts_loses_and_changes_nothing(tmp_path: Path, serve) -> None:
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path)
    state = tmp_path / "state" / "feedsvc.sqlite3"
    rng = random.Random(SEED)
    print(f"\nCRASH_SEED={SEED}")
    for i in range(200):
        drop(seeds, f"base-{i:03d}.txt", seed_text(f"base-{i}", f"Base {i}", f"Body {i}."))
    server = serve(config)
    seen = settle_on_disk(server, seeds)  # slug → the entry as first and last observed
    first_seen: dict[str, Published] = dict(seen)
    deleted: dict[str, Path] = {}  # slug → the file it had
    started = time.monotonic()

    for round_ in range(ROUNDS):
        files = {path.read_text(encoding="utf-8").split("\n")[0]: path
                 for path in seeds.glob("*.txt")}
        edited = set(rng.sample(sorted(files), EDITS_PER_ROUND))
        gone = set(rng.sample(sorted(files.keys() - edited), DELETES_PER_ROUND))
        back = set(rng.sample(sorted(deleted), min(RETURNS_PER_ROUND, len(deleted))))
        operations = [
            *(lambda r=round_, i=i: drop(seeds, f"r{r}-{i:03d}.txt",
                                         seed_text(f"r{r}-{i}", f"Round {r} seed {i}", "New."))
              for i in range(NEW_PER_ROUND)),
            *(lambda s=slug, r=round_, name=files[slug].name: drop(
                seeds, name, seed_text(s, f"Edited in round {r}", "Edited."))
              for slug in edited),
            *(files[slug].unlink for slug in gone),
            *(lambda s=slug: drop(seeds, f"back-{s}.txt", seed_text(s, "Back again", "Back."))
              for slug in back),
        ]
        rng.shuffle(operations)
        log_start = server.stderr_path.stat().st_size
        mode = ("after the burst", "while the burst is written", "in the render")[round_ % 3]
        if mode == "after the burst":
            delay = rng.uniform(0, 0.3)
            for operation in operations:
                operation()
            time.sleep(delay)
        elif mode == "while the burst is written":
            delay = rng.uniform(0, 0.3)
            timer = threading.Timer(delay, server.process.send_signal, (signal.SIGKILL,))
            timer.start()
            for operation in operations:
                operation()
            timer.join()
        else:  # the "published" lines come after the commit, just before the render
            delay = rng.uniform(0, 0.05)
            for operation in operations:
                operation()
            wait_for_log(server, log_start, f"published r{round_}-")
            time.sleep(delay)
        kill_9(server)
        # How far it got: each entry's "published" line is logged once its stamp is committed.
        with server.stderr_path.open("rb") as log:
            log.seek(log_start)
            applied = log.read().decode().count(f"published r{round_}-")
        deleted = {slug: path for slug, path in deleted.items() if slug not in back}
        deleted.update((slug, files[slug]) for slug in gone)

        # Before the restart: the state is whole, and holds every date readers have seen.
        stamps = check_state(state)
        for slug, entry in seen.items():
            assert stamps[slug][0] == seconds(entry.published), slug
            if slug not in edited:
                assert stamps[slug][1] == micros(entry.updated), slug

        # A kill during the start-up scan of what changed meanwhile, then a real restart.
        startup_delay = rng.uniform(0.2, 0.9)
        assert start_and_kill(config, startup_delay) is None
        check_state(state)
        restarted = time.monotonic()
        server = serve(config)
        entries = settle_on_disk(server, seeds)
        settled = time.monotonic() - restarted

        for slug, entry in entries.items():
            old = first_seen.get(slug)
            if old is not None:  # ids and published dates never change, even after a delete
                assert (entry.id, entry.published) == (old.id, old.published), slug
            last = seen.get(slug)
            if last is not None and slug not in edited:
                assert entry.updated == last.updated, f"{slug} not edited, updated moved"
            if last is not None and slug in edited and entry.title != last.title:
                assert micros(entry.updated) > micros(last.updated), slug
        assert not gone & entries.keys()
        assert back <= entries.keys()
        assert health(server)["seeds_rejected"] == 0
        first_seen.update((slug, entry) for slug, entry in entries.items()
                          if slug not in first_seen)
        seen = entries
        print(f"\nround {round_}: killed {mode} ({len(operations)} changes) at "
              f"{delay * 1000:.0f} ms ({applied} of "
              f"{NEW_PER_ROUND} new seeds logged as committed) and during a start-up at "
              f"{startup_delay * 1000:.0f} ms; {len(entries)} entries settled "
              f"{settled:.2f} s after the restart")

    assert server.stop() == 0
    print(f"{ROUNDS} rounds in {time.monotonic() - started:.1f} s, "
          f"{len(first_seen)} slugs seen")


@pytest.mark.slow
def test_kill_9_during_build_never_leaves_half_a_feed(tmp_path: Path, serve) -> None:
    seeds = tmp_path / "seeds"
    config = make_config(tmp_path)
    output = tmp_path / "public"
    body = "Un paragraphe « assez long » pour que les fichiers pèsent leur poids. " * 20
    for i in range(1500):
        drop(seeds, f"b{i:04d}.txt", seed_text(f"build-{i}", f"Build {i}", body, "Fin."))
    rng = random.Random(SEED)
    print(f"\nCRASH_SEED={SEED}")

    def build() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "feedsvc", "build", "--config",
                                 str(config)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    # Round 0 has no output yet; later rounds overwrite the previous output.
    timed = time.monotonic()
    assert build().wait(timeout=60) == 0
    duration = time.monotonic() - timed
    (output / "feed.atom").unlink()
    (output / "feed.rss").unlink()
    outcomes: list[str] = []
    for round_ in range(12):
        drop(seeds, "b0000.txt", seed_text("build-0", f"Build 0, take {round_}", body))
        before = set(os.listdir(output)) if output.exists() else set()
        process = build()
        if round_ % 2:  # kill as soon as a new temporary output file shows up
            deadline = time.monotonic() + 30
            while not new_temporary_file(output, before):
                if process.poll() is not None or time.monotonic() > deadline:
                    break
            time.sleep(rng.uniform(0, 0.003))
            when = "at the first temporary file"
        else:
            delay = rng.uniform(0, duration)
            time.sleep(delay)
            when = f"at {delay * 1000:.0f} ms"
        process.kill()
        code = process.wait(timeout=10)

        names = sorted(os.listdir(output)) if output.exists() else []
        for name in names:
            if name in ("feed.atom", "feed.rss"):
                root = etree.parse(str(output / name)).getroot()  # whole, well-formed XML
                assert root.tag in ("{http://www.w3.org/2005/Atom}feed", "rss"), name
            elif name in ("feeds.opml", "sitemap.xml"):
                etree.parse(str(output / name))  # whole, well-formed XML
            elif name.startswith("feed-style.") and name.endswith(".css"):
                assert (output / name).read_bytes().rstrip().endswith(b"}")  # whole CSS
            elif name == "feed.json":
                assert json.loads((output / name).read_bytes())["items"]  # whole JSON
            elif name in ("index.html", "404.html"):  # the site's pages (sitebuild.py): whole
                assert (output / name).read_bytes().endswith(b"</html>\n"), name
            elif name == ".feedsvc-files":  # the build's manifest (siteoutput.py), whole
                assert (output / name).read_bytes().endswith(b"\n")
            elif name in ("entries", "assets", "page", "tags") and (output / name).is_dir():
                pass  # the site's other pages, written the same way
            elif name.endswith((".gz", ".br")) and not name.startswith("."):
                # Precompressed copies: whole too (a cut stream fails to decompress).
                data = (output / name).read_bytes()
                plain = gzip.decompress(data) if name.endswith(".gz") else brotli.decompress(data)
                if name.startswith("feed.json"):
                    json.loads(plain)
                elif ".html." in name:
                    assert plain.endswith(b"</html>\n"), name
                elif name.startswith("feed-style."):
                    assert plain.rstrip().endswith(b"}")
                else:
                    etree.fromstring(plain)
            else:
                assert name.startswith((".feed.atom.", ".feed.rss.", ".feed.json.",
                                        ".index.html.", ".404.html.", ".feeds.opml.",
                                        ".sitemap.xml.", ".feed-style.",
                                        "..feedsvc-files.")) and \
                    name.endswith(".tmp"), f"unexpected file in the output: {name}"
        check_state(tmp_path / "state" / "feedsvc.sqlite3")
        leftovers = sum(name.endswith(".tmp") for name in names)
        finished = "finished" if code == 0 else "killed"
        outcomes.append(f"{when}: {finished}, feeds present {[n for n in names if n[0] != '.']}"
                        f", {leftovers} temporary file(s)")

    assert build().wait(timeout=60) == 0
    print(f"\nbuild takes {duration:.2f} s uninterrupted; kill rounds:\n  " +
          "\n  ".join(outcomes))
    server = serve(config)
    for name in ("feed.atom", "feed.rss", "feed.json"):
        status, _, served = server.get(f"/{name}")
        assert status == 200 and served == (output / name).read_bytes(), name
    assert len(feed_entries(server)) == 1500 == len(on_disk(seeds))
    assert server.stop() == 0
