"""`build`'s share of the site: every HTML page `serve` sends, written as files with the same
bytes (and their .gz and .br), named for a static server that maps `/x` to `x.html`
(nginx `try_files $uri $uri.html $uri/index.html`):

    index.html, page/{n}.html          the front page and its older pages
    entries/{slug}.html                 every published entry's page
    tags/index.html, tags/{tag}.html, tags/{tag}/page/{n}.html
    404.html                            the not-found page
    assets/site.{hash}.css              the stylesheet

Entries are read from the state a part at a time (memory stays bounded at 100,000 seeds).
Pages of an earlier build that are no longer published (entries, pages, tags) are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError
from feedsvc.model import Document, FeedInfo, Snapshot
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.pages import (
    CSS_TYPE,
    HTML_TYPE,
    STYLESHEET,
    STYLESHEET_CACHE,
    STYLESHEET_PATH,
    render_not_found,
)
from feedsvc.publish.registry import ENTRIES, INDEX, TAGS, entry_path
from feedsvc.publish.sitepages import SitePages
from feedsvc.publish.snapshot import make_document

WriteDocument = Callable[[Path, str, Document], None]
#: Slugs read from the state at a time.
_PART = 1000
#: The stylesheet's Last-Modified: constant, as its bytes (the URL carries their hash).
STYLESHEET_DATE = datetime(2026, 11, 30, tzinfo=UTC)


def stylesheet_document() -> Document:
    return make_document(STYLESHEET_PATH, CSS_TYPE, STYLESHEET.encode(), STYLESHEET_DATE,
                         cache_control=STYLESHEET_CACHE)


def write_site(config: Config, info: FeedInfo, snapshot: Snapshot, output: Path,
               write: WriteDocument) -> int:
    """Write every page; returns how many (`write(output, file name, document)`)."""
    written: set[str] = set()

    def put(name: str, document: Document) -> None:
        write(output, name, document)
        written.add(name)

    put(STYLESHEET_PATH[1:], stylesheet_document())
    put("404.html", make_document("/404", HTML_TYPE, render_not_found(info),
                                  info.created, config.server.cache_max_age))
    put("index.html", snapshot.documents[INDEX])
    site, entries = SitePages(config), EntryPages(config)
    site.start(info)
    entries.start(info)
    try:
        number = 2
        while (document := site.render_now("index", "", number)) is not None:
            put(f"page/{number}.html", document)
            number += 1
        after = None
        while slugs := _live_slugs(entries, after):
            for slug in slugs:
                document = snapshot.documents.get(entry_path(slug)) or entries.render_now(slug)
                if document is not None and document.status == 200:
                    put(f"{ENTRIES}{slug}.html", document)
            after = slugs[-1]
        tags = site.render_now("tags", "", 1)
        if tags is None:
            raise FeedsvcError("cannot render the list of tags from the state")
        put(f"{TAGS}index.html", tags)
        for tag, _, _ in site.tag_rows():
            number = 1
            while (document := site.render_now("tag", tag, number)) is not None:
                put(f"{TAGS}{tag}.html" if number == 1 else f"{TAGS}{tag}/page/{number}.html",
                    document)
                number += 1
    finally:
        site.close()
        entries.close()
    _remove_stale(output, written)
    return len(written)


def _live_slugs(entries: EntryPages, after: str | None) -> list[str]:
    try:
        return entries.live_slugs(after, _PART)
    except FeedsvcError as e:
        raise FeedsvcError(f"cannot read the published entries from the state: {e}") from e


def _remove_stale(output: Path, written: set[str]) -> None:
    """Pages of an earlier build this one did not write (an entry removed, fewer pages)."""
    for folder, pattern in ((output / ENTRIES, "*.html"), (output / "page", "*.html"),
                            (output / TAGS, "**/*.html")):
        if not folder.is_dir():
            continue
        for stale in sorted(folder.glob(pattern)):
            name = stale.relative_to(output).as_posix()
            if name not in written and stale.is_file():
                for file_name in (stale, stale.with_name(stale.name + ".gz"),
                                  stale.with_name(stale.name + ".br")):
                    try:
                        file_name.unlink(missing_ok=True)
                    except OSError as e:
                        raise FeedsvcError(f"cannot remove {file_name}: "
                                           f"{e.strerror or e}") from e
