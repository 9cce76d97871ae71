"""stamps: the StampTable over its storage, here an in-memory StampStorage (the state's two
queries it needs), so that its rules are checked without SQLite."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from feedsvc.model import US, Stamp
from feedsvc.publish.stamps import StampTable, next_stamp

T = 1_700_000_000


class MemoryStamps:
    """A StampStorage in a dict; counts its queries."""

    def __init__(self, *stamps: Stamp) -> None:
        self.rows = {stamp.slug: stamp for stamp in stamps}
        self.queries: list[tuple[str, ...]] = []

    def stamps_of(self, slugs: Iterable[str]) -> dict[str, Stamp]:
        wanted = tuple(slugs)
        self.queries.append(wanted)
        return {slug: self.rows[slug] for slug in wanted if slug in self.rows}

    def slugs_updated_at(self, moment: int) -> list[str]:
        return [slug for slug, stamp in self.rows.items() if stamp.updated == moment]

    def save(self, table: StampTable) -> None:
        """What a successful write does: the state takes the unsaved stamps."""
        self.rows.update(table.unsaved)
        table.saved()


def stamp(slug: str, updated: int = T * US, published: int = T) -> Stamp:
    return Stamp(slug, published, updated, f"hash-{slug}", f"{slug}.txt")


def test_load_reads_what_is_missing_in_one_query() -> None:
    storage = MemoryStamps(stamp("a"), stamp("b"))
    table = StampTable(storage)
    table.load(["a", "b", "c"])
    assert storage.queries == [("a", "b", "c")]
    assert table.get("a") == stamp("a") and table.get("c") is None
    table.load(["a", "c"])  # known, even as absent: no query
    assert storage.queries == [("a", "b", "c")]


def test_the_state_plus_the_unsaved_stamps_is_the_truth() -> None:
    storage = MemoryStamps(stamp("a"))
    table = StampTable(storage)
    moved = stamp("a", updated=T * US + 7)
    table.put(moved)
    assert table.get("a") == moved and table.unsaved == {"a": moved}
    assert storage.rows["a"] == stamp("a")  # not written until saved
    storage.save(table)
    assert table.unsaved == {} and table.get("a") == moved
    assert storage.queries == []  # every read came from memory


def test_retain_forgets_the_other_cached_stamps() -> None:
    storage = MemoryStamps(stamp("a"), stamp("b"))
    table = StampTable(storage)
    table.load(["a", "b"])
    table.retain(["a"])
    table.get("a")
    assert len(storage.queries) == 1
    table.get("b")
    assert storage.queries[1:] == [("b",)]


@pytest.mark.parametrize(("stored", "unsaved", "moment", "taken"), [
    ([stamp("a")], [], T * US, True),  # in the state
    ([], [stamp("a", updated=T * US + 1)], T * US + 1, True),  # unsaved
    ([stamp("a")], [stamp("a", updated=T * US + 1)], T * US, False),  # moved away since
    ([stamp("a")], [], T * US + 2, False),
])
def test_a_moment_is_taken_in_the_state_unless_its_slug_moved(
        stored: list[Stamp], unsaved: list[Stamp], moment: int, taken: bool) -> None:
    table = StampTable(MemoryStamps(*stored))
    for value in unsaved:
        table.put(value)
    assert table._recorded(moment) is taken
    # And so a new stamp wanting that moment gets it only when it is free.
    assert (table.taken.allocate(moment, moment, moment + 10) == moment) is (not taken)


def test_next_stamp_moves_past_the_moments_the_table_holds() -> None:
    table = StampTable(MemoryStamps(stamp("a")))
    new = next_stamp(None, "b", "hash-b", "b.txt", T, table.taken)
    assert new.updated == T * US + 1  # `a` holds T in the state
    table.put(new)
    assert next_stamp(None, "c", "hash-c", "c.txt", T, table.taken).updated == T * US + 2
