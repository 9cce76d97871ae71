"""publisher: real seed files and a real SQLite file in, snapshots out. No server, no watcher."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import feedparser
import pytest

from feedsvc.config import Config, load_config
from feedsvc.errors import Rejection
from feedsvc.ingest.catalog import Record
from feedsvc.ingest.parser import parse_seed
from feedsvc.model import US, Content, Entry, Stamp
from feedsvc.publish.formats.atom import ATOM
from feedsvc.publish.formats.rss import RSS
from feedsvc.publish.ids import entry_id
from feedsvc.publish.moments import Moments
from feedsvc.publish.ownership import choose_owner, resolve_owners
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.stamps import next_stamp

from .conftest import SAMPLE_SLUG, copy_sample, seed, write_config, write_seed
from .feedcheck import check_atom, check_rss

T = 1_700_000_000  # a fixed mtime, in the past


def atom_entries(publisher: Publisher) -> list[feedparser.FeedParserDict]:
    parsed = feedparser.parse(publisher.snapshot.documents["/feed.atom"].body)
    assert parsed.bozo == 0
    return parsed.entries


def by_slug(publisher: Publisher) -> dict[str, feedparser.FeedParserDict]:
    return {e.link.rsplit("/", 1)[-1]: e for e in atom_entries(publisher)}


@pytest.fixture
def open_publisher(config: Config):
    opened: list[Publisher] = []

    def start(cfg: Config = config) -> Publisher:
        publisher = Publisher.open(cfg)
        opened.append(publisher)
        return publisher

    yield start
    for publisher in opened:
        publisher.close()


def test_first_scan_publishes_with_mtime_as_published(config, open_publisher) -> None:
    seeds = config.paths.seeds
    os.utime(copy_sample(seeds), (T, T))
    publisher = open_publisher()
    snapshot = publisher.scan()
    assert snapshot.published_count == 1 and snapshot.rejected == ()
    [entry] = atom_entries(publisher)
    assert entry.id == entry_id(publisher.info.id, SAMPLE_SLUG)
    assert entry.published_parsed == time.gmtime(T)
    assert entry.updated_parsed == time.gmtime(T)
    for path, doc in snapshot.documents.items():
        assert doc.body, path
    assert set(snapshot.documents) == {"/", "/feed.atom", "/feed.rss", "/feed.json",
                                       f"/entries/{SAMPLE_SLUG}"}
    assert check_atom(snapshot.documents["/feed.atom"].body, ATOM.url(publisher.info)) == []
    assert check_rss(snapshot.documents["/feed.rss"].body, RSS.url(publisher.info)) == []


def test_edit_keeps_id_and_published_and_moves_updated(config, open_publisher) -> None:
    seeds = config.paths.seeds
    path = write_seed(seeds, "a.txt", seed("a", "Title", "Body"), mtime=T)
    publisher = open_publisher()
    first = publisher.scan()
    before = by_slug(publisher)["a"]

    # Whitespace at line ends and a final newline are not content: nothing moves.
    write_seed(seeds, "a.txt", seed("a", "Title  ", "Body\t") + "\n", mtime=T + 50)
    assert publisher.update([path]) is first

    write_seed(seeds, "a.txt", seed("a", "Title", "Body, edited"), mtime=T + 100)
    second = publisher.update([path])
    after = by_slug(publisher)["a"]
    assert after.id == before.id
    assert after.published_parsed == before.published_parsed
    assert after.updated_parsed == time.gmtime(T + 100)
    assert second.documents["/feed.atom"].etag != first.documents["/feed.atom"].etag
    assert second.documents["/entries/a"].etag != first.documents["/entries/a"].etag


def test_updated_never_goes_backwards(config, open_publisher) -> None:
    seeds = config.paths.seeds
    path = write_seed(seeds, "a.txt", seed("a", "Title", "Body"), mtime=T)
    publisher = open_publisher()
    publisher.scan()
    write_seed(seeds, "a.txt", seed("a", "Title", "Restored from an old backup"), mtime=T - 999)
    publisher.update([path])
    # Forward by one microsecond: the least step, and never a second ahead for nothing.
    assert by_slug(publisher)["a"].updated == "2023-11-14T22:13:20.000001+00:00"
    assert publisher.store.stamps_of(["a"])["a"].updated == T * US + 1


def test_rename_keeps_identity_and_dates(config, open_publisher) -> None:
    seeds = config.paths.seeds
    old = write_seed(seeds, "old-name.txt", seed("kept", "Title", "Body"), mtime=T)
    publisher = open_publisher()
    first = publisher.scan()
    new = seeds / "new-name.txt"
    os.rename(old, new)
    second = publisher.update([old, new])
    assert second.documents["/feed.atom"].body == first.documents["/feed.atom"].body


def test_delete_and_come_back(config, open_publisher, caplog) -> None:
    seeds = config.paths.seeds
    write_seed(seeds, "keep.txt", seed("keep", "Kept", "Body"), mtime=T)
    gone = write_seed(seeds, "gone.txt", seed("gone", "Gone", "Body"), mtime=T + 10)
    publisher = open_publisher()
    publisher.scan()
    caplog.set_level(logging.INFO, logger="feedsvc")
    gone.unlink()
    snapshot = publisher.update([gone])
    assert list(by_slug(publisher)) == ["keep"]
    assert "/entries/gone" not in snapshot.documents
    assert "removed gone" in caplog.text
    write_seed(seeds, "gone.txt", seed("gone", "Gone", "Body"), mtime=T + 5000)
    publisher.update([gone])
    assert by_slug(publisher)["gone"].published_parsed == time.gmtime(T + 10)  # first sight


def test_bad_seed_is_rejected_and_the_rest_publishes(config, open_publisher, caplog) -> None:
    seeds = config.paths.seeds
    copy_sample(seeds)
    write_seed(seeds, "broken.txt", b"slug\nHeadline\n\nok\n\xff\xfe")
    write_seed(seeds, "nobody.txt", "slug-only")
    caplog.set_level(logging.INFO, logger="feedsvc")
    publisher = open_publisher()
    snapshot = publisher.scan()
    assert [(Path(e.path).name, e.line) for e in snapshot.rejected] == [
        ("broken.txt", 5), ("nobody.txt", 2)]
    assert list(by_slug(publisher)) == [SAMPLE_SLUG]
    assert f"{seeds / 'broken.txt'}:5: not valid UTF-8" in caplog.text
    assert f"{seeds / 'nobody.txt'}:2: missing headline" in caplog.text
    # Fixing the file publishes it and clears the error.
    fixed = write_seed(seeds, "broken.txt", seed("slug", "Headline", "ok"))
    snapshot = publisher.update([fixed])
    assert [Path(e.path).name for e in snapshot.rejected] == ["nobody.txt"]
    assert set(by_slug(publisher)) == {SAMPLE_SLUG, "slug"}


def test_duplicate_slug_first_by_name_then_the_recorded_owner_keeps_it(
        config, open_publisher) -> None:
    seeds = config.paths.seeds
    write_seed(seeds, "b.txt", seed("same", "From b", "Body"), mtime=T)
    write_seed(seeds, "c.txt", seed("same", "From c", "Body"), mtime=T)
    publisher = open_publisher()
    snapshot = publisher.scan()
    assert by_slug(publisher)["same"].title == "From b"
    [error] = snapshot.rejected
    assert (Path(error.path).name, error.line) == ("c.txt", 1)
    assert "duplicate slug 'same': b.txt already publishes it" in error.message

    # A newcomer that sorts first does not steal the slug, not even after a restart.
    a = write_seed(seeds, "a.txt", seed("same", "From a", "Body"), mtime=T)
    publisher.update([a])
    assert by_slug(publisher)["same"].title == "From b"
    restarted = open_publisher()
    restarted.scan()
    assert restarted.snapshot.documents["/feed.atom"].body == \
        publisher.snapshot.documents["/feed.atom"].body

    # When the owner goes, the next claimant by name takes over, with the same id.
    (seeds / "b.txt").unlink()
    restarted.update([seeds / "b.txt"])
    assert by_slug(restarted)["same"].title == "From a"
    assert [Path(e.path).name for e in restarted.snapshot.rejected] == ["c.txt"]


def test_same_mtime_never_gives_two_entries_the_same_updated(config, open_publisher) -> None:
    seeds = config.paths.seeds
    for n in range(20):
        write_seed(seeds, f"{n:02}.txt", seed(f"s{n}", f"T{n}", "Body"), mtime=T)
    publisher = open_publisher()
    publisher.scan()
    updated = [e.updated for e in atom_entries(publisher)]
    assert len(set(updated)) == 20
    assert check_atom(publisher.snapshot.documents["/feed.atom"].body,
                      ATOM.url(publisher.info)) == []


def test_future_mtime_is_clamped_to_now(config, open_publisher) -> None:
    write_seed(config.paths.seeds, "f.txt", seed("f", "Future", "Body"),
               mtime=time.time() + 86400 * 365)
    publisher = open_publisher()
    publisher.scan()
    assert time.mktime(by_slug(publisher)["f"].published_parsed) <= time.time() + 60


def test_restart_gives_byte_identical_documents(config, open_publisher, caplog) -> None:
    seeds = config.paths.seeds
    copy_sample(seeds)
    for n in range(5):
        write_seed(seeds, f"{n}.txt", seed(f"s{n}", f"Titre {n} « ok »", "Corps’"), mtime=T + n)
    first = open_publisher().scan()
    caplog.set_level(logging.INFO, logger="feedsvc")
    second = open_publisher().scan()
    assert {p: d.body for p, d in first.documents.items()} == \
        {p: d.body for p, d in second.documents.items()}
    assert {p: d.etag for p, d in first.documents.items()} == \
        {p: d.etag for p, d in second.documents.items()}
    assert "published" not in caplog.text  # a restart that finds all as it was is quiet


def test_feed_id_is_kept_when_base_url_moves(site: Path, open_publisher) -> None:
    write_seed(site / "seeds", "a.txt", seed("a", "Title", "Body"), mtime=T)
    first = open_publisher(load_config(site / "config.toml"))
    first.scan()
    old_id = by_slug(first)["a"].id
    write_config(site, port=1234, base_url="https://moved.example.org/news/")
    moved = open_publisher(load_config(site / "config.toml"))
    moved.scan()
    entry = by_slug(moved)["a"]
    assert entry.id == old_id
    assert entry.link == "https://moved.example.org/news/entries/a"
    write_config(site, port=1234, id="tag:example.org,2026:feed")
    explicit = open_publisher(load_config(site / "config.toml"))
    explicit.scan()
    assert by_slug(explicit)["a"].id == entry_id("tag:example.org,2026:feed", "a") != old_id


def test_documents_are_capped_at_max_entries(site: Path, open_publisher) -> None:
    write_config(site, max_entries=3)
    for n in range(6):
        write_seed(site / "seeds", f"{n}.txt", seed(f"s{n}", f"T{n}", "Body"), mtime=T + n)
    publisher = open_publisher(load_config(site / "config.toml"))
    snapshot = publisher.scan()
    assert [e.title for e in atom_entries(publisher)] == ["T5", "T4", "T3"]
    assert snapshot.published_count == 6
    # Only the shown entries' pages are held in memory; older ones come from the state.
    assert "/entries/s5" in snapshot.documents and "/entries/s0" not in snapshot.documents
    assert publisher.store.load_page("s0", 2**40)[2] == Content("T0", ("Body",))


def test_ignored_names_and_folder_loss(config, open_publisher) -> None:
    seeds = config.paths.seeds
    copy_sample(seeds)
    for name in (".hidden.txt", "a.txt~", "a.txt.swp", "a.tmp", "#a.txt#", "notes.rst",
                 ".draft.md", "a.md~"):
        write_seed(seeds, name, "junk")
    publisher = open_publisher()
    snapshot = publisher.scan()
    assert snapshot.published_count == 1 and snapshot.rejected == ()
    assert publisher.update([seeds / ".hidden.txt", seeds / "notes.rst"]) is snapshot

    moved = seeds.with_name("elsewhere")
    seeds.rename(moved)
    lost = publisher.scan()
    assert not lost.seeds_readable
    assert lost.documents == snapshot.documents  # keep serving the last good set
    moved.rename(seeds)
    back = publisher.scan()
    assert back.seeds_readable and back.published_count == 1


def test_state_is_where_the_config_says(config, open_publisher) -> None:
    copy_sample(config.paths.seeds)
    open_publisher().scan()
    assert config.paths.state.is_file()
    shutil.rmtree(config.paths.state.parent)  # a lost state means new dates, never a crash
    assert open_publisher().scan().published_count == 1


def test_last_good_version_stays_published_across_restarts(config, open_publisher,
                                                          caplog) -> None:
    seeds = config.paths.seeds
    path = write_seed(seeds, "a.txt", seed("a", "Good title", "Good body"), mtime=T)
    publisher = open_publisher()
    good = publisher.scan()
    caplog.set_level(logging.INFO, logger="feedsvc")
    write_seed(seeds, "a.txt", b"a\nBroken \xff title\n\nbody", mtime=T + 10)
    broken = publisher.update([path])
    assert [e.line for e in broken.rejected] == [2]
    assert broken.documents["/feed.atom"].body == good.documents["/feed.atom"].body
    assert f"{path}:2: not valid UTF-8" in caplog.text
    assert "still publishing its last good version of a" in caplog.text

    restarted = open_publisher()  # the last good text comes back from the state
    assert restarted.scan().documents["/feed.atom"].body == good.documents["/feed.atom"].body

    write_seed(seeds, "a.txt", seed("a", "Fixed title", "Good body"), mtime=T + 20)
    fixed = restarted.update([path])
    assert fixed.rejected == () and by_slug(restarted)["a"].title == "Fixed title"
    write_seed(seeds, "a.txt", b"", mtime=T + 30)
    restarted.update([path])
    assert by_slug(restarted)["a"].title == "Fixed title"  # the newest good version
    path.unlink()
    assert restarted.update([path]).published_count == 0  # deleting the file removes the entry


# -- pure decisions, data-driven --------------------------------------------------------------

def _entry(slug: str = "s", body: str = "Body") -> Entry:
    result = parse_seed("x.txt", f"{slug}\nTitle\n\n{body}".encode())
    assert isinstance(result, Entry)
    return result


E1, E2 = _entry(), _entry(body="Changed")


def _us(seconds: int, micros: int = 0) -> int:
    return seconds * US + micros


@pytest.mark.parametrize(("previous", "entry", "source", "seen", "taken", "expected"), [
    (None, E1, "a.txt", 100, set(), Stamp("s", 100, _us(100), E1.content_hash, "a.txt")),
    # A clash moves `updated` by a microsecond, never `published` (only an author's date may
    # be ahead).
    (None, E1, "a.txt", 100, {_us(100), _us(100, 1)},
     Stamp("s", 100, _us(100, 2), E1.content_hash, "a.txt")),
    (Stamp("s", 100, _us(100), E1.content_hash, "a.txt"), E1, "a.txt", 500, {_us(100)},
     Stamp("s", 100, _us(100), E1.content_hash, "a.txt")),
    (Stamp("s", 100, _us(100), E1.content_hash, "a.txt"), E1, "b.txt", 500, {_us(100)},
     Stamp("s", 100, _us(100), E1.content_hash, "b.txt")),
    (Stamp("s", 100, _us(100), E1.content_hash, "a.txt"), E2, "a.txt", 500, {_us(100)},
     Stamp("s", 100, _us(500), E2.content_hash, "a.txt")),
    (Stamp("s", 100, _us(100), E1.content_hash, "a.txt"), E2, "a.txt", 50,
     {_us(100), _us(100, 1)}, Stamp("s", 100, _us(100, 2), E2.content_hash, "a.txt")),
    (Stamp("s", 100, _us(100), E1.content_hash, "a.txt", live=False), E1, "a.txt", 500,
     {_us(100)}, Stamp("s", 100, _us(100), E1.content_hash, "a.txt")),
], ids=["new", "new-clash", "same", "renamed", "edited", "edited-backwards-and-clash",
        "back-after-removal"])
def test_next_stamp(previous, entry, source, seen, taken, expected) -> None:
    moments = Moments()
    for moment in taken:
        moments.take(moment)
    assert next_stamp(previous, entry.slug, entry.content_hash, source, seen, moments) == expected
    assert expected.updated in moments
    if previous is not None and previous.updated != expected.updated:
        assert previous.updated not in moments


def test_allocation_never_passes_the_clock_and_is_linear() -> None:
    """A clash takes the nearest free microsecond above the wanted one up to the clock, then
    below it down to the window's start; 10,000 stamps wanting one moment cost O(n) look-ups."""
    recorded: set[int] = set()
    moments = Moments(recorded.__contains__)
    now = _us(1000)
    got = [moments.allocate(_us(900), _us(900), now) for _ in range(10_000)]
    assert got == [_us(900, i) for i in range(10_000)]
    assert moments.lookups <= 2 * 10_000
    # Above is full up to the clock: the nearest free one below the wanted moment.
    for moment in range(_us(999, 999_990), now + 1):
        moments.take(moment)
    assert moments.allocate(_us(999, 999_995), _us(999), now) == _us(999, 999_989)
    # The whole window is taken: a shared value, still not after the clock.
    assert moments.allocate(now, now, now) == now
    # A scheduled entry (window starting after the clock) stays within its own second.
    assert moments.allocate(_us(2000), _us(2000), now) == _us(2000)
    assert moments.allocate(_us(2000), _us(2000), now) == _us(2000, 1)


