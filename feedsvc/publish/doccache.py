"""The documents rendered on request (archive pages, long-tail entry pages, site pages),
kept least recently used first out, within a budget of bytes. Pure: no disk, no clock.

A count of documents is no bound on memory: an archive page in three codings is ~240 KB, an
entry page ~12 KB. The budget counts every coding a document has; a document made "soon"
(its gzip and br added in place a moment later, snapshot.make_document_soon) is measured
again at the next `put`, and the next, until its codings are all there. The most recent
document is always kept, even alone over the budget: the reader that asked for it gets it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from feedsvc.model import Document

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: identity, gzip and br (snapshot.make_document).
CODINGS = 3
#: What an entry costs besides its bytes (the Document, its variants' headers, the key).
ENTRY_OVERHEAD_BYTES = 1024


def document_bytes(document: Document) -> int:
    """The memory a kept document holds: every coding's bytes, and the entry's own."""
    coded = sum(len(variant.body) for variant in document.variants.values()
                if variant.coding != "identity")
    return ENTRY_OVERHEAD_BYTES + len(document.body) + coded


class DocumentCache(Generic[K, V]):
    """key → (the version a document was made of, the document), within `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, Document]] = OrderedDict()
        self._bytes = 0
        self._incomplete = False  # some document kept without all its codings yet

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The bytes counted now (documents' later codings once the budget was passed)."""
        return self._bytes

    def get(self, key: K) -> tuple[V, Document] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: K, version: V, document: Document) -> None:
        self.pop(key)
        if self._incomplete:
            self._measure()
        self._entries[key] = (version, document)
        self._bytes += document_bytes(document)
        self._incomplete = self._incomplete or len(document.variants) < CODINGS
        if self._bytes > self.max_bytes:
            self._trim()

    def pop(self, key: K) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._bytes -= document_bytes(found[1])

    def _measure(self) -> None:
        documents = [document for _, document in self._entries.values()]
        self._bytes = sum(document_bytes(document) for document in documents)
        self._incomplete = any(len(document.variants) < CODINGS for document in documents)

    def _trim(self) -> None:
        self._measure()
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, (_, oldest) = self._entries.popitem(last=False)
            self._bytes -= document_bytes(oldest)
