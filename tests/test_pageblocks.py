"""The site's older pages as blocks numbered from the oldest (publish/pageblocks.py).

The arithmetic from data tables and exhaustive small cases (pure, no disk); then a real server:
the edge cases around `max_entries` entries, and a long walk from `/` whose older pages keep
their bytes and ETags while entries are published.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from feedsvc.publish.pageblocks import (
    FRONT,
    block_of,
    block_offset,
    exists,
    links,
    older_pages,
    overlap,
    page_version,
    runs,
    versions,
)

from .conftest import free_port, wait_until, write_config, write_seed


@pytest.mark.parametrize(("count", "size", "pages"), [
    (0, 2, 0), (1, 2, 0), (2, 2, 0), (3, 2, 1), (4, 2, 1), (5, 2, 2), (7, 2, 3), (8, 2, 3),
    (9, 2, 4), (1, 1, 0), (2, 1, 1), (50, 50, 0), (51, 50, 1), (100, 50, 1), (101, 50, 2),
    (100_000, 50, 1999), (100_001, 50, 2000),
])
def test_older_pages(count: int, size: int, pages: int) -> None:
    assert older_pages(count, size) == pages
    assert [n for n in range(0, pages + 3) if exists(count, size, n)] == \
        list(range(1, pages + 1))


def test_a_page_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        older_pages(3, 0)


@pytest.mark.parametrize(("count", "size", "number", "offset"), [
    (7, 2, FRONT, 0), (7, 2, 3, 1), (7, 2, 2, 3), (7, 2, 1, 5), (8, 2, 3, 2), (8, 2, 1, 6),
    (3, 2, 1, 1), (101, 50, 2, 1), (101, 50, 1, 51), (150, 50, 2, 50),
])
def test_block_offset_counts_from_the_newest(count: int, size: int, number: int,
                                             offset: int) -> None:
    assert block_offset(count, size, number) == offset


@pytest.mark.parametrize(("count", "size", "shared"), [
    (0, 2, 0), (2, 2, 0), (3, 2, 1), (4, 2, 0), (7, 2, 1), (8, 2, 0), (51, 50, 49),
    (99, 50, 1), (100, 50, 0), (101, 50, 49),
])
def test_overlap(count: int, size: int, shared: int) -> None:
    assert overlap(count, size) == shared


@pytest.mark.parametrize(("number", "pages", "expected"), [
    (FRONT, 0, (None, None)), (FRONT, 3, (None, 3)), (3, 3, (FRONT, 2)), (2, 3, (3, 1)),
    (1, 3, (2, None)), (1, 1, (FRONT, None)),
])
def test_links(number: int, pages: int, expected: tuple[int | None, int | None]) -> None:
    assert links(number, pages) == expected


@pytest.mark.parametrize(("position", "size", "block"), [
    (1, 2, 1), (2, 2, 1), (3, 2, 2), (50, 50, 1), (51, 50, 2), (100_000, 50, 2000),
])
def test_block_of(position: int, size: int, block: int) -> None:
    assert block_of(position, size) == block


@pytest.mark.parametrize(("numbers", "expected"), [
    ([], []), ([3], [(3, 3)]), ([1, 2, 3], [(1, 3)]), ([5, 1, 2, 9, 8], [(1, 2), (5, 5), (8, 9)]),
    ([2, 2, 3], [(2, 3)]),
])
def test_runs(numbers: list[int], expected: list[tuple[int, int]]) -> None:
    assert runs(numbers) == expected


def _walk(count: int, size: int) -> list[list[int]]:
    """The entries (1: the oldest) of the front page and of each page its "older" links
    lead to, as sitepages reads them (newest first from `block_offset`)."""
    newest_first = list(range(count, 0, -1))
    pages = older_pages(count, size)
    shown, number = [newest_first[:size]], links(FRONT, pages)[1]
    while number is not None:
        start = block_offset(count, size, number)
        shown.append(newest_first[start:start + size])
        number = links(number, pages)[1]
    return shown


@pytest.mark.parametrize("size", [1, 2, 3, 5, 50])
def test_following_older_links_reaches_every_entry_with_the_overlap_said(size: int) -> None:
    for count in range(0, 4 * size + 3):
        walked = _walk(count, size)
        seen = Counter(entry for page in walked for entry in page)
        assert set(seen) == set(range(1, count + 1)), (count, size)
        twice = {entry for entry, times in seen.items() if times > 1}
        assert max(seen.values(), default=1) <= 2
        assert len(twice) == overlap(count, size) < size or count == 0, (count, size)
        # Only the front page and the newest older page share entries.
        if twice:
            assert twice <= set(walked[0]) and twice <= set(walked[1])
        # Every older page is complete, newest first, in the block its number says.
        for number, page in zip(range(older_pages(count, size), 0, -1), walked[1:], strict=True):
            assert page == list(range(number * size, (number - 1) * size, -1))
        # "newer" leads back the same way.
        pages = older_pages(count, size)
        back, number = [], 1 if pages else None
        while number is not None and number != FRONT:
            back.append(number)
            number = links(number, pages)[0]
        assert back == list(range(1, pages + 1))


def _keys(count: int, edited: int | None = None) -> list[tuple[int, str, int]]:
    """(published, slug, updated) of `count` entries, oldest first; `edited`: that one's
    `updated` moved."""
    return [(1000 + i, f"e{i}", 2000 + i + (5000 if i == edited else 0))
            for i in range(1, count + 1)]


@pytest.mark.parametrize("size", [1, 2, 3, 50])
def test_a_new_entry_changes_only_the_newest_older_page_or_two(size: int) -> None:
    """What `[build] on_change` renders again after one entry published: the front page,
    the newest older page when its "newer" link moves, and a new page."""
    for count in range(0, 3 * size + 2):
        before, after = versions(_keys(count), size), versions(_keys(count + 1), size)
        changed = {n for n in after if n != FRONT and before.get(n) != after[n]}
        old, new = older_pages(count, size), older_pages(count + 1, size)
        assert changed == ({old, new} - {0} if new != old else set()), (count, size)
        assert after[FRONT] != before[FRONT]


@pytest.mark.parametrize(("count", "size", "edited", "changed"), [
    (10, 3, 1, {1}), (10, 3, 3, {1}), (10, 3, 4, {2}), (10, 3, 9, {3, FRONT}),
    (10, 3, 10, {FRONT}), (10, 3, 8, {3, FRONT}), (10, 3, 7, {3}), (7, 7, 1, {FRONT}),
    (8, 7, 1, {1}), (8, 7, 2, {1, FRONT}),
])
def test_an_edit_changes_only_the_pages_showing_it(count: int, size: int, edited: int,
                                                   changed: set[int]) -> None:
    before, after = versions(_keys(count), size), versions(_keys(count, edited), size)
    assert {n for n in after if before[n] != after[n]} == changed


def test_a_removed_or_back_dated_entry_changes_the_pages_from_its_place_on() -> None:
    keys = _keys(20)
    before = versions(keys, 4)
    removed = versions(keys[:6] + keys[7:], 4)  # the 7th oldest: block 2
    assert {n for n in before if before[n] != removed.get(n)} == {2, 3, 4}
    # Back-dated: the 15th moves before the 3rd (another `published`).
    moved = sorted([*keys[:14], (1002, "e15", 2015 + 5000), *keys[15:]])
    moved_versions = versions(moved, 4)
    assert {n for n in before if before[n] != moved_versions[n]} == {1, 2, 3, 4}


def test_a_page_version_says_its_links_and_label() -> None:
    keys = _keys(3)
    assert page_version(1, 2, keys) != page_version(1, 1, keys)  # newer: page 2, or front
    assert page_version(1, 2, keys) == page_version(1, 3, keys)  # newer: page 2 both times
    assert page_version(FRONT, 2, keys) != page_version(FRONT, 3, keys)
    assert page_version(1, 2, keys, "Ciel") != page_version(1, 2, keys, "ciel")


# -- a real server -----------------------------------------------------------------------------


def _entries(page: bytes) -> list[str]:
    return re.findall(r'<h2><a href="[^"]+/entries/(e\d+)">', page.decode())


def _older(server_url: str, page: bytes) -> str | None:
    found = re.findall(rb'<a href="([^"]+)" rel="next">', page)
    return found[0].decode().removeprefix(server_url) if found else None


def test_exactly_max_entries_has_no_older_page_and_one_more_has_one(tmp_path: Path,
                                                                     serve) -> None:
    """3 entries, 3 a page: nothing older (no link, /page/1 404); a 4th: /page/1 holds the 3
    oldest (2 of them also on the front page); a 6th: /page/1 keeps its bytes."""
    write_config(tmp_path, port=free_port(), max_entries=3, language="en")
    seeds = tmp_path / "seeds"
    for n in range(3):
        write_seed(seeds, f"e{n}.md", f"---\ntitle: Entry {n}\ntags: [Sky]\n---\nBody.\n",
                   mtime=1_790_000_000 + n * 3600)
    server = serve(tmp_path / "config.toml")
    front = server.get("/")[2]
    assert _entries(front) == ["e2", "e1", "e0"] and _older(server.url, front) is None
    assert server.get("/page/1")[0] == 404
    assert _older(server.url, server.get("/tags/sky")[2]) is None
    assert server.get("/tags/sky/page/1")[0] == 404
    write_seed(seeds, "e3.md", "---\ntitle: Entry 3\ntags: [Sky]\n---\nBody.\n",
               mtime=1_790_000_000 + 3 * 3600)
    wait_until(lambda: _older(server.url, server.get("/")[2]) == "/page/1")
    _, headers, one = server.get("/page/1")
    assert _entries(one) == ["e2", "e1", "e0"]
    assert _entries(server.get("/")[2]) == ["e3", "e2", "e1"]
    assert _entries(server.get("/tags/sky/page/1")[2]) == ["e2", "e1", "e0"]
    for n in (4, 5):
        write_seed(seeds, f"e{n}.md", f"---\ntitle: Entry {n}\n---\nBody.\n",
                   mtime=1_790_000_000 + n * 3600)
    wait_until(lambda: _entries(server.get("/")[2]) == ["e5", "e4", "e3"])
    status, after, same = server.get("/page/1")
    assert status == 200 and same == one and after["ETag"] == headers["ETag"]
    assert _older(server.url, server.get("/")[2]) == "/page/1"  # 6: no overlap
    assert server.get("/page/2")[0] == 404


def test_a_long_walk_keeps_every_older_page_while_entries_are_published(tmp_path: Path,
                                                                        serve) -> None:
    """23 entries, 4 a page; then 5 more, one by one. After each: walking "older" from `/`
    meets every entry, the front page's entries again only on the newest older page; every
    complete page served before has the same bytes and ETag, but the one whose "newer" link
    moved (the newest one, once a new page appears)."""
    write_config(tmp_path, port=free_port(), max_entries=4, language="en")
    seeds = tmp_path / "seeds"
    for n in range(23):
        write_seed(seeds, f"e{n}.txt", f"e{n}\nEntry {n}\n\nBody.",
                   mtime=1_790_000_000 + n * 60)
    server = serve(tmp_path / "config.toml")
    served: dict[str, tuple[str, bytes]] = {}
    for count in range(23, 29):
        if count > 23:
            n = count - 1
            write_seed(seeds, f"e{n}.txt", f"e{n}\nEntry {n}\n\nBody.",
                       mtime=1_790_000_000 + n * 60)
            wait_until(lambda n=n: _entries(server.get("/")[2])[0] == f"e{n}")
        url: str | None = "/"
        seen: list[str] = []
        walked: list[str] = []
        while url is not None:
            status, headers, page = server.get(url)
            assert status == 200, url
            seen += _entries(page)
            walked.append(url)
            if url != "/":
                previous = served.get(url)
                relinked = count % 4 == 1 and url == f"/page/{older_pages(count, 4) - 1}"
                if previous is not None:
                    assert ((headers["ETag"], page) == previous) is not relinked, (count, url)
                served[url] = (headers["ETag"], page)
            url = _older(server.url, page)
        counted = Counter(seen)
        assert set(counted) == {f"e{n}" for n in range(count)}
        assert sorted(counted.values())[-1] <= 2
        assert sum(times - 1 for times in counted.values()) == overlap(count, 4)
        assert walked == ["/", *(f"/page/{n}" for n in range(older_pages(count, 4), 0, -1))]


def test_a_page_not_touched_stays_cached_across_changes(tmp_path: Path) -> None:
    """SitePages (what `serve` answers `/page/{n}` with) after a change of the state: the
    pages whose version did not move are the very documents cached before (not rendered
    again); the one whose "newer" link moved, and an edited one's, are new."""
    from feedsvc.config import load_config
    from feedsvc.publish.publisher import Publisher
    from feedsvc.publish.sitepages import SitePages

    config = load_config(write_config(tmp_path, max_entries=2, language="en"))
    seeds = tmp_path / "seeds"
    for n in range(6):
        write_seed(seeds, f"e{n}.txt", f"e{n}\nEntry {n}\n\nBody.", mtime=1_790_000_000 + n)
    publisher = Publisher.open(config)
    site = SitePages(config)
    try:
        publisher.scan()
        site.start(publisher.info)
        before = {n: site.render_now("index", "", n) for n in (1, 2)}  # 6 entries: 2 pages
        assert site.render_now("index", "", 3) is None
        publisher.update([write_seed(seeds, "e6.txt", "e6\nEntry 6\n\nBody.",
                                     mtime=1_790_000_000 + 6)])
        wait_until(lambda: site.render_now("index", "", 3) is not None)  # 7: a third page
        assert site.render_now("index", "", 1) is before[1]
        assert site.render_now("index", "", 2) is not before[2]  # "newer": page 3 now
        assert site.render_now("index", "", 2).body != before[2].body
        kept = site.render_now("index", "", 2)
        publisher.update([write_seed(seeds, "e0.txt", "e0\nEntry zero\n\nBody.",
                                     mtime=1_790_000_000 + 10)])
        wait_until(lambda: b"Entry zero" in site.render_now("index", "", 1).body)
        assert site.render_now("index", "", 2) is kept
    finally:
        site.close()
        publisher.close()
