"""What WebSub calls topics, for this service: the URLs of its feed documents, and which of
them a batch changed. Pure: no socket, no disk.

A topic is a feed document's `self` URL (WebSub §4): `{base_url}{path}` for the subscription
documents (`feed.{ext}`), the tags' (`tags/{tag}.{ext}`) and the RFC 5005 archive pages
(`archive/{size}/{n}.{ext}`), in every registered format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from feedsvc.config import Config
from feedsvc.model import Snapshot
from feedsvc.publish.ids import HUB_PATH, builtin_hub_url, hub_urls
from feedsvc.publish.registry import ARCHIVES, MAIN, TAGS, format_of

# The hubs are the documents' (FeedInfo.hubs): named in the publish stage, re-exported here.
__all__ = ["HUB_PATH", "ChangedDocuments", "builtin_hub_url", "changed_feed_documents",
           "changed_feed_paths",
           "feed_paths", "hub_urls", "is_feed_path", "topic_path", "topic_url"]

def topic_url(config: Config, path: str) -> str:
    """The topic (self URL) of the document served at URL path `path` ("/feed.atom")."""
    return f"{config.feed.base_url}{path.lstrip('/')}"


def is_feed_path(path: str) -> bool:
    """Whether the URL path `path` ("/tags/x.rss") is that of a feed document: a topic."""
    stem, dot, extension = path.lstrip("/").rpartition(".")
    if not dot or format_of(extension) is None:
        return False
    if stem == MAIN:
        return True
    if stem.startswith(TAGS):
        return bool(stem[len(TAGS):]) and "/" not in stem[len(TAGS):]
    if stem.startswith(ARCHIVES):
        size, slash, page = stem[len(ARCHIVES):].partition("/")
        return bool(slash) and size.isdigit() and page.isdigit()
    return False


def topic_path(config: Config, url: str) -> str | None:
    """The URL path of the feed document whose topic is `url`, or None if `url` is not one of
    this service's topics (another host, a page, a query)."""
    base = config.feed.base_url
    parts = urlsplit(url)
    if not url.startswith(base) or parts.query or parts.fragment:
        return None
    path = "/" + url[len(base):]
    return path if is_feed_path(path) else None


@dataclass(frozen=True, slots=True)
class ChangedDocuments:
    """What a batch published: the new snapshot, and the URL paths of the feed documents
    whose bytes it changed (new ones included; removed ones are not: nothing to deliver)."""

    snapshot: Snapshot
    paths: frozenset[str]


def changed_feed_paths(old: Snapshot, new: Snapshot) -> frozenset[str]:
    """The feed documents of `new` whose ETag differs from `old`'s (or that `old` lacks)."""
    if old is new:
        return frozenset()
    before = old.documents
    return frozenset(path for path, doc in new.documents.items()
                     if is_feed_path(path) and (path not in before
                                                or before[path].etag != doc.etag))


def changed_feed_documents(snapshot: Snapshot, paths: Iterable[str]) -> frozenset[str]:
    """Of the documents a batch changed (Publisher.take_changed), the feed documents served
    now: those of `snapshot`, and archive pages (rendered on request, never in a snapshot;
    take_changed names only the pages within the span)."""
    documents = snapshot.documents
    return frozenset(path for path in paths if is_feed_path(path) and (
        path in documents or path.startswith(f"/{ARCHIVES}")))


def feed_paths(paths: Iterable[str]) -> frozenset[str]:
    return frozenset(path for path in paths if is_feed_path(path))