def test_an_edit_moves_updated_forward_by_a_microsecond_at_least_and_never_past_now() -> None:
    moments = Moments()
    stamp = next_stamp(None, "s", "h0", "a.txt", 100, moments, now=_us(100, 10))
    assert stamp.updated == _us(100)
    for i in range(1, 11):  # ten edits within the mtime's second: one microsecond each
        stamp = next_stamp(stamp, "s", f"h{i}", "a.txt", 100, moments, now=_us(100, 10))
        assert stamp.updated == _us(100, i)
    # An author's `updated:` after the clock is not true yet: the clock for a new text…
    fresh = next_stamp(None, "t", "h", "t.txt", 100, moments, updated=5000, now=_us(200))
    assert fresh.updated == _us(200)
    # … and an unchanged one keeps its date until then; once past, the author's date.
    assert next_stamp(fresh, "t", "h", "t.txt", 100, moments, updated=5000,
                      now=_us(300)) == fresh
    assert next_stamp(fresh, "t", "h", "t.txt", 100, moments, updated=5000,
                      now=_us(6000)).updated == _us(5000)


def test_choose_owner_and_resolve_owners() -> None:
    assert choose_owner(["a.txt", "b.txt"], None) == "a.txt"
    assert choose_owner(["a.txt", "b.txt"], "b.txt") == "b.txt"
    assert choose_owner(["a.txt", "b.txt"], "gone.txt") == "a.txt"
    a, b, c = Path("/s/a.txt"), Path("/s/b.txt"), Path("/s/c.txt")
    error = parse_seed(str(c), b"")
    assert isinstance(error, Rejection)
    x = Record("x", "h", None, 1, 1, False)
    records = {c: Record(None, "", error, 0, 0, False), b: x, a: x}
    owners, rejected = resolve_owners(records, {})
    assert owners == {"x": a}
    assert [(Path(e.path).name, e.line) for e in rejected] == [("b.txt", 1), ("c.txt", 1)]
    owners, rejected = resolve_owners(records, {"x": Stamp("x", 1, 1, "h", "b.txt")})
    assert owners == {"x": b}
    assert rejected[0].message == "duplicate slug 'x': b.txt already publishes it"


