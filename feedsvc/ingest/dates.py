"""Dates written by authors (front matter) → aware datetimes in UTC. Pure: no clock.

python-dateutil reads the forms people write: ISO 8601, RFC 2822, `2026-11-24 08:30`,
`24 Nov 2026`, `24/11/2026 08:30`, and French (`mardi 24 novembre 2026 à 8h30`, `1er déc. 2026`,
`le 3 mars 2027 à 7h05`). Whatever it cannot read for sure is a DateError: never a guess, never
"now", never today's date filling in what the author left out.
"""

from __future__ import annotations

import datetime
import re
from typing import ClassVar

from dateutil import parser as dateutil_parser

from feedsvc.errors import FeedsvcError
from feedsvc.timerange import MAX_DATE, MIN_DATE, in_range

UTC = datetime.UTC


class DateError(FeedsvcError, ValueError):
    """A date that cannot be used; the message says what is wrong, for the author. Still a
    ValueError, as it was, for callers that catch that."""


class _EnglishFrenchInfo(dateutil_parser.parserinfo):
    """dateutil's English words plus French ones, with or without accents."""

    # "le 3 mars", "à 8h30", "1er": words that carry nothing for the date.
    JUMP: ClassVar[list[str]] = [*dateutil_parser.parserinfo.JUMP, "le", "à", "er"]
    # French abbreviations are those of the Imprimerie nationale ("janv.", "févr.", "juil.").
    MONTHS: ClassVar[list[tuple[str, ...]]] = [
        ("Jan", "January", "janv", "janvier"),
        ("Feb", "February", "fév", "fev", "févr", "fevr", "février", "fevrier"),
        ("Mar", "March", "mars"),
        ("Apr", "April", "avr", "avril"),
        ("May", "mai"),
        ("Jun", "June", "juin"),
        ("Jul", "July", "juil", "juillet"),
        ("Aug", "August", "août", "aout"),
        ("Sep", "Sept", "September", "septembre"),
        ("Oct", "October", "octobre"),
        ("Nov", "November", "novembre"),
        ("Dec", "December", "déc", "décembre", "decembre"),
    ]
    # No "mar" for mardi: it is already March, and a month wins over a weekday in dateutil.
    WEEKDAYS: ClassVar[list[tuple[str, ...]]] = [
        ("Mon", "Monday", "lun", "lundi"),
        ("Tue", "Tuesday", "mardi"),
        ("Wed", "Wednesday", "mer", "mercredi"),
        ("Thu", "Thursday", "jeu", "jeudi"),
        ("Fri", "Friday", "ven", "vendredi"),
        ("Sat", "Saturday", "sam", "samedi"),
        ("Sun", "Sunday", "dim", "dimanche"),
    ]

    def convertyear(self, year: int, century_specified: bool = False) -> int:
        # dateutil puts a two-digit year within 50 years of the clock: a guess that changes
        # with the day it runs on. The author writes the four digits instead.
        if year < 100 and not century_specified:
            raise DateError(f"two-digit year {year:02d}: write the year with four digits")
        return year


# One instance: parserinfo only holds word tables (and the current year, which convertyear
# above never uses).
_INFO = _EnglishFrenchInfo()

# Two defaults that differ in year, month and day (both leap years, both days exist in every
# month): a field that comes out different was not in the text.
_DEFAULT_A = datetime.datetime(2000, 1, 1)
_DEFAULT_B = datetime.datetime(2004, 2, 2, 1, 1, 1)
# "2026-11-24", "2026/11/24", "2026.11.24": year first is always year-month-day, whatever the
# language's habit. With dayfirst, dateutil would read 2027/03/04 as 3 April, and 2026-13-01
# as 13 January instead of refusing month 13.
_YEAR_FIRST_RE = re.compile(r"\d{4}[-/.]\d")
# "24 novembre 2026 a 8h30" typed without the accent: dateutil would take "a" for "am" and
# silently lose the year.
_A_FOR_A_GRAVE_RE = re.compile(r"(?<![\w.])a(?=\s+\d)", re.IGNORECASE)
# French hours, "8h30", "18 h", "18 h 05", as hh:mm: dateutil reads "8 h" but not "18 h".
# Left alone when minutes or seconds follow in dateutil's own form ("8h30m15s").
_FRENCH_TIME_RE = re.compile(r"(?<![\d:])(\d{1,2}) ?h(?: ?(\d{2}))?(?![\w:])", re.IGNORECASE)
_WORD_RE = re.compile(r"[^\W\d_]+")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EXAMPLES = "2026-11-24 08:30 or 24 novembre 2026 à 8h30"


