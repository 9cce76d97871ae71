"""tagdocs: per-tag documents, over an in-memory TagSource (tags, tagged rows and texts in
dicts) and a renderer that records what it is asked: no state, no seeds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from feedsvc.model import Entry, FeedInfo, Item
from feedsvc.publish.ids import entry_id, make_item, tag_feed_id
from feedsvc.publish.snapshot import Rendered, make_documents
from feedsvc.publish.tagdocs import TagDocuments

NOW = 1_700_000_000
INFO = FeedInfo(id="urn:uuid:0b9e4f4e-1c8a-5f0e-9d2a-000000000000", title="News",
                subtitle="", language="en", author_name="", author_email="",
                base_url="https://news.example.org/",
                created=datetime.fromtimestamp(NOW, UTC), feed_path="feed")


def entry(slug: str, text: str = "Body") -> Entry:
    return Entry(slug, slug.title(), (text,), text, f"<p>{text}</p>", f"{slug}:{text}")


class MemorySource:
    def __init__(self) -> None:
        self.tags: dict[str, set[str]] = {}  # slug → its tags
        self.texts: dict[str, Entry] = {}  # slug → its text in the state
        self.shown: dict[str, Entry] = {}  # texts the main documents show
        self.loads: list[str] = []
        self.history: dict[str, tuple[str, int | None]] = {}  # the state's tag history
        self.writable = True
        self.buried: dict[str, tuple[int, set[str]]] = {}  # slug → (deleted at, its tags)

    def tags_of(self, slugs: list[str]) -> set[str]:
        return {tag for slug in slugs for tag in self.tags.get(slug, ())}

    def tagged(self, tag: str, now: int, limit: int) -> list[tuple[str, str]]:
        return [(slug, tag.upper()) for slug in sorted(self.tags)
                if tag in self.tags[slug] and slug not in self.buried][:limit]

    def shown_entry(self, slug: str) -> Entry | None:
        return self.shown.get(slug)

    def load_entry(self, slug: str) -> Entry | None:
        self.loads.append(slug)
        return self.texts.get(slug)

    def deleted(self, tag: str, now_us: int) -> list[tuple[str, int, str]]:
        return sorted(((slug, when, tag.upper()) for slug, (when, tags) in self.buried.items()
                       if tag in tags and when > now_us - 86_400_000_000),
                      key=lambda row: (-row[1], row[0]))

    def item(self, slug: str, entry: Entry) -> Item | None:
        return make_item(INFO, entry, NOW, datetime.fromtimestamp(NOW, UTC),
                         lambda s: f"{INFO.base_url}entries/{s}")

    def tag_history(self, now: int) -> dict[str, tuple[str, int | None]]:
        return dict(self.history)

    def save_tag_history(self, rows: dict[str, tuple[str, int | None]]) -> bool:
        if self.writable:
            self.history = {**self.history, **rows}
        return self.writable


class Recorder:
    """Renders one document per feed and remembers for which feed and items."""

    def __init__(self) -> None:
        self.calls: list[tuple[FeedInfo, tuple[Item, ...]]] = []

    def __call__(self, info: FeedInfo, items: Sequence[Item], now_us: int) -> list[Rendered]:
        self.calls.append((info, tuple(items)))
        body = "|".join(item.entry.content_hash for item in items).encode()
        return [Rendered(f"/{info.feed_path}.atom", "application/atom+xml", body,
                         datetime.fromtimestamp(NOW, UTC))]


def make(source: MemorySource, kept: int = 1024,
         tombstone_s: int = 30 * 86400) -> tuple[TagDocuments, Recorder]:
    recorder = Recorder()
    return TagDocuments(source, INFO, 10, recorder, make_documents, kept,
                        tombstone_s), recorder


def paths(tags: TagDocuments) -> list[str]:
    return sorted(doc.path for doc in tags.documents())


@pytest.fixture
def source() -> MemorySource:
    source = MemorySource()
    source.tags = {"a": {"sport"}, "b": {"sport", "politics"}, "c": {"politics"}}
    source.texts = {slug: entry(slug) for slug in "abc"}
    return source


def test_only_dirty_tags_are_rendered(source: MemorySource) -> None:
    tags, recorder = make(source)
    assert tags.render(NOW, NOW * 1_000_000) is False  # nothing touched
    tags.touch_entries(["a"])
    assert tags.render(NOW, NOW * 1_000_000) is True
    assert [info.feed_path for info, _ in recorder.calls] == ["tags/sport"]
    assert paths(tags) == ["/tags/sport.atom"]
    tags.touch_entries(["c"])
    tags.render(NOW, NOW * 1_000_000)
    assert [info.feed_path for info, _ in recorder.calls] == ["tags/sport", "tags/politics"]
    assert paths(tags) == ["/tags/politics.atom", "/tags/sport.atom"]


def test_an_unchanged_item_list_is_not_rendered_again(source: MemorySource) -> None:
    tags, recorder = make(source)
    tags.touch_entries(["b"])
    tags.render(NOW, 0)
    tags.touch_entries(["b"])
    assert tags.render(NOW, 0) is False
    assert len(recorder.calls) == 2  # sport and politics, once each
    source.texts["b"] = entry("b", "New text")
    tags.forget_text("b")
    tags.touch_entries(["b"])
    assert tags.render(NOW, 0) is True
    assert len(recorder.calls) == 4


def _empty(source: MemorySource, tags: TagDocuments, how: str) -> None:
    """Take every entry of tag `sport` away (a and b), as the publisher says it."""
    tags.touch_entries(["a", "b"])  # their tags before the change
    if how == "untagged":
        source.tags["a"].discard("sport")
        source.tags["b"].discard("sport")
    else:
        del source.texts["a"], source.texts["b"]
        tags.forget_text("a")
        tags.forget_text("b")


SPORT = ["/tags/sport.atom", "/tags/sport.json", "/tags/sport.rss"]


@pytest.mark.parametrize("how", ["untagged", "no text"])
def test_a_tag_that_loses_its_entries_has_an_empty_feed_then_is_gone(
        source: MemorySource, how: str) -> None:
    tags, recorder = make(source, tombstone_s=3600)
    tags.touch_entries(["a", "b"])
    tags.render(NOW, 0)
    assert "/tags/sport.atom" in paths(tags)
    assert tags.gone_at == {}
    _empty(source, tags, how)
    assert tags.render(NOW + 10, 0) is True
    assert "/tags/sport.atom" in paths(tags)  # 200, empty
    info, items = recorder.calls[-1]
    assert items == () and info.feed_path == "tags/sport"
    assert info.created == datetime.fromtimestamp(NOW + 10, UTC)  # its `updated`
    assert all(item.slug != "a" for item in tags.items())
    assert tags.gone_at == dict.fromkeys(SPORT, NOW + 10 + 3600)
    assert source.history["sport"] == ("SPORT", NOW + 10)  # kept in the state
    # Touched again later: the same empty feed, not rendered again, same deadline.
    calls = len(recorder.calls)
    tags.dirty.add("sport")
    assert tags.render(NOW + 20, 0) is False
    assert len(recorder.calls) == calls and tags.gone_at[SPORT[0]] == NOW + 10 + 3600
    # Past the deadline, at the next render that reaches it: nothing is kept (the server
    # answers 410 from the deadline on, rendered or not).
    tags.dirty.add("sport")
    assert tags.render(NOW + 10 + 3600, 0) is True
    assert "/tags/sport.atom" not in paths(tags)
    assert tags.gone_at[SPORT[0]] == NOW + 10 + 3600


def test_a_tag_that_gets_an_entry_again_is_back(source: MemorySource) -> None:
    tags, _ = make(source, tombstone_s=0)
    tags.touch_entries(["a", "b"])
    tags.render(NOW, 0)
    _empty(source, tags, "untagged")
    assert tags.render(NOW, 0) is True
    assert "/tags/sport.atom" not in paths(tags)  # tombstone_days = 0: gone at once
    assert tags.gone_at == dict.fromkeys(SPORT, NOW)
    source.tags["c"].add("sport")
    tags.touch_entries(["c"])
    assert tags.render(NOW + 5, 0) is True
    assert "/tags/sport.atom" in paths(tags) and tags.gone_at == {}
    assert source.history["sport"] == ("SPORT", None)


def test_a_tag_that_never_showed_an_entry_has_no_documents(source: MemorySource) -> None:
    tags, _ = make(source)
    source.tags["d"] = {"later"}  # its text cannot be shown
    tags.touch_entries(["d"])
    assert tags.render(NOW, 0) is False
    assert paths(tags) == [] and tags.gone_at == {} and "later" not in source.history


def test_the_tags_that_existed_are_read_from_the_state_once(source: MemorySource) -> None:
    """After a restart: a tag emptied before it (or while stopped) is rendered empty at the
    first render, its deadline kept; the state is read once, not per batch."""
    source.history = {"old": ("Old", NOW - 100), "gone": ("Gone", NOW - 7200),
                      "sport": ("SPORT", None)}
    tags, recorder = make(source, tombstone_s=3600)
    calls = []
    read = source.tag_history
    source.tag_history = lambda now: calls.append(now) or read(now)  # type: ignore[method-assign]
    assert tags.render(NOW, 0) is True
    assert paths(tags) == ["/tags/old.atom", "/tags/sport.atom"]
    assert tags.gone_at["/tags/old.atom"] == NOW - 100 + 3600
    assert tags.gone_at["/tags/gone.rss"] == NOW - 7200 + 3600
    tags.render(NOW, 0)
    assert calls == [NOW]
    assert {info.feed_path for info, _ in recorder.calls} == {"tags/old", "tags/sport"}


def test_history_the_state_cannot_take_is_kept_and_written_later(source: MemorySource) -> None:
    tags, _ = make(source)
    source.writable = False
    tags.touch_entries(["a"])
    tags.render(NOW, 0)
    assert "sport" not in source.history
    source.writable = True
    tags.render(NOW, 0)  # nothing touched: still written
    assert source.history["sport"] == ("SPORT", None)


def test_shown_texts_are_never_read(source: MemorySource) -> None:
    tags, _ = make(source)
    source.shown["a"] = source.texts["a"]
    tags.touch_entries(["a", "c"])
    tags.render(NOW, 0)
    assert sorted(source.loads) == ["b", "c"]


@pytest.mark.parametrize(("kept", "loads"), [(1, ["x", "y", "x"]), (2, ["x", "y"])])
def test_the_texts_of_tag_entries_are_kept_up_to_a_limit(kept: int, loads: list[str]) -> None:
    source = MemorySource()
    source.tags = {"x": {"t"}, "y": {"u"}}
    source.texts = {"x": entry("x"), "y": entry("y")}
    tags, _ = make(source, kept)
    for slug in ("x", "y", "x"):
        tags.touch_entries([slug])
        tags.render(NOW, 0)
    assert source.loads == loads


@pytest.mark.parametrize("tag", ["sport", "a", "politique-étrangère", "tag"])
def test_tag_feed_ids_are_stable_and_never_an_entrys(source: MemorySource, tag: str) -> None:
    assert tag_feed_id(INFO.id, tag) == tag_feed_id(INFO.id, tag)
    assert tag_feed_id(INFO.id, tag) not in {entry_id(INFO.id, slug)
                                             for slug in (tag, f"tag-{tag}", "tag")}
    tags, recorder = make(source)
    assert tags.info(tag, tag.upper()).id == tag_feed_id(INFO.id, tag)
    tags.touch_entries(["a"])
    tags.render(NOW, 0)
    ((info, _),) = recorder.calls
    assert info.id == tag_feed_id(INFO.id, "sport") and info.title == "News — SPORT"


def test_a_tag_carries_the_tombstones_of_its_deleted_entries(source: MemorySource) -> None:
    """RFC 6721: a tag whose entries were deleted carries their tombstones (entry ids, not
    the tag's), also when it shows no entry any more; rendered again when one appears or
    leaves (here: after a day)."""
    tags, recorder = make(source)
    when = NOW * 1_000_000
    source.buried["c"] = (when, {"politics"})
    tags.touch_entries(["b"])
    tags.render(NOW, when)
    politics = next(info for info, _ in recorder.calls if info.feed_path == "tags/politics")
    assert politics.deleted == ((entry_id(INFO.id, "c"), datetime.fromtimestamp(NOW, UTC)),)
    source.buried["b"] = (when + 1, {"sport", "politics"})
    tags.touch_entries(["b"])
    tags.render(NOW, when + 1)
    politics = [info for info, _ in recorder.calls if info.feed_path == "tags/politics"][-1]
    assert [ref for ref, _ in politics.deleted] == [entry_id(INFO.id, s) for s in "bc"]
    assert "/tags/politics.atom" in paths(tags)  # no entry left, two tombstones
    tags.touch_entries(["b"])
    tags.render(NOW, when + 86_400_000_000 + 1)  # both expired, no entry
    # A tag that showed entries is never 404: an empty feed (until tombstone_days pass since
    # it emptied, then 410), now without the tombstones.
    assert "/tags/politics.atom" in paths(tags)
    politics = [info for info, _ in recorder.calls if info.feed_path == "tags/politics"][-1]
    assert politics.deleted == ()
