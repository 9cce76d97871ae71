"""A checker of JSON Feed 1.1 documents (https://www.jsonfeed.org/version/1.1/), beside
feedcheck.py's Atom and RSS ones. `check_json_feed` returns a list of problems; [] is valid.

What it holds a document to: UTF-8 JSON whose top level is an object; `version` the 1.1 URL;
`title` and `items` present; every field of the spec with its type (strings, booleans, arrays
of objects), URLs absolute http(s) (`mailto:` not being a site; an author's `url` may be a
`mailto:` one, as the spec allows), `authors` objects with at least one of `name`, `url`,
`avatar`; `version` the first key (the spec's "should appear at the very top"); `next_url`
not the feed's own `feed_url`; per item a string `id`, not blank, unique in the feed, and
`content_html` or `content_text`; dates in RFC 3339 (section 5.6, real calendar dates);
`tags` an array of strings; language tags in the form of RFC 5646; no unknown key unless it
starts with "_" and a letter and has no "." (the spec's extensions); no deprecated 1.0
`author` field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

VERSION = "https://jsonfeed.org/version/1.1"
_RFC3339_RE = re.compile(
    r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_EXTENSION_RE = re.compile(r"^_[A-Za-z][^.]*$")

_FEED_FIELDS: dict[str, str] = {
    "version": "str", "title": "str", "home_page_url": "url", "feed_url": "url",
    "description": "str", "user_comment": "str", "next_url": "url", "icon": "url",
    "favicon": "url", "authors": "authors", "language": "lang", "expired": "bool",
    "hubs": "hubs", "items": "items",
}
_ITEM_FIELDS: dict[str, str] = {
    "id": "str", "url": "url", "external_url": "url", "title": "str", "content_html": "str",
    "content_text": "str", "summary": "str", "image": "url", "banner_image": "url",
    "date_published": "date", "date_modified": "date", "authors": "authors", "tags": "tags",
    "language": "lang", "attachments": "attachments",
}


def check_json_feed(body: bytes, feed_url: str | None = None) -> list[str]:
    """Problems of this document; `feed_url`: the URL it is served at, which its `feed_url`
    must name."""
    try:
        feed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return [f"not UTF-8 JSON: {e}"]
    if not isinstance(feed, dict):
        return ["top level: not an object"]
    problems = _fields(feed, _FEED_FIELDS, "feed")
    if feed.get("version") != VERSION:
        problems.append(f"version: {feed.get('version')!r} is not {VERSION!r}")
    elif next(iter(feed)) != "version":
        problems.append("version: not the first key")
    if "next_url" in feed and feed.get("next_url") == feed.get("feed_url"):
        problems.append("next_url: the feed's own feed_url (readers would loop)")
    for required in ("title", "items"):
        if required not in feed:
            problems.append(f"feed: {required} missing")
    if feed_url is not None and feed.get("feed_url") != feed_url:
        problems.append(f"feed_url: {feed.get('feed_url')!r} is not where it is served "
                        f"({feed_url!r})")
    items = feed.get("items")
    if isinstance(items, list):
        seen: set[str] = set()
        for n, item in enumerate(items, 1):
            where = f"item {n}"
            if not isinstance(item, dict):
                problems.append(f"{where}: not an object")
                continue
            problems += _fields(item, _ITEM_FIELDS, where)
            if "id" not in item:
                problems.append(f"{where}: id missing")
            elif isinstance(item["id"], str):
                if not item["id"].strip():
                    problems.append(f"{where}: id is empty")
                if item["id"] in seen:
                    problems.append(f"{where}: id {item['id']!r} is not unique")
                seen.add(item["id"])
            if "content_html" not in item and "content_text" not in item:
                problems.append(f"{where}: neither content_html nor content_text")
    return problems


def _fields(obj: dict[str, Any], known: dict[str, str], where: str) -> list[str]:
    problems = []
    for key, value in obj.items():
        kind = known.get(key)
        if kind is None:
            if key == "author":
                problems.append(f"{where}: author is JSON Feed 1.0's; 1.1 has authors")
            elif not _EXTENSION_RE.match(key):
                problems.append(f"{where}: unknown field {key!r} (extensions start with _ "
                                "and a letter, and have no '.')")
            continue
        problems += _CHECKS[kind](value, f"{where}.{key}")
    return problems


def _str(value: Any, where: str) -> list[str]:
    return [] if isinstance(value, str) else [f"{where}: not a string: {value!r}"]


def _url(value: Any, where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: not a string: {value!r}"]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        return [f"{where}: not an absolute http(s) URL: {value!r}"]
    return []


def _bool(value: Any, where: str) -> list[str]:
    return [] if isinstance(value, bool) else [f"{where}: not a boolean: {value!r}"]


def _lang(value: Any, where: str) -> list[str]:
    if not isinstance(value, str) or not _LANG_RE.match(value):
        return [f"{where}: not a language tag (RFC 5646): {value!r}"]
    return []


def _date(value: Any, where: str) -> list[str]:
    if not isinstance(value, str) or not _RFC3339_RE.match(value):
        return [f"{where}: not an RFC 3339 date: {value!r}"]
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return [f"{where}: not a real date: {value!r}"]
    return []


def _author_url(value: Any, where: str) -> list[str]:
    # "The URL could be a mailto: link, though we suspect that will be rare."
    if isinstance(value, str) and value.startswith("mailto:") and "@" in value:
        return []
    return _url(value, where)


def _authors(value: Any, where: str) -> list[str]:
    fields = {"name": "str", "url": "author_url", "avatar": "url"}
    problems = _objects(value, where, fields, ())
    if isinstance(value, list):  # each author names at least one of its fields
        problems += [f"{where}[{n}]: none of name, url, avatar"
                     for n, author in enumerate(value, 1)
                     if isinstance(author, dict) and not fields.keys() & author.keys()]
    return problems


def _tags(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: not an array: {value!r}"]
    return [f"{where}[{n}]: not a string: {tag!r}"
            for n, tag in enumerate(value, 1) if not isinstance(tag, str)]


def _objects(value: Any, where: str, fields: dict[str, str], required: tuple[str, ...]
             ) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: not an array: {value!r}"]
    problems = []
    for n, obj in enumerate(value, 1):
        at = f"{where}[{n}]"
        if not isinstance(obj, dict):
            problems.append(f"{at}: not an object")
            continue
        problems += [f"{at}: {key} missing" for key in required if key not in obj]
        problems += _fields(obj, fields, at)
    return problems


def _hubs(value: Any, where: str) -> list[str]:
    problems = _objects(value, where, {"type": "str", "url": "url"}, ("type", "url"))
    if problems:
        return problems
    # JSON Feed 1.1: both fields required; WebSub's `type` is "WebSub" (W3C WebSub §4, the
    # JSON Feed spec's own example), and a hub named twice is an error of the publisher.
    problems += [f"{where}[{n}].type: empty" for n, hub in enumerate(value, 1)
                 if not hub["type"].strip()]
    urls = [hub["url"] for hub in value]
    if len(set(urls)) != len(urls):
        problems.append(f"{where}: the same hub url twice")
    return problems


def _attachments(value: Any, where: str) -> list[str]:
    return _objects(value, where, {"url": "url", "mime_type": "str", "title": "str",
                                   "size_in_bytes": "number", "duration_in_seconds": "number"},
                    ("url", "mime_type"))


def _number(value: Any, where: str) -> list[str]:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return [] if ok else [f"{where}: not a number: {value!r}"]


def _items(value: Any, where: str) -> list[str]:
    return [] if isinstance(value, list) else [f"{where}: not an array: {value!r}"]


_CHECKS = {"str": _str, "url": _url, "bool": _bool, "lang": _lang, "date": _date,
           "authors": _authors, "tags": _tags, "hubs": _hubs, "attachments": _attachments,
           "number": _number, "items": _items, "author_url": _author_url}
