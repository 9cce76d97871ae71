"""Any name the file system can hold, end to end (issue 9, items 3, 5 and 8): real files made
with bytes paths, the real CLI in a subprocess, real HTTP, feedparser as the reader.

A name that is not UTF-8 is refused with the name escaped; one with control characters is
published and logged escaped; nothing stops publishing, /healthz stays valid JSON, every log
record is one line, no ESC byte reaches the terminal, and `serve` restarts.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path

import feedparser

from .conftest import free_port, run_cli, seed, wait_until, write_config, write_seed

#: The start of every log record `serve` writes: a record is one line.
RECORD = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")

LATIN1 = b"caf\xe9.txt"  # from a Latin-1 archive
FORGED = (b"x.txt\n2026-11-29 00:00:00,000 INFO published FORGED\nz.txt")
ESCAPES = b"esc\x1b[2J\x1b]0;owned\x07.txt"  # clears the screen, retitles the terminal
BIDI = "evil\u202etxt.md".encode()  # shows as "evildm.txt"
LONG = b"l" * 251 + b".txt"  # NAME_MAX: 255 bytes
NO_SLUG = "¡¿!.txt".encode()  # line 1 is no slug and the name makes none
UNDECODABLE = b"\xff\xfe\x80.md"  # no encoding makes sense of it


def make(seeds: Path, name: bytes, data: bytes) -> None:
    """Create a file by its bytes name, as a shell or an unzip would."""
    fd = os.open(os.fsencode(seeds) + b"/" + name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def health(server) -> dict:
    status, _, body = server.get("/healthz")
    assert status in (200, 503)
    return json.loads(body.decode("utf-8"))  # strict: valid UTF-8, valid JSON


def atom_slugs(server) -> set[str]:
    feed = feedparser.parse(server.get("/feed.atom")[2])
    assert feed.bozo == 0, feed.get("bozo_exception")
    return {entry.link.rsplit("/", 1)[1] for entry in feed.entries}


def assert_one_line_records(raw: bytes) -> None:
    """Every line of the log starts a record (tracebacks aside: there must be none), and no
    ESC byte or other control character reaches the terminal."""
    assert b"Traceback" not in raw, raw.decode("utf-8", "replace")
    assert b"\x1b" not in raw and b"\x07" not in raw
    for line in raw.splitlines():
        assert RECORD.match(line), line
        assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line), line
        line.decode("utf-8")  # strictly: nothing undecodable was written
    assert not any(line.startswith(b"2026-11-29 00:00:00,000") for line in raw.splitlines())


def test_any_name_is_published_or_refused_and_nothing_stops(tmp_path: Path, serve) -> None:
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    write_seed(seeds, "first.txt", seed("first", "Premier", "Avant les noms étranges."))
    server = serve(config_path)
    assert atom_slugs(server) == {"first"}

    make(seeds, LATIN1, "Café\n\nUn nom en Latin-1.\n".encode())
    make(seeds, UNDECODABLE, b"undecodable\nIndechiffrable\n\nCorps.\n")
    make(seeds, FORGED, b"forged\nForged\n\nBody.\n")
    make(seeds, ESCAPES, b"escapes\nEscapes\n\nBody.\n")
    make(seeds, BIDI, b"bidi\nBidi\n\nBody.\n")
    make(seeds, LONG, b"Long nom\n\nLe nom fait 255 octets.\n")
    make(seeds, NO_SLUG, b"Pas de slug\n\nNi la ligne 1 ni le nom.\n")
    # A canary dropped after them is published within seconds.
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Toujours vivant."))
    wait_until(lambda: "canary" in atom_slugs(server), timeout=5)
    expected = {"first", "canary", "forged", "escapes", "bidi", "l" * 128}
    wait_until(lambda: atom_slugs(server) == expected, timeout=5)

    report = health(server)
    assert report["status"] == "ok" and report["pipeline"] == "ok"
    rejected = {r["path"]: r["message"] for r in report["rejected"]}
    assert set(rejected) == {f"{seeds}/caf\\xe9.txt", f"{seeds}/\\xff\\xfe\\x80.md",
                             f"{seeds}/{NO_SLUG.decode()}"}
    latin1 = rejected[f"{seeds}/caf\\xe9.txt"]
    assert latin1.startswith("file name is not valid UTF-8; rename it")
    assert "mv $'caf\\xe9.txt' 'café.txt'" in latin1  # what the user runs to fix it
    assert rejected[f"{seeds}/\\xff\\xfe\\x80.md"].startswith("file name is not valid UTF-8")
    assert "slug" in rejected[f"{seeds}/{NO_SLUG.decode()}"]
    # Only the published names reached the state, as they are.
    with sqlite3.connect(config_path.parent / "state" / "feedsvc.sqlite3") as db:
        sources = {row[0] for row in db.execute("SELECT source FROM stamps")}
    assert sources == {"first.txt", "canary.txt",
                       *(name.decode() for name in (FORGED, ESCAPES, BIDI, LONG))}

    # Deleting the file clears everything it caused.
    os.unlink(os.fsencode(seeds) + b"/" + LATIN1)
    wait_until(lambda: len(health(server)["rejected"]) == 2, timeout=5)
    write_seed(seeds, "canary2.txt", seed("canary-2", "Canari 2", "Après la suppression."))
    wait_until(lambda: "canary-2" in atom_slugs(server), timeout=5)
    assert health(server)["status"] == "ok"
    raw = server.stderr_path.read_bytes()
    assert server.stop() == 0
    assert_one_line_records(raw)
    text = raw.decode()
    # watchfiles cannot decode such a name: that costs a rescan, not the watch.
    assert " ERROR " not in text, text
    assert "x.txt\\n2026-11-29 00:00:00,000 INFO published FORGED\\nz.txt" in text
    assert "esc\\x1b[2J\\x1b]0;owned\\x07.txt" in text and "evil\\u202etxt.md" in text

    # A restart (what systemd does) starts, with the names still there, and publishes.
    make(seeds, LATIN1, "Café\n\nDe retour.\n".encode())
    again = serve(config_path)
    assert atom_slugs(again) == expected | {"canary-2"}
    assert len(health(again)["rejected"]) == 3
    write_seed(seeds, "canary3.txt", seed("canary-3", "Canari 3", "Après le redémarrage."))
    wait_until(lambda: "canary-3" in atom_slugs(again), timeout=5)
    raw = again.stderr_path.read_bytes()
    assert again.stop() == 0
    assert_one_line_records(raw)


def test_build_and_check_take_any_name(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    write_seed(seeds, "first.txt", seed("first", "Premier", "Corps."))
    for name in (LATIN1, UNDECODABLE, FORGED, ESCAPES, BIDI):
        make(seeds, name, b"Headline \x1b[31mred\n\nBody.\n")

    built = run_cli("build", "--config", str(config_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert_one_line_records(built.stderr.encode())
    feed = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes())
    assert len(feed.entries) == 4  # first, forged, escapes, bidi

    checked = run_cli("check", "--config", str(config_path), cwd=tmp_path)
    assert checked.returncode == 1  # two names rejected
    out = checked.stdout
    assert "\x1b" not in out and "\udce9" not in out
    lines = out.splitlines()
    # The control characters removed from three seeds' text are warnings, listed too.
    assert lines[-1] == ("6 seeds: 4 publishable now, 0 scheduled, 0 drafts, 2 rejected, "
                         "3 warnings")
    assert len(lines) == 6  # each rejection and each warning one line
    assert all(": warning: removed " in line for line in lines[2:5])
    assert lines[0].startswith(f"{seeds}/\\xff\\xfe\\x80.md:1: file name is not valid UTF-8")
    assert lines[1].startswith(f"{seeds}/caf\\xe9.txt:1: file name is not valid UTF-8")
    assert_one_line_records(checked.stderr.encode())


def test_a_seed_that_breaks_date_arithmetic_stops_nothing(tmp_path: Path, serve) -> None:
    """The issue's `updated: 9999-12-31T23:59:59Z` then an ordinary edit: whatever it gives
    (rejected, or a date kept in range), the file is named, the others publish, a restart
    starts and `build` and `check` answer."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    write_seed(seeds, "first.txt", seed("first", "Premier", "Corps."))
    write_seed(seeds, "end.txt", "---\ntitle: Fin\nupdated: 9999-12-31T23:59:59Z\n---\n\nCorps.\n")
    server = serve(config_path)
    wait_until(lambda: "first" in atom_slugs(server), timeout=5)
    write_seed(seeds, "end.txt", "---\ntitle: Fin\n---\n\nCorps modifié.\n")
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Toujours vivant."))
    wait_until(lambda: "canary" in atom_slugs(server), timeout=5)
    write_seed(seeds, "first.txt", seed("first", "Premier modifié", "Corps."))
    wait_until(lambda: any(e.title == "Premier modifié" for e in
                           feedparser.parse(server.get("/feed.atom")[2]).entries), timeout=5)
    report = health(server)
    assert report["pipeline"] == "ok"
    named = [r for r in report["rejected"] if r["path"] == str(seeds / "end.txt")]
    assert named or "end" in atom_slugs(server)
    assert server.stop() == 0

    again = serve(config_path)  # starts: no traceback before listening
    assert {"first", "canary"} <= atom_slugs(again)
    again.stop()
    built = run_cli("build", "--config", str(config_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "Traceback" not in built.stderr
    checked = run_cli("check", "--config", str(config_path), cwd=tmp_path)
    assert checked.returncode in (0, 1) and "Traceback" not in checked.stderr


def test_a_batch_that_fails_is_said_and_retried_and_serve_starts(tmp_path: Path, serve) -> None:
    """A fault no per-file isolation can absorb (here a state file with 8 KiB of garbage in
    its middle, the issue's item 9): `serve` still starts instead of exiting with a traceback
    (a crash loop under systemd), /healthz is no longer `ok` and says why, and the failing
    batch is retried with a growing delay, its traceback logged once."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    for n in range(200):
        write_seed(seeds, f"s{n}.txt", seed(f"s-{n}", f"Titre {n}", "Corps. " * 50))
    built = run_cli("build", "--config", str(config_path), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    state = tmp_path / "state" / "feedsvc.sqlite3"
    size = state.stat().st_size
    with state.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))

    server = serve(config_path)  # answers /healthz: it started
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Toujours là."))
    report = health(server)
    assert report["status"] != "ok"
    assert report["pipeline"] != "ok" or report["state"] != "ok"
    time.sleep(3.5)  # retries at 1 s, then 2 s…
    assert server.process.poll() is None
    log = server.log()
    assert log.count("Traceback") <= 1, log
    assert server.stop() == 0


def test_escape_writes_every_unsafe_character_visibly() -> None:
    from feedsvc.logtext import escape

    assert escape("plain é « » ’ \u00a0 text") == "plain é « » ’ \u00a0 text"
    assert escape("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert escape("\x1b[2J\x07\x00\x7f\x85") == "\\x1b[2J\\x07\\x00\\x7f\\x85"
    assert escape(os.fsdecode(b"caf\xe9")) == "caf\\xe9"  # the byte, not the surrogate
    assert escape("\u2028\u2029\u202e\u2066") == "\\u2028\\u2029\\u202e\\u2066"
    assert escape("\ud800") == "\\ud800"
    assert escape(escape("x\ny")) == escape("x\ny")  # idempotent: safe to apply twice


def test_a_seeds_folder_that_cannot_be_listed_is_said_in_one_line(tmp_path: Path) -> None:
    """A link loop (or EIO from a failing share) is a folder that cannot be read, like a
    missing one: one line, not an OSError traceback."""
    config_path = write_config(tmp_path, port=free_port())
    seeds = tmp_path / "seeds"
    seeds.rmdir()
    seeds.symlink_to("seeds")  # ELOOP
    for command in ("check", "build"):
        result = run_cli(command, "--config", str(config_path), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"seeds folder {seeds} is missing or unreadable" in result.stderr
