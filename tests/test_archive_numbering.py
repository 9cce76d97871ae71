"""RFC 5005 archive slots: a state's first numbering (every archived entry at once, streamed)
gives the slots the per-batch path gives, and costs little memory beside the timeline.

Real seed files, a real SQLite state, the publisher in process (no server: the slots are read
from the state)."""

from __future__ import annotations

import random
import sqlite3
import tracemalloc
from pathlib import Path

from feedsvc.config import Config, load_config
from feedsvc.publish.archives import ArchiveDates
from feedsvc.publish.docdates import DocumentDates
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.timeline import Timeline

from .conftest import seed, write_config, write_seed

T = 1_700_000_000  # mtimes (the `published` of a first scan), in the past
MAX_ENTRIES = 7


def _site(folder: Path, per_page: int = 5) -> Config:
    folder.mkdir()
    write_config(folder, max_entries=MAX_ENTRIES, archive_page_entries=per_page)
    return load_config(folder / "config.toml")


def _corpus(rng: random.Random, count: int) -> dict[str, int]:
    """slug → published (mtime): few distinct seconds, so that many entries share one (ties
    by slug), slugs of differing lengths and prefixes (ties compare them as strings)."""
    seconds = [T + rng.randrange(0, 10 * 86400) for _ in range(count // 4)]
    slugs: set[str] = set()
    while len(slugs) < count:
        slugs.add(rng.choice(["a", "b", "ab", "z", "entry"]) + "-" * rng.randrange(2)
                  + str(rng.randrange(1000)))
    return {slug: rng.choice(seconds) for slug in sorted(slugs)}


def _write(config: Config, corpus: dict[str, int]) -> None:
    for slug, published in corpus.items():
        write_seed(config.paths.seeds, f"{slug}.txt", seed(slug, f"Titre {slug}", "Corps"),
                   mtime=published)


def _scan(config: Config) -> None:
    publisher = Publisher.open(config)
    try:
        publisher.scan()
    finally:
        publisher.close()


def _slots(config: Config) -> list[tuple[int, str, int]]:
    db = sqlite3.connect(config.paths.state)
    try:
        return db.execute("SELECT slot, slug, state FROM archive_slots ORDER BY slot").fetchall()
    finally:
        db.close()


def test_first_numbering_equals_the_per_batch_numbering(tmp_path: Path) -> None:
    """One corpus numbered two ways: (A) a new state's first scan numbers its whole archive at
    once; (B) a first scan of the oldest entry and the newest ones (a first numbering of one
    slot), then one batch of all the others, back-dated below the shown entries, numbered as
    every later batch numbers what enters the archive. Both, and the rule (published
    ascending, ties by slug descending), give the same slots."""
    rng = random.Random(5005)
    for round_ in range(3):
        corpus = _corpus(rng, 160)
        oldest = min(corpus.items(), key=lambda pair: (pair[1], [-ord(c) for c in pair[0]]))
        newest = sorted(corpus, key=lambda slug: (-corpus[slug], slug))[:MAX_ENTRIES]
        if oldest[0] in newest:
            continue
        at_once = _site(tmp_path / f"at-once-{round_}")
        _write(at_once, corpus)
        _scan(at_once)

        in_batches = _site(tmp_path / f"in-batches-{round_}")
        _write(in_batches, {slug: corpus[slug] for slug in [oldest[0], *newest]})
        _scan(in_batches)
        assert _slots(in_batches) == [(1, oldest[0], 0)]
        _write(in_batches, {slug: p for slug, p in corpus.items()
                            if slug != oldest[0] and slug not in newest})
        _scan(in_batches)

        archived = sorted(corpus, key=lambda slug: (-corpus[slug], slug))[MAX_ENTRIES:]
        expected = [(n, slug, 0) for n, slug in enumerate(reversed(archived), start=1)]
        assert len({corpus[slug] for slug in archived}) < len(archived)  # ties were met
        assert _slots(in_batches) == expected
        assert _slots(at_once) == expected


def test_first_numbering_memory_is_a_fraction_of_the_timeline(tmp_path: Path) -> None:
    """Numbering an archive of 20,000 entries at once, and writing it, peaks (Python memory,
    tracemalloc) at a small fraction of what the timeline itself holds: no object, row or
    dictionary entry per archived entry (once 274 MiB at 100,000 seeds)."""
    config = _site(tmp_path / "site", per_page=100)  # 200 pages dated
    publisher = Publisher.open(config)
    try:
        publisher.scan()  # the state, the feed's id
        store, info = publisher.store, publisher.info
        dates = DocumentDates(store)
        archives = ArchiveDates(config, info, dates)
        rng = random.Random(12)
        count = 20_000
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            timeline = Timeline()
            for i in range(count):
                timeline.add(f"entry-{i:05d}-{rng.randrange(10**6):06d}",
                             T + rng.randrange(count // 3), later=True)
            timeline.apply_changes()
            held = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            archives.finish(timeline, 0, T * 1_000_000)
            store.save_stamps((), {}, dates.unsaved.values(), None,
                              archives.slot_rows())
            archives.saved()
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        slots = _slots(config)
        assert len(slots) == count - MAX_ENTRIES
        assert [slug for _, slug, _ in slots] == timeline.order[:MAX_ENTRIES - 1:-1]
        assert peak < 0.25 * held, (peak, held)
    finally:
        publisher.close()


def _history(folder: Path, blocked: bool) -> list[tuple[int, str, int]]:
    """A first scan, a back-dated arrival and a deletion of an archived entry, then a write:
    with `blocked`, the state cannot be written until that last write (its folder's path is
    a file), so the first numbering waits in memory while the next batch changes it."""
    config = _site(folder)
    corpus = {f"e{i:02d}": T + 60 * (i // 2) for i in range(30)}  # pairs share a second
    _write(config, corpus)
    blocker = folder / "state"
    if blocked:
        blocker.write_text("a file where the state folder should be")
    publisher = Publisher.open(config)
    try:
        publisher.scan()
        assert publisher.store.writable is not blocked
        new = write_seed(config.paths.seeds, "old.txt", seed("old", "Vieux", "Corps"),
                         mtime=T - 60)
        gone = config.paths.seeds / "e03.txt"
        gone.unlink()
        publisher.update([new, gone])
        if blocked:
            blocker.unlink()
        publisher.update([])  # retries the write
        assert publisher.store.writable
    finally:
        publisher.close()
    return _slots(config)


def test_a_first_numbering_the_state_could_not_take_is_changed_and_written_later(
        tmp_path: Path) -> None:
    """While the state cannot be written, the first numbering stays in memory; the next
    batch's changes apply to it (a deletion, a back-dated arrival) and the write that works
    lands the same slots as a state that took every batch at once."""
    expected = _history(tmp_path / "writable", blocked=False)
    assert (3, "e03", 1) in expected and expected[-1][1:] == ("old", 0)
    assert _history(tmp_path / "blocked", blocked=True) == expected
