"""The optional front matter at the top of a seed: a YAML block between two `---` lines. Pure.

```
---
title: Première lumière
date: mardi 24 novembre 2026 à 8h30
tags: [astronomie, télescope]
author: {name: Léa Martin, email: lea@example.org}
---
```

YAML goes through PyYAML's safe loader only, with timestamps left as text so that every date
goes through `parse_date` (and the feed's zone). The node tree is kept so that every error and
warning names the line of the file it is about.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

import yaml

from feedsvc.errors import SeedError
from feedsvc.ingest.dates import DateError, parse_date
from feedsvc.ingest.mediafiles import MEDIA_PREFIX, media_segments
from feedsvc.ingest.seedrules import HEADLINE_MAX, SLUG_MAX, is_slug

FENCE = "---"
MAX_TAGS = 50
MAX_ENCLOSURES = 20
TAG_MAX = 100
_BLANKS = " \t"
_FIRST_YAML_LINE = 2  # the line after the opening fence; YAML marks count from 0 there

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Numbers are text to an author: `title: 2026`, `slug: 1.10`, `date: 20261124`.
_TAKEN_AS_WRITTEN = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
# "fr", "fr-CA", "en-GB", "zh-Hant-TW": a 2 or 3 letter language, then subtags.
_LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_LINE_BREAK_RE = re.compile(r"[ \t]*\n[ \t]*")
_EMAIL_RE = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+")
# What no document may carry (XML 1.0 refuses C0 controls, feed validators flag C1 and
# U+FFFD, HTML parsers refuse noncharacters): the parser removes them from the text, but YAML
# escapes such as "\0" or "\x85" in a quoted value bring them back.
_NOT_TEXT_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffd-\uffff]")


class _TextDatesLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that timestamps stay strings: `date: 2026-11-24 08:30`
    is wall-clock time in the feed's zone, which only parse_date knows (YAML would say UTC)."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


@dataclass(frozen=True, slots=True)
class DateSettings:
    """How dates without a zone or with an ambiguous day/month order are read."""

    tz: datetime.tzinfo
    dayfirst: bool


@dataclass(frozen=True, slots=True)
class MediaReference:
    """An `image:` or `enclosure:` as written: an absolute http(s) URL, or a path in the media
    folder (`media/episode.mp3`: `segments` is ("episode.mp3",)). Whether the file is there is
    the parser's question (it needs the folder); the line is kept for its answer."""

    text: str
    line: int
    segments: tuple[str, ...] | None  # None: an absolute URL


@dataclass(frozen=True, slots=True)
class FrontMatter:
    title: str | None = None
    slug: str | None = None
    date: datetime.datetime | None = None  # aware UTC: publication date (the author's word)
    updated: datetime.datetime | None = None  # aware UTC
    author_name: str | None = None
    author_email: str | None = None
    tags: tuple[str, ...] = ()  # as written, stripped, in order, duplicates (casefold) removed
    summary: str | None = None
    lang: str | None = None
    draft: bool = False
    link: str | None = None  # absolute http(s) URL of the article when it lives elsewhere
    image: MediaReference | None = None  # the feature image
    enclosures: tuple[MediaReference, ...] = ()
    warnings: tuple[tuple[int, str], ...] = ()  # (1-based line in the file, message)


def split_front_matter(path: str, lines: Sequence[str], dates: DateSettings
                       ) -> tuple[FrontMatter | None, int]:
    """The front matter of a seed and the index in `lines` of the first line after it.

    `lines[0]` is line 1 of the file. Without a `---` first line there is no front matter:
    `(None, 0)`. An empty block gives an empty FrontMatter. Raises SeedError, with the line,
    for a block that is never closed, YAML that is not valid, or a key with a bad value.
    Unknown keys are warnings, not errors.
    """
    # Fences are compared without ASCII blanks, so lines that keep their indentation (which
    # nested YAML needs) work as well as the parser's trimmed ones.
    if not lines or lines[0].strip(_BLANKS) != FENCE:
        return None, 0
    closing = next((index for index in range(1, len(lines))
                    if lines[index].strip(_BLANKS) == FENCE), None)
    if closing is None:
        raise SeedError(path, 1, "front matter is not closed: the closing '---' line is "
                                 "missing")
    yaml_text = "\n".join(lines[1:closing])
    return _FrontMatterReader(path, yaml_text, dates).read(), closing + 1


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + _FIRST_YAML_LINE


