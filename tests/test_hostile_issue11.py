"""Hostile tests of issue 11 (tombstones, archives, emptied tags, titles, media), each a defect
found by attacking the merged code with a real server; see the docstring of each test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from feedsvc.serve.media import byte_range
from tests.conftest import ServeProcess, wait_until, write_config, write_seed


@pytest.mark.parametrize(("header", "size", "expected"), [
    # RFC 9110 §14.1.1: positions are ASCII DIGITs of any length; a first-pos past the end is
    # unsatisfiable, a last-pos past the end means the end, a suffix longer than the file the
    # whole file. Python refuses int() of more than 4,300 digits: these were a 500.
    ("bytes=" + "9" * 5000 + "-", 10, False),
    ("bytes=0-" + "9" * 5000, 10, (0, 9)),
    ("bytes=-" + "9" * 5000, 10, (0, 9)),
    ("bytes=" + "0" * 5000 + "1-2", 10, (1, 2)),
    # DIGIT is %x30-39 only (RFC 5234 B.1): Arabic-Indic digits are no range (ignored, 200).
    ("bytes=\u0663-\u0664", 10, None),
])
def test_byte_range_with_huge_or_non_ascii_positions(header: str, size: int,
                                                     expected: object) -> None:
    assert byte_range(header, size) == expected


def test_a_range_of_5000_digits_is_no_500(site: Path,
                                          serve: Callable[[Path], ServeProcess]) -> None:
    """`Range: bytes=999…(5000 digits)-` made the server answer 500 Internal Server Error
    (ValueError from int(): Python's 4,300-digit limit) and log a traceback."""
    (site / "media").mkdir()
    (site / "media" / "a.txt").write_bytes(b"0123456789")
    server = serve(site / "config.toml")
    assert server.get("/media/a.txt", {"Range": "bytes=" + "9" * 5000 + "-"})[0] == 416
    status, headers, body = server.get("/media/a.txt", {"Range": "bytes=2-" + "9" * 5000})
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-9/10", b"23456789")
    assert "Traceback" not in server.log()


def test_a_full_archive_page_sent_immutable_never_changes(
        site: Path, serve: Callable[[Path], ServeProcess]) -> None:
    """RFC 8246 §2: `immutable` says the body "will not be updated while it's fresh" (here a
    year); RFC 5005 §4: an archive document's entries should not change. The README promises
    "a full page never changes when new entries arrive" and sends it immutable, but a new entry
    dated in the past is a new entry arriving, and it rewrites page 1."""
    port = int(site.joinpath("config.toml").read_text().split("port = ")[1].split()[0])
    write_config(site, port=port, max_entries=3, archive_page_entries=2)
    for day in range(1, 8):
        write_seed(site / "seeds", f"s{day}.md",
                   f"---\nslug: s{day}\ntitle: T{day}\ndate: 2026-01-0{day} 10:00\n---\n\nBody")
    server = serve(site / "config.toml")
    status, headers, before = server.get("/archive/2/1.atom")
    assert status == 200 and "immutable" in headers["Cache-Control"]
    write_seed(site / "seeds", "s0.md",
               "---\nslug: s0\ntitle: T0\ndate: 2025-12-01 10:00\n---\n\nBody")
    wait_until(lambda: server.get("/entries/s0")[0] == 200)
    wait_until(lambda: b"/entries/s0" in b"".join(
        server.get(f"/archive/2/{n}.atom")[2] for n in (1, 2, 3)))
    assert server.get("/archive/2/1.atom")[2] == before
