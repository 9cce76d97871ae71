"""HTTP decisions, pure: which content coding a request gets (RFC 9110 §12.5.3) and whether it
gets 304 (§13). Parsed header values are cached: readers send the same few strings over and over,
so the hot path looks them up instead of parsing them again."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

#: The codings every document is prepared in, best first (on a tie the first one wins).
CODINGS = ("br", "gzip", "identity")
_ALIASES = {"x-gzip": "gzip"}
_ETAG_RE = re.compile(r'(?:W/)?"([^"]*)"')
_QVALUE_RE = re.compile(r"^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$", re.IGNORECASE)


@lru_cache(maxsize=512)
def choose_coding(accept_encoding: str | None) -> str | None:
    """The coding to send for this Accept-Encoding value, or None when none is acceptable
    (406). No header: identity (any coding is allowed, but a client that does not ask may not
    decode). `identity` is acceptable unless excluded by `identity;q=0` or by `*;q=0`; on equal
    weights br beats gzip beats identity (smaller first)."""
    if accept_encoding is None:
        return "identity"
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";") if params else ():
            if match := _QVALUE_RE.match(param):
                q = min(float(match.group(1)), 1.0)
            elif param.strip().lower().startswith("q"):
                q = 0.0  # a q-value we cannot read: do not guess that it is wanted
        name = _ALIASES.get(name, name)
        weights[name] = max(weights.get(name, q), q)
    star = weights.get("*")
    best, best_q = None, 0.0
    for coding in CODINGS:
        if coding in weights:
            q = weights[coding]
        elif star is not None:
            q = star
        else:
            # Not named: identity stays acceptable, as a last resort behind any coding the
            # client did name (RFC 9110 gives it no weight; this one never beats a named one).
            q = 0.001 if coding == "identity" else 0.0
        if q > best_q:
            best, best_q = coding, q
    return best


@lru_cache(maxsize=512)
def requested_etags(if_none_match: str) -> frozenset[str] | None:
    """The entity tags of an If-None-Match value, quoted, weakness dropped (weak comparison);
    None for `*`, which matches any current representation."""
    if if_none_match.strip() == "*":
        return None
    return frozenset(f'"{tag}"' for tag in _ETAG_RE.findall(if_none_match))


def etag_matches(etags: AbstractSet[str], if_none_match: str) -> bool:
    """Whether If-None-Match names any of `etags` (the variants of one document)."""
    requested = requested_etags(if_none_match)
    # Ours are strong: a set intersection is the weak comparison RFC 9110 asks for here.
    return requested is None or not requested.isdisjoint(etags)


def not_modified(etags: AbstractSet[str], unchanged_since: datetime, if_none_match: str | None,
                 if_modified_since: str | None) -> bool:
    """Whether a GET/HEAD with these headers gets 304. If-None-Match, when present, decides
    alone; else If-Modified-Since: 304 when it is at or after `unchanged_since`
    (Document.unchanged_since: the Last-Modified second, or the second after it when the
    document changed twice within it, RFC 9110 §8.8.2.2). Garbage in either is ignored."""
    if if_none_match is not None:
        return etag_matches(etags, if_none_match)
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and unchanged_since <= since
    return False


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
