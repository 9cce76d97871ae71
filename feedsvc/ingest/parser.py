"""(path, bytes) → Entry | Rejection. Pure: no disk, no clock.

A seed is UTF-8 text: line 1 the slug, line 2 the headline, a blank line, then paragraphs
separated by blank lines. When line 1 is not a slug, the slug comes from the file name and
line 1 is the headline. Nothing about the text changes but whitespace at the ends of lines.

An optional front matter (YAML between two `---` lines at the very top) adds dates, tags, an
author…; with `slug:` or `title:` there, the slug or headline line may be left out. A `.md`
seed's body is Markdown, rendered and sanitized.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path, PurePath
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from feedsvc.errors import Rejection, SeedError
from feedsvc.ingest.dates import dayfirst_for
from feedsvc.ingest.mediafiles import MEDIA_PREFIX, media_size, media_type
from feedsvc.ingest.seedrules import HEADLINE_MAX, SLUG_MAX, SLUG_RE
from feedsvc.ingest.seedrules import is_slug as is_slug  # where callers have long found it
from feedsvc.model import Content, Enclosure, Entry

if TYPE_CHECKING:
    from feedsvc.ingest.frontmatter import FrontMatter, MediaReference

# YAML, Markdown and slug tables are imported when a seed first needs them: most seeds are
# plain, and a start should not pay for what it does not use. (dateutil is not among them:
# every start reads the dates' settings through `dates`, and feedgen imports it anyway.)

SUMMARY_TARGET = 300
# Byte order marks we decode; any other encoding must be UTF-8.
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Characters no document should carry: those XML 1.0 forbids (C0 controls but tab/LF/CR,
# surrogates, U+FFFE, U+FFFF: lxml refuses them); C1 controls and U+FFFD, which XML allows but
# which are traces of text decoded wrongly before it got here (feed validators flag them); and
# Unicode's noncharacters (HTML parsers refuse them). NUL is refused outright.
_NOT_TEXT_RE = re.compile(
    "[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffd\ufffe\uffff"
    # The noncharacters U+nFFFE and U+nFFFF of the other planes: no text uses them.
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17))
    + "]")
# Only ASCII blanks are trimmed: a non-breaking space is typography (« », :) and stays.
_TRIM = " \t"


def slug_from_name(path: str) -> str:
    """A slug from a file name: accents folded, lowercased, other characters to '-'."""
    stem = PurePath(path).stem
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-")


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What parsing needs from the configuration: how to read front-matter dates (the zone of
    dates written without one, day or month first), and what relative links in Markdown are
    relative to."""

    timezone: tzinfo = UTC
    dayfirst: bool = False
    base_url: str = "http://localhost/"
    #: The media folder, where front matter `image:` and `enclosure:` paths must name a file
    #: (its size is an enclosure's length). None: such paths are refused.
    media: Path | None = None

    @classmethod
    def from_feed(cls, timezone: str, dayfirst: bool | None, language: str,
                  base_url: str, media: Path | None = None) -> ParseOptions:
        return cls(ZoneInfo(timezone), dayfirst_for(language) if dayfirst is None else dayfirst,
                   base_url, media)


DEFAULT_OPTIONS = ParseOptions()


def parse_seed(path: str, data: bytes, options: ParseOptions = DEFAULT_OPTIONS
               ) -> Entry | Rejection:
    """Parse one seed file's bytes. Returns (never raises) a Rejection for unusable input."""
    try:
        return _parse(path, data, options)
    except SeedError as e:
        # The value only, kept for as long as the file stays bad: not the exception, whose
        # traceback holds the frames of the parse and with them the seed's text.
        return e.rejection


