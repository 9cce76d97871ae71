"""parse_date and dayfirst_for: tables of what authors write and what it must mean."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from feedsvc.ingest.dates import DateError, dayfirst_for, parse_date

UTC = datetime.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")  # DST starts at midnight: some days have no 00:00


def utc(*fields: int) -> datetime.datetime:
    return datetime.datetime(*fields, tzinfo=UTC)


def parse_paris(text: str, dayfirst: bool = True) -> datetime.datetime:
    result = parse_date(text, tz=PARIS, dayfirst=dayfirst)
    assert result.tzinfo is UTC, result  # always UTC, whatever the input's offset
    return result


# Every form an author may write, read in Europe/Paris with day first (a French feed).
# Paris is UTC+1 in winter and UTC+2 in summer: 8:30 on 24 November is 07:30 UTC.
ACCEPTED = [
    # ISO 8601
    ("2026-11-24", utc(2026, 11, 23, 23, 0)),  # a date alone is midnight, local time
    ("2026-11-24T08:30:00+01:00", utc(2026, 11, 24, 7, 30)),
    ("2026-11-24T08:30:00-05:00", utc(2026, 11, 24, 13, 30)),
    ("2026-11-24T07:30:00Z", utc(2026, 11, 24, 7, 30)),
    ("2026-11-24T08:30", utc(2026, 11, 24, 7, 30)),
    ("2026-11-24T08:30:00.250+01:00", utc(2026, 11, 24, 7, 30, 0, 250000)),
    ("20261124T083000", utc(2026, 11, 24, 7, 30)),
    # RFC 2822
    ("Tue, 24 Nov 2026 08:30:00 +0100", utc(2026, 11, 24, 7, 30)),
    ("Tue, 24 Nov 2026 07:30:00 GMT", utc(2026, 11, 24, 7, 30)),
    ("24 Nov 2026 07:30:00 UTC", utc(2026, 11, 24, 7, 30)),
    # Everyday forms
    ("2026-11-24 08:30", utc(2026, 11, 24, 7, 30)),
    ("2026-11-24 8:30:15", utc(2026, 11, 24, 7, 30, 15)),
    ("24 Nov 2026", utc(2026, 11, 23, 23, 0)),
    ("24/11/2026 08:30", utc(2026, 11, 24, 7, 30)),
    ("24.11.2026", utc(2026, 11, 23, 23, 0)),
    ("2026/11/24", utc(2026, 11, 23, 23, 0)),
    # English names
    ("November 24, 2026 8:30 AM", utc(2026, 11, 24, 7, 30)),
    ("Tuesday 24 November 2026 8:30 pm", utc(2026, 11, 24, 19, 30)),
    ("Sept 3 2026", utc(2026, 9, 2, 22, 0)),
    # French: day and month names, time forms
    ("mardi 24 novembre 2026 à 8h30", utc(2026, 11, 24, 7, 30)),
    ("Mardi 24 Novembre 2026 À 8h30", utc(2026, 11, 24, 7, 30)),
    ("MARDI 24 NOVEMBRE 2026", utc(2026, 11, 23, 23, 0)),
    ("24 novembre 2026 à 8 h 30", utc(2026, 11, 24, 7, 30)),
    ("24\u00a0novembre\u202f2026 à 8\u00a0h\u00a030", utc(2026, 11, 24, 7, 30)),  # NBSPs
    ("24 novembre 2026 a 8h30", utc(2026, 11, 24, 7, 30)),  # "à" typed without its accent
    ("le 3 mars 2027 à 7h05", utc(2027, 3, 3, 6, 5)),
    ("le mardi 24 novembre 2026 à 08:30", utc(2026, 11, 24, 7, 30)),
    ("1er décembre 2026 à 18h", utc(2026, 12, 1, 17, 0)),
    ("mardi 1er décembre 2026 à 18 h", utc(2026, 12, 1, 17, 0)),
    ("1er décembre 2026 à 18 h 05", utc(2026, 12, 1, 17, 5)),
    ("24 nov. 2026 à 8H30", utc(2026, 11, 24, 7, 30)),
    ("24 novembre 2026, 8h30", utc(2026, 11, 24, 7, 30)),
    ("24 nov. 2026 à 8h30m15s", utc(2026, 11, 24, 7, 30, 15)),
    # French month names and abbreviations, with and without accents
    ("1er janv. 2027", utc(2026, 12, 31, 23, 0)),
    ("2 janvier 2027", utc(2027, 1, 1, 23, 0)),
    ("24 févr. 2026", utc(2026, 2, 23, 23, 0)),
    ("24 fevr. 2026", utc(2026, 2, 23, 23, 0)),
    ("24 février 2026", utc(2026, 2, 23, 23, 0)),
    ("24 fevrier 2026", utc(2026, 2, 23, 23, 0)),
    ("24 fév. 2026", utc(2026, 2, 23, 23, 0)),
    ("24 avr. 2026 à 12h", utc(2026, 4, 24, 10, 0)),  # summer time: UTC+2
    ("24 avril 2026 à 12h", utc(2026, 4, 24, 10, 0)),
    ("1er mai 2026 à 12h", utc(2026, 5, 1, 10, 0)),
    ("24 juin 2026 à 12h", utc(2026, 6, 24, 10, 0)),
    ("14 juil. 2026 à 12h", utc(2026, 7, 14, 10, 0)),
    ("14 juillet 2026 à 12h", utc(2026, 7, 14, 10, 0)),
    ("15 août 2026 à 10h", utc(2026, 8, 15, 8, 0)),
    ("15 aout 2026 à 10h", utc(2026, 8, 15, 8, 0)),
    ("15 AOÛT 2026 à 10h", utc(2026, 8, 15, 8, 0)),
    ("3 sept. 2026", utc(2026, 9, 2, 22, 0)),
    ("3 septembre 2026", utc(2026, 9, 2, 22, 0)),
    ("3 oct. 2026", utc(2026, 10, 2, 22, 0)),
    ("3 octobre 2026", utc(2026, 10, 2, 22, 0)),
    ("25 déc. 2026", utc(2026, 12, 24, 23, 0)),
    ("25 dec. 2026", utc(2026, 12, 24, 23, 0)),
    ("25 décembre 2026", utc(2026, 12, 24, 23, 0)),
    ("25 decembre 2026", utc(2026, 12, 24, 23, 0)),
    # French day names, all of them (each checked against the date)
    ("lundi 23 novembre 2026", utc(2026, 11, 22, 23, 0)),
    ("mercredi 25 novembre 2026", utc(2026, 11, 24, 23, 0)),
    ("jeudi 26 novembre 2026", utc(2026, 11, 25, 23, 0)),
    ("vendredi 27 novembre 2026", utc(2026, 11, 26, 23, 0)),
    ("samedi 28 novembre 2026", utc(2026, 11, 27, 23, 0)),
    ("dimanche 29 novembre 2026", utc(2026, 11, 28, 23, 0)),
    ("sam. 28 nov. 2026", utc(2026, 11, 27, 23, 0)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[text for text, _ in ACCEPTED])
def test_accepted_forms(text: str, expected: datetime.datetime) -> None:
    assert parse_paris(text) == expected


@pytest.mark.parametrize("tz", [UTC, PARIS, NEW_YORK], ids=str)
@pytest.mark.parametrize("text", [
    "2026-11-24T08:30:00+01:00",
    "Tue, 24 Nov 2026 08:30:00 +0100",
    "2026-11-24T07:30:00Z",
    "24 novembre 2026 à 7h30 UTC",
])
def test_a_written_zone_wins_over_the_feed_zone(text: str, tz: datetime.tzinfo) -> None:
    assert parse_date(text, tz=tz, dayfirst=True) == utc(2026, 11, 24, 7, 30)


@pytest.mark.parametrize(("tz", "expected"), [
    (UTC, utc(2026, 11, 24, 8, 30)),
    (PARIS, utc(2026, 11, 24, 7, 30)),
    (NEW_YORK, utc(2026, 11, 24, 13, 30)),
], ids=str)
def test_a_date_without_zone_is_wall_clock_time_in_the_feed_zone(
        tz: datetime.tzinfo, expected: datetime.datetime) -> None:
    assert parse_date("2026-11-24 08:30", tz=tz, dayfirst=False) == expected


# Europe/Paris in 2026: summer time from 29 March 02:00 (→ 03:00), to 25 October 03:00 (→ 02:00).
DST = [
    ("2026-03-28 12:00", utc(2026, 3, 28, 11, 0)),  # day before: +01:00
    ("2026-03-30 12:00", utc(2026, 3, 30, 10, 0)),  # day after: +02:00
    ("2026-03-29 01:59", utc(2026, 3, 29, 0, 59)),  # last minute before the gap
    ("2026-03-29 03:00", utc(2026, 3, 29, 1, 0)),  # first minute after it
    ("29 mars 2026", utc(2026, 3, 28, 23, 0)),  # midnight exists, before the change
    ("2026-10-24 12:00", utc(2026, 10, 24, 10, 0)),  # day before: +02:00
    ("2026-10-26 12:00", utc(2026, 10, 26, 11, 0)),  # day after: +01:00
    ("2026-10-25 01:30", utc(2026, 10, 24, 23, 30)),  # before the fold: +02:00
    ("2026-10-25 02:30", utc(2026, 10, 25, 0, 30)),  # in the fold: its first occurrence
    ("dimanche 25 octobre 2026 à 2h30", utc(2026, 10, 25, 0, 30)),
    ("2026-10-25 03:30", utc(2026, 10, 25, 2, 30)),  # after the fold: +01:00
]


@pytest.mark.parametrize(("text", "expected"), DST, ids=[text for text, _ in DST])
def test_naive_dates_across_dst_changes_get_their_own_offset(
        text: str, expected: datetime.datetime) -> None:
    assert parse_paris(text) == expected


@pytest.mark.parametrize("text", [
    "2026-03-29 02:30", "2026-03-29 02:00", "2026-03-29T02:59:59", "29 mars 2026 à 2h30",
    "dimanche 29 mars 2026 à 2 h 15",
])
def test_a_time_in_the_spring_forward_gap_is_refused(text: str) -> None:
    with pytest.raises(DateError) as raised:
        parse_paris(text)
    message = str(raised.value)
    assert repr(text) in message
    assert "does not exist in Europe/Paris" in message
    assert "daylight saving" in message


def test_the_gap_with_an_explicit_offset_is_a_real_instant() -> None:
    assert parse_paris("2026-03-29T02:30:00+01:00") == utc(2026, 3, 29, 1, 30)


def test_a_date_alone_on_a_day_without_midnight_is_the_first_instant_of_that_day() -> None:
    # Chile springs forward at 24:00 on 5 September 2026: 6 September starts at 01:00 (-03).
    assert parse_date("2026-09-06", tz=SANTIAGO, dayfirst=True) == utc(2026, 9, 6, 4, 0)
    with pytest.raises(DateError, match="does not exist in America/Santiago"):
        parse_date("2026-09-06 00:30", tz=SANTIAGO, dayfirst=True)


EXAMPLES = "2026-11-24 08:30 or 24 novembre 2026 à 8h30"
REFUSED = [
    # Unreadable: never "now", never fuzzy
    ("demain", "is not a date I can read: write it like " + EXAMPLES),
    ("soon", "is not a date I can read"),
    ("tomorrow 8:30", "is not a date I can read"),
    ("24 novembre 2026 vers 8h", "is not a date I can read"),  # fuzzy would skip "vers"
    ("mar. 24 nov. 2026", "is not a date I can read"),  # "mar" is March, not mardi
    # Impossible
    ("31 février 2026", "is not a possible date: day is out of range for month"),
    ("29 février 2027", "is not a possible date: day is out of range for month"),
    ("2026-02-30", "is not a possible date: day is out of range for month"),
    ("2026-13-01", "is not a possible date: month must be in 1..12"),  # not 13 January
    ("2026-11-24 25:00", "is not a possible date: hour must be in 0..23"),
    ("24 novembre 2026 à 8h60", "is not a possible date: minute must be in 0..59"),
    ("2026-11-24T08:30:00+25:00", "is not a possible date"),
    ("99999999999999999999", "is not a possible date"),
    ("0001-01-01T00:30:00+01:00", "is out of range once converted to UTC"),
    # Outside what feedsvc computes with (timerange.py): the end of the calendar, and years
    # that are not four digits.
    ("9999-12-31T23:59:59Z", "is out of range: dates go from 1000-01-01 to 9998-12-31 (UTC)"),
    ("9999-01-02", "is out of range"),
    ("31 décembre 9999 à 23h59", "is out of range"),
    ("Fri, 31 Dec 9999 23:59:59 +0000", "is out of range"),
    ("9998-12-31T23:30:00-01:00", "is out of range"),  # 9999-01-01 in UTC
    ("0999-12-31T23:59:59Z", "is out of range"),
    ("0001-01-01", "is out of range"),
    # Incomplete: dateutil would fill in today's date
    ("8h30", "incomplete date '8h30': no year, month or day; write a full date such as "
             + EXAMPLES),
    ("12:00", "no year, month or day"),
    ("novembre", "incomplete date 'novembre': no year or day"),
    ("24 novembre", "incomplete date '24 novembre': no year;"),
    ("24 novembre à 8h30", "no year;"),
    ("novembre 2026", "incomplete date 'novembre 2026': no day;"),
    ("2026", "no month or day"),
    ("mardi", "no year, month or day"),
    ("le 24", "no year or month"),
    # Guesses refused
    ("24 Nov 26", "two-digit year 26: write the year with four digits"),
    ("24/11/26", "two-digit year 26"),
    ("2026-11-24 08:30 CET", "time zone abbreviation 'CET' is ambiguous: write an offset"),
    ("2026-11-24 08:30 EST", "'EST' is ambiguous"),
    ("lundi 24 novembre 2026", "2026-11-24 is a Tuesday, not a Monday"),
    ("Wed, 24 Nov 2026 08:30:00 +0100", "is a Tuesday, not a Wednesday"),
]


@pytest.mark.parametrize(("text", "fragment"), REFUSED, ids=[text for text, _ in REFUSED])
def test_refused_dates_say_why(text: str, fragment: str) -> None:
    with pytest.raises(DateError) as raised:
        parse_paris(text)
    message = str(raised.value)
    assert fragment in message
    assert repr(text) in message  # the author sees which value is wrong


@pytest.mark.parametrize("text", ["", "   ", "\u00a0"])
def test_an_empty_date_is_refused(text: str) -> None:
    with pytest.raises(DateError, match="empty date: write one such as 2026-11-24"):
        parse_paris(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("1000-01-01T00:00:00Z", utc(1000, 1, 1)),
    ("9998-12-31T23:59:59Z", utc(9998, 12, 31, 23, 59, 59)),
    ("9998-12-31T23:59:59+01:00", utc(9998, 12, 31, 22, 59, 59)),
    ("1 janvier 1000 à 1h", utc(1000, 1, 1, 0, 50, 39)),  # Paris before 1891: mean solar time
])
def test_the_ends_of_the_range_are_dates(text: str, expected: datetime.datetime) -> None:
    assert parse_paris(text) == expected


def test_date_error_is_a_value_error() -> None:
    assert issubclass(DateError, ValueError)


DAYFIRST = [
    ("03/04/2027", True, utc(2027, 4, 3)),
    ("03/04/2027", False, utc(2027, 3, 4)),
    ("03.04.2027 10:00", True, utc(2027, 4, 3, 10, 0)),
    ("03-04-2027", False, utc(2027, 3, 4)),
    # Only one reading: the same either way
    ("24/11/2026", True, utc(2026, 11, 24)),
    ("24/11/2026", False, utc(2026, 11, 24)),
    ("11/24/2026", False, utc(2026, 11, 24)),
    ("11/24/2026", True, utc(2026, 11, 24)),
    # Year first is always year-month-day (dateutil alone would read 2027/03/04 as 3 April)
    ("2027-03-04", True, utc(2027, 3, 4)),
    ("2027-03-04", False, utc(2027, 3, 4)),
    ("2027/03/04", True, utc(2027, 3, 4)),
    ("2027.03.04", True, utc(2027, 3, 4)),
    # Month names leave no doubt
    ("3 avril 2027", False, utc(2027, 4, 3)),
    ("April 3, 2027", True, utc(2027, 4, 3)),
]


@pytest.mark.parametrize(("text", "dayfirst", "expected"), DAYFIRST)
def test_dayfirst_decides_only_ambiguous_numeric_dates(
        text: str, dayfirst: bool, expected: datetime.datetime) -> None:
    assert parse_date(text, tz=UTC, dayfirst=dayfirst) == expected


@pytest.mark.parametrize(("language", "expected"), [
    ("fr", True), ("fr-FR", True), ("fr-CA", True), ("FR", True), ("de", True), ("de-CH", True),
    ("es", True), ("it", True), ("pt-BR", True), ("nl", True), ("ru", True),
    ("en-GB", True), ("en-gb", True), ("en_GB", True), ("en-AU", True), ("en-IN", True),
    ("en-001", True),  # "world English" follows the day-first majority
    ("en", False), ("EN", False), ("en-US", False), ("en-us", False), ("en_US", False),
    ("en-Latn-US", False), ("en-PH", False), ("fil", False),
    ("ja", False), ("ja-JP", False), ("zh", False), ("zh-Hant-TW", False), ("ko", False),
    ("hu", False),
    ("xx", True),  # unknown: most of the world writes the day first
])
def test_dayfirst_for(language: str, expected: bool) -> None:
    assert dayfirst_for(language) is expected
