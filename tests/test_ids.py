"""ids: entry and tag ids, and the one way an Item is made (the publisher's and the long
tail's pages share it). Pure."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

import feedsvc
from feedsvc.model import Entry, FeedInfo
from feedsvc.publish.ids import derive_feed_id, entry_id, make_item, tag_feed_id
from feedsvc.timerange import datetime_of

FEED_ID = derive_feed_id("https://news.example.org/")
INFO = FeedInfo(id=FEED_ID, title="News", subtitle="", language="en", author_name="",
                author_email="", base_url="https://news.example.org/",
                created=datetime(2024, 1, 1, tzinfo=UTC), feed_path="feed")


def entry(slug: str, link: str | None = None, text: str = "Body") -> Entry:
    return Entry(slug, "Title", (text,), text, f"<p>{text}</p>", f"hash-{text}", link=link)


def test_ids_are_stable_and_depend_on_the_feed_and_slug_only() -> None:
    assert derive_feed_id("https://news.example.org/") == FEED_ID
    assert FEED_ID.startswith("urn:uuid:")
    assert entry_id(FEED_ID, "a") == entry_id(FEED_ID, "a") != entry_id(FEED_ID, "b")
    assert entry_id(FEED_ID, "a") != entry_id(derive_feed_id("https://other.example/"), "a")
    item = make_item(INFO, entry("a", text="one"), 0, datetime_of(0), str)
    assert item.id == make_item(INFO, entry("a", text="two"), 5, datetime_of(5), str).id


@pytest.mark.parametrize("tag", ["a", "sport", "tag-a"])
def test_a_tag_id_is_never_an_entry_id(tag: str) -> None:
    assert tag_feed_id(FEED_ID, tag) not in {entry_id(FEED_ID, s) for s in (tag, f"tag:{tag}")
                                            if ":" not in s}
    assert tag_feed_id(FEED_ID, tag) == tag_feed_id(FEED_ID, tag)


@pytest.mark.parametrize(("link", "expected"), [
    (None, "https://news.example.org/entries/a"),
    ("https://elsewhere.example/post", "https://elsewhere.example/post"),
])
def test_an_item_links_to_its_own_url_else_its_page(link: str | None, expected: str) -> None:
    item = make_item(INFO, entry("a", link), 1_700_000_000, datetime_of(1_700_000_005),
                     lambda slug: f"https://news.example.org/entries/{slug}")
    assert item.link == expected
    assert item.published == datetime_of(1_700_000_000)
    assert item.updated == datetime_of(1_700_000_005)


def test_the_long_tail_does_not_import_the_publisher() -> None:
    path = Path(feedsvc.__file__).parent / "publish" / "longtail.py"
    imported = {node.module for node in ast.walk(ast.parse(path.read_text("utf-8")))
                if isinstance(node, ast.ImportFrom)}
    assert "feedsvc.publish.publisher" not in imported
    assert "feedsvc.publish.ids" in imported
