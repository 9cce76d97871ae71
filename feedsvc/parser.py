"""(path, bytes) → Entry | SeedError. Pure: no disk, no clock.

A seed is UTF-8 text: line 1 the slug, line 2 the headline, a blank line, then paragraphs
separated by blank lines. When line 1 is not a slug, the slug comes from the file name and
line 1 is the headline. Nothing about the text changes but whitespace at the ends of lines.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from pathlib import PurePath

from feedsvc.errors import SeedError
from feedsvc.model import Entry

SLUG_MAX = 128
HEADLINE_MAX = 1000
SUMMARY_TARGET = 300
_SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_BOM = b"\xef\xbb\xbf"
# Characters XML 1.0 cannot carry at all (not even escaped): C0 controls but tab/LF/CR,
# surrogates, U+FFFE and U+FFFF. lxml refuses them, so they must never reach the renderer.
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Only ASCII blanks are trimmed: a non-breaking space is typography (« », :) and stays.
_TRIM = " \t"


def is_slug(text: str) -> bool:
    return len(text) <= SLUG_MAX and _SLUG_RE.fullmatch(text) is not None


def slug_from_name(path: str) -> str:
    """A slug from a file name: accents folded, lowercased, other characters to '-'."""
    stem = PurePath(path).stem
    folded = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:SLUG_MAX].rstrip("-")


def parse_seed(path: str, data: bytes) -> Entry | SeedError:
    """Parse one seed file's bytes. Returns (never raises) a SeedError for unusable input."""
    try:
        return _parse(path, data)
    except SeedError as e:
        return e


def _parse(path: str, data: bytes) -> Entry:
    text = _decode(path, data)
    lines, warnings = _clean_lines(text)

    if not any(lines):
        raise SeedError(path, 1, "empty seed: expected a slug, a headline, a blank line and a body")
    if not lines[0]:
        raise SeedError(path, 1, "line 1 is blank: expected the slug or the headline")

    first = lines[0]
    if _SLUG_RE.fullmatch(first):
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

    paragraphs = _paragraphs(body)
    return Entry(
        slug=slug,
        title=headline,
        paragraphs=paragraphs,
        summary=summarize(paragraphs[0]),
        content_html="\n".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs),
        content_hash=content_hash(headline, paragraphs),
        warnings=tuple(warnings),
    )


def _decode(path: str, data: bytes) -> str:
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start  # in the file as it is on disk, BOM included
        line = data.count(b"\n", 0, offset) + 1
        raise SeedError(path, line, f"not valid UTF-8: byte 0x{data[offset]:02x} "
                                    f"at offset {offset}") from None


def _clean_lines(text: str) -> tuple[list[str], list[tuple[int, str]]]:
    """Split on LF, CRLF or CR; trim ASCII blanks; drop characters XML cannot carry."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines: list[str] = []
    warnings: list[tuple[int, str]] = []
    for number, line in enumerate(raw, start=1):
        cleaned, removed = _NOT_XML_RE.subn("", line)
        if removed:
            first = _NOT_XML_RE.search(line)
            assert first is not None
            warnings.append((number, f"removed {removed} character(s) that XML cannot carry "
                                     f"(first: U+{ord(first.group()):04X})"))
        lines.append(cleaned.strip(_TRIM))
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


def content_hash(title: str, paragraphs: tuple[str, ...]) -> str:
    """What `updated` follows: the headline and the body, nothing else."""
    digest = hashlib.sha256()
    digest.update(title.encode("utf-8"))
    for paragraph in paragraphs:
        digest.update(b"\x00")
        digest.update(paragraph.encode("utf-8"))
    return digest.hexdigest()
