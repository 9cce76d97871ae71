"""Ids, links and items: what the publisher and the long tail's pages both make from an entry.

An entry's id is its slug's, within the feed (never the file name's nor the content's); a
tag's documents have an id of their own that no entry can have. `make_item` is the one place
an `Item` is made, so a page rendered on request (longtail.py) shows what a rendered one shows.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime

from feedsvc.config import Config, FeedConfig
from feedsvc.ingest.parser import ParseOptions
from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish.registry import MAIN
from feedsvc.timerange import datetime_of


def parse_options(config: Config) -> ParseOptions:
    feed = config.feed
    return ParseOptions.from_feed(feed.timezone, feed.dayfirst, feed.language, feed.base_url,
                                  config.paths.media)


def derive_feed_id(base_url: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, base_url)}"


@functools.lru_cache(maxsize=4096)
def entry_id(feed_id: str, slug: str) -> str:
    """Stable forever for a slug within a feed: not from the file name, not from the content."""
    return f"urn:uuid:{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, feed_id), slug)}"


@functools.lru_cache(maxsize=1024)
def tag_feed_id(feed_id: str, tag: str) -> str:
    """A tag's documents' id: stable, and never an entry's (slugs have no ':')."""
    return f"urn:uuid:{uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, feed_id), 'tag:' + tag)}"


def make_item(info: FeedInfo, entry: Entry, published: int, updated: datetime,
              link_of: Callable[[str], str]) -> Item:
    """The item of an entry: its id, its own link or else `link_of(slug)` (the entry's page),
    `published` (Unix seconds; clamped: a state may hold a date from before the range) and
    `updated`."""
    return Item(entry=entry, id=entry_id(info.id, entry.slug),
                link=entry.link or link_of(entry.slug),
                published=datetime_of(published), updated=updated)


def make_feed_info(feed: FeedConfig, setdefault_meta: Callable[[str, str], str],
                   now: datetime) -> FeedInfo:
    """The feed's info; its creation time and derived id are kept in the state's meta table
    (`setdefault_meta(key, default)` returns the value kept, storing the default first)."""
    created = int(setdefault_meta("created", str(int(now.timestamp()))))
    feed_id = feed.id or setdefault_meta("feed_id", derive_feed_id(feed.base_url))
    return FeedInfo(
        id=feed_id,
        title=feed.title,
        subtitle=feed.subtitle,
        language=feed.language,
        author_name=feed.author_name,
        author_email=feed.author_email,
        base_url=feed.base_url,
        created=datetime_of(created),
        feed_path=MAIN,
        timezone=feed.timezone,
    )