def _kind(value: object) -> str:
    """How an author would call what YAML made of a value."""
    if isinstance(value, yaml.SequenceNode | list):
        return "a list"
    if isinstance(value, yaml.MappingNode | dict):
        return "a mapping"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, yaml.ScalarNode | str):
        return "text"
    return type(value).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _FrontMatterReader:
    """Reads one block: holds the loader (for constructing values) and the warnings so far."""

    def __init__(self, path: str, yaml_text: str, dates: DateSettings) -> None:
        self.path = path
        self.yaml_text = yaml_text
        self.dates = dates
        self.loader = _TextDatesLoader(yaml_text)
        self.warnings: list[tuple[int, str]] = []

    def read(self) -> FrontMatter:
        try:
            return self._read()
        except yaml.YAMLError as e:
            raise self._yaml_error(e) from None
        except RecursionError:  # [[[[…]]]] nested deeper than PyYAML's recursion can go
            raise SeedError(self.path, _FIRST_YAML_LINE,
                            "front matter is nested too deeply") from None
        finally:
            self.loader.dispose()

    def _read(self) -> FrontMatter:
        root = self.loader.get_single_node()
        if root is None:  # nothing but blank lines or comments
            return FrontMatter()
        if not isinstance(root, yaml.MappingNode):
            raise SeedError(self.path, _line(root), "front matter must be 'key: value' lines, "
                                                    f"not {_kind(root)}")
        fields: dict[str, object] = {}
        for name, key_node, value_node in self._pairs(root):
            reader = self._FIELD_READERS.get(name)
            if reader is None:
                self._warn_unknown_key(name, key_node)
                continue
            fields.update(reader(self, name, key_node, value_node))
        return FrontMatter(**fields, warnings=tuple(self.warnings))

    def _pairs(self, mapping: yaml.MappingNode) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """(name, key node, value node), merge keys (`<<: *base`) applied, duplicates refused.

        A key written twice is an error (PyYAML would silently keep the last one); a key
        written out overrides the same key brought in by a merge, as YAML says."""
        written = {id(key) for key, _ in mapping.value if key.tag != _MERGE_TAG}
        self.loader.flatten_mapping(mapping)
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in mapping.value:
            if not isinstance(key, yaml.ScalarNode):
                raise SeedError(self.path, _line(key), "front matter keys must be names, "
                                                       f"not {_kind(key)}")
            earlier = pairs.get(key.value)
            if earlier is not None and id(earlier[0]) in written and id(key) in written:
                raise SeedError(self.path, _line(key),
                                f"duplicate key '{key.value}' (first on line {_line(earlier[0])})")
            pairs[key.value] = (key, value)
        return [(name, key, value) for name, (key, value) in pairs.items()]

    def _warn_unknown_key(self, name: str, key: yaml.Node) -> None:
        # A typo must not go quietly (`tittle:` would publish without its title): say which
        # key was meant. `Title:` is the likeliest: keys are lowercase.
        if name.lower() in self._FIELD_READERS:
            hint = f" (keys are lowercase: '{name.lower()}')"
        elif (meant := closest_key(name, self._FIELD_READERS)) is not None:
            hint = f" (did you mean '{meant}'?)"
        else:
            hint = ""
        self.warnings.append((_line(key), f"unknown front matter key '{name}' ignored{hint}"))

    def _error(self, node: yaml.Node, message: str) -> SeedError:
        return SeedError(self.path, _line(node), message)

    def _yaml_error(self, error: yaml.YAMLError) -> SeedError:
        if isinstance(error, yaml.MarkedYAMLError):
            mark = error.problem_mark or error.context_mark
            line = mark.line + _FIRST_YAML_LINE if mark is not None else _FIRST_YAML_LINE
            parts = [part for part in (error.context, error.problem) if part]
            detail = _one_line(": ".join(parts)) if parts else "syntax error"
            if error.problem == "mapping values are not allowed here":
                # French typography puts a space before the colon: `title: Bilan : 2026`.
                detail += " (quote a value that contains ': ')"
        elif isinstance(error, yaml.reader.ReaderError):  # a character YAML does not accept
            line = self.yaml_text.count("\n", 0, error.position) + _FIRST_YAML_LINE
            detail = f"character U+{error.character:04X} is not allowed" if isinstance(
                error.character, int) else _one_line(str(error.reason))
        else:
            line, detail = _FIRST_YAML_LINE, _one_line(str(error))
        return SeedError(self.path, line, f"front matter is not valid YAML: {detail}")

    # Values ---------------------------------------------------------------------------

    def _text(self, name: str, node: yaml.Node, at: yaml.Node) -> str:
        """A scalar as text, stripped; errors name the line of `at` (the key, or the item).
        Numbers are taken as written (`title: 2026`, `slug: 1.10`)."""
        if not isinstance(node, yaml.ScalarNode):
            raise self._error(at, f"{name}: expected text, got {_kind(node)}")
        if node.tag in _TAKEN_AS_WRITTEN:
            # Not even constructed: YAML would turn 1.10 into 1.1, and `!!int 1x` would fail.
            return self._checked_text(name, node.value, at).strip()
        value = self._construct(name, node, at)
        if value is None:
            raise self._error(at, f"{name} is empty; write it or remove the line")
        if isinstance(value, bool):  # YAML 1.1: yes, no, on, off, y, n…
            raise self._error(at, f"{name}: {node.value!r} reads as the YAML boolean "
                                  f"{str(value).lower()}; quote it: \"{node.value}\"")
        if not isinstance(value, str):
            raise self._error(at, f"{name}: expected text, got {_kind(value)}")
        return self._checked_text(name, value, at).strip()

    def _checked_text(self, name: str, value: str, at: yaml.Node) -> str:
        bad = _NOT_TEXT_RE.search(value)
        if bad:
            raise self._error(at, f"{name}: contains the control or non-text character "
                                  f"U+{ord(bad.group()):04X}")
        return value

    def _construct(self, name: str, node: yaml.Node, at: yaml.Node) -> object:
        """The value YAML makes of a node. A value that does not fit its explicit tag
        (`!!bool maybe`, `!!binary ?`) makes PyYAML's constructors raise plain exceptions."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise  # located by read()
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as e:
            raise self._error(at, f"{name}: {node.value!r} cannot be read as "
                                  f"{node.tag.rsplit(':', 1)[-1]} ({type(e).__name__})") from None

    def _line_text(self, name: str, node: yaml.Node, at: yaml.Node, max_length: int) -> str:
        """Text on one line, not empty, at most max_length characters."""
        value = self._text(name, node, at)
        if not value:
            raise self._error(at, f"{name} is empty; write it or remove the line")
        if "\n" in value:
            raise self._error(at, f"{name} must be on one line")
        if len(value) > max_length:
            raise self._error(at, f"{name} is {len(value)} characters long; "
                                  f"at most {max_length}")
        return value

    def _read_title(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        return {"title": self._line_text(name, node, key, HEADLINE_MAX)}

    def _read_slug(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        slug = self._text(name, node, key)
        if not is_slug(slug):
            raise self._error(key, f"slug {slug!r} is not a slug: lowercase a-z, 0-9 and single "
                                   f"'-' between them, at most {SLUG_MAX} characters")
        return {"slug": slug}

    def _read_date(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        text = self._text(name, node, key)
        try:
            when = parse_date(text, tz=self.dates.tz, dayfirst=self.dates.dayfirst)
        except DateError as e:
            raise self._error(key, f"{name}: {e}") from None
        return {name: when}

    def _read_author(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        if isinstance(node, yaml.ScalarNode):
            return {"author_name": self._line_text(name, node, key, HEADLINE_MAX)}
        if not isinstance(node, yaml.MappingNode):
            raise self._error(key, f"author: expected a name or {{name: …, email: …}}, "
                                   f"got {_kind(node)}")
        parts: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for part, part_key, part_value in self._pairs(node):
            if part in ("name", "email"):
                parts[part] = (part_key, part_value)
            else:
                meant = closest_key(part, ("name", "email"))
                hint = f"did you mean '{meant}'?" if meant else "author has name and email"
                self.warnings.append((_line(part_key),
                                      f"unknown author key '{part}' ignored ({hint})"))
        if "name" not in parts:
            raise self._error(key, "author: a mapping needs a name (name: …)")
        name_key, name_value = parts["name"]
        author_name = self._line_text("author name", name_value, name_key, HEADLINE_MAX)
        author_email = None
        if "email" in parts:
            email_key, email_value = parts["email"]
            author_email = self._text("author email", email_value, email_key)
            if not _EMAIL_RE.fullmatch(author_email):
                raise self._error(email_key, f"author email {author_email!r} is not an email "
                                             "address")
        return {"author_name": author_name, "author_email": author_email}

    def _read_tags(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        written: list[tuple[str, yaml.Node]]
        if isinstance(node, yaml.SequenceNode):
            # An item met through an alias has its anchor's line, above the key: name the key.
            written = [(self._text("tag", item, at), at) for item in node.value
                       for at in [item if _line(item) >= _line(key) else key]]
        elif isinstance(node, yaml.ScalarNode):
            if node.tag.endswith(":null"):  # `tags:` left empty, as in a template
                return {"tags": ()}
            written = [(tag, key) for tag in self._text(name, node, key).split(",")]
        else:
            raise self._error(key, "tags: expected a list ([a, b]) or comma-separated text, "
                                   f"got {_kind(node)}")
        tags: list[str] = []
        seen: set[str] = set()
        for tag, tag_node in written:
            tag = tag.strip()
            if not tag or tag.casefold() in seen:
                continue
            if "\n" in tag:
                raise self._error(tag_node, f"tag {tag!r} must be on one line")
            if len(tag) > TAG_MAX:
                raise self._error(tag_node, f"tag is {len(tag)} characters long; "
                                            f"at most {TAG_MAX}: {tag[:40]!r}…")
            seen.add(tag.casefold())
            tags.append(tag)
        if len(tags) > MAX_TAGS:
            raise self._error(key, f"tags: {len(tags)} tags; at most {MAX_TAGS}")
        return {"tags": tuple(tags)}

    def _read_summary(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        # Plain text on one line, like the summary the parser makes from the first paragraph;
        # only line breaks go (a NBSP before « : » is typography).
        summary = _LINE_BREAK_RE.sub(" ", self._text(name, node, key))
        if not summary:
            raise self._error(key, "summary is empty; write it or remove the line")
        return {"summary": summary}

    def _read_lang(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        lang = self._text(name, node, key)
        if not _LANGUAGE_RE.fullmatch(lang):
            raise self._error(key, f"lang {lang!r} is not a language tag such as fr, fr-CA or "
                                   "en-GB")
        return {"lang": lang}

    def _read_draft(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        value = self._construct(name, node, key) if isinstance(node, yaml.ScalarNode) else node
        if not isinstance(value, bool):
            shown = (_kind(node) if not isinstance(node, yaml.ScalarNode)
                     else "empty" if value is None else repr(node.value))
            raise self._error(key, f"draft must be true or false (without quotes), not {shown}")
        return {"draft": value}

    def _read_link(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        link = self._text(name, node, key)
        if not _is_web_url(link):
            raise self._error(key, f"link {link!r} is not an absolute http(s) URL such as "
                                   "https://example.org/article")
        return {"link": link}

    def _media_reference(self, name: str, node: yaml.Node, at: yaml.Node) -> MediaReference:
        text = self._line_text(name, node, at, 2000)
        if _is_web_url(text):
            return MediaReference(text, _line(at), None)
        relative = text[1:] if text.startswith("/") else text
        segments = (media_segments(relative[len(MEDIA_PREFIX):])
                    if relative.startswith(MEDIA_PREFIX) else None)
        if segments is None:
            raise self._error(at, f"{name}: {text!r} is neither a file in the media folder "
                                  "(media/name.ext, no '..' nor hidden names) nor an absolute "
                                  "http(s) URL")
        return MediaReference(text, _line(at), segments)

    def _read_image(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        return {"image": self._media_reference(name, node, key)}

    def _read_enclosure(self, name: str, key: yaml.Node, node: yaml.Node) -> dict[str, object]:
        if isinstance(node, yaml.SequenceNode):
            # An item met through an alias has its anchor's line, above the key: name the key.
            items = [(item, item if _line(item) >= _line(key) else key) for item in node.value]
        elif isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return {"enclosures": ()}  # `enclosure:` left empty
        else:
            items = [(node, key)]
        if len(items) > MAX_ENCLOSURES:
            raise self._error(key, f"enclosure: {len(items)} files; at most {MAX_ENCLOSURES}")
        return {"enclosures": tuple(self._media_reference(name, item, at)
                                    for item, at in items)}

    _FIELD_READERS: ClassVar[dict[str, Callable[
        [_FrontMatterReader, str, yaml.Node, yaml.Node], dict[str, object]]]] = {
        "title": _read_title,
        "slug": _read_slug,
        "date": _read_date,
        "updated": _read_date,
        "author": _read_author,
        "tags": _read_tags,
        "summary": _read_summary,
        "lang": _read_lang,
        "draft": _read_draft,
        "link": _read_link,
        "image": _read_image,
        "enclosure": _read_enclosure,
    }


#: Keys other site generators (Jekyll, Hugo, Pelican) use for what ours are called: no
#: spelling is close, yet the author meant ours.
_KEY_ALIASES = {
    "categories": "tags", "category": "tags", "keywords": "tags",
    "description": "summary", "excerpt": "summary", "abstract": "summary",
    "language": "lang", "locale": "lang",
    "published": "date", "pubdate": "date", "publishdate": "date",
    "modified": "updated", "lastmod": "updated",
    "authors": "author", "url": "link", "permalink": "link",
    "cover": "image", "thumbnail": "image", "featured_image": "image",
    "enclosures": "enclosure", "attachment": "enclosure", "attachments": "enclosure",
    "headline": "title",
}


def closest_key(name: str, known: Sequence[str] | dict[str, object]) -> str | None:
    """The known key `name` most likely misspells (`tittle` → `title`, by difflib's ratio,
    0.6 at least), or that another generator calls `name` (`categories` → `tags`); None."""
    folded = name.strip().lower().replace("-", "_")
    alias = _KEY_ALIASES.get(folded)
    if alias is not None and alias in known:
        return alias
    matches = difflib.get_close_matches(folded, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _is_web_url(text: str) -> bool:
    if any(char.isspace() for char in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