def parse_date(text: str, *, tz: datetime.tzinfo, dayfirst: bool) -> datetime.datetime:
    """Read a date written by an author; return it as an aware datetime in UTC.

    A date with a zone (`Z`, `+01:00`, `+0100`, `GMT`, `UTC`) is that instant. A date without
    one is wall-clock time in `tz`: a time that does not exist there (in the spring-forward
    gap) is a DateError, and an ambiguous one (the repeated hour of the autumn change) is its
    first occurrence (fold=0, summer time). A date without a time is midnight in `tz` (or,
    where a DST change skips midnight, the first instant of that day).

    `dayfirst` decides `03/04/2027` (3 April when True); a year written first always means
    year-month-day. Zone abbreviations other than UTC/GMT/Z (`CET`, `EST`, `CST`…) are
    refused: they are ambiguous, and dateutil would otherwise consult the machine's zone.
    Raises DateError for anything unreadable, impossible or incomplete, and for a date outside
    years 1000 to 9998 (UTC), which feedsvc cannot compute with safely (timerange.py).
    """
    cleaned = " ".join(text.split())  # NBSP, U+202F (French typography) → space
    cleaned = _A_FOR_A_GRAVE_RE.sub("à", cleaned)
    cleaned = _FRENCH_TIME_RE.sub(lambda m: f"{m[1]}:{m[2] or '00'}", cleaned)
    if not cleaned:
        raise DateError(f"empty date: write one such as {_EXAMPLES}")
    dayfirst = dayfirst and not _YEAR_FIRST_RE.match(cleaned)
    first = _dateutil_parse(text, cleaned, _DEFAULT_A, dayfirst)
    second = _dateutil_parse(text, cleaned, _DEFAULT_B, dayfirst)

    missing = [name for name, a, b in (("year", first.year, second.year),
                                       ("month", first.month, second.month),
                                       ("day", first.day, second.day)) if a != b]
    if missing:
        raise DateError(f"incomplete date {text!r}: no {_either(missing)}; write a full date "
                        f"such as {_EXAMPLES}")
    _check_weekday(text, cleaned, first)

    if first.tzinfo is not None:
        moment = _to_utc(text, first)
    else:
        time_given = first.hour == second.hour
        moment = _local_to_utc(text, first, tz, time_given)
    if not in_range(moment):
        # Year 9999 and beyond is past what the publisher can add seconds to; before 1000,
        # years are not the four digits RFC 3339 and RFC 5322 write (timerange.py).
        raise DateError(f"{text!r} is out of range: dates go from {MIN_DATE:%Y-%m-%d} to "
                        f"{MAX_DATE:%Y-%m-%d} (UTC)")
    return moment


