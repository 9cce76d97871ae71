"""The site's files beside the feeds and pages: the feeds' stylesheet (feedstyle.py),
`/feeds.opml` (opml.py) and `/sitemap.xml` (sitemap.py).

The stylesheet is made once. The subscription list and the sitemap are made on request on a
thread of their own from the snapshot and the state (never on the event loop, never per
change: the sitemap of 100,000 entries is a few SQLite reads of 50,000 rows), and kept until
the snapshot changes or `[server] cache_max_age` seconds pass (an archived entry's edit
changes the state, not the snapshot)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from feedsvc.config import Config
from feedsvc.errors import StoreError
from feedsvc.model import Document, Snapshot, from_micros
from feedsvc.publish.feedstyle import (
    CSS_TYPE,
    IMMUTABLE,
    STYLESHEET_DATE,
    stylesheet_css,
    stylesheet_path,
)
from feedsvc.publish.opml import OPML_PATH, OPML_TYPE, PREFERRED_EXTENSION, render_opml
from feedsvc.publish.registry import MAIN, tag_of
from feedsvc.publish.sitemap import (
    SITEMAP_PATH,
    SITEMAP_TYPE,
    URLS_PER_FILE,
    files_for,
    render_index,
    render_urlset,
    sitemap_file_path,
)
from feedsvc.publish.snapshot import make_document
from feedsvc.publish.statereader import StateReader

log = logging.getLogger("feedsvc")


def stylesheet_document(config: Config) -> Document:
    language = config.feed.language
    return make_document(stylesheet_path(language), CSS_TYPE, stylesheet_css(language),
                         STYLESHEET_DATE, cache_control=IMMUTABLE)


class SiteFiles(StateReader):
    def __init__(self, config: Config, urls_per_file: int = URLS_PER_FILE) -> None:
        super().__init__(config, "feedsvc-sitefiles")
        self.urls_per_file = urls_per_file  # sitemaps.org's bound (smaller in tests)
        self.stylesheet = stylesheet_document(config)
        # path → (the snapshot's generation, when it expires (monotonic), the document)
        self._cache: dict[str, tuple[int, float, Document | None]] = {}

    def _forget(self) -> None:
        self.stylesheet = stylesheet_document(self.config)
        self._cache = {}

    async def opml(self, snapshot: Snapshot) -> Document | None:
        return await self._cached(OPML_PATH, snapshot)

    async def sitemap(self, snapshot: Snapshot, number: int | None = None) -> Document | None:
        """`/sitemap.xml` (None), or sitemap file `number` of an index."""
        path = SITEMAP_PATH if number is None else sitemap_file_path(number)
        return await self._cached(path, snapshot)

    async def _cached(self, path: str, snapshot: Snapshot) -> Document | None:
        kept = self._cache.get(path)
        if kept is not None and kept[0] == snapshot.generation and kept[1] > time.monotonic():
            return kept[2]
        document = await self._on_thread(self.render, path, snapshot)
        if len(self._cache) > 64:  # sitemap files of a huge site, asked for one by one
            self._cache.clear()
        self._cache[path] = (snapshot.generation,
                             time.monotonic() + self.config.server.cache_max_age, document)
        return document

    def render(self, path: str, snapshot: Snapshot) -> Document | None:
        """The document at `path` now, or None (no such file; the state cannot be read)."""
        try:
            if path == OPML_PATH:
                return self._opml(snapshot)
            return self._sitemap(path)
        except StoreError as e:
            log.warning("%s: cannot read the state: %s", path, e)
            self._close_store()
            return None

    def paths(self, snapshot: Snapshot) -> list[str]:
        """Every file's path now: the list, the sitemap and its files (for `build`)."""
        count, _ = self._state().count_published(_now())
        return [OPML_PATH, SITEMAP_PATH, *(sitemap_file_path(n) for n in range(
            1, files_for(count, self.urls_per_file) + 1))]

    def _opml(self, snapshot: Snapshot) -> Document | None:
        assert self.info is not None
        main = snapshot.documents.get(f"/{MAIN}.{PREFERRED_EXTENSION}")
        if main is None:
            return None
        # The tags whose feeds have entries now (not an emptied tag's, soon 410), by label.
        tags = {tag: doc for path, doc in snapshot.documents.items()
                if (tag := tag_of(path)) is not None and path not in snapshot.gone_at
                and path.endswith(f".{PREFERRED_EXTENSION}")}
        labels = self._state().tag_labels() if tags else {}
        listed = sorted(((tag, labels.get(tag, tag)) for tag in tags),
                        key=lambda pair: (pair[1].casefold(), pair[1], pair[0]))
        modified = max([main.last_modified, *(doc.last_modified for doc in tags.values())])
        return make_document(OPML_PATH, OPML_TYPE, render_opml(self.info, listed, modified),
                             modified, self.config.server.cache_max_age)

    def _sitemap(self, path: str) -> Document | None:
        assert self.info is not None
        store, now = self._state(), _now()
        base = self.info.base_url
        with store.reading():  # one read transaction: the count and the rows agree
            count, newest = store.count_published(now)
            per_file = self.urls_per_file
            files = files_for(count, per_file)
            if path == SITEMAP_PATH and not files:
                body = render_urlset(base, store.published_pages(now, 0, per_file))
            elif path == SITEMAP_PATH:
                newest_of = [max(updated for _, updated in store.published_pages(
                    now, (n - 1) * per_file, per_file)) for n in range(1, files + 1)]
                body = render_index(base, ((n, from_micros(newest_of[n - 1]))
                                           for n in range(1, files + 1)))
            else:
                number = _file_number(path)
                if number is None or not 1 <= number <= files:
                    return None
                pages = store.published_pages(now, (number - 1) * per_file, per_file)
                newest = max(updated for _, updated in pages)
                body = render_urlset(base, pages)
        # Never later than the clock: `updated` never is; with no entry, the feed's creation.
        modified = from_micros(newest) if newest else self.info.created
        return make_document(path, SITEMAP_TYPE, body, modified,
                             self.config.server.cache_max_age)


def _file_number(path: str) -> int | None:
    """n of `/sitemaps/{n}.xml`: digits, no sign or leading zero (one URL per file)."""
    prefix, _, rest = path.rpartition("/")
    number = rest.removesuffix(".xml")
    if (f"{prefix}/" != "/sitemaps/" or not rest.endswith(".xml") or not number.isascii()
            or not number.isdigit() or number.startswith("0") or len(number) > 9):
        return None
    return int(number)


def _now() -> int:
    return int(datetime.now(UTC).timestamp())

