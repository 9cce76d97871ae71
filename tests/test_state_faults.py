"""The state file goes bad under a running service: corrupted (garbage written into it, its
header overwritten, truncated) or deleted. feedsvc says so, keeps publishing, never writes
into a damaged file, and `feedsvc state repair` / writing the open state back to its path
keep every date that can still be read.

Every state here is made by a real `feedsvc build` or `serve` over real seeds, damaged with
real bytes, and served by a real `feedsvc serve` process.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from feedsvc.model import Stamp
from feedsvc.state import store as store_module
from feedsvc.state.store import Store, repair_state

from .conftest import run_cli, wait_until
from .test_bursts import drop, feed_entries, health, make_config, seed_text

#: Waits for what the service does by itself (a batch, the 5 s state check).
SOON_S = 15


# -- helpers ---------------------------------------------------------------------------------

def built_site(site: Path, count: int) -> tuple[Path, Path, dict[str, int]]:
    """A config, `count` seeds and a state written by a real `feedsvc build`; returns the
    config, the state and slug → published as the state holds it."""
    config = make_config(site)
    seeds = site / "seeds"
    rng = random.Random(count)
    for i in range(count):
        drop(seeds, f"post-{i:03d}.txt",
             seed_text(f"post-{i}", f"Post {i}", "Un paragraphe « assez » long. " * 60))
        stamp_time = 1_700_000_000 + rng.randrange(10_000_000)  # distinct old mtimes
        os.utime(seeds / f"post-{i:03d}.txt", (stamp_time, stamp_time))
    result = run_cli("build", "--config", str(config), cwd=site)
    assert result.returncode == 0, result.stderr
    state = site / "state" / "feedsvc.sqlite3"
    return config, state, published_in(state)


def published_in(state: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT slug, published FROM stamps").fetchall())
    finally:
        db.close()


def damage(state: Path, how: str) -> bytes:
    """Damage a state file as a failing disk or a careless operator would; return its bytes."""
    size = state.stat().st_size
    with state.open("r+b") as f:
        if how == "middle":  # 8 KiB of garbage in the middle
            f.seek(size // 2 - 4096)
            f.write(random.Random(9).randbytes(8192))
        elif how == "header":  # the first page, with the header and the list of tables
            f.write(random.Random(10).randbytes(8192))
        elif how == "truncated":
            f.truncate(size // 2)
        else:
            raise AssertionError(how)
    return state.read_bytes()


def no_traceback(log: str) -> None:
    assert "Traceback" not in log, log[-3000:]


# -- salvage and repair on real damaged states -----------------------------------------------

@pytest.mark.parametrize("how", ["middle", "header", "truncated"])
def test_repair_keeps_every_row_that_can_be_read(tmp_path: Path, how: str) -> None:
    config, state, before = built_site(tmp_path, 200)
    damaged = damage(state, how)
    os.chmod(state, 0o640)
    if os.geteuid() == 0:  # as the service's own user, repaired by root
        os.chown(state, 4321, 4321)
    result = run_cli("state", "repair", "--config", str(config), cwd=tmp_path)
    print(f"\nstate repair after damage '{how}':\n{result.stdout}")
    assert result.returncode == 0, result.stderr
    assert f"{state}: repaired" in result.stdout
    kept = [p for p in state.parent.iterdir() if ".corrupt-" in p.name]
    assert any(p.name.startswith("feedsvc.sqlite3.corrupt-") and p.read_bytes() == damaged
               for p in kept), kept  # the damaged file itself, as it was
    st = state.stat()
    assert st.st_mode & 0o777 == 0o640
    assert os.geteuid() != 0 or (st.st_uid, st.st_gid) == (4321, 4321)
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA user_version").fetchone()[0] >= 2
    db.close()
    after = published_in(state)
    # Every row saved has its original date; what is lost is said.
    assert all(before[slug] == published for slug, published in after.items())
    if how == "middle":
        assert 180 <= len(after) < 200
        lost = sorted(set(before) - set(after))
        assert f"{200 - len(after)} rows lost" in result.stdout
        assert all(slug in result.stdout for slug in lost[:5])
    elif how == "truncated":
        assert 40 <= len(after) < 200
    else:
        assert after == {}
        assert "nothing could be saved" in result.stdout
    # A second run finds it sound and changes nothing.
    again = run_cli("state", "repair", "--config", str(config), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to repair" in again.stdout


def test_repair_is_refused_while_the_state_is_in_use(tmp_path: Path) -> None:
    config, state, _ = built_site(tmp_path, 5)
    damaged = damage(state, "middle")
    store = Store.open(state)  # as serve holds it
    try:
        result = run_cli("state", "repair", "--config", str(config), cwd=tmp_path)
    finally:
        store.close()
    assert result.returncode == 1
    assert "in use by a running feedsvc" in result.stderr and "Traceback" not in result.stderr
    assert state.read_bytes() == damaged
    assert repair_state(state)[0] is not None  # and once it is stopped, it works


def test_a_corrupt_state_found_by_a_query_is_salvaged_and_never_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage in a state too large to be checked whole at open is found by the first query
    that reaches it: that query is answered from what can be read, and nothing is written to
    the file."""
    _, state, before = built_site(tmp_path, 200)
    damage(state, "middle")
    monkeypatch.setattr(store_module, "QUICK_CHECK_MAX_BYTES", 0)  # as for a large state
    store = Store.open(state)
    assert store.writable  # nothing seen yet
    stamps = store.stamps_of(sorted(before))
    # From here on, the damaged file is left as it is (the open wrote the schema version into
    # the write-ahead log, which closing the damaged connection merged).
    written = state.read_bytes()
    assert store.corrupt and "feedsvc state repair" in str(store.problem)
    assert 180 <= len(stamps) < 200
    assert all(stamp.published == before[slug] for slug, stamp in stamps.items())
    with pytest.raises(Exception, match="corrupt"):
        store.save_stamps([Stamp("new", 1, 1, "h", "new.txt")], {})
    store.close()
    assert state.read_bytes() == written
    assert not state.with_name(state.name + "-wal").exists()
    report, _ = repair_state(state)
    assert report is not None and "new" not in published_in(state)


