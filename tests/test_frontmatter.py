"""split_front_matter: every key, every refusal with its line, YAML's surprises. Data-driven."""

from __future__ import annotations

import datetime
import time
from zoneinfo import ZoneInfo

import pytest

from feedsvc.errors import SeedError
from feedsvc.ingest.frontmatter import DateSettings, FrontMatter, split_front_matter

UTC = datetime.UTC
PARIS = DateSettings(ZoneInfo("Europe/Paris"), dayfirst=True)
PATH = "seeds/a.txt"


def utc(*fields: int) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=UTC)


def split(text: str, dates: DateSettings = PARIS) -> tuple[FrontMatter | None, int]:
    # The parser's lines: split on line ends, ASCII blanks trimmed at both ends.
    return split_front_matter(PATH, [line.strip(" \t") for line in text.split("\n")], dates)


def front(yaml_lines: str, dates: DateSettings = PARIS) -> FrontMatter:
    result, _ = split(f"---\n{yaml_lines}\n---\n\nBody.", dates)
    assert result is not None
    return result


def refusal(text: str) -> tuple[int, str]:
    with pytest.raises(SeedError) as raised:
        split(text)
    assert raised.value.path == PATH
    return raised.value.line, raised.value.message


FULL_SEED = """\
---
title: Première « lumière »
slug: premiere-lumiere
date: mardi 24 novembre 2026 à 8h30
updated: 2026-11-25T10:00:00Z
author: {name: Léa Martin, email: lea@example.org}
tags: [astronomie, Télescope, ASTRONOMIE]
summary: Le télescope a vu sa première lumière.
lang: fr-FR
draft: false
link: https://example.org/premiere-lumiere
---

Le corps.
---
Still the body."""


def test_every_key() -> None:
    lines = FULL_SEED.split("\n")
    assert split_front_matter(PATH, lines, PARIS) == (FrontMatter(
        title="Première « lumière »",
        slug="premiere-lumiere",
        date=utc(2026, 11, 24, 7, 30),
        updated=utc(2026, 11, 25, 10, 0),
        author_name="Léa Martin",
        author_email="lea@example.org",
        tags=("astronomie", "Télescope"),
        summary="Le télescope a vu sa première lumière.",
        lang="fr-FR",
        draft=False,
        link="https://example.org/premiere-lumiere",
    ), 12)
    assert lines[12:] == ["", "Le corps.", "---", "Still the body."]  # the first `---` closes


@pytest.mark.parametrize("text", [
    "first-light\nThe headline\n\nBody.",
    "The headline\n---\n\nBody.",
    "",
    "--\ntitle: a\n--",
    "----\ntitle: a\n----",
    "--- title: a",
])
def test_without_front_matter_nothing_happens(text: str) -> None:
    assert split(text) == (None, 0)


def test_no_lines_at_all() -> None:
    assert split_front_matter(PATH, [], PARIS) == (None, 0)


@pytest.mark.parametrize(("text", "index"), [
    ("---\n---\nBody.", 2),
    ("---\n\n\n---", 4),
    ("---\n# only a comment\n---\n\nBody.", 3),
])
def test_an_empty_block_is_an_empty_front_matter(text: str, index: int) -> None:
    assert split(text) == (FrontMatter(), index)


