"""The whole site as static files (`feedsvc build`, and `serve` with `[build] on_change`):
every document `serve` sends with status 200, with the same bytes, at the file a static server
maps its route to (siteoutput.py: `/p` is `p` or `p/index.html`), each with .gz and .br:

    feed.{ext}, tags/{tag}.{ext}, archive/{size}/{n}.{ext}   the feeds, every format
    index.html, page/{n}/index.html                          the front page and older pages
    entries/{slug}/index.html                                every published entry's page
    tags/index.html, tags/{tag}/index.html, tags/{tag}/page/{n}/index.html
    feeds.opml, sitemap.xml, sitemaps/{n}.xml, feed-style.{hash}.css, assets/site.{hash}.css
    404.html                                                 the not-found page
    media/…                                                  the media folder (as is)

Files are written only when their bytes change, dated with their Last-Modified, and those of
an earlier write that are no longer part of the site are removed (siteoutput.py).

Entries are read from the state a part at a time (memory stays bounded at 100,000 seeds).
`write(snapshot, changed)` after a change (`on_change`) renders again only what may have
changed: the snapshot's documents, the archive pages in `changed`, the long tail's pages whose
entry's (slug, updated) is not what the last write wrote, the older pages and tag pages whose
version moved (pageblocks.py: numbered from the oldest, a new entry moves none but the newest
one or two), the lists and the sitemap. Which ones is read from one index of the state
(`stamps_site`: 50 ms at 100,000 entries), never from the files: at 100,000 entries, a look
at every file cost more than a second per change. What it remembers between writes: a hash of
each entry's (slug, updated) and each older page's version (8 MB at 100,000 entries).
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Config
from feedsvc.errors import FeedsvcError, StoreError
from feedsvc.model import Document, FeedInfo, Snapshot
from feedsvc.publish.archives import ArchivePages
from feedsvc.publish.longtail import EntryPages
from feedsvc.publish.mediacopy import copy_media
from feedsvc.publish.pages import (
    CSS_TYPE,
    HTML_TYPE,
    STYLESHEET,
    STYLESHEET_CACHE,
    STYLESHEET_PATH,
    render_not_found,
)
from feedsvc.publish.registry import ENTRIES, MAIN, entry_path, formats, tag_of
from feedsvc.publish.registry import archive_feed_path as _archive_path
from feedsvc.publish.sitefiles import SiteFiles
from feedsvc.publish.siteoutput import SIBLINGS, OutputCounts, SiteOutput, file_name, mtime_ns
from feedsvc.publish.sitepages import SitePages, index_page_path, tag_page_path
from feedsvc.publish.snapshot import make_document

#: Slugs read from the state at a time.
_PART = 1000
#: The stylesheet's Last-Modified: constant, as its bytes (the URL carries their hash).
STYLESHEET_DATE = datetime(2026, 11, 30, tzinfo=UTC)
NOT_FOUND_FILE = "404.html"


def stylesheet_document() -> Document:
    return make_document(STYLESHEET_PATH, CSS_TYPE, STYLESHEET.encode(), STYLESHEET_DATE,
                         cache_control=STYLESHEET_CACHE)


class SiteBuilder:
    """`start(info)`, then `write(snapshot)` once (`build`) or after every change (`serve`),
    then `close`. Not thread-safe: one thread writes."""

    def __init__(self, config: Config, output: Path | None = None) -> None:
        self.config = config
        self.output = output if output is not None else config.paths.output
        self.info: FeedInfo | None = None
        self.site, self.entries = SitePages(config), EntryPages(config)
        self.archives, self.files = ArchivePages(config), SiteFiles(config)
        self.archive_pages = 0
        self.media: tuple[int, int, int] = (0, 0, 0)  # linked, copied, unchanged
        self._full = False  # a whole write done by this builder: the next may be partial
        # hash((slug, updated)) of every entry whose page the last write wrote or kept.
        self._entry_marks: set[int] = set()
        # (tag or None, page number) → pageblocks.page_version of the page last written.
        self._page_versions: dict[tuple[str | None, int], int] = {}

    def start(self, info: FeedInfo) -> None:
        self.info = info
        for reader in (self.site, self.entries, self.archives, self.files):
            reader.start(info)

    def close(self) -> None:
        for reader in (self.site, self.entries, self.archives, self.files):
            reader.close()

    def write(self, snapshot: Snapshot, changed: frozenset[str] | None = None) -> OutputCounts:
        """Bring the output up to date with `snapshot` and the state. `changed`: the feed
        documents changed since the last write (archive pages not named there and already
        on disk are kept); None: render everything and compare (a build)."""
        assert self.info is not None
        partial = changed is not None and self._full
        out = SiteOutput(self.output)
        # What is linked to before what links to it: the stylesheets, the media, the pages of
        # the entries and the archive, then the lists of them, the feeds and the front page
        # last (a reader of the output never follows a link to a file not there yet).
        out.put(stylesheet_document())
        out.put(self.files.stylesheet)
        out.put(make_document("/404", HTML_TYPE, render_not_found(self.info), self.info.created,
                              self.config.server.cache_max_age), NOT_FOUND_FILE)
        self._media(out)
        keys = self._entry_pages(out, snapshot, partial)
        self._archive_pages(out, snapshot, changed if partial else None)
        self._site_pages(out, partial, keys)
        for path in self.files.paths(snapshot):
            document = self.files.render(path, snapshot)
            if document is None:
                raise FeedsvcError(f"cannot read the state to write {path[1:]}")
            out.put(document)
        now = time.time()
        for path, document in sorted(snapshot.documents.items()):
            gone = snapshot.gone_at.get(path)
            if gone is not None and now >= gone:
                continue
            if document.status == 200 and not path.startswith(f"/{ENTRIES}"):
                out.put(document)  # (the entries' pages: with the others, above)
        # A tag's feeds gone for good (410 when served): no file, so a static server answers
        # 404; those an earlier write made are removed, listed or not.
        for path, gone in snapshot.gone_at.items():
            if now >= gone:
                out.drop(path.lstrip("/"))
        counts = out.finish()
        self._full = True
        return counts

    def _site_pages(self, out: SiteOutput, partial: bool,
                    keys: list[tuple[int, str, int]]) -> None:
        """The front page's older pages, the list of tags, each tag's pages. After a change,
        only those whose version moved (pageblocks.py: their entries, links or label) are
        rendered again; the others' files are kept as they are, when the last write listed
        them (no look at the disk). A page's version is recorded from the rows it was
        rendered from, so a change that lands while this write runs is seen by the next.
        `keys`: the published entries' (published, slug, updated), as `_entry_pages` read
        them."""
        site = self.site
        rendered: dict[tuple[str | None, int], int] = {}
        try:
            # After a change, the pages rendered: one state. Which ones comes from `keys`, read
            # a moment before: a page changed in between is recorded with the version of
            # what it shows, so the next write (every change makes one) renders it. A whole
            # write holds no transaction for minutes.
            with site.reading() if partial else contextlib.nullcontext():
                lists: dict[str | None, list[int] | None]
                if partial:
                    lists = {None: []}
                    listed = out.previous()
                    for (owner, number), version in site.versions(keys).items():
                        numbers = lists.setdefault(owner, [])
                        name = self._page_file(owner, number)
                        if self._page_versions.get((owner, number)) == version and name in listed:
                            out.keep_all(name)
                            rendered[owner, number] = version
                        else:
                            assert numbers is not None
                            numbers.append(number)
                else:
                    lists = {None: None, **{tag: None for tag, _, _ in site.tag_rows()}}
                for tag, numbers in lists.items():
                    if numbers == []:
                        continue
                    for number, version, document in site.pages_of(tag, numbers):
                        out.put(document)
                        rendered[tag, number] = version
                tags = site.render_now("tags", "", 1)
                if tags is None:
                    raise FeedsvcError("cannot render the list of tags from the state")
                out.put(tags)
        except StoreError as e:
            raise FeedsvcError(f"cannot read the site's pages from the state: {e}") from e
        self._page_versions = rendered

    @staticmethod
    def _page_file(tag: str | None, number: int) -> str:
        path = index_page_path(number) if tag is None else tag_page_path(tag, number)
        return file_name(path, HTML_TYPE)

    def _entry_pages(self, out: SiteOutput, snapshot: Snapshot, partial: bool
                     ) -> list[tuple[int, str, int]]:
        """Every published entry's page (the snapshot's, else made from the state). After a
        change, a page of the long tail whose entry's (slug, updated) is what the last write
        wrote, and whose files that write listed, is kept as it is without a look at the disk
        (its bytes depend on its entry alone, and `updated` moves whenever they change): at
        100,000 entries, a stat of every file cost a second per change. (A file removed by
        hand meanwhile comes back with the next whole write: a start, a `build`.)"""
        try:
            keys = self.site.published_keys()
        except StoreError as e:
            raise FeedsvcError(f"cannot read the published entries from the state: {e}") from e
        marks = {hash((slug, updated)) for _, slug, updated in keys}
        if partial and self._entry_marks:
            listed, old = out.previous(), self._entry_marks
            documents = snapshot.documents
            kept = []
            for _, slug, updated in keys:
                # file_name(entry_path(slug), HTML_TYPE), without its calls: 100,000 times.
                name = f"{ENTRIES}{slug}/index.html"
                document = documents.get(f"/{ENTRIES}{slug}")
                if document is None and hash((slug, updated)) in old and name in listed:
                    kept.append(name)
                    continue
                if document is None:
                    document = self.entries.render_now(slug)
                if document is not None and document.status == 200:
                    out.put(document)
            out.keep_names(f"{name}{suffix}" for name in kept for _, suffix in SIBLINGS)
            self._entry_marks = marks
            return keys
        after = None
        while slugs := self._live_slugs(after):
            moments = self.entries.page_moments(slugs) if partial else {}
            for slug in slugs:
                path = entry_path(slug)
                document = snapshot.documents.get(path)
                if document is None and slug in moments and self._dated_on_disk(
                        out, file_name(path, HTML_TYPE), mtime_ns(moments[slug])):
                    continue
                if document is None:
                    document = self.entries.render_now(slug)
                if document is not None and document.status == 200:
                    out.put(document)
            after = slugs[-1]
        # Read before the pages were: an entry edited meanwhile is rendered again next time.
        self._entry_marks = marks
        return keys

    def _dated_on_disk(self, out: SiteOutput, name: str, when: int) -> bool:
        try:
            st = os.stat(os.path.join(self.output, name))
        except OSError:
            return False
        return st.st_mtime_ns == when and self._kept(out, name)

    def _kept(self, out: SiteOutput, name: str) -> bool:
        """Whether the files of `name` are all there; if so they are part of this write."""
        names = [f"{name}{suffix}" for _, suffix in SIBLINGS]
        root = str(self.output)
        if not all(os.path.isfile(os.path.join(root, n)) for n in names):
            return False
        for n in names:
            out.keep(n)
        return True

    def _live_slugs(self, after: str | None) -> list[str]:
        try:
            return self.entries.live_slugs(after, _PART)
        except FeedsvcError as e:
            raise FeedsvcError(f"cannot read the published entries from the state: {e}") from e

    def _archive_pages(self, out: SiteOutput, snapshot: Snapshot,
                       changed: frozenset[str] | None) -> None:
        """Every RFC 5005 archive page in every format (after a change: those `changed`
        names, and any missing)."""
        span = snapshot.archive
        pages = span.pages if span is not None else 0
        listed = out.previous() if changed is not None else frozenset()
        for page in range(1, pages + 1):
            assert span is not None
            for fmt in formats():
                path = fmt.path(_archive_path(page, span.page_entries))
                name = path[1:]
                if changed is not None and path not in changed and name in listed:
                    out.keep_all(name)  # as the last write left it (no look at the disk)
                    continue
                document = self.archives.render(span, page, fmt)
                if document is None:
                    raise FeedsvcError(f"cannot render archive page {page} ({fmt.name}) "
                                       "from the state")
                out.put(document)
        self.archive_pages = pages

    def _media(self, out: SiteOutput) -> None:
        media = self.config.paths.media
        if media is None:
            return
        try:
            copied = copy_media(media, self.output)
        except OSError as e:
            raise FeedsvcError(f"cannot copy the media folder {media} into "
                               f"{self.output}/media: {e.strerror or e}") from e
        for name in copied.names:
            out.keep(name)
        self.media = (copied.linked, copied.copied, copied.unchanged)


def feed_names(snapshot: Snapshot) -> tuple[list[str], int]:
    """The subscription feeds' file names, and the number of tags with feeds (for the log)."""
    feeds = [fmt.path(MAIN)[1:] for fmt in formats()]
    tags = {tag for path in snapshot.documents if (tag := tag_of(path)) is not None}
    return feeds, len(tags)

