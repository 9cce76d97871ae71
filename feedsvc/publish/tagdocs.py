"""Per-tag documents: rendered again only for the tags a batch touches.

Which entries a tag shows comes from the state (newest published first): no tag list per seed
is held in memory. The texts of entries shown by tag documents (not by the main ones) are kept
in a small LRU between batches. What comes from the state and the rest of the publisher comes
through `TagSource`, so the rules here need neither.

A tag that has shown an entry is never unknown again (issue 11): the state keeps every such tag
(`tag_history`) and when it lost its last entry. Such a tag answers 200 with an empty feed for
`tombstone_s` after that, then 410 Gone (`gone_at`: the second each of its documents goes);
a tag that never showed one is 404. A tag that gets an entry again is simply back.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from feedsvc.errors import StoreError
from feedsvc.model import Document, Entry, FeedInfo, Item
from feedsvc.publish.ids import entry_id, tag_feed_id
from feedsvc.publish.registry import TAGS, formats
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

    def tag_history(self, now: int) -> dict[str, tuple[str, int | None]]:
        """tag → (label, when it lost its last entry, or None) of every tag that has shown an
        entry by `now` (raises StoreError when the state cannot say)."""
        ...

    def save_tag_history(self, rows: dict[str, tuple[str, int | None]]) -> bool:
        """Keep these in the state; False when it cannot be written now."""
        ...

    def deleted(self, tag: str, now_us: int) -> list[tuple[str, int, str]]:
        """(slug, deletion moment, label) of the tombstones of entries that had this tag,
        shown now (RFC 6721; see tombstones.py), newest first (raises StoreError)."""
        ...


#: Renders a feed's documents (one per registered format) from its info and items.
RenderFeed = Callable[[FeedInfo, Sequence[Item], int], list[Rendered]]
#: Compresses rendered bodies into documents.
MakeDocuments = Callable[[list[Rendered]], list[Document]]


#: What `tombstone_s` is by default: `[feed] tombstone_days` = 30.
TOMBSTONE_S = 30 * 86400


class TagDocuments:
    def __init__(self, source: TagSource, info: FeedInfo, limit: int, render: RenderFeed,
                 make_documents: MakeDocuments, kept: int = TAG_ENTRIES_KEPT,
                 tombstone_s: int = TOMBSTONE_S, history_at: int | None = None) -> None:
        """`history_at`: read the tags that existed from the state now, at this time (before
        a scan changes them); else at the first render."""
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
        self._tombstone_s = tombstone_s
        # Every tag that has shown an entry: (label, when it lost its last one or None). Read
        # from the state once (at the first render), then kept up to date here.
        self._history: dict[str, tuple[str, int | None]] | None = None
        self._unsaved: dict[str, tuple[str, int | None]] = {}  # history the state lacks
        #: URL path of each document of a tag that lost its last entry → the second it
        #: answers 410 Gone from. Replaced, never changed in place: snapshots hold it.
        self.gone_at: dict[str, int] = {}
        if history_at is not None:
            self.load_history(history_at)

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

    def info(self, tag: str, label: str, emptied: int | None = None) -> FeedInfo:
        """A tag's feed; an empty one (`emptied`: when it lost its last entry) is dated then
        (its `updated`: RFC 4287 §4.2.15, the last significant change)."""
        info = replace(self._info, id=tag_feed_id(self._info.id, tag),
                       title=f"{self._info.title} — {label}", feed_path=f"{TAGS}{tag}")
        if emptied is not None:
            info = replace(info, created=max(info.created,
                                             datetime.fromtimestamp(emptied, UTC)))
        return info

    def render(self, now: int, now_us: int) -> bool:
        """Render the documents of the tags touched since the last batch; True if any of
        them changed (or which of them answer 410)."""
        history = self.load_history(now)
        if not self.dirty:
            return self._save_history()
        dirty, self.dirty = sorted(self.dirty), set()
        rendered: list[Rendered] = []
        paths_of: dict[str, list[str]] = {}  # tag → the paths of its documents
        changed = False
        gone_at = self.gone_at
        for tag in dirty:
            try:
                rows = self._source.tagged(tag, now, self._limit)
                buried = self._source.deleted(tag, now_us)
            except StoreError as e:
                log.error("%s; the documents of tag %s are not updated", e, tag)
                continue
            items = tuple(item for slug, _ in rows if (item := self._item(slug)))
            deleted = refs(self._info.id, ((slug, when) for slug, when, _ in buried), entry_id)
            paths = [fmt.path(f"{TAGS}{tag}") for fmt in formats()]
            if items:
                self._remember(history, tag, rows[0][1], None)
                if any(path in gone_at for path in paths):  # back
                    gone_at = {k: v for k, v in gone_at.items() if k not in paths}
            elif (known := history.get(tag) or (
                    (buried[0][2], None) if buried else None)) is None:  # never shown: 404
                changed |= self._docs.pop(tag, None) is not None
                self._items.pop(tag, None)
                self._deleted.pop(tag, None)
                continue
            else:
                label, emptied = known[0], known[1] if known[1] is not None else now
                self._remember(history, tag, label, emptied)
                until = emptied + self._tombstone_s
                if any(gone_at.get(path) != until for path in paths):
                    gone_at = {**gone_at, **dict.fromkeys(paths, until)}
                if now >= until:  # gone for good: nothing is served, 410
                    changed |= self._docs.pop(tag, None) is not None
                    self._items.pop(tag, None)
                    self._deleted.pop(tag, None)
                    continue
            if (items == self._items.get(tag) and deleted == self._deleted.get(tag)
                    and tag in self._docs):
                continue
            info = replace(self.info(tag, *(history[tag] if not items else (rows[0][1], None))),
                           deleted=deleted)
            feed_documents = self._render(info, items, now_us)
            rendered += feed_documents
            self._items[tag], self._deleted[tag] = items, deleted
            paths_of[tag] = [doc.path for doc in feed_documents]
        documents = ({doc.path: doc for doc in self._make_documents(rendered)}
                     if rendered else {})
        for tag, paths in paths_of.items():
            self._docs[tag] = tuple(documents[path] for path in paths)
        changed |= gone_at is not self.gone_at
        self.gone_at = gone_at
        self._save_history()
        return changed or bool(documents)

    def load_history(self, now: int) -> dict[str, tuple[str, int | None]]:
        """The tags that existed, read from the state once (before the first scan, so a tag
        that a seed edited while feedsvc was stopped loses is known): each is rendered at
        the next render (one that lost its entries meanwhile is found empty)."""
        if self._history is None:
            try:
                self._history = self._source.tag_history(now)
            except StoreError as e:
                log.error("%s; the tags that lost their entries are read again later", e)
                return {}
            self.dirty |= set(self._history)
        return self._history

    def _remember(self, history: dict[str, tuple[str, int | None]], tag: str, label: str,
                  emptied: int | None) -> None:
        if history.get(tag) != (label, emptied):
            history[tag] = self._unsaved[tag] = (label, emptied)

    def _save_history(self) -> bool:
        """Write what the state does not have of the tags' history (kept until it works)."""
        if self._unsaved and self._source.save_tag_history(self._unsaved):
            self._unsaved = {}
        return False

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