def test_build_and_check_on_a_corrupt_state_say_so_without_a_traceback(
        tmp_path: Path) -> None:
    config, state, _ = built_site(tmp_path, 200)
    damaged = damage(state, "middle")
    build = run_cli("build", "--config", str(config), cwd=tmp_path)
    assert build.returncode == 1
    assert "corrupt" in build.stderr and "feedsvc state repair" in build.stderr
    no_traceback(build.stderr)
    check = run_cli("check", "--config", str(config), cwd=tmp_path)
    assert check.returncode == 0, check.stderr  # the seeds are fine
    no_traceback(check.stderr)
    assert state.read_bytes() == damaged


# -- serve on a corrupt state ----------------------------------------------------------------

@pytest.mark.parametrize(("count", "how"), [(5, "middle"), (200, "middle"), (200, "header"),
                                            (200, "truncated")])
def test_serve_on_a_corrupt_state_publishes_says_so_and_repair_brings_it_back(
        tmp_path: Path, serve, count: int, how: str) -> None:
    config, state, before = built_site(tmp_path, count)
    damaged = damage(state, how)
    seeds = tmp_path / "seeds"

    server = serve(config)  # starts: a damaged state never stops the service
    status = health(server)
    print(f"\n/healthz on a state damaged '{how}' ({count} seeds): {status['state']}")
    assert status["status"] == "degraded"
    assert "corrupt" in status["state"] and "feedsvc state repair" in status["state"]
    assert status["entries_published"] == count
    drop(seeds, "canary.txt", seed_text("canary", "Canary", "Published all the same."))
    wait_until(lambda: "canary" in feed_entries(server), timeout=SOON_S)
    served = feed_entries(server)
    assert set(served) == {*before, "canary"}
    # Kept in memory, not in the damaged file (/healthz is told once the batch is reported,
    # a moment after its snapshot is served).
    wait_until(lambda: health(server)["unsaved_changes"] >= 1, timeout=SOON_S)
    assert state.read_bytes() == damaged
    log = server.log()
    no_traceback(log)
    assert log.count("corrupt:") == 1, log  # said once, plainly
    assert server.stop() == 0

    repaired = run_cli("state", "repair", "--config", str(config), cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    saved = published_in(state)
    server = serve(config)
    assert health(server)["status"] == "ok"
    drop(seeds, "canary-2.txt", seed_text("canary-2", "Canary 2", "After the repair."))
    wait_until(lambda: "canary-2" in feed_entries(server), timeout=SOON_S)
    entries = feed_entries(server)
    assert set(entries) == {*before, "canary", "canary-2"}
    for slug in saved:  # the dates the state still held are the ones published
        assert entries[slug].published == served[slug].published
    no_traceback(server.log())


# -- the state deleted while serving ---------------------------------------------------------

@pytest.mark.parametrize("what", ["files", "folder"])
def test_a_state_deleted_while_serving_is_written_back_with_its_dates(
        tmp_path: Path, serve, what: str) -> None:
    config, state, before = built_site(tmp_path, 30)
    seeds = tmp_path / "seeds"
    server = serve(config)
    published = {slug: e.published for slug, e in feed_entries(server).items()}
    assert set(published) == set(before)

    if what == "folder":  # rm -r state/
        shutil.rmtree(state.parent)
    for suffix in ("", "-wal", "-shm"):
        state.with_name(state.name + suffix).unlink(missing_ok=True)
    # Noticed with no change at all (the state is checked every few seconds)…
    wait_until(state.exists, timeout=SOON_S)
    assert published_in(state) == before
    # …and what follows goes into the restored file.
    drop(seeds, "canary.txt", seed_text("canary", "Canary", "After the deletion."))
    wait_until(lambda: "canary" in feed_entries(server), timeout=SOON_S)
    wait_until(lambda: "canary" in published_in(state), timeout=SOON_S)
    assert health(server)["status"] == "ok"
    log = server.log()
    assert "the state file was deleted while feedsvc was running" in log
    no_traceback(log)
    # The service holds the restored state again: a repair is refused while it runs.
    refused = run_cli("state", "repair", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1 and "in use" in refused.stderr
    assert server.stop() == 0

    server = serve(config)  # a restart keeps every date
    again = {slug: e.published for slug, e in feed_entries(server).items()}
    assert {slug: again[slug] for slug in published} == published
    assert published_in(state).keys() == {*before, "canary"}


def test_a_state_replaced_under_a_store_keeps_the_other_file_aside(tmp_path: Path) -> None:
    state = tmp_path / "state" / "s.sqlite3"
    store = Store.open(state)
    store.save_stamps([Stamp("a", 100, 100, "h", "a.txt")], {})
    other = tmp_path / "other.sqlite3"
    other.write_bytes(b"someone else's file")
    os.replace(other, state)
    store.save_stamps([Stamp("b", 200, 200, "h", "b.txt")], {})
    store.close()
    assert set(published_in(state)) == {"a", "b"}
    aside = [p for p in state.parent.iterdir() if ".replaced-" in p.name]
    assert [p.read_bytes() for p in aside] == [b"someone else's file"]


# -- a backup while serving ------------------------------------------------------------------

def test_state_backup_while_serving_is_a_consistent_copy_that_restores_every_date(
        tmp_path: Path, serve) -> None:
    config, state, before = built_site(tmp_path, 30)
    seeds = tmp_path / "seeds"
    server = serve(config)
    drop(seeds, "canary.txt", seed_text("canary", "Canary", "Only in the write-ahead log."))
    wait_until(lambda: "canary" in feed_entries(server), timeout=SOON_S)
    published = {slug: e.published for slug, e in feed_entries(server).items()}
    backup = tmp_path / "backup.sqlite3"
    result = run_cli("state", "backup", str(backup), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "31 slugs copied" in result.stdout
    assert published_in(backup) == {**before, "canary": published_in(state)["canary"]}
    assert server.stop() == 0

    # Restored over a lost state, it gives every entry its dates back.
    for suffix in ("", "-wal", "-shm"):
        state.with_name(state.name + suffix).unlink(missing_ok=True)
    os.replace(backup, state)
    server = serve(config)
    assert {slug: e.published for slug, e in feed_entries(server).items()} == published
    assert health(server)["status"] == "ok"


def test_state_backup_of_a_damaged_state_says_so(tmp_path: Path) -> None:
    config, state, _ = built_site(tmp_path, 200)
    damage(state, "middle")
    result = run_cli("state", "backup", str(tmp_path / "b.sqlite3"), "--config", str(config),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "damaged" in result.stderr and "feedsvc state repair" in result.stderr
    no_traceback(result.stderr)


def test_a_stored_text_that_is_not_its_stamps_version_is_read_again_from_the_file(
        tmp_path: Path, serve) -> None:
    """A row salvaged from a damaged state can hold garbage in its text (NUL bytes, which no
    XML document can carry): it is not the version its stamp's content hash describes, so the
    file is read again instead, and nothing stops rendering. Found by a truncated state, whose
    salvaged rows made every render fail."""
    config, state, before = built_site(tmp_path, 5)
    with sqlite3.connect(state) as db:
        db.execute("UPDATE stamps SET title = ?, body = ? WHERE slug = 'post-1'",
                   ("Gar\x00bage", "gar\x00bage \x01"))
    db.close()
    server = serve(config)
    assert health(server)["entries_published"] == 5
    status, _, body = server.get("/feed.atom")
    assert status == 200
    assert b"bage" not in body and b"<title>Post 1</title>" in body
    drop(tmp_path / "seeds", "canary.txt", seed_text("canary", "Canary", "Still published."))
    wait_until(lambda: "canary" in feed_entries(server), timeout=SOON_S)
    assert set(feed_entries(server)) == {*before, "canary"}
    assert server.stop() == 0
    no_traceback(server.log())
