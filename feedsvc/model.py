"""The values that flow through the pipeline. Frozen, and free of I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from feedsvc.errors import Rejection
from feedsvc.timerange import MAX_SECONDS, MIN_SECONDS

#: Microseconds per second: `updated` and documents' dates are kept in microseconds (RFC 3339
#: `time-secfrac`), so that distinct values never have to be pushed past the clock.
US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """Unix microseconds → an aware UTC datetime, exactly (a float would round at this size).
    Never raises: a value outside the range feedsvc computes with (from a state written before
    it was enforced) is shown as the nearest end (timerange.py)."""
    micros = min(max(micros, MIN_SECONDS * US), MAX_SECONDS * US)
    return _EPOCH + timedelta(microseconds=micros)


def to_micros(moment: datetime) -> int:
    """An aware datetime → Unix microseconds, exactly."""
    return (moment - _EPOCH) // _ONE_US


@dataclass(frozen=True, slots=True)
class Enclosure:
    """A file an entry carries (a podcast episode): RSS <enclosure>, Atom link rel=enclosure,
    JSON Feed attachment."""

    url: str  # absolute
    type: str  # media type, from the extension
    length: int | None = None  # bytes; None when unknown (an absolute URL elsewhere)


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed seed: what its text says, before it has an id or dates."""

    slug: str
    title: str
    paragraphs: tuple[str, ...]
    #: First paragraph as plain text, cut near 300 characters.
    summary: str
    #: The body as HTML paragraphs, every character of the seed escaped as text.
    content_html: str
    #: Hash of headline and body: `updated` moves only when this does.
    content_hash: str
    #: (line, message) for things the parser had to repair, such as control characters.
    warnings: tuple[tuple[int, str], ...] = ()
    # What a front matter says (issue 5); the defaults are a plain seed's.
    #: Publication date (Unix seconds) given by the author: replaces the first-seen time; in
    #: the future, the entry is scheduled.
    date: int | None = None
    #: Last-change date given by the author: replaces the computed one.
    updated: int | None = None
    author_name: str | None = None  # None: the feed's author
    author_email: str | None = None
    tags: tuple[str, ...] = ()  # as written; URLs use their slugs
    lang: str | None = None
    draft: bool = False  # never published
    link: str | None = None  # the article's own URL when it lives elsewhere
    #: The seed's text, for seeds that a front matter or Markdown makes more than a headline
    #: and paragraphs: the state keeps it, to parse the last good version again.
    seed_text: str = ""
    #: Front matter `image:`: the absolute URL of the entry's feature image.
    image: str | None = None
    #: Front matter `enclosure:`, in the order written.
    enclosures: tuple[Enclosure, ...] = ()


