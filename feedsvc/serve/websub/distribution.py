"""The pure rules of content distribution (W3C WebSub §7, §7.1): the request's headers, its
signature, what a callback's answer means, and when to try again. No socket, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

#: The first retry waits about this long; each further failure doubles it, up to the cap.
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 900.0
#: A retry waits a random share of its delay, from this fraction to all of it (jitter: the
#: subscribers that failed together, a callback host that went down, do not all come back at
#: the same instant).
JITTER_FROM = 0.5


def signature(secret: bytes, body: bytes) -> str:
    """The X-Hub-Signature value (§7.1): `sha256=` and the hexadecimal HMAC-SHA256 of the
    request body with the subscriber's hub.secret as the key. sha256, not sha1: §7.1.1 lists
    both; SHA-1 is only there for old subscribers, and the issue asks for sha256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def link_header(hubs: Iterable[str], topic: str) -> str:
    """§7: at least one rel=hub and exactly one rel=self (the topic's canonical URL), which the
    hub SHOULD combine into one Link header (RFC 8288 syntax); the same URLs as discovery."""
    return ", ".join([*(f'<{hub}>; rel="hub"' for hub in hubs), f'<{topic}>; rel="self"'])


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"  # the subscriber deleted the subscription: the hub may end it now
    FAILED = "failed"


def outcome(status: int) -> Outcome:
    """§7: a 2xx is success; a 410 MAY end the subscription at once; every other code, 3xx
    included (subscribers MUST NOT move a subscription with a redirect: never followed), is a
    failure."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.FAILED


def retry_delay(failures: int, share: float) -> float:
    """Seconds to wait before the next attempt after `failures` failures in a row (≥ 1), for
    a random `share` in [0, 1): exponential from RETRY_FIRST_S, capped, with jitter."""
    base = min(RETRY_CAP_S, RETRY_FIRST_S * 2.0 ** min(failures - 1, 32))
    return base * (JITTER_FROM + (1.0 - JITTER_FROM) * share)


@dataclass(frozen=True, slots=True)
class Retry:
    """What to do after a failed attempt: wait `delay_s`, or give the notification up."""

    give_up: bool
    delay_s: float


def next_retry(failures: int, share: float, elapsed_s: float, limit_s: float) -> Retry:
    """After `failures` failures in a row of a notification first tried `elapsed_s` ago: the
    next attempt, or giving up when it would come after `limit_s` ([websub] give_up_after_s).
    §7: "Hubs SHOULD retry content distribution requests up to self-imposed limits on the
    number of times and the overall time period to retry"; past them the hub stops attempting
    to deliver *that notification* (the subscription stays, see Deliverer)."""
    delay = retry_delay(failures, share)
    return Retry(give_up=elapsed_s + delay > limit_s, delay_s=delay)
