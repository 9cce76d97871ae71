"""What a kind of feed document is: the value a format registers (see `registry`). Pure.

A format is served for the whole feed at `/feed.{extension}` and for each tag at
`/tags/{tag}.{extension}`, written by `build` under the same names, announced on the HTML pages
by an autodiscovery link, and rendered from the feed's `FeedInfo` and the items it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from feedsvc.model import FeedInfo, Item

#: A document's whole bytes from its head, the items it shows (in order) and its date.
RenderFunction = Callable[[FeedInfo, Sequence[Item], datetime], bytes]
K = TypeVar("K")
V = TypeVar("V")


class Renderer(Protocol):
    """A format's renderer for one feed, which may keep what it rendered between calls (the
    XML of each entry, say): `render` must give exactly the bytes of the format's `render`
    function for the same arguments, whatever it was called with before."""

    def render(self, items: Sequence[Item], updated: datetime,
               info: FeedInfo | None = None) -> bytes:
        """`info`: another document's head (a tag's feed) with the same author; None: the
        feed's own."""
        ...

    def retain(self, items: Iterable[Item]) -> None:
        """Forget what was kept for items no longer shown."""
        ...


def feed_updated(info: FeedInfo, items: Sequence[Item]) -> datetime:
    """The newest `updated` among the shown items; the feed's creation time when there is none
    (the date a dated document carries: Atom `<updated>`, RSS `<lastBuildDate>`)."""
    return max((item.updated for item in items), default=info.created)


def reuse(made: dict[K, V], keys: Iterable[K], make: Callable[[K], V]) -> list[V]:
    """The values of these keys, each made once and kept in `made`. One look-up per key: an
    Item's hash is computed anew at each look-up (a frozen dataclass caches none)."""
    values = []
    for key in keys:
        value = made.get(key)
        if value is None:
            value = made[key] = make(key)
        values.append(value)
    return values


def forget(made: dict[K, V], keep: Iterable[K]) -> None:
    """Drop from `made` the keys not in `keep` (a set, ideally: the publisher makes one for
    every renderer). Set operations reuse the hashes the dict and the set hold, so the kept
    keys are not hashed again."""
    keep = keep if isinstance(keep, set | frozenset) else set(keep)
    gone = set(made)
    gone -= keep
    for key in gone:
        del made[key]


class OnePassRenderer:
    """The renderer of a format that keeps nothing: each call renders the whole document."""

    def __init__(self, render: RenderFunction, info: FeedInfo) -> None:
        self._render = render
        self.info = info

    def render(self, items: Sequence[Item], updated: datetime,
               info: FeedInfo | None = None) -> bytes:
        return self._render(info or self.info, items, updated)

    def retain(self, items: Iterable[Item]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class FeedFormat:
    """One kind of feed document, declared once (see `registry.register_format`)."""

    #: Shown to people: the autodiscovery link's title is "{feed title} ({name})", and the
    #: front page's "Subscribe:" line names it.
    name: str
    #: The documents' paths: `/feed.{extension}`, `/tags/{tag}.{extension}`; `build` writes
    #: `feed.{extension}` and `tags/{tag}.{extension}`.
    extension: str
    #: The Content-Type header of its responses.
    content_type: str
    #: The `type` of its autodiscovery `<link rel="alternate">` (a media type, no parameters).
    link_type: str
    #: The whole document in one pass: the reference its renderer must equal.
    render: RenderFunction
    #: A renderer that may reuse work between documents of one feed; by default `render`.
    renderer: Callable[[FeedInfo], Renderer] | None = field(default=None)
    #: Whether the bytes carry the document's date (Atom `<updated>`, RSS `<lastBuildDate>`):
    #: such a document is rendered as a function of its Last-Modified (see `docdates`); one
    #: without is rendered once, and dated by its bytes alone.
    dated: bool = True

    def make_renderer(self, info: FeedInfo) -> Renderer:
        return self.renderer(info) if self.renderer else OnePassRenderer(self.render, info)

    def path(self, feed_path: str) -> str:
        """The URL path of the document of `FeedInfo.feed_path` ("feed", "tags/{tag}")."""
        return f"/{feed_path}.{self.extension}"

    def url(self, info: FeedInfo) -> str:
        """The absolute URL of this format's document of `info`: its self link."""
        return f"{info.base_url}{info.feed_path}.{self.extension}"