@dataclass(frozen=True, slots=True)
class Content:
    """What the state keeps of a version of an entry to show it again: headline and
    paragraphs; for a seed with a front matter or in Markdown, its whole text and the file it
    came from (to parse it again); and its tags as (tag slug, label)."""

    title: str
    paragraphs: tuple[str, ...]
    text: str = ""
    file: str = ""
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the state remembers about a slug: its dates, its content hash and its file."""

    slug: str
    published: int  # Unix seconds, UTC
    #: Unix *microseconds*, UTC; distinct among computed values, never after the clock when it
    #: was given (only an author's scheduled `date` makes it later: then it is its `published`).
    updated: int
    content_hash: str
    file_name: str  # file name (in the seeds folder) that owns the slug
    live: bool = True  # published now (a removed slug keeps its dates for when it comes back)


@dataclass(frozen=True, slots=True)
class Item:
    """A published entry: a parsed seed with its durable id, dates and link."""

    entry: Entry
    id: str
    link: str
    published: datetime
    updated: datetime

    @property
    def slug(self) -> str:
        return self.entry.slug


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """Feed-level metadata, as rendered into every document."""

    id: str
    title: str
    subtitle: str
    language: str
    author_name: str
    author_email: str | None
    base_url: str  # absolute, ends with "/"
    #: When the feed has no entries, its `updated` is this (kept in the state).
    created: datetime
    #: Where the documents are served, without extension: "feed", or "tags/{slug}".
    feed_path: str = "feed"
    #: RFC 5005 archived feeds (publish/archives.py), as document paths without extension:
    #: the older archive page (rel="prev-archive"; JSON Feed `next_url`), the newer one
    #: (rel="next-archive"), and, on an archive page only, its subscription document
    #: (rel="current"; its presence makes the document an archive: `<fh:archive/>`).
    prev_archive: str | None = None
    next_archive: str | None = None
    current: str | None = None
    #: RFC 6721 tombstones this document carries (Atom only): (entry id, deletion moment),
    #: newest first.
    deleted: tuple[tuple[str, datetime], ...] = ()
    #: `[feed] timezone` (IANA): the pages' dates are shown in it.
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Variant:
    """One content coding of a document, with the response headers made once, in advance."""

    coding: str  # "identity", "gzip" or "br"
    body: bytes
    etag: str
    headers: Mapping[str, str]  # for a 200
    not_modified_headers: Mapping[str, str]  # for a 304: validators, no length, no body


@dataclass(frozen=True, slots=True)
class Document:
    """One response, ready to send in every coding: bytes plus the validators derived from
    them."""

    path: str
    content_type: str
    body: bytes  # identity
    etag: str  # strong, quoted: a hash of `body`
    last_modified: datetime  # may carry microseconds; the header has whole seconds
    variants: Mapping[str, Variant] = field(default_factory=dict)
    etags: frozenset[str] = frozenset()  # of every variant, for If-None-Match
    #: An If-Modified-Since at or after this gets 304: the second of `last_modified`, or the
    #: second after it when the document changed twice within that second (RFC 9110 §8.8.2.2:
    #: a Last-Modified is only a strong validator if it could not have changed twice in it).
    unchanged_since: datetime | None = None
    #: The HTTP status it is sent with: 410 for the page of a deleted entry (RFC 9110 §15.5.11).
    status: int = 200


@dataclass(frozen=True, slots=True)
class Revision:
    """What the state keeps of a served document to date it: the hash of its identity bytes,
    its last-modified moment and the one before (Unix microseconds). The moment moves forward,
    strictly, whenever the bytes change."""

    path: str
    digest: str
    modified: int
    previous: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the server answers with, swapped in whole after each change."""

    documents: Mapping[str, Document] = field(default_factory=lambda: MappingProxyType({}))
    published_count: int = 0  # entries in the feeds now (not scheduled)
    rejected: tuple[Rejection, ...] = ()
    #: Wall-clock time of the last change to what is published (not part of any document).
    changed_at: datetime | None = None
    #: False while the seeds folder cannot be read (lost, unmounted): the last good set stays.
    seeds_readable: bool = True
    #: How many snapshots this process has rendered (bursts are batched: this stays small).
    generation: int = 0
    #: Seeds marked `draft: true` (never published).
    draft_count: int = 0
    #: Entries whose publication date is still to come, soonest first: (slug, when).
    scheduled: tuple[tuple[str, datetime], ...] = ()
    #: URL path of each document of a tag that lost its last entry → the second (Unix time)
    #: from which it answers 410 Gone (before it: an empty feed).
    gone_at: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: The archived entries (RFC 5005 archive pages, rendered on request); None: none.
    archive: ArchiveSpan | None = None
    #: Publishable seeds' warnings (an unknown front-matter key…), by file name and line.
    warnings: tuple[Rejection, ...] = ()


@dataclass(frozen=True, slots=True)
class ArchiveSpan:
    """What the archive pages hold, as the snapshot's subscription documents leave it: the
    `count` archive slots numbered (each holding an entry older than the oldest shown one,
    `published`, `slug`, or a deleted or departed one's place), in pages of `page_entries`
    (publish/archives.py)."""

    count: int  # slots numbered
    published: int  # the oldest shown entry's, Unix seconds (0: none archived now)
    slug: str
    page_entries: int

    @property
    def pages(self) -> int:
        """Full pages, then the newest one, partial (possibly empty: a full page never gains
        a next-archive link later); none while no slot was ever numbered."""
        return self.count // self.page_entries + 1 if self.count else 0
