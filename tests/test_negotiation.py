"""Content codings and conditional GET: pure decisions, data-driven; then a real server."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import aiohttp
import brotli
import pytest

from feedsvc.httpdates import http_date, parse_http_date
from feedsvc.serve.app import make_app
from feedsvc.serve.negotiation import choose_coding, etag_matches, not_modified

from .conftest import copy_sample


@pytest.mark.parametrize(("accept", "expected"), [
    (None, "identity"),
    ("", "identity"),
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("gzip, deflate, br", "br"),
    ("GZIP;Q=1, BR;q=0.5", "gzip"),
    ("br;q=0.1, gzip;q=0.2", "gzip"),
    ("br;q=0, gzip;q=0", "identity"),
    ("deflate", "identity"),
    ("*", "br"),
    ("*;q=0.5, gzip", "gzip"),
    ("identity;q=0, gzip;q=0.3", "gzip"),
    ("identity;q=0", None),
    ("*;q=0", None),
    ("*;q=0, identity", "identity"),
    ("br;q=0.5;foo=bar", "br"),
    ("br;q=nonsense, gzip;q=0.1", "gzip"),
    ("zstd, gzip;q=0.9", "gzip"),
    (" , ,gzip ,", "gzip"),
])
def test_choose_coding(accept: str | None, expected: str | None) -> None:
    assert choose_coding(accept) == expected


def test_an_etag_of_any_variant_matches() -> None:
    etags = {'"h"', '"h-gzip"', '"h-br"'}
    assert etag_matches(etags, '"h-gzip"')
    assert etag_matches(etags, 'W/"h-br", "other"')
    assert not etag_matches(etags, '"h-zstd"')
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert not_modified(etags, moment, '"h"', None)


NOV_6_1994 = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    # The three forms RFC 9110 §5.6.7 says a recipient MUST accept.
    ("Sun, 06 Nov 1994 08:49:37 GMT", NOV_6_1994),  # IMF-fixdate
    ("Sunday, 06-Nov-94 08:49:37 GMT", NOV_6_1994),  # obsolete RFC 850
    ("Sun Nov  6 08:49:37 1994", NOV_6_1994),  # ANSI C asctime, which is UTC
    ("Sun Nov 06 08:49:37 1994", NOV_6_1994),  # asctime's day may also be two digits
    ("Wed Nov 16 08:49:37 1994", datetime(1994, 11, 16, 8, 49, 37, tzinfo=UTC)),
    ("  Sun, 06 Nov 1994 08:49:37 GMT ", NOV_6_1994),  # optional whitespace around
    ("Thu, 31 Dec 2026 23:59:60 GMT", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),  # leap s
    # Not HTTP-dates: ignored (§13.1.3), never guessed.
    ("Sun, 06 Nov 1994 08:49:37 +0100", None),  # HTTP-date is always GMT
    ("Sun, 06 Nov 1994 08:49:37 UTC", None),
    ("Sun, 06 Nov 1994 08:49:37", None),
    ("Sun Nov  6 08:49:37 1994 GMT", None),
    ("sun, 06 nov 1994 08:49:37 gmt", None),  # day and month names are case-sensitive
    ("Sun, 31 Feb 1994 08:49:37 GMT", None),
    ("Sun, 06 Nov 1994 25:49:37 GMT", None),
    ("Mon, 01 Jan 0000 00:00:00 GMT", None),
    ("Mon, 01 Jan 99999 00:00:00 GMT", None),
    ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
    ("Sun Nov 6 08:49:37 1994", None),  # asctime pads a one-digit day with a space
    ("1994-11-06T08:49:37Z", None),
    ("", None),
    ("garbage", None),
])
def test_parse_http_date_reads_the_three_forms_and_nothing_else(
        value: str, expected: datetime | None) -> None:
    assert parse_http_date(value) == expected


def test_rfc850_two_digit_years_are_never_more_than_50_years_ahead() -> None:
    """§5.6.7: a two-digit year that appears more than 50 years in the future is the most
    recent past year with the same last two digits."""
    this_year = datetime.now(UTC).year
    for ahead in (0, 1, 30, 50, 51, 70, 99):
        year = this_year + ahead
        yy = year % 100
        parsed = parse_http_date(f"Monday, 01-Jan-{yy:02d} 00:00:00 GMT")
        assert parsed is not None
        assert parsed.year == (year if ahead <= 50 else year - 100), (ahead, parsed)
    past = parse_http_date(f"Monday, 01-Jan-{(this_year - 1) % 100:02d} 00:00:00 GMT")
    assert past is not None and past.year == this_year - 1


@pytest.fixture
async def session_and_base(config, aiohttp_server):
    copy_sample(config.paths.seeds)
    server = await aiohttp_server(make_app(config))
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session, f"http://127.0.0.1:{server.port}"


async def get(session, url, **headers):
    async with session.get(url, headers=headers) as response:
        return response.status, response.headers, await response.read()


async def test_each_coding_is_served_precompressed_with_its_own_etag(session_and_base) -> None:
    session, base = session_and_base
    status, headers, identity = await get(session, base + "/feed.atom",
                                          **{"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in headers
    assert headers["Vary"] == "Accept-Encoding"
    etag = headers["ETag"]
    seen = {etag}
    for coding, decode in (("gzip", gzip.decompress), ("br", brotli.decompress)):
        status, headers, body = await get(session, base + "/feed.atom",
                                          **{"Accept-Encoding": coding})
        assert status == 200 and headers["Content-Encoding"] == coding
        assert headers["Vary"] == "Accept-Encoding"
        assert int(headers["Content-Length"]) == len(body) < len(identity)
        assert decode(body) == identity
        assert headers["ETag"] == etag[:-1] + f'-{coding}"'
        seen.add(headers["ETag"])
        # Same bytes twice: compressed once, not per request.
        assert (await get(session, base + "/feed.atom", **{"Accept-Encoding": coding}))[2] == body
    assert len(seen) == 3


async def test_304_for_any_variant_names_the_one_the_request_would_get(session_and_base) -> None:
    session, base = session_and_base
    _, headers, _ = await get(session, base + "/feed.rss", **{"Accept-Encoding": "gzip"})
    gzip_etag = headers["ETag"]
    status, headers, body = await get(session, base + "/feed.rss",
                                      **{"Accept-Encoding": "br", "If-None-Match": gzip_etag})
    assert (status, body) == (304, b"")
    assert headers["ETag"] == gzip_etag.replace("-gzip", "-br")
    assert headers["Vary"] == "Accept-Encoding"
    assert "Content-Length" not in headers and "Content-Encoding" not in headers


async def test_no_acceptable_coding_is_406(session_and_base) -> None:
    session, base = session_and_base
    status, headers, _ = await get(session, base + "/feed.atom",
                                   **{"Accept-Encoding": "identity;q=0, zstd"})
    assert status == 406 and headers["Vary"] == "Accept-Encoding"


async def test_if_modified_since_in_each_form_gets_304(session_and_base) -> None:
    """A client (or a cache in between) that sends its date as asctime or RFC 850 gets 304 for
    an unchanged feed, as with IMF-fixdate; a date before Last-Modified gets the feed."""
    session, base = session_and_base
    _, headers, _ = await get(session, base + "/feed.atom")
    modified = parse_http_date(headers["Last-Modified"])
    assert modified is not None and http_date(modified) == headers["Last-Modified"]
    weekday = modified.strftime("%A")
    for value in (headers["Last-Modified"],
                  f"{weekday}, {modified:%d-%b-%y %H:%M:%S} GMT",
                  f"{weekday[:3]} {modified:%b} {modified.day:2d} {modified:%H:%M:%S %Y}"):
        status, _, body = await get(session, base + "/feed.atom", **{"If-Modified-Since": value})
        assert (status, body) == (304, b""), value
    earlier = modified - timedelta(days=365)
    for value in (f"{earlier:%a %b} {earlier.day:2d} {earlier:%H:%M:%S %Y}",
                  f"{earlier:%a %b} {earlier.day:2d} {earlier:%H:%M:%S %Y} junk"):
        status, _, body = await get(session, base + "/feed.atom", **{"If-Modified-Since": value})
        assert status == 200 and body, value


@pytest.mark.parametrize(("accept", "available", "expected"), [
    ("gzip, br", ("identity",), "identity"),
    ("gzip, br", ("identity", "gzip"), "gzip"),
    ("br", ("identity", "gzip"), "identity"),  # gzip not named: not sent
    ("gzip, identity;q=0", ("identity",), None),
    ("*;q=0", ("identity",), None),
    (None, ("identity",), "identity"),
])
def test_the_best_coding_among_those_made(accept: str | None, available: tuple[str, ...],
                                          expected: str | None) -> None:
    assert choose_coding(accept, available) == expected
