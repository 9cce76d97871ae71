"""Pages made from the state on request read one committed state: a write the pipeline commits
in the middle of such a read is seen by all of the page's reads or by none, and a page is never
cached with one version's text under the next version's date (the stale long-tail page the
bench once met: an edit served late by 20 s and more)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from feedsvc.config import load_config
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.publisher import Publisher
from feedsvc.state.store import Store

from .conftest import seed, write_config, write_seed

T = 1_700_000_000


def _site(tmp_path: Path, seeds: int = 6):
    write_config(tmp_path, max_entries=2)
    config = load_config(tmp_path / "config.toml")
    for i in range(seeds):
        write_seed(config.paths.seeds, f"s{i}.txt", seed(f"s{i}", f"Titre {i}", "Avant."),
                   mtime=T + i)
    return config


def test_a_commit_between_a_pages_reads_never_leaves_it_stale(tmp_path: Path) -> None:
    config = _site(tmp_path)
    publisher = Publisher.open(config)
    pages = EntryPages(config)
    try:
        publisher.scan()
        pages.start(publisher.info)
        store = pages._state()
        original = store.load_page
        edits = []

        def load_page_then_edit(slug: str, now: int):
            row = original(slug, now)
            if not edits:  # the pipeline commits an edit of this very entry right here
                path = write_seed(config.paths.seeds, "s0.txt",
                                  seed("s0", "Titre 0", "Après la modification."), mtime=T)
                publisher.update([path])
                edits.append(path)
            return row

        store.load_page = load_page_then_edit  # type: ignore[method-assign]
        first = asyncio.run(pages.page("s0"))
        assert first is not None and edits
        # Whatever the first answer was, it is one version: the old text with the old date.
        assert b"Avant." in first.body
        second = asyncio.run(pages.page("s0"))
        assert second is not None
        assert "Après la modification.".encode() in second.body, "stale page served"
        assert second.last_modified > first.last_modified
        assert second.etag != first.etag
    finally:
        pages.close()
        publisher.close()


def test_reads_within_reading_see_one_committed_state(tmp_path: Path) -> None:
    config = _site(tmp_path, seeds=3)
    publisher = Publisher.open(config)
    reader = Store.open_for_reading(config.paths.state)
    try:
        publisher.scan()
        with reader.reading():
            before = reader.load_page("s2", T * 10)
            write_seed(config.paths.seeds, "s2.txt", seed("s2", "Titre 2", "Nouveau."),
                       mtime=T + 2)
            publisher.update([config.paths.seeds / "s2.txt"])
            assert reader.load_page("s2", T * 10) == before  # the commit is not seen inside
        after = reader.load_page("s2", T * 10)
        assert after is not None and before is not None and after[1] > before[1]
        assert after[2].paragraphs == ("Nouveau.",)
    finally:
        reader.close()
        publisher.close()
