"""The range of dates feedsvc takes from seeds and computes with. Pure; imports nothing of ours.

Python's datetime ends with year 9999, and the publisher adds seconds (and fractions) to the
dates it is given: a date at the very end of the calendar would make that arithmetic overflow
on some later batch, far from the seed that caused it. So every date enters within a range
with room to spare, at the edge where it enters: a front-matter date outside it is a SeedError
with its line (dates.py), a file's mtime is clamped into it (catalog.py), and a date read back
from a state written before this range existed is clamped when shown (`datetime_of`).
"""

from __future__ import annotations

from datetime import UTC, datetime

#: Front-matter dates: four-digit years (RFC 3339 and RFC 5322 write no other), and a year of
#: margin before the end of datetime's calendar.
MIN_DATE = datetime(1000, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
MIN_SECONDS = int(MIN_DATE.timestamp())
MAX_SECONDS = int(MAX_DATE.timestamp())
#: A file's mtime before 1970 is not a date anyone wrote (a broken archive, a tool's zero):
#: it is taken as 1970-01-01, and one after MAX_DATE as MAX_DATE (the publisher then uses
#: the clock, as for any mtime in the future).
MIN_MTIME_SECONDS = 0


def clamp_mtime(seconds: int) -> int:
    """A file's mtime (whole seconds) within the range feedsvc computes with."""
    return min(max(seconds, MIN_MTIME_SECONDS), MAX_SECONDS)


def in_range(moment: datetime) -> bool:
    """Whether an aware datetime is a date feedsvc can represent and compute with."""
    return MIN_DATE <= moment <= MAX_DATE


def datetime_of(seconds: int) -> datetime:
    """Seconds since the epoch as an aware UTC datetime; never raises: a value outside the
    range (from a state written before it was enforced) is shown as the nearest end."""
    return datetime.fromtimestamp(min(max(seconds, MIN_SECONDS), MAX_SECONDS), UTC)
