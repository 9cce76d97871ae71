"""The arithmetic of the site's older pages (`/page/{n}`, `/tags/{tag}/page/{n}`). Pure.

The front page (`/`, or a tag's `/tags/{tag}`) shows the newest `size` published entries. The
older pages are blocks of `size` entries numbered FROM THE OLDEST, as RFC 5005 archives
number theirs (publish/archives.py): block n holds the ((n-1)·size+1)-th … (n·size)-th
oldest published entries (the site's order: newest `published` first, ties by slug), listed
newest first. Only complete blocks not wholly on the front page are pages: n = 1 … `pages`,

    pages = (count - 1) // size      (0 while count ≤ size)

so a page's entries never change when a newer entry is published: its bytes change only when
one of its own entries is edited, removed or moved (back-dated, published before it), or when
it stops or starts being the newest page (its "newer" link: the front page, or page n+1).

Links: the front page's "older" → page `pages`; page n's "older" → n-1 (none on page 1), its
"newer" → n+1, or the front page from page `pages`. Following "older" from the front page
reaches every published entry; the entries shown twice are those the front page shares with
page `pages`: `overlap(count, size)`, at most size-1 (none when count is a multiple of size).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

#: The front page's number here (`/`, `/tags/{tag}`): not a page of blocks.
FRONT = 0


def older_pages(count: int, size: int) -> int:
    """How many older pages there are for `count` published entries in pages of `size`."""
    if size < 1:
        raise ValueError("a page holds at least one entry")
    return max(0, (count - 1) // size)


def block_offset(count: int, size: int, number: int) -> int:
    """Where page `number` starts among the `count` entries listed newest first (an OFFSET):
    its newest entry is the (number·size)-th oldest. The front page starts at 0."""
    return 0 if number == FRONT else count - number * size


def exists(count: int, size: int, number: int) -> bool:
    """Whether page `number` (≥ 1) is a page now; past the last one it is not."""
    return 1 <= number <= older_pages(count, size)


def overlap(count: int, size: int) -> int:
    """Entries on both the front page and the newest older page."""
    pages = older_pages(count, size)
    return 0 if pages == 0 else size - (count - pages * size)


def links(number: int, pages: int) -> tuple[int | None, int | None]:
    """(newer, older) page numbers of page `number` (FRONT: the front page; None: no link)."""
    if number == FRONT:
        return None, (pages if pages else None)
    return (number + 1 if number < pages else FRONT), (number - 1 if number > 1 else None)


def block_of(position: int, size: int) -> int:
    """The block holding the `position`-th oldest entry (1-based)."""
    return (position - 1) // size + 1


def page_version(number: int, pages: int, keys: Sequence[Hashable], label: str = "") -> int:
    """What page `number` (FRONT or 1 … pages) of a list with `pages` older pages shows, as a
    number: its entries' keys, (published, slug, updated) oldest first (an edit of an entry
    always moves its `updated`), its links, and its tag's label. Equal versions at two
    moments: the page's bytes are the same (with the same configuration). Python's hash,
    salted per process: compare versions within one process only."""
    shown = pages if number == FRONT else links(number, pages)
    return hash((shown, tuple(keys), label))


def versions(keys: Sequence[Hashable], size: int, label: str = "") -> dict[int, int]:
    """`page_version` of every page (FRONT, 1 … pages) of a list whose entries' keys are
    `keys`, oldest first."""
    count = len(keys)
    pages = older_pages(count, size)
    found = {FRONT: page_version(FRONT, pages, keys[max(0, count - size):], label)}
    for number in range(1, pages + 1):
        found[number] = page_version(number, pages,
                                     keys[(number - 1) * size:number * size], label)
    return found


def runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted page numbers as runs of consecutive ones: [(first, last), …], so that each run
    is read from the state in one query."""
    found: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if found and found[-1][1] == number - 1:
            found[-1] = (found[-1][0], number)
        else:
            found.append((number, number))
    return found