KEYS = [
    # title: text; numbers are taken as written
    ("title: Première «\u00a0lumière\u00a0» l’été",
     {"title": "Première «\u00a0lumière\u00a0» l’été"}),
    ("title: '  spaced out  '", {"title": "spaced out"}),
    ("title: 2026", {"title": "2026"}),
    ("title: 1.10", {"title": "1.10"}),  # as written, not the float 1.1
    ("title: \"yes\"", {"title": "yes"}),
    ("title: 'Question: why?'", {"title": "Question: why?"}),
    # slug
    ("slug: premiere-lumiere", {"slug": "premiere-lumiere"}),
    ("slug: 2026", {"slug": "2026"}),
    # dates: every date goes through parse_date, in the feed's zone
    ("date: 2026-11-24", {"date": utc(2026, 11, 23, 23, 0)}),
    ("date: 2026-11-24T08:30:00+01:00", {"date": utc(2026, 11, 24, 7, 30)}),
    ("date: mardi 24 novembre 2026 à 8h30", {"date": utc(2026, 11, 24, 7, 30)}),
    ("date: 1er décembre 2026 à 18h", {"date": utc(2026, 12, 1, 17, 0)}),
    ("date: 03/04/2027", {"date": utc(2027, 4, 2, 22, 0)}),  # day first, summer time
    ("date: 20261124", {"date": utc(2026, 11, 23, 23, 0)}),  # an integer to YAML
    ("date: !!int 2026-11-24 08:30", {"date": utc(2026, 11, 24, 7, 30)}),
    ("title: !!str 2026", {"title": "2026"}),
    ("updated: Tue, 24 Nov 2026 08:30:00 +0100", {"updated": utc(2026, 11, 24, 7, 30)}),
    # author
    ("author: Léa Martin", {"author_name": "Léa Martin"}),
    ("author: {name: Léa Martin}", {"author_name": "Léa Martin"}),
    ("author: {name: Léa Martin, email: lea@example.org}",
     {"author_name": "Léa Martin", "author_email": "lea@example.org"}),
    # tags: a list or comma-separated text; stripped, in order, duplicates (casefold) removed
    ("tags: [astronomie, télescope]", {"tags": ("astronomie", "télescope")}),
    ("tags:\n- astronomie\n- télescope", {"tags": ("astronomie", "télescope")}),
    ("tags: astronomie, télescope", {"tags": ("astronomie", "télescope")}),
    ("tags: ' a ,, b , '", {"tags": ("a", "b")}),
    ("tags: [Été, été, ÉTÉ, ete, Straße, STRASSE]", {"tags": ("Été", "ete", "Straße")}),
    ("tags: [2026, 1.10]", {"tags": ("2026", "1.10")}),
    ("tags: solo", {"tags": ("solo",)}),
    ("tags: []", {"tags": ()}),
    ("tags:", {"tags": ()}),  # left empty, as in a template
    ("tags: [" + ", ".join(f"t{n}" for n in range(50)) + "]",
     {"tags": tuple(f"t{n}" for n in range(50))}),
    ("tags: [" + ", ".join(["x"] * 80) + "]", {"tags": ("x",)}),  # duplicates do not count
    ("tags: ['" + "é" * 100 + "']", {"tags": ("é" * 100,)}),
    # summary: one line of plain text
    ("summary: Un résumé.", {"summary": "Un résumé."}),
    ("summary: 'Le « télescope »\u00a0: oui'", {"summary": "Le « télescope »\u00a0: oui"}),
    ("summary: \"Une ligne.\\nUne autre.\"", {"summary": "Une ligne. Une autre."}),
    # lang
    ("lang: fr", {"lang": "fr"}),
    ("lang: fr-CA", {"lang": "fr-CA"}),
    ("lang: en-GB", {"lang": "en-GB"}),
    ("lang: zh-Hant-TW", {"lang": "zh-Hant-TW"}),
    ("lang: \"no\"", {"lang": "no"}),  # Norwegian, quoted
    # draft: a YAML boolean
    ("draft: true", {"draft": True}),
    ("draft: false", {"draft": False}),
    ("draft: yes", {"draft": True}),
    ("draft: no", {"draft": False}),
    ("draft: True", {"draft": True}),
    # link
    ("link: https://example.org/article", {"link": "https://example.org/article"}),
    ("link: http://example.org:8080/a?b=c#d", {"link": "http://example.org:8080/a?b=c#d"}),
    ("link: HTTPS://EXAMPLE.ORG/", {"link": "HTTPS://EXAMPLE.ORG/"}),
]


