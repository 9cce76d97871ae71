"""HTTP decisions, pure: which content coding a request gets (RFC 9110 §12.5.3) and whether it
gets 304 (§13). Parsed header values are cached: readers send the same few strings over and over,
so the hot path looks them up instead of parsing them again."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from datetime import datetime
from functools import lru_cache

from feedsvc.httpdates import parse_http_date

#: The codings every document is prepared in, best first (on a tie the first one wins).
CODINGS = ("br", "gzip", "identity")
_ALIASES = {"x-gzip": "gzip"}
_ETAG_RE = re.compile(r'(?:W/)?"([^"]*)"')
_QVALUE_RE = re.compile(r"^\s*q\s*=\s*([01](?:\.\d{0,3})?)\s*$", re.IGNORECASE)


@lru_cache(maxsize=512)
def choose_coding(accept_encoding: str | None,
                  available: tuple[str, ...] = CODINGS) -> str | None:
    """The coding to send for this Accept-Encoding value, among the `available` ones, or None
    when none is acceptable (406). No header: identity (any coding is allowed, but a client
    that does not ask may not decode). `identity` is acceptable unless excluded by
    `identity;q=0` or by `*;q=0`; on equal weights br beats gzip beats identity (smaller
    first)."""
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
        if coding not in available:
            continue
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
        requested = requested_etags(if_none_match)  # (etag_matches, inlined: the hot path)
        return requested is None or not requested.isdisjoint(etags)
    if if_modified_since is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and unchanged_since <= since
    return False
