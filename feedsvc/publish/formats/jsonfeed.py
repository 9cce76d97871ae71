"""Items → JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/). Pure and deterministic.

Keys in a fixed order, UTF-8 without escapes (ensure_ascii=False: « » ’ reach the reader as
written), one item per line. Each item's text is serialized once and reused while it is shown,
as Atom's and RSS's entries are. The document carries no date of its own (JSON Feed has no
feed-level one), so it is rendered once per change and dated by its bytes (`docdates`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from feedsvc.model import FeedInfo, Item
from feedsvc.publish.docformat import FeedFormat, forget, reuse

VERSION = "https://jsonfeed.org/version/1.1"
EXTENSION = "json"
MEDIA_TYPE = "application/feed+json"


def render_json_feed(info: FeedInfo, items: Sequence[Item], updated: datetime | None = None
                     ) -> bytes:
    """The whole document in one pass (`updated` is not shown: JSON Feed has no such field)."""
    return _document(info, [_item_json(info, item) for item in items])


class JsonFeedRenderer:
    """The documents of successive item lists, each item's JSON made once while shown."""

    def __init__(self, info: FeedInfo) -> None:
        self.info = info
        self._items: dict[Item, str] = {}

    def render(self, items: Sequence[Item], updated: datetime | None = None,
               info: FeedInfo | None = None) -> bytes:
        # Items render the same in every document of the feed (same author).
        return _document(info or self.info, reuse(self._items, items, self._item))

    def _item(self, item: Item) -> str:
        return _item_json(self.info, item)

    def retain(self, items: Iterable[Item]) -> None:
        forget(self._items, items)


def _document(info: FeedInfo, items: list[str]) -> bytes:
    fields: dict[str, Any] = {
        "version": VERSION,
        "title": info.title,
        "home_page_url": info.base_url,
        # Its own URL; an archive page's is its subscription document's: `feed_url` "serves
        # as the unique identifier for the feed", the same on every page of it.
        "feed_url": (f"{info.base_url}{info.current}.{EXTENSION}" if info.current
                     else JSON_FEED.url(info)),
    }
    if info.prev_archive:
        # Older entries (RFC 5005 archives): pages chain from the newest to the oldest.
        fields["next_url"] = f"{info.base_url}{info.prev_archive}.{EXTENSION}"
    head = _dumps({
        **fields,
        "description": info.subtitle,
        "language": info.language,
        "authors": [{"name": info.author_name}],
        # JSON Feed 1.1 `hubs`: "endpoints that can be used to subscribe to real-time
        # notifications"; WebSub §4 discovery, type "WebSub".
        **({"hubs": [{"type": "WebSub", "url": hub} for hub in info.hubs]} if info.hubs
           else {}),
    })
    body = ",\n".join(items)
    return f'{head[:-1]},"items":[\n{body}\n]}}\n'.encode() if items else \
        f'{head[:-1]},"items":[]}}\n'.encode()


def _item_json(info: FeedInfo, item: Item) -> str:
    entry = item.entry
    fields: dict[str, Any] = {
        "id": item.id,  # the Atom <id> and RSS <guid> of the same entry
        "url": item.link,
        "title": entry.title,
        "content_html": entry.content_html,
        "summary": entry.summary,
        **({"image": entry.image} if entry.image else {}),  # the feature image
        # RFC 3339, as Atom writes them (a fraction only where Atom has one).
        "date_published": item.published.isoformat(),
        "date_modified": item.updated.isoformat(),
        # An entry's own author replaces the feed's. JSON Feed authors have no email field.
        "authors": [{"name": entry.author_name or info.author_name}],
    }
    if entry.tags:
        fields["tags"] = list(entry.tags)  # as written (URLs use their slugs)
    if entry.lang and entry.lang != info.language:
        fields["language"] = entry.lang  # as Atom's xml:lang: only when it differs
    if entry.enclosures:
        # JSON Feed 1.1 `attachments`: url and mime_type required, size_in_bytes optional
        # (left out when unknown: a file elsewhere).
        fields["attachments"] = [
            {"url": e.url, "mime_type": e.type,
             **({"size_in_bytes": e.length} if e.length is not None else {})}
            for e in entry.enclosures]
    return _dumps(fields)


def _dumps(value: dict[str, Any]) -> str:
    # Insertion order, not sorted: the spec's order of fields, the same on every run.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


JSON_FEED = FeedFormat(name="JSON Feed", extension=EXTENSION, content_type=MEDIA_TYPE,
                       link_type=MEDIA_TYPE, render=render_json_feed, renderer=JsonFeedRenderer,
                       dated=False)