@pytest.mark.parametrize(("yaml_lines", "expected"), KEYS, ids=[k for k, _ in KEYS])
def test_each_key(yaml_lines: str, expected: dict[str, object]) -> None:
    assert front(yaml_lines) == FrontMatter(**expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(("dates", "expected"), [
    (DateSettings(UTC, dayfirst=True), utc(2026, 11, 24, 8, 30)),
    (PARIS, utc(2026, 11, 24, 7, 30)),
    (DateSettings(ZoneInfo("America/New_York"), dayfirst=False), utc(2026, 11, 24, 13, 30)),
], ids=["UTC", "Paris", "New-York"])
def test_a_timestamp_looking_value_is_wall_clock_time_in_the_feed_zone(
        dates: DateSettings, expected: datetime.datetime) -> None:
    # YAML alone would make it a naive datetime, which PyYAML users read as UTC.
    assert front("date: 2026-11-24 08:30", dates).date == expected


@pytest.mark.parametrize(("dayfirst", "expected"), [
    (True, utc(2027, 4, 3)),
    (False, utc(2027, 3, 4)),
])
def test_dayfirst_comes_from_the_settings(dayfirst: bool, expected: datetime.datetime) -> None:
    assert front("date: 03/04/2027", DateSettings(UTC, dayfirst)).date == expected


REFUSED = [
    # The block itself
    ("---\ntitle: a\n\nBody.", 1, "front matter is not closed: the closing '---' line is missing"),
    ("---", 1, "the closing '---' line is missing"),
    ("---\ntitle: ok\nsummary: a: b\n---", 3,
     "front matter is not valid YAML: mapping values are not allowed here (quote a value that "
     "contains ': ')"),
    ("---\ntitle: ok\ntags: [a, b\n---", 3, "front matter is not valid YAML: while parsing a "
                                             "flow sequence: expected ',' or ']', but got"),
    ("---\ntitle: \"unclosed\n---", 2,
     "front matter is not valid YAML: while scanning a quoted scalar: found unexpected end of"),
    ("---\ntitle: *nowhere\n---", 2, "found undefined alias 'nowhere'"),
    ("---\n- a\n- b\n---", 2, "front matter must be 'key: value' lines, not a list"),
    ("---\njust a sentence\n---", 2, "front matter must be 'key: value' lines, not text"),
    ("---\n# comment\n[a, b]\n---", 3, "front matter must be 'key: value' lines, not a list"),
    ("---\n? [a, b]\n: c\n---", 2, "front matter keys must be names, not a list"),
    ("---\n" + "title: " + "[" * 2000 + "\n---", 2, "front matter is nested too deeply"),
    # Duplicates: PyYAML would keep the last one silently
    ("---\ntitle: a\nslug: b\ntitle: c\n---", 4, "duplicate key 'title' (first on line 2)"),
    ("---\nfoo: 1\nfoo: 2\n---", 3, "duplicate key 'foo' (first on line 2)"),
    ("---\nauthor: {name: a, name: b}\n---", 2, "duplicate key 'name' (first on line 2)"),
    # title
    ("---\ntitle: [a]\n---", 2, "title: expected text, got a list"),
    ("---\nslug: a\ntitle: {a: b}\n---", 3, "title: expected text, got a mapping"),
    ("---\ntitle:\n- a\n---", 2, "title: expected text, got a list"),  # the key's line
    ("---\ntitle: ''\n---", 2, "title is empty; write it or remove the line"),
    ("---\ntitle:\n---", 2, "title is empty; write it or remove the line"),
    ("---\ntitle: yes\n---", 2, "title: 'yes' reads as the YAML boolean true; quote it: \"yes\""),
    ("---\ntitle: Off\n---", 2, "title: 'Off' reads as the YAML boolean false; quote it: \"Off\""),
    ("---\ntitle: \"one\\ntwo\"\n---", 2, "title must be on one line"),
    ("---\ntitle: " + "a" * 1001 + "\n---", 2, "title is 1001 characters long; at most 1000"),
    ("---\ntitle: \"a\\0b\"\n---", 2, "title: contains the control or non-text character U+0000"),
    ("---\ntitle: \"a\\x85b\"\n---", 2, "character U+0085"),
    ("---\ntitle: !!binary aGVsbG8=\n---", 2, "title: expected text, got bytes"),
    ("---\ntitle: !!python/object/apply:os.system 'echo hacked'\n---", 2,
     "front matter is not valid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("---\ndraft: !!bool maybe\n---", 2, "draft: 'maybe' cannot be read as bool"),
    ("---\ntitle: !!bool maybe\n---", 2, "title: 'maybe' cannot be read as bool"),
    # slug
    ("---\nslug: Not A Slug\n---", 2, "slug 'Not A Slug' is not a slug: lowercase a-z, 0-9"),
    ("---\nslug: a--b\n---", 2, "slug 'a--b' is not a slug"),
    ("---\nslug: été\n---", 2, "slug 'été' is not a slug"),
    ("---\nslug: " + "a" * 129 + "\n---", 2, "at most 128 characters"),
    ("---\nslug: [a]\n---", 2, "slug: expected text, got a list"),
    # dates: the key's line, the value and the reason
    ("---\ndate: demain\n---", 2, "date: 'demain' is not a date I can read: write it like "
                                  "2026-11-24 08:30"),
    ("---\ntitle: a\ndate: 31 février 2026\n---", 3,
     "date: '31 février 2026' is not a possible date: day is out of range for month"),
    ("---\ndate: 2026-02-30\n---", 2, "date: '2026-02-30' is not a possible date"),
    ("---\ndate: 24 novembre\n---", 2, "date: incomplete date '24 novembre': no year;"),
    ("---\ndate: 8h30\n---", 2, "no year, month or day"),
    ("---\ndate: 8:30\n---", 2, "date: incomplete date '8:30'"),  # YAML 1.1: sexagesimal 510
    ("---\ndate: 2026-03-29 02:30\n---", 2,
     "date: '2026-03-29 02:30' does not exist in Europe/Paris"),
    ("---\ndate: 2026-11-24 08:30 CET\n---", 2, "'CET' is ambiguous"),
    ("---\ndate: [2026-11-24]\n---", 2, "date: expected text, got a list"),
    ("---\ndate: true\n---", 2, "date: 'true' reads as the YAML boolean true"),
    ("---\ndate: !!timestamp 2026-11-24\n---", 2, "date: expected text, got date"),
    ("---\ndate:\n---", 2, "date is empty"),
    ("---\ntitle: a\n\nupdated: soon\n---", 4, "updated: 'soon' is not a date I can read"),
    # author
    ("---\nauthor: [a, b]\n---", 2, "author: expected a name or {name: …, email: …}, got a list"),
    ("---\nauthor: {email: lea@example.org}\n---", 2, "author: a mapping needs a name"),
    ("---\nauthor: {name: Léa, email: nope}\n---", 2,
     "author email 'nope' is not an email address"),
    ("---\nauthor: {name: Léa, email: lea@example}\n---", 2, "is not an email address"),
    ("---\nauthor: {name: Léa, email: 'a b@example.org'}\n---", 2, "is not an email address"),
    ("---\nauthor: {name: [Léa]}\n---", 2, "author name: expected text, got a list"),
    ("---\nauthor: {name: ''}\n---", 2, "author name is empty"),
    ("---\nauthor: ''\n---", 2, "author is empty"),
    # The parser trims lines, so an indented block mapping lands at the top level: `author:`
    # is then empty, and refused rather than silently dropped.
    ("---\nauthor:\n  name: Léa\n---", 2, "author is empty"),
    # tags
    ("---\ntags: {a: 1}\n---", 2, "tags: expected a list ([a, b]) or comma-separated text, "
                                  "got a mapping"),
    ("---\ntags:\n- a\n- [b]\n---", 4, "tag: expected text, got a list"),  # the item's line
    ("---\ntags: [a, true]\n---", 2, "tag: 'true' reads as the YAML boolean true"),
    ("---\ntags: [" + ", ".join(f"t{n}" for n in range(51)) + "]\n---", 2,
     "tags: 51 tags; at most 50"),
    ("---\ntags: " + ", ".join(f"t{n}" for n in range(51)) + "\n---", 2, "51 tags; at most 50"),
    ("---\ntags:\n- a\n- " + "x" * 101 + "\n---", 4, "tag is 101 characters long; at most 100"),
    ("---\ntags: a, " + "x" * 101 + "\n---", 2, "tag is 101 characters long; at most 100"),
    ("---\ntags: [\"a\\nb\"]\n---", 2, "tag 'a\\nb' must be on one line"),
    # summary
    ("---\nsummary: ''\n---", 2, "summary is empty"),
    ("---\nsummary: [a]\n---", 2, "summary: expected text, got a list"),
    # lang: YAML 1.1 reads `no` (Norwegian) as false
    ("---\nlang: no\n---", 2, "lang: 'no' reads as the YAML boolean false; quote it: \"no\""),
    ("---\nlang: french\n---", 2, "lang 'french' is not a language tag such as fr, fr-CA or "
                                  "en-GB"),
    ("---\nlang: fr_FR\n---", 2, "lang 'fr_FR' is not a language tag"),
    ("---\nlang: 12\n---", 2, "lang '12' is not a language tag"),
    ("---\nlang: fr-\n---", 2, "is not a language tag"),
    # draft: a YAML boolean, not text
    ("---\ndraft: \"yes\"\n---", 2, "draft must be true or false (without quotes), not 'yes'"),
    ("---\ndraft: 'true'\n---", 2, "not 'true'"),
    ("---\ndraft: 1\n---", 2, "draft must be true or false (without quotes), not '1'"),
    ("---\ndraft: [true]\n---", 2, "not a list"),
    ("---\ndraft:\n---", 2, "draft must be true or false (without quotes), not empty"),
    # link
    ("---\nlink: /articles/1\n---", 2, "link '/articles/1' is not an absolute http(s) URL"),
    ("---\nlink: example.org/a\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: ftp://example.org/a\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: 'javascript:alert(1)'\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: https://\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: https://example.org:http/\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: 'https://exa mple.org/'\n---", 2, "is not an absolute http(s) URL"),
    ("---\nlink: [https://example.org/]\n---", 2, "link: expected text, got a list"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), REFUSED,
                         ids=[text[4:40] for text, _, _ in REFUSED])
def test_refusals_name_the_line(text: str, line: int, fragment: str) -> None:
    got_line, message = refusal(text)
    assert got_line == line
    assert fragment in message
    assert "\n" not in message  # one log line


def test_unknown_keys_are_warnings_with_their_line() -> None:
    result = front("title: a\nfoo: 1\ncategories: [x, y]\nTitle: b\nauthor: {name: A, url: u}")
    assert result.title == "a"
    assert result.author_name == "A"
    assert result.warnings == (
        (3, "unknown front matter key 'foo' ignored"),
        (4, "unknown front matter key 'categories' ignored (did you mean 'tags'?)"),
        (5, "unknown front matter key 'Title' ignored (keys are lowercase: 'title')"),
        (6, "unknown author key 'url' ignored (author has name and email)"),
    )


#: An unknown key → the known key its warning suggests (None: no suggestion).
TYPOS = [
    ("tittle", "title"), ("titel", "title"), ("tilte", "title"), ("slgu", "slug"),
    ("dat", "date"), ("udpated", "updated"), ("updatd", "updated"), ("auhtor", "author"),
    ("tag", "tags"), ("tagz", "tags"), ("sumary", "summary"), ("summery", "summary"),
    ("language", "lang"), ("darft", "draft"), ("drfat", "draft"), ("lnik", "link"),
    ("imgae", "image"), ("enclosures", "enclosure"), ("categories", "tags"),
    ("description", "summary"), ("lastmod", "updated"), ("Draft-", "draft"),
    ("foo", None), ("x-custom", None), ("layout", None), ("priority", None),
    ("weight", None), ("zz", None),
]


@pytest.mark.parametrize(("key", "meant"), TYPOS, ids=[key for key, _ in TYPOS])
def test_an_unknown_key_names_the_closest_known_one(key: str, meant: str | None) -> None:
    result = front(f"title: a\n{key}: 1")
    hint = f" (did you mean '{meant}'?)" if meant else ""
    assert result.warnings == ((3, f"unknown front matter key '{key}' ignored{hint}"),)


def test_an_unknown_author_key_names_the_closest_one() -> None:
    result = front("author: {nmae: A, name: B, emial: b@example.org}")
    assert result.warnings == (
        (2, "unknown author key 'nmae' ignored (did you mean 'name'?)"),
        (2, "unknown author key 'emial' ignored (did you mean 'email'?)"),
    )


def test_an_unknown_key_is_never_constructed() -> None:
    # Tags no safe loader knows would be a YAML error on a known key; on an unknown one the
    # value is not even built.
    assert front("x-custom: !!python/name:os.system ''").warnings == (
        (2, "unknown front matter key 'x-custom' ignored"),)


def test_anchors_and_aliases_are_plain_values() -> None:
    result = front("title: &t Première lumière\nsummary: *t\ntags: &tags [a, b]\n"
                   "x-copy: *tags")
    assert (result.title, result.summary, result.tags) == (
        "Première lumière", "Première lumière", ("a", "b"))
    assert result.warnings == ((5, "unknown front matter key 'x-copy' ignored"),)


def test_merge_keys_apply_and_written_keys_win() -> None:
    result = front("x-base: &base {title: merged, slug: from-base}\n<<: *base\ntitle: own")
    assert (result.title, result.slug) == ("own", "from-base")


def test_an_alias_bomb_is_harmless() -> None:
    # "Billion laughs": 9^6 strings if expanded. Nodes are shared, never expanded, and an
    # unknown key's value is never built; a known key refuses a list at once.
    bomb = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcde", "bcdef", strict=True))
    started = time.monotonic()
    assert len(front(bomb + "title: ok").warnings) == 6
    line, message = refusal(f"---\n{bomb}tags: *f\n---")
    assert (line, message) == (8, "tag: expected text, got a list")  # tags:, not the anchor
    assert time.monotonic() - started < 5


def test_indented_lines_are_read_as_yaml_when_the_caller_keeps_them() -> None:
    text = ("--- \nauthor:\n  name: Léa Martin\n  email: lea@example.org\n"
            "summary: |\n  Une ligne.\n  Une autre.\n---\t\nBody.")
    result, index = split_front_matter(PATH, text.split("\n"), PARIS)
    assert result == FrontMatter(author_name="Léa Martin", author_email="lea@example.org",
                                 summary="Une ligne. Une autre.")
    assert index == 8


def test_a_bad_email_in_an_indented_author_names_its_own_line() -> None:
    text = "---\nauthor:\n  name: Léa\n  email: nope\n---"
    with pytest.raises(SeedError) as raised:
        split_front_matter(PATH, text.split("\n"), PARIS)
    assert (raised.value.line, raised.value.message) == (
        4, "author email 'nope' is not an email address")


def test_the_index_points_after_the_closing_fence() -> None:
    lines = ["---", "title: a", "---", "", "para"]
    result, index = split_front_matter(PATH, lines, PARIS)
    assert result == FrontMatter(title="a")
    assert lines[index:] == ["", "para"]
