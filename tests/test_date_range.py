"""Dates at the ends of the calendar (issue 9, item 4), end to end with `feedsvc serve`.

A front-matter date feedsvc cannot compute with is a rejection with its line, never an error
on some later batch; a file's mtime, whatever it is, is clamped where it enters; a state that
already holds such a date (written before the range was enforced) never stops publishing.
"""

from __future__ import annotations

import calendar
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import feedparser

from .conftest import ServeProcess, run_cli, seed, wait_until, write_seed

END_OF_TIME = "---\nupdated: 9999-12-31T23:59:59Z\n---\n" + seed(
    "end-of-time", "La fin des temps", "Le dernier jour du calendrier.")
BEFORE_1000 = "---\ndate: 0999-12-31\n---\n" + seed("too-early", "Trop tôt", "An 999.")
#: ext4 keeps mtimes from 1901-12-13 to 2446-05-10: both ends, as broken archives leave them.
EXT4_MIN_MTIME, EXT4_MAX_MTIME = -(2 ** 31), 15032385535


def _health(server: ServeProcess) -> dict:
    return json.loads(server.get("/healthz")[2])


def _entries(server: ServeProcess) -> dict[str, feedparser.FeedParserDict]:
    feed = feedparser.parse(server.get("/feed.atom")[2])
    return {entry.link.rsplit("/", 1)[1]: entry for entry in feed.entries}


def _rejected(server: ServeProcess) -> dict[str, tuple[int, str]]:
    return {Path(e["path"]).name: (e["line"], e["message"]) for e in _health(server)["rejected"]}


def test_dates_at_the_end_of_the_calendar_are_rejected_with_their_line(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    seeds = site / "seeds"
    write_seed(seeds, "end.txt", END_OF_TIME)
    write_seed(seeds, "early.txt", BEFORE_1000)
    old = write_seed(seeds, "old.txt", seed("old-mtime", "Vieux fichier", "De 1901."))
    os.utime(old, (EXT4_MIN_MTIME, EXT4_MIN_MTIME))
    late = write_seed(seeds, "late.txt", seed("late-mtime", "Fichier du futur", "De 2446."))
    os.utime(late, (EXT4_MAX_MTIME, EXT4_MAX_MTIME))
    server = serve(site / "config.toml")
    rejected = _rejected(server)
    assert rejected["end.txt"][0] == 2 and "is out of range" in rejected["end.txt"][1]
    assert rejected["early.txt"][0] == 2 and "is out of range" in rejected["early.txt"][1]
    entries = _entries(server)
    # A file's mtime before 1970 is taken as 1970; one in the future as the clock.
    assert calendar.timegm(entries["old-mtime"].published_parsed) == 0
    assert abs(calendar.timegm(entries["late-mtime"].published_parsed) - time.time()) < 60

    # An ordinary edit: the author drops the `updated:` line. Before the range, the stamp of
    # 9999-12-31T23:59:59 plus one second was year 10000, and every batch failed from then on.
    write_seed(seeds, "end.txt", seed("end-of-time", "La fin des temps", "Corrigé."))
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Toujours publié."))
    wait_until(lambda: {"canary", "end-of-time"} <= _entries(server).keys(), timeout=10)
    assert "end.txt" not in _rejected(server)
    assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()

    # Restart works, and `check` names the file and the line.
    restarted = serve(site / "config.toml")
    assert {"canary", "end-of-time", "old-mtime", "late-mtime"} <= _entries(restarted).keys()
    assert restarted.stop() == 0
    result = run_cli("check", "--config", str(site / "config.toml"), cwd=site)
    assert result.returncode == 1
    assert f"{seeds / 'early.txt'}:2: date: '0999-12-31' is out of range" in result.stdout


def test_a_state_holding_a_date_past_the_range_keeps_publishing(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """A state written before the range was enforced may hold `updated` 9999-12-31T23:59:59:
    an edit then computes a second past it. Shown as the end of the range, never a crash."""
    seeds = site / "seeds"
    write_seed(seeds, "end.txt", seed("end-of-time", "La fin des temps", "Premier jet."))
    server = serve(site / "config.toml")
    wait_until(lambda: "end-of-time" in _entries(server))
    assert server.stop() == 0
    with sqlite3.connect(site / "state" / "feedsvc.sqlite3") as db:
        # 9999-12-31T23:59:59Z, in microseconds (schema 3).
        db.execute("UPDATE stamps SET updated = 253402300799 * 1000000 "
                   "WHERE slug = 'end-of-time'")
    db.close()

    server = serve(site / "config.toml")
    write_seed(seeds, "end.txt", seed("end-of-time", "La fin des temps", "Second jet."))
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Toujours publié."))
    wait_until(lambda: "canary" in _entries(server), timeout=10)
    wait_until(lambda: "Second jet" in server.get("/feed.atom")[2].decode())
    assert _entries(server)["end-of-time"].updated.startswith("9998-12-31T23:59:59")
    assert _health(server)["status"] == "ok"
    assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()
