"""Variants of issue 9's classes found by a hostile run against the integrated build: each is
provoked for real (real files, real links, a real state folder, the CLI in a subprocess, real
HTTP), and each fails without its fix.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from .conftest import run_cli, seed, wait_until, write_config, write_seed


def _health(server) -> dict:
    status, _, body = server.get("/healthz")
    assert status in (200, 503), (status, body[:200])
    return json.loads(body.decode("utf-8"))  # strict: valid UTF-8 JSON


def test_a_link_whose_target_is_not_utf8_keeps_healthz_answering(site: Path, serve) -> None:
    """A link to outside (or to a link) whose target name is not UTF-8: its rejection names the
    target, and /healthz answered 500 on every request (the JSON could not be encoded)."""
    seeds = site / "seeds"
    os.symlink(b"/tmp/caf\xe9-outside", os.fsencode(seeds) + b"/outside.txt")
    os.symlink(b"caf\xe9-link", os.fsencode(seeds) + b"/chain.txt")
    os.symlink(b"elsewhere.txt", os.fsencode(seeds) + b"/caf\xe9-link")
    server = serve(site / "config.toml")
    health = _health(server)
    messages = {Path(r["path"]).name: r["message"] for r in health["rejected"]}
    assert {"outside.txt", "chain.txt"} <= messages.keys(), health
    assert "\\xe9" in messages["outside.txt"], messages
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Publié."))
    wait_until(lambda: _health(server)["entries_published"] == 1)
    assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()


def test_a_config_in_a_folder_whose_name_is_not_utf8_is_refused_in_one_line(
        tmp_path: Path) -> None:
    """Relative paths resolve against the config's folder: one whose name is not UTF-8 could
    not be watched, nor put in SQLite's URI. Refused at once (exit 2), the name escaped."""
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(folder)
    home = Path(os.fsdecode(folder))
    config = write_config(home, port=1)
    for command in (("check",), ("build",), ("state", "backup", str(tmp_path / "copy"))):
        result = run_cli(*command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "paths.seeds" in result.stderr and "caf\\xe9" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_state_folder_replaced_by_a_file_is_said_and_the_state_kept(
        site: Path, serve) -> None:
    """`rm -r state && echo x > state`: the state's path now goes through a file (ENOTDIR).
    That is the state gone, not "cannot tell": said in the log and on /healthz, the open
    state kept, and written back once the folder can be made again."""
    seeds = site / "seeds"
    write_seed(seeds, "first.txt", seed("first", "Premier", "Texte."))
    server = serve(site / "config.toml")
    wait_until(lambda: _health(server)["entries_published"] == 1)
    state_dir = site / "state"
    published = dict(sqlite3.connect(state_dir / "feedsvc.sqlite3").execute(
        "SELECT slug, published FROM stamps").fetchall())
    shutil.rmtree(state_dir)
    state_dir.write_text("x")
    write_seed(seeds, "canary.txt", seed("canary", "Canari", "Publié."))
    wait_until(lambda: _health(server)["entries_published"] == 2)
    health = wait_until(lambda: (h := _health(server))["status"] != "ok" and h, timeout=10)
    assert health["state"] != "ok", health
    assert "the state file was deleted" in server.log()
    state_dir.unlink()  # the operator notices and removes the file
    wait_until(lambda: (state_dir / "feedsvc.sqlite3").exists() and
               _health(server)["status"] == "ok", timeout=15)
    assert server.stop() == 0
    with sqlite3.connect(state_dir / "feedsvc.sqlite3") as db:
        restored = dict(db.execute("SELECT slug, published FROM stamps").fetchall())
    assert restored["first"] == published["first"] and "canary" in restored
    assert "Traceback" not in server.log(), server.log()


def test_state_backup_never_replaces_the_state_itself_nor_a_device(site: Path) -> None:
    """A backup is written by renaming a temporary file over its target: onto the state's own
    path it replaced the live state, onto /dev/full it replaced the device node."""
    write_seed(site / "seeds", "first.txt", seed("first", "Premier", "Texte."))
    assert run_cli("build", "--config", str(site / "config.toml"), cwd=site).returncode == 0
    state = site / "state" / "feedsvc.sqlite3"
    before = state.read_bytes()
    fifo = site / "fifo"
    os.mkfifo(fifo)
    for target in (state, state.with_name(state.name + "-wal"), site / "state" / "." /
                   "feedsvc.sqlite3", fifo, site / "seeds"):
        result = run_cli("state", "backup", str(target), "--config", str(site / "config.toml"),
                         cwd=site)
        assert result.returncode == 1, (target, result.stderr)
        assert "Traceback" not in result.stderr
    assert state.read_bytes() == before
    assert fifo.exists() and not fifo.is_file() and (site / "seeds").is_dir()
    ok = run_cli("state", "backup", str(site / "copy.sqlite3"), "--config",
                 str(site / "config.toml"), cwd=site)
    assert ok.returncode == 0, ok.stderr


def test_a_long_tail_page_changed_by_its_date_alone_moves_its_last_modified(
        tmp_path: Path, serve) -> None:
    """An entry no feed shows (past max_entries) has its page made from the state on request.
    Changing only its `date:` changes the page (it shows the date) but not its `updated`: the
    page stayed cached with the old bytes, and after a restart changed its ETag but kept its
    Last-Modified, so If-Modified-Since got 304 for changed content."""
    from .conftest import free_port

    config = write_config(tmp_path, port=free_port(), max_entries=1)
    seeds = tmp_path / "seeds"

    def dated(day: str) -> str:
        return f"---\ndate: 2020-01-{day} 10:00\n---\nold\nVieux billet\n\nTexte."

    write_seed(seeds, "old.txt", dated("02"))
    write_seed(seeds, "new.txt", seed("new", "Nouveau", "Texte."))
    server = serve(config)
    wait_until(lambda: server.get("/entries/old")[0] == 200)
    _, first, body = server.get("/entries/old")
    assert b"2020-01-02" in body, body[:300]
    write_seed(seeds, "old.txt", dated("01"))  # earlier: `updated` does not move
    changed = wait_until(lambda: (r := server.get("/entries/old"))[1]["ETag"] != first["ETag"]
                         and r, timeout=10)
    _, headers, _ = changed
    assert headers["Last-Modified"] != first["Last-Modified"], (first, headers, server.log())
    from email.utils import parsedate_to_datetime
    assert (parsedate_to_datetime(headers["Last-Modified"])
            > parsedate_to_datetime(first["Last-Modified"]))
    status, _, _ = server.get("/entries/old", {"If-Modified-Since": first["Last-Modified"]})
    assert status == 200
    status, _, _ = server.get("/entries/old", {"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    assert server.stop() == 0
    again = serve(config)
    _, after, _ = again.get("/entries/old")
    assert (after["ETag"], after["Last-Modified"]) == (headers["ETag"],
                                                        headers["Last-Modified"])
    assert again.stop() == 0


def test_a_seed_deleted_while_stopped_is_removed_everywhere_at_restart(
        site: Path, serve) -> None:
    """A seed deleted while feedsvc was stopped left the feeds at restart, but its state row
    stayed published: its page (made from the state) and its tag's feed went on showing it,
    and nothing said `removed`."""
    seeds = site / "seeds"
    write_seed(seeds, "gone.txt", "---\ntags: [Astronomie]\n---\ngone\nParti\n\nTexte.")
    write_seed(seeds, "kept.txt", seed("kept", "Gardé", "Texte."))
    server = serve(site / "config.toml")
    wait_until(lambda: b"<id>" in server.get("/tags/astronomie.atom")[2])
    assert server.get("/entries/gone")[0] == 200
    assert server.stop() == 0
    (seeds / "gone.txt").unlink()
    again = serve(site / "config.toml")
    assert again.get("/entries/gone")[0] == 410  # deleted while stopped: Gone all the same
    assert again.get("/entries/kept")[0] == 200
    status, _, body = again.get("/tags/astronomie.atom")
    assert status != 200 or b"Parti" not in body, body[:400]
    assert b"Parti" not in again.get("/feed.atom")[2]
    assert "removed gone" in again.log()
    assert again.stop() == 0
    with sqlite3.connect(site / "state" / "feedsvc.sqlite3") as db:
        assert db.execute("SELECT live FROM stamps WHERE slug = 'gone'").fetchone() == (0,)
    db.close()
    # And it comes back as the same entry when its file does.
    write_seed(seeds, "gone.txt", "---\ntags: [Astronomie]\n---\ngone\nParti\n\nTexte.")
    third = serve(site / "config.toml")
    assert third.get("/entries/gone")[0] == 200
    assert third.stop() == 0
