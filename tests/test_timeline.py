"""timeline: the order of published entries and their scheduling. Pure: slugs and Unix seconds
in, order out; no state, no seeds."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc.publish.timeline import Timeline
from feedsvc.timerange import datetime_of

T = 1_700_000_000

#: One change: a slug published at a second (add, or move if it is there), or dropped (None).
CHANGES = st.tuples(st.sampled_from("abcdefgh"), st.one_of(st.none(), st.integers(T, T + 5)))
#: A batch: its changes, and whether it is big (put off and merged once).
BATCHES = st.lists(st.tuples(st.lists(CHANGES, max_size=10), st.booleans()), max_size=10)
#: A scan: chunks of changes, each big or not, before one merge.
SCANS = st.lists(st.lists(st.tuples(st.lists(CHANGES, max_size=6), st.booleans()), max_size=4),
                 max_size=6)


def run(timeline: Timeline, published: dict[str, int], changes: list[tuple[str, int | None]],
        later: bool, merge: bool = True) -> None:
    """A batch of changes as the publisher makes them, then its merge; `published` is the
    model: slug → second."""
    for slug, second in changes:
        before = published.get(slug)
        if second is None:
            if before is not None:
                timeline.drop(slug, before, later)
                del published[slug]
        elif before is None:
            timeline.add(slug, second, later)
            published[slug] = second
        elif before != second:
            timeline.move(slug, before, second, later)
            published[slug] = second
    if merge:
        timeline.apply_changes()


def expected(published: dict[str, int]) -> list[str]:
    return sorted(published, key=lambda slug: (-published[slug], slug))


@settings(max_examples=400, deadline=None)
@given(BATCHES)
def test_the_order_is_always_newest_first_then_by_slug(
        batches: list[tuple[list[tuple[str, int | None]], bool]]) -> None:
    timeline, published = Timeline(), {}
    for changes, later in batches:
        run(timeline, published, changes, later)
        assert timeline.order == expected(published)
        assert list(timeline.keys) == [-published[slug] for slug in timeline.order]


@settings(max_examples=400, deadline=None)
@given(SCANS)
def test_the_order_is_kept_through_a_scan_of_big_and_small_chunks(
        scans: list[list[tuple[list[tuple[str, int | None]], bool]]]) -> None:
    """A scan resolves chunk after chunk, some big (put off), some small, and merges once: a
    slug dropped by a big chunk and placed again by a small one is where it belongs."""
    timeline, published = Timeline(), {}
    for chunks in scans:
        for changes, later in chunks:
            run(timeline, published, changes, later, merge=False)
        timeline.apply_changes()
        assert timeline.order == expected(published)
        assert list(timeline.keys) == [-published[slug] for slug in timeline.order]


@pytest.mark.parametrize("later", [False, True])
@pytest.mark.parametrize(("changes", "order"), [
    ([("b", T), ("a", T), ("c", T + 1)], ["c", "a", "b"]),
    ([("a", T), ("b", T + 1), ("a", T + 2)], ["a", "b"]),  # a moved ahead
    ([("a", T), ("b", T), ("a", None)], ["b"]),
    ([("a", T), ("a", None), ("a", T)], ["a"]),  # dropped and added again in one batch
    ([("a", T), ("a", T + 3), ("a", T)], ["a"]),  # moved and moved back
])
def test_batched_or_not_the_order_is_the_same(changes: list[tuple[str, int | None]],
                                              order: list[str], later: bool) -> None:
    timeline = Timeline()
    run(timeline, {}, changes, later)
    assert timeline.order == order


def test_a_big_batch_waits_for_apply_changes() -> None:
    timeline = Timeline()
    timeline.add("a", T, later=True)
    assert timeline.order == []
    timeline.apply_changes()
    assert timeline.order == ["a"]


def make(published: dict[str, int]) -> Timeline:
    timeline = Timeline()
    run(timeline, {}, list(published.items()), later=True)
    return timeline


SCHEDULE = {"past": T - 10, "now": T, "soon": T + 60, "later": T + 3600, "also-later": T + 3600}


@pytest.mark.parametrize(("now", "visible", "scheduled", "due"), [
    (T - 20, [], ["past", "now", "soon", "later", "also-later"], T - 10),
    (T, ["now", "past"], ["soon", "later", "also-later"], T + 60),
    (T + 60, ["soon", "now", "past"], ["later", "also-later"], T + 3600),
    (T + 3600, ["also-later", "later", "soon", "now", "past"], [], None),
])
def test_visible_and_scheduled_split_at_now(now: int, visible: list[str], scheduled: list[str],
                                            due: int | None) -> None:
    timeline = make(SCHEDULE)
    start = timeline.visible_from(now)
    assert timeline.order[start:] == visible
    assert [slug for slug, _ in timeline.scheduled(start)] == scheduled  # the soonest first
    assert all(when == datetime_of(SCHEDULE[slug]) for slug, when in timeline.scheduled(start))
    assert timeline.next_due(now) == (None if due is None else datetime_of(due))
    assert all(SCHEDULE[slug] <= now for slug in timeline.order[start:])
    assert all(SCHEDULE[slug] > now for slug in timeline.order[:start])


def test_appeared_are_the_entries_whose_time_came_since_the_last_call() -> None:
    timeline = make(SCHEDULE)
    assert timeline.appeared(timeline.visible_from(T), T) == []  # the first call: none
    assert timeline.appeared(timeline.visible_from(T + 59), T + 59) == []
    assert timeline.appeared(timeline.visible_from(T + 3600), T + 3600) == [
        "also-later", "later", "soon"]
    assert timeline.appeared(timeline.visible_from(T + 3600), T + 3600) == []  # once
    assert timeline.appeared(timeline.visible_from(T), T) == []  # the clock went back


def test_next_due_is_a_datetime() -> None:
    assert isinstance(make({"a": T + 5}).next_due(T), datetime)
    assert make({}).next_due(T) is None