def _parse(path: str, data: bytes, options: ParseOptions) -> Entry:
    text = _decode(path, data)
    if "\x00" in text:
        _refuse_nul(path, _line_of(text[:text.index("\x00")]))
    lines, warnings = _clean_lines(text)
    markdown = path.endswith(".md")
    front, start = None, 0
    if lines and lines[0] == "---":
        # YAML needs its indentation (nested `author:`, block texts): the front matter gets
        # its lines with only the ends trimmed, line for line the same as `lines`.
        raw = [_NOT_TEXT_RE.sub("", line).rstrip(_TRIM)
               for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        from feedsvc.ingest.frontmatter import DateSettings, split_front_matter

        front, start = split_front_matter(path, raw,
                                          DateSettings(options.timezone, options.dayfirst))
    if front is not None or markdown:
        return _parse_authored(path, text, lines, start, front, warnings, options)

    if not any(lines):
        raise SeedError(path, 1, "empty seed: expected a slug, a headline, a blank line and a body")
    if not lines[0]:
        raise SeedError(path, 1, "line 1 is blank: expected the slug or the headline")

    first = lines[0]
    if SLUG_RE.fullmatch(first):
        if len(first) > SLUG_MAX:
            raise SeedError(path, 1, f"slug is {len(first)} characters long; at most {SLUG_MAX}")
        slug, head = first, 1
    else:
        slug, head = slug_from_name(path), 0
        if not slug:
            raise SeedError(path, 1, "line 1 is not a slug (a-z, 0-9, '-') and no slug can be "
                                     "made from the file name")

    headline = lines[head] if head < len(lines) else ""
    if not headline:
        raise SeedError(path, head + 1, "missing headline")
    if len(headline) > HEADLINE_MAX:
        raise SeedError(path, head + 1,
                        f"headline is {len(headline)} characters long; at most {HEADLINE_MAX}")

    body = lines[head + 1:]
    if not any(body):
        raise SeedError(path, head + 2, "no body: expected a blank line, then paragraphs")
    if body[0]:
        raise SeedError(path, head + 2, "expected a blank line between the headline and the body")

    return build_entry(slug, headline, _paragraphs(body), tuple(warnings))


def _parse_authored(path: str, text: str, lines: list[str], start: int,
                    front: FrontMatter | None, warnings: list[tuple[int, str]],
                    options: ParseOptions) -> Entry:
    """A seed with front matter, or a Markdown one. The seed rules follow the front matter;
    the slug line may be left out when `slug:` is given, the headline when `title:` is."""
    from feedsvc.ingest.frontmatter import FrontMatter

    front = front or FrontMatter()
    at = start
    while at < len(lines) and not lines[at]:  # blank lines after the front matter
        at += 1
    header = at
    # The slug: `slug:`, repeated or not on the first line; else the first line when it is a
    # slug; else from the file name.
    if front.slug is not None:
        slug = front.slug
        if at < len(lines) and lines[at] == slug:
            at += 1
    elif at < len(lines) and SLUG_RE.fullmatch(lines[at]) and len(lines[at]) <= SLUG_MAX:
        slug = lines[at]
        at += 1
    else:
        slug = slug_from_name(path)
        if not slug:
            raise SeedError(path, at + 1, "no slug: give one with `slug:` in the front matter")
    # The headline: `title:`, repeated or not; else the next line. In Markdown, a level-1
    # heading there is the headline too.
    markdown = path.endswith(".md")
    if front.title is not None:
        title = front.title
        if at < len(lines) and (lines[at] == title or (markdown and lines[at] == f"# {title}")):
            at += 1
    else:
        title = lines[at] if at < len(lines) else ""
        if markdown and title.startswith("# "):
            title = title[2:].strip(" #")
        if not title:
            raise SeedError(path, at + 1, "missing headline: write it on this line or give "
                                          "`title:` in the front matter")
        if len(title) > HEADLINE_MAX:
            raise SeedError(path, at + 1,
                            f"headline is {len(title)} characters long; at most {HEADLINE_MAX}")
        at += 1
    body = lines[at:]
    if at > header and body and body[0]:
        raise SeedError(path, at + 1, "expected a blank line between the headline and the body")
    paragraphs = _paragraphs(body)
    if not paragraphs and not front.draft:
        raise SeedError(path, at + 1, "no body: expected paragraphs after a blank line "
                                      "(a draft may have none)")
    if markdown:
        from feedsvc.ingest.markdown import MarkdownTooHeavy, render_markdown

        try:
            rendered = render_markdown("\n".join(body), options.base_url)
        except MarkdownTooHeavy as e:  # its line is counted from the body's first
            raise SeedError(path, at + 1 + e.line, e.message) from None
        content_html, first = rendered.html, rendered.first_paragraph
        if paragraphs and not content_html.strip():
            raise SeedError(path, at + 1, "the Markdown body is empty once sanitized")
    else:
        content_html = "\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs)
        first = paragraphs[0].replace("\n", " ") if paragraphs else ""
    summary = front.summary if front.summary is not None else summarize(first)
    # What `updated` follows: the text, and what the documents show of the front matter
    # (not the dates, nor `draft`). A Markdown body hashes apart from the same plain text.
    image = _media(path, front.image, options)[0] if front.image is not None else None
    enclosures = tuple(Enclosure(*_media(path, reference, options))
                       for reference in front.enclosures)
    # The image and the files (their lengths too: a new episode file moves `updated`); only
    # when there are some, so that the hash of every other seed stays what it was.
    media = ("media", image or "", *(f"{e.url} {e.type} {e.length}" for e in enclosures)) \
        if image or enclosures else ()
    extras = (summary if front.summary is not None else "", front.author_name or "",
              front.author_email or "", *front.tags, front.lang or "", front.link or "",
              "markdown" if markdown else "", *media)
    return Entry(
        slug=slug,
        title=title,
        paragraphs=paragraphs,
        summary=summary,
        content_html=content_html,
        content_hash=content_hash(title, paragraphs, extras),
        warnings=tuple(sorted((*warnings, *front.warnings))),
        date=_seconds(front.date),
        updated=_seconds(front.updated),
        author_name=front.author_name,
        author_email=front.author_email,
        tags=front.tags,
        lang=front.lang,
        draft=front.draft,
        link=front.link,
        seed_text=text,
        image=image,
        enclosures=enclosures,
    )


#: Says that a seed was rejected for a media file that is not there (yet): the catalog reads
#: such a seed again at every rescan, so the file's arrival publishes it.
MEDIA_MISSING = "no such file in the media folder"


def names_media(result: Entry | Rejection) -> bool:
    """Whether what a seed gave depends on the media folder: an entry with an image or
    enclosures, or a rejection for a media file that is missing."""
    if isinstance(result, Rejection):
        return MEDIA_MISSING in result.message or "no media folder" in result.message
    return bool(result.image or result.enclosures)


def _media(path: str, reference: MediaReference, options: ParseOptions
           ) -> tuple[str, str, int | None]:
    """(absolute URL, media type, length in bytes or None) of an `image:` or `enclosure:`. A
    file in the media folder must be there (a regular file, reached without a link): its
    size is read now, so the same seed and media folder always give the same entry. A file
    added later is found when the seed is read again: seeds that name media files are read
    again at every rescan (catalog.py)."""
    if reference.segments is None:  # elsewhere: no length known
        return reference.text, media_type(urlsplit(reference.text).path), None
    size = None if options.media is None else media_size(options.media, reference.segments)
    if size is None:
        where = "no media folder is configured" if options.media is None else \
            f"{MEDIA_MISSING} {options.media}"
        raise SeedError(path, reference.line, f"{reference.text!r}: {where} (a regular file, "
                                              "not a link nor a folder)")
    url = options.base_url + MEDIA_PREFIX + "/".join(quote(s) for s in reference.segments)
    return url, media_type(reference.segments[-1]), size


def rebuild_entry(slug: str, content: Content, options: ParseOptions = DEFAULT_OPTIONS
                  ) -> Entry | None:
    """The entry a stored version describes (the state's last good version of a seed): from
    its headline and paragraphs, or by parsing its whole text again. None if that text no
    longer gives this slug (options changed in a way that moves it)."""
    if not content.text:
        return build_entry(slug, content.title, content.paragraphs)
    entry = parse_seed(content.file or f"{slug}.txt", content.text.encode("utf-8"), options)
    return entry if isinstance(entry, Entry) and entry.slug == slug else None


def stored_content(entry: Entry, file: str) -> Content:
    """What the state keeps of an entry to rebuild it (see rebuild_entry)."""
    tags: tuple[tuple[str, str], ...] = ()
    if entry.tags:
        from feedsvc.ingest.slugs import tag_slug  # python-slugify, once a seed has tags

        tags = tuple(dict.fromkeys((slug, tag) for tag in entry.tags if (slug := tag_slug(tag))))
    return Content(entry.title, entry.paragraphs, entry.seed_text, file if entry.seed_text else "",
                   tags)


def _seconds(moment: datetime | None) -> int | None:
    """Whole seconds, rounded up: a post scheduled for 08:30:00.5 must not appear at 08:30:00."""
    return None if moment is None else math.ceil(moment.timestamp())


def build_entry(slug: str, title: str, paragraphs: tuple[str, ...],
                warnings: tuple[tuple[int, str], ...] = ()) -> Entry:
    """An Entry from its parts, with everything derived from them (also used for the last good
    version kept in the state)."""
    return Entry(
        slug=slug,
        title=title,
        paragraphs=paragraphs,
        summary=summarize(paragraphs[0]),
        content_html="\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs),
        content_hash=content_hash(title, paragraphs),
        warnings=warnings,
    )


def _decode(path: str, data: bytes) -> str:
    encoding, skip = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, skip = name, len(bom)
            break
    if encoding == "utf-8" and b"\x00" in data:  # say "binary" before "not UTF-8"
        _refuse_nul(path, _line_of(data[:data.index(b"\x00")]))
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as e:
        offset = skip + e.start  # in the file as it is on disk, BOM included
        if encoding == "utf-8":
            line = _line_of(data[:offset])
        else:
            line = _line_of(data[skip:offset].decode(encoding, errors="replace"))
        label = "UTF-8" if encoding == "utf-8" else "UTF-16"
        raise SeedError(path, line, f"not valid {label}: {e.reason} at byte offset {offset} "
                                    f"(0x{data[offset]:02x})") from None


def _line_of(prefix: str | bytes) -> int:
    """The 1-based line a position is on, given everything before it; LF, CRLF and CR count."""
    if isinstance(prefix, bytes):
        return prefix.count(b"\n") + prefix.count(b"\r") - prefix.count(b"\r\n") + 1
    return prefix.count("\n") + prefix.count("\r") - prefix.count("\r\n") + 1


def _refuse_nul(path: str, line: int) -> None:
    raise SeedError(path, line, "contains NUL bytes: a binary file, not text")


def _clean_lines(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """Split on LF, CRLF or CR; trim ASCII blanks; drop control and non-text characters."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines: list[str] = []
    warnings: list[tuple[int, str]] = []
    dirty = _NOT_TEXT_RE.search(text) is not None  # one search for the usual clean text
    for number, line in enumerate(raw, start=1):
        cleaned, removed = _NOT_TEXT_RE.subn("", line) if dirty else (line, 0)
        if removed:
            first = _NOT_TEXT_RE.search(line)
            assert first is not None
            warnings.append((number, f"removed {removed} control or non-text character(s) "
                                     f"(first: U+{ord(first.group()):04X})"))
        cleaned = cleaned.strip(_TRIM)
        # A line of nothing but Unicode spaces (NBSP, U+3000…) is blank: it is no headline.
        lines.append(cleaned if cleaned.strip() else "")
    while lines and not lines[-1]:
        lines.pop()
    return lines, warnings


def _paragraphs(body: list[str]) -> tuple[str, ...]:
    """Blank lines separate paragraphs; a single newline inside one is a soft break."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in body:
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return tuple(paragraphs)


def summarize(paragraph: str, target: int = SUMMARY_TARGET) -> str:
    """The paragraph as one line of plain text, cut at a word boundary near `target`."""
    text = paragraph.replace("\n", " ")
    if len(text) <= target:
        return text
    cut = text.rfind(" ", 0, target + 1)
    if cut < target * 2 // 3:  # one very long word: cut inside it rather than lose most
        cut = target
    return text[:cut].rstrip(" ,;:") + "…"


def content_hash(title: str, paragraphs: tuple[str, ...], extras: tuple[str, ...] = ()) -> str:
    """What `updated` follows: the headline and the body (and, from a front matter, what the
    documents show of it); a plain seed hashes as it always did."""
    digest = hashlib.blake2b(digest_size=16)  # compact: one is kept per seed
    digest.update(title.encode("utf-8"))
    for paragraph in paragraphs:
        digest.update(b"\x00")
        digest.update(paragraph.encode("utf-8"))
    if any(extras):
        digest.update(b"\x01")
        for extra in extras:
            digest.update(extra.encode("utf-8"))
            digest.update(b"\x00")
    return digest.hexdigest()
