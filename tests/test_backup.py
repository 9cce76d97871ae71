"""`feedsvc backup` while `serve` runs and seeds keep arriving, `feedsvc state check` of the
copy, and the write-ahead log folded into the state by a clean stop. Real processes, real
SQLite files."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import threading
from pathlib import Path

from lxml import etree

from tests.conftest import run_cli, wait_until
from tests.test_bursts import ATOM, drop, feed_entries, seed_text
from tests.test_state_faults import built_site, damage, published_in


def test_backup_while_serving_and_dropping_has_every_entry_published_before_it(
        tmp_path: Path, serve) -> None:
    config, state, _ = built_site(tmp_path, 20)
    seeds = tmp_path / "seeds"
    server = serve(config)
    stop = threading.Event()
    dropped: list[str] = []

    def keep_dropping() -> None:
        n = 0
        while not stop.is_set():
            drop(seeds, f"live-{n:04d}.txt", seed_text(f"live-{n}", f"Live {n}", "Texte."))
            dropped.append(f"live-{n}")
            n += 1
            stop.wait(0.01)

    dropper = threading.Thread(target=keep_dropping)
    dropper.start()
    try:
        wait_until(lambda: len(dropped) > 20 and f"live-{len(dropped) - 20}"
                   in feed_entries(server))
        published_before = set(feed_entries(server)) | set(published_in(state))
        backup = tmp_path / "backup.sqlite3"
        result = run_cli("backup", str(backup), "--config", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    finally:
        stop.set()
        dropper.join()
    copied = published_in(backup)
    assert published_before <= set(copied), published_before - set(copied)
    checked = run_cli("state", "check", str(backup), "--config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(copied)} slugs" in checked.stdout and "sound (schema" in checked.stdout
    # The copy is one file (a rollback journal, not WAL): opened, it makes no -wal or -shm
    # beside it, and nothing half-written is left.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(
        ("backup", ".backup"))) == ["backup.sqlite3"]
    assert server.stop() == 0


def test_backup_refuses_to_replace_a_file_unless_forced(tmp_path: Path) -> None:
    config, _, before = built_site(tmp_path, 3)
    dest = tmp_path / "copy.sqlite3"
    dest.write_bytes(b"yesterday's copy")
    refused = run_cli("backup", str(dest), "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert dest.read_bytes() == b"yesterday's copy"
    assert not list(tmp_path.glob(".copy.sqlite3*"))  # no temporary file left behind
    forced = run_cli("backup", str(dest), "--force", "--config", str(config), cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert published_in(dest) == before
    # `state backup` is the same command.
    again = run_cli("state", "backup", str(dest), "--config", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr


def test_state_check_finds_a_damaged_copy_and_changes_nothing(tmp_path: Path) -> None:
    config, _, _ = built_site(tmp_path, 200)
    copy = tmp_path / "copy.sqlite3"
    assert run_cli("backup", str(copy), "--config", str(config), cwd=tmp_path).returncode == 0
    damage(copy, "middle")
    damaged = copy.read_bytes()
    result = run_cli("state", "check", str(copy), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "not sound" in result.stdout and "Traceback" not in result.stderr
    assert copy.read_bytes() == damaged
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == [
        "copy.sqlite3"]  # opened immutable: no -wal, no -shm made beside it
    not_state = tmp_path / "notes.sqlite3"
    db = sqlite3.connect(not_state)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    other = run_cli("state", "check", str(not_state), "--config", str(config), cwd=tmp_path)
    assert other.returncode == 1 and "no table stamps" in other.stdout


def test_a_clean_stop_folds_the_write_ahead_log_into_the_state(tmp_path: Path, serve) -> None:
    """After SIGTERM the .sqlite3 file alone is the whole state: its -wal is empty or gone, and
    a copy of the file without it (what `cp feedsvc.sqlite3` makes) has every entry."""
    config, state, before = built_site(tmp_path, 10)
    server = serve(config)
    seeds = tmp_path / "seeds"
    for n in range(5):
        drop(seeds, f"new-{n}.txt", seed_text(f"new-{n}", f"New {n}", "Texte."))
    wait_until(lambda: {f"new-{n}" for n in range(5)} <= set(feed_entries(server)))
    # The site's pages, sitemap and archive read the state through connections of their own,
    # closed after the pipeline's: the last one to close is a reader, which cannot fold the
    # log in (SQLite checkpoints on the last close only when that connection can write).
    for path in ("/tags/", "/page/1", "/sitemap.xml", "/feeds.opml"):
        server.get(path)
    wal = state.with_name(state.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the new entries wait in the log
    assert server.stop(signal.SIGTERM) == 0
    assert not wal.exists() or wal.stat().st_size == 0
    alone = tmp_path / "alone.sqlite3"
    shutil.copyfile(state, alone)
    assert set(published_in(alone)) == set(before) | {f"new-{n}" for n in range(5)}


def atom_ids(public: Path) -> dict[str, str]:
    """entry link -> entry id, from a built feed.atom."""
    root = etree.fromstring((public / "feed.atom").read_bytes())
    return {entry.findtext(f"{ATOM}id"): entry.find(f"{ATOM}link").get("href")
            for entry in root.iter(f"{ATOM}entry")}


def moved_site(old: Path, new: Path, base_url: str, state: Path | None,
               feed_id: str | None = None) -> Path:
    """The old site's seeds (with their mtimes) under a new base_url, with `state` restored
    (or none), built; returns the new output folder."""
    shutil.copytree(old / "seeds", new / "seeds")
    text = (old / "config.toml").read_text("utf-8")
    old_base = re.search(r'base_url = "([^"]+)"', text).group(1)
    text = text.replace(old_base, base_url)
    if feed_id is not None:
        text = text.replace("[feed]\n", f'[feed]\nid = "{feed_id}"\n')
    (new / "config.toml").write_text(text, "utf-8")
    if state is not None:
        (new / "state").mkdir()
        shutil.copyfile(state, new / "state" / "feedsvc.sqlite3")
    result = run_cli("build", "--config", str(new / "config.toml"), cwd=new)
    assert result.returncode == 0, result.stderr
    return new / "public"


def test_moving_to_a_new_domain_keeps_ids_with_the_state_or_a_pinned_feed_id(
        tmp_path: Path) -> None:
    """README's runbook: ids come from the feed id kept in the state, not from base_url."""
    old = tmp_path / "old"
    old.mkdir()
    config, _, _ = built_site(old, 5)
    before = atom_ids(old / "public")
    backup = tmp_path / "backup.sqlite3"
    assert run_cli("backup", str(backup), "--config", str(config), cwd=old).returncode == 0
    checked = run_cli("state", "check", str(backup), "--config", str(config), cwd=old)
    feed_id = re.search(r"feed id (urn:uuid:[0-9a-f-]+);", checked.stdout).group(1)

    (tmp_path / "restored").mkdir()
    restored = atom_ids(moved_site(old, tmp_path / "restored", "https://new.example/", backup))
    assert restored.keys() == before.keys()  # the same ids
    assert all(link.startswith("https://new.example/entries/") for link in restored.values())

    (tmp_path / "lost").mkdir()
    lost = atom_ids(moved_site(old, tmp_path / "lost", "https://new.example/", None))
    assert len(lost) == len(before) and not lost.keys() & before.keys()  # all new to readers

    (tmp_path / "pinned").mkdir()
    pinned = atom_ids(moved_site(old, tmp_path / "pinned", "https://new.example/", None,
                                 feed_id=feed_id))
    assert pinned.keys() == before.keys()
