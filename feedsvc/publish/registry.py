"""The document registry: every kind of feed document feedsvc serves, declared once.

The routes (`serve.routes`), the files `build` writes (`cli`), the autodiscovery links and the
"Subscribe:" line of the HTML pages (`pages`) and the publisher's rendering all read this list,
in this order; nothing else names a format, its path or its content type. A format is one
module defining a `FeedFormat` and one `register_format` call below; a plugin registers its
own the same way, before the publisher starts (as datasette's `register_output_renderer`).
"""

from __future__ import annotations

from feedsvc.errors import FeedsvcError
from feedsvc.publish.docformat import FeedFormat
from feedsvc.publish.formats.atom import ATOM
from feedsvc.publish.formats.jsonfeed import JSON_FEED
from feedsvc.publish.formats.rss import RSS

#: The feed documents' path without extension (`FeedInfo.feed_path`); a tag's is
#: `{TAGS}{tag}`, served under the one route `/tags/{name}`.
MAIN = "feed"
TAGS = "tags/"
#: The front page, and each entry's own page (`/entries/{slug}`): HTML, one per entry.
INDEX = "/"
ENTRIES = "entries/"
#: RFC 5005 archive pages: `/archive/{page size}/{n}.{extension}` in every registered format.
ARCHIVES = "archive/"


def entry_path(slug: str) -> str:
    """The URL path of an entry's page."""
    return f"/{ENTRIES}{slug}"


def archive_feed_path(page: int, per_page: int) -> str:
    """The `FeedInfo.feed_path` of archive page `page` (1: the oldest) in pages of `per_page`
    slots: the page size is in the URL, so changing it never rewrites a page a cache holds."""
    return f"{ARCHIVES}{per_page}/{page}"


def format_of(extension: str) -> FeedFormat | None:
    """The registered format of this extension, if any."""
    return _FORMATS.get(extension)


_FORMATS: dict[str, FeedFormat] = {}


class FormatError(FeedsvcError):
    """A format registered twice, or with an extension no path can carry."""


def register_format(fmt: FeedFormat) -> None:
    """Serve, build and announce `fmt` from now on, after the formats registered before it."""
    if not fmt.extension.isascii() or not fmt.extension.isalnum():
        raise FormatError(f"format {fmt.name}: extension {fmt.extension!r} is not letters "
                          "and digits")
    if fmt.extension in _FORMATS:
        raise FormatError(f"format {fmt.name}: extension {fmt.extension!r} is already "
                          f"registered by {_FORMATS[fmt.extension].name}")
    _FORMATS[fmt.extension] = fmt


def formats() -> tuple[FeedFormat, ...]:
    """The registered formats, in registration order (the order of links and files)."""
    return tuple(_FORMATS.values())


def tag_of(path: str) -> str | None:
    """The tag whose document is at this URL path, or None when it is not a tag's."""
    prefix = f"/{TAGS}"
    if not path.startswith(prefix):
        return None
    tag, _, extension = path[len(prefix):].rpartition(".")
    return tag if tag and extension in _FORMATS else None


register_format(ATOM)
register_format(RSS)
register_format(JSON_FEED)
