"""Slugs from titles and tags: ASCII, lowercase, words joined by "-". Pure.

Accents and ligatures are transliterated (`Été` → `ete`, `Œuvre` → `oeuvre`), apostrophes are
dropped so that an elided French article stays glued to its word (`l’été` → `lete`, not
`l-ete`), and every other run of punctuation or spaces becomes one "-". Scripts without Latin
letters are transliterated by text-unidecode (python-slugify's backend): `東京` → `dong-jing`
(a Mandarin reading, also for Japanese), `Мьянма` → `mianma`. A title with nothing left after
that (`!!!`, emoji only) gives "": the caller picks a fallback.

The result is always "" or matches the seed slug rule `[a-z0-9]+(-[a-z0-9]+)*`.
"""

from __future__ import annotations

from slugify import slugify

#: The longest tag slug; tags end up in URLs such as /tags/{tag}.atom.
TAG_SLUG_MAX = 100
#: The longest title slug by default: a seed's slug limit (feedsvc.ingest.parser.SLUG_MAX).
TITLE_SLUG_MAX = 128

# Apostrophes (typographic, ASCII, modifier letter) and the marks people type in their place.
# Removed before transliteration: python-slugify would otherwise turn them into separators.
_APOSTROPHES = (
    "’", "'",
    "\u02bc",  # MODIFIER LETTER APOSTROPHE
    "\u2018",  # LEFT SINGLE QUOTATION MARK, typed for ’ by some keyboards and autocorrects
    "`",
    "\u00b4",  # ACUTE ACCENT
    "\u2032",  # PRIME
)
_DROP_APOSTROPHES = tuple((mark, "") for mark in _APOSTROPHES)


def slugify_title(title: str, max_length: int = TITLE_SLUG_MAX) -> str:
    """A slug for a title, at most `max_length` characters, cut at a word boundary when one
    falls in the second half of the limit; "" when the title has no usable character."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    slug = slugify(
        title,
        # Titles and tags are plain text, not HTML: "&amp;" is what the author typed.
        entities=False,
        decimal=False,
        hexadecimal=False,
        replacements=_DROP_APOSTROPHES,
    )
    return _truncate(slug, max_length)


def tag_slug(tag: str) -> str:
    """The slug of a tag, as used in `/tags/{tag}.atom`: the title rules, at most 100
    characters. "" for a tag with no usable character."""
    return slugify_title(tag, max_length=TAG_SLUG_MAX)


def _truncate(slug: str, max_length: int) -> str:
    if len(slug) <= max_length:
        return slug
    # A "-" at index max_length means the first max_length characters end a whole word.
    cut = slug.rfind("-", 0, max_length + 1)
    if cut < max_length // 2:  # one very long word: cut inside it rather than lose most
        return slug[:max_length].rstrip("-")
    return slug[:cut]