def _either(names: list[str]) -> str:
    """["year", "month", "day"] → "year, month or day"."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _dateutil_parse(text: str, cleaned: str, default: datetime.datetime,
                    dayfirst: bool) -> datetime.datetime:
    try:
        return dateutil_parser.parse(cleaned, parserinfo=_INFO, dayfirst=dayfirst,
                                     default=default, fuzzy=False, tzinfos=_zone_for)
    except DateError as e:
        raise DateError(f"{text!r}: {e}") from None
    except dateutil_parser.ParserError as e:
        reason = str(e.args[0]).removesuffix(": %s") if e.args else ""
        if reason.startswith(("Unknown string format", "String does not contain a date")):
            raise DateError(f"{text!r} is not a date I can read: write it like "
                            f"{_EXAMPLES}") from None
        raise DateError(f"{text!r} is not a possible date: {reason}") from None
    except (ValueError, OverflowError) as e:  # an offset of a day or more, huge numbers
        raise DateError(f"{text!r} is not a possible date: {e}") from None


def _zone_for(name: str | None, offset: int | None) -> datetime.tzinfo | None:
    """dateutil's tzinfos hook: numeric offsets and UTC names only."""
    if offset is not None:  # dateutil gives UTC, GMT and Z the offset 0
        return datetime.timezone(datetime.timedelta(seconds=offset))
    if name is not None:
        raise DateError(f"time zone abbreviation {name!r} is ambiguous: write an offset such "
                        "as +01:00, or Z for UTC, or leave the zone out to use the feed's")
    return None


def _check_weekday(text: str, cleaned: str, parsed: datetime.datetime) -> None:
    """`lundi 24 novembre 2026` when the 24th is a Tuesday: one of the two is a typo, and
    dateutil would ignore the weekday without a word."""
    for word in _WORD_RE.findall(cleaned):
        weekday = _INFO.weekday(word)
        if weekday is not None and weekday != parsed.weekday():
            raise DateError(f"{text!r}: {parsed:%Y-%m-%d} is a {_DAY_NAMES[parsed.weekday()]}, "
                            f"not a {_DAY_NAMES[weekday]}")


def _to_utc(text: str, aware: datetime.datetime) -> datetime.datetime:
    try:
        return aware.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by the offset
        raise DateError(f"{text!r} is out of range once converted to UTC") from None


def _local_to_utc(text: str, wall: datetime.datetime, tz: datetime.tzinfo,
                  time_given: bool) -> datetime.datetime:
    local = wall.replace(tzinfo=tz, fold=0)  # fold=0: the first of an ambiguous pair
    in_utc = _to_utc(text, local)
    # A wall time in a DST gap does not survive the round trip (02:30 comes back as 03:30).
    if time_given and in_utc.astimezone(tz).replace(tzinfo=None) != wall:
        raise DateError(f"{text!r} does not exist in {_zone_name(tz)}: the clocks skip that "
                        "time (daylight saving change); write a time outside the gap or give "
                        "an offset")
    return in_utc


def _zone_name(tz: datetime.tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


# Languages that write the month before the day (M/d/y in CLDR), by primary subtag, and the
# English regions that do; the rest of English, like most languages, writes the day first.
_MONTH_FIRST_LANGUAGES = frozenset({"fil"})
_MONTH_FIRST_ENGLISH_REGIONS = frozenset({"", "us", "ph", "as", "gu", "mp", "pr", "um", "vi",
                                          "fm", "mh", "pw"})
# Year-month-day languages: dayfirst does not matter for their ISO-like dates.
_YEAR_FIRST_LANGUAGES = frozenset({"ja", "zh", "ko", "hu"})


def dayfirst_for(language: str) -> bool:
    """Whether `03/04/2027` means 3 April for authors writing in `language` (a BCP 47 tag).

    True for day-month-year languages (fr, de, es, it, en-GB…), and for unknown ones since
    most of the world writes the day first; False for `en`/`en-US` and other month-first
    usage, and for year-first languages (ja, zh, ko, hu), whose dates are year-month-day.
    """
    subtags = language.strip().lower().replace("_", "-").split("-")
    primary = subtags[0]
    if primary in _MONTH_FIRST_LANGUAGES or primary in _YEAR_FIRST_LANGUAGES:
        return False
    if primary == "en":
        # The region is the first 2-letter or 3-digit subtag after an optional script.
        region = next((s for s in subtags[1:] if len(s) == 2 or (len(s) == 3 and s.isdigit())),
                      "")
        return region not in _MONTH_FIRST_ENGLISH_REGIONS
    return True


__all__ = ["DateError", "dayfirst_for", "parse_date"]

