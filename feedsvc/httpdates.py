"""HTTP-dates (RFC 9110 §5.6.7): the one form we send, the three forms we must accept.
Shared by the publish stage (a document's Last-Modified) and the serve stage (conditional
requests), so it belongs to neither."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache


def parse_http_date(value: str) -> datetime | None:
    """An HTTP-date in any of the three forms a recipient MUST accept (RFC 9110 §5.6.7):
    IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37
    GMT` and ANSI C asctime `Sun Nov  6 08:49:37 1994` (which is UTC). None for anything else:
    a field value that is not a valid HTTP-date is ignored (§13.1.3), and so is a zone other
    than GMT, which HTTP-date does not have."""
    return _parse_http_date(value, datetime.now(UTC).year)


# Day and month names are case-sensitive (%s"…" in §5.6.7); the weekday is not checked
# against the date (nothing depends on it, and a wrong one is the client's typo, not ours).
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = f"({'|'.join(_MONTHS)})"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_IMF_FIXDATE_RE = re.compile(rf"{_DAY}, (\d\d) {_MONTH} (\d{{4}}) {_TIME} GMT")
_RFC850_RE = re.compile(rf"{_LONG_DAY}, (\d\d)-{_MONTH}-(\d\d) {_TIME} GMT")
_ASCTIME_RE = re.compile(rf"{_DAY} {_MONTH} ([ \d]\d) {_TIME} (\d{{4}})")


@lru_cache(maxsize=256)
def _parse_http_date(value: str, this_year: int) -> datetime | None:
    value = value.strip(" \t")
    if match := _IMF_FIXDATE_RE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        full_year = int(year)
    elif match := _RFC850_RE.fullmatch(value):
        day, month, year, hour, minute, second = match.groups()
        # §5.6.7: a two-digit year that appears more than 50 years in the future is the most
        # recent past year with those last two digits.
        full_year = this_year - this_year % 100 + int(year)
        if full_year > this_year + 50:
            full_year -= 100
    elif match := _ASCTIME_RE.fullmatch(value):
        month, day, hour, minute, second, year = match.groups()
        full_year = int(year)
    else:
        return None
    try:
        # A leap second (:60, which IMF-fixdate allows) is the second before it.
        return datetime(full_year, _MONTHS.index(month) + 1, int(day), int(hour), int(minute),
                        min(int(second), 59), tzinfo=UTC)
    except ValueError:  # 31 Feb, hour 25, year 0
        return None


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)
