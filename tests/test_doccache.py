"""The byte budget of the documents rendered on request (doccache.py). Pure: real documents
made by snapshot.make_document, no disk, no socket."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from feedsvc.model import Document
from feedsvc.publish.doccache import ENTRY_OVERHEAD_BYTES, DocumentCache, document_bytes
from feedsvc.publish.snapshot import make_document, make_document_soon

WHEN = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)


def doc(n: int, size: int = 10_000) -> Document:
    # Random bytes: their gzip and br are as large as they are, so sizes are predictable.
    return make_document(f"/p/{n}", "text/html", os.urandom(size), WHEN)


def test_a_document_counts_every_coding() -> None:
    d = doc(0)
    codings = {v.coding: len(v.body) for v in d.variants.values()}
    assert set(codings) == {"identity", "gzip", "br"}
    assert document_bytes(d) == (ENTRY_OVERHEAD_BYTES + len(d.body) + codings["gzip"]
                                 + codings["br"])


def test_least_recently_used_leave_first_within_the_budget() -> None:
    one = document_bytes(doc(0))
    cache: DocumentCache[int, str] = DocumentCache(max_bytes=3 * one + one // 2)
    for n in range(3):
        cache.put(n, f"v{n}", doc(n))
    assert cache.get(0) is not None  # 0 is now the most recent
    cache.put(3, "v3", doc(3))
    assert cache.get(1) is None  # the least recently used went
    assert [n for n in range(4) if cache.get(n) is not None] == [0, 2, 3]
    assert cache.bytes <= cache.max_bytes
    cache.put(2, "v2b", doc(2))  # a new version replaces the old, counted once
    got = cache.get(2)
    assert got is not None and got[0] == "v2b" and len(cache) == 3
    cache.pop(0)
    cache.pop(0)  # twice: nothing more
    assert len(cache) == 2 and cache.bytes == sum(document_bytes(cache.get(n)[1])
                                                  for n in (2, 3))  # type: ignore[index]


def test_the_latest_stays_even_alone_over_the_budget() -> None:
    cache: DocumentCache[int, None] = DocumentCache(max_bytes=1000)
    cache.put(1, None, doc(1))
    cache.put(2, None, doc(2))
    assert cache.get(1) is None and cache.get(2) is not None and len(cache) == 1


def test_codings_made_later_are_counted_once_the_budget_is_passed() -> None:
    soon = make_document_soon("/p/soon", "text/html", os.urandom(200_000), WHEN)
    small = doc(9, size=5_000)
    cache: DocumentCache[str, None] = DocumentCache(max_bytes=0)
    cache.max_bytes = document_bytes(soon) + document_bytes(small) + 1000  # before the codings
    cache.put("soon", None, soon)
    deadline = time.monotonic() + 10
    while len(soon.variants) < 3:  # the compressor threads add gzip and br in place
        assert time.monotonic() < deadline, "the codings never came"
        time.sleep(0.01)
    cache.put("small", None, small)  # fits as counted at first; not once soon is measured
    assert cache.get("soon") is None and cache.get("small") is not None
    assert cache.bytes == document_bytes(small)