def test_order_stays_exact_through_big_batches_of_removals_and_additions(
        site, open_publisher) -> None:
    """A batch over the insertion threshold applies removals and additions to the order in
    one pass; the result must be the order by (published desc, slug), as small batches keep
    it. Equal mtimes make clashes, so `published` ties are broken by slug too."""
    cfg = load_config(write_config(site, max_entries=10000))
    seeds = cfg.paths.seeds
    for i in range(120):
        write_seed(seeds, f"s{i:03d}.txt", seed(f"s{i:03d}", f"T{i}", "Body"), mtime=T + i // 3)
    publisher = open_publisher(cfg)
    publisher.scan()
    gone = [seeds / f"s{i:03d}.txt" for i in range(0, 120, 2)]
    for path in gone:
        path.unlink()
    added = [write_seed(seeds, f"n{i:03d}.txt", seed(f"n{i:03d}", f"N{i}", "Body"),
                        mtime=T + 7 + i // 4) for i in range(80)]
    snapshot = publisher.update([*gone, *added])
    assert snapshot.published_count == 60 + 80
    entries = atom_entries(publisher)
    stamps = publisher.store.stamps_of(e.link.rsplit("/", 1)[-1] for e in entries)
    shown = [e.link.rsplit("/", 1)[-1] for e in entries]
    assert shown == sorted(stamps, key=lambda s: (-stamps[s].published, s))
    assert len({stamp.updated for stamp in stamps.values()}) == len(stamps)  # no clash
    # A small batch afterwards keeps the same order by insertion.
    write_seed(seeds, "late.txt", seed("late", "Late", "Body"), mtime=T + 3)
    (seeds / "n000.txt").unlink()
    publisher.update([seeds / "late.txt", seeds / "n000.txt"])
    shown = [e.link.rsplit("/", 1)[-1] for e in atom_entries(publisher)]
    stamps = publisher.store.stamps_of(shown)
    assert "late" in shown and "n000" not in shown
    assert shown == sorted(stamps, key=lambda s: (-stamps[s].published, s))
