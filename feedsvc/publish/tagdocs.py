"""Per-tag documents: rendered again only for the tags a batch touches.

Which entries a tag shows comes from the state (newest published first): no tag list per seed
is held in memory. The texts of entries shown by tag documents (not by the main ones) are kept
in a small LRU between batches. What comes from the state and the rest of the publisher comes
through `TagSource`, so the rules here need neither.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from feedsvc.errors import StoreError
from feedsvc.model import Document, Entry, FeedInfo, Item
from feedsvc.publish.ids import entry_id, tag_feed_id
from feedsvc.publish.registry import TAGS
from feedsvc.publish.snapshot import Rendered
from feedsvc.publish.tombstones import refs

log = logging.getLogger("feedsvc")

#: Texts of entries shown by tag documents (not by the main ones) kept between batches.
TAG_ENTRIES_KEPT = 1024


class TagSource(Protocol):
    def tags_of(self, slugs: list[str]) -> set[str]:
        """The tags these entries have (none when the state cannot say)."""
        ...

    def tagged(self, tag: str, now: int, limit: int) -> list[tuple[str, str]]:
        """(slug, label) of the newest entries published by `now` with this tag, newest first
        (raises StoreError when the state cannot say)."""
        ...

    def shown_entry(self, slug: str) -> Entry | None:
        """The text of an entry the main documents show (None: they do not show it)."""
        ...

    def load_entry(self, slug: str) -> Entry | None:
        """The text of an entry, read (None: it has none)."""
        ...

    def item(self, slug: str, entry: Entry) -> Item | None:
        """The entry as documents show it, with its stamp (None: it cannot be shown)."""
        ...

    def deleted(self, tag: str, now_us: int) -> list[tuple[str, int, str]]:
        """(slug, deletion moment, label) of the tombstones of entries that had this tag,
        shown now (RFC 6721; see tombstones.py), newest first (raises StoreError)."""
        ...


#: Renders a feed's documents (one per registered format) from its info and items.
RenderFeed = Callable[[FeedInfo, Sequence[Item], int], list[Rendered]]
#: Compresses rendered bodies into documents.
MakeDocuments = Callable[[list[Rendered]], list[Document]]


class TagDocuments:
    def __init__(self, source: TagSource, info: FeedInfo, limit: int, render: RenderFeed,
                 make_documents: MakeDocuments, kept: int = TAG_ENTRIES_KEPT) -> None:
        self._source = source
        self._info = info
        self._limit = limit  # entries per document
        self._render = render
        self._make_documents = make_documents
        self._kept = kept
        self.dirty: set[str] = set()  # tags whose documents are to be rendered again
        self._docs: dict[str, tuple[Document, ...]] = {}
        self._items: dict[str, tuple[Item, ...]] = {}
        self._deleted: dict[str, tuple[tuple[str, datetime], ...]] = {}  # tag → tombstones
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # texts tag documents show

    def touch_entries(self, slugs: Iterable[str]) -> None:
        """The tags these entries have now (as the state has them): their documents are
        rendered again with the next `render`."""
        slugs = list(slugs)
        if slugs:
            self.dirty |= self._source.tags_of(slugs)

    def forget_text(self, slug: str) -> None:
        """An entry's text changed: the text shown must be the new one."""
        self._entries.pop(slug, None)

    def documents(self) -> Iterator[Document]:
        return (doc for docs in self._docs.values() for doc in docs)

    def items(self) -> Iterator[Item]:
        """The items the tag documents show now."""
        return (item for items in self._items.values() for item in items)

    def info(self, tag: str, label: str) -> FeedInfo:
        return replace(self._info, id=tag_feed_id(self._info.id, tag),
                       title=f"{self._info.title} — {label}", feed_path=f"{TAGS}{tag}")

    def render(self, now: int, now_us: int) -> bool:
        """Render the documents of the tags touched since the last batch; True if any of
        them changed."""
        if not self.dirty:
            return False
        dirty, self.dirty = sorted(self.dirty), set()
        rendered: list[Rendered] = []
        paths_of: dict[str, list[str]] = {}  # tag → the paths of its documents
        changed = False
        for tag in dirty:
            try:
                rows = self._source.tagged(tag, now, self._limit)
                buried = self._source.deleted(tag, now_us)
            except StoreError as e:
                log.error("%s; the documents of tag %s are not updated", e, tag)
                continue
            items = tuple(item for slug, _ in rows if (item := self._item(slug)))
            deleted = refs(self._info.id, ((slug, when) for slug, when, _ in buried), entry_id)
            if not items and not deleted:
                changed |= self._docs.pop(tag, None) is not None
                self._items.pop(tag, None)
                self._deleted.pop(tag, None)
                continue
            if items == self._items.get(tag) and deleted == self._deleted.get(tag):
                continue
            label = rows[0][1] if rows else buried[0][2]
            info = replace(self.info(tag, label), deleted=deleted)
            feed_documents = self._render(info, items, now_us)
            rendered += feed_documents
            self._items[tag], self._deleted[tag] = items, deleted
            paths_of[tag] = [doc.path for doc in feed_documents]
        documents = ({doc.path: doc for doc in self._make_documents(rendered)}
                     if rendered else {})
        for tag, paths in paths_of.items():
            self._docs[tag] = tuple(documents[path] for path in paths)
        return changed or bool(documents)

    def _item(self, slug: str) -> Item | None:
        entry = self._source.shown_entry(slug) or self._entries.get(slug)
        if entry is None:
            entry = self._source.load_entry(slug)
            if entry is None:
                return None
            self._entries[slug] = entry
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)
        return self._source.item(slug, entry)
