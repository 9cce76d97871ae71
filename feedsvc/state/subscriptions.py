"""The built-in WebSub hub's subscriptions (W3C WebSub §5.1, §6): who gets which topic, until
when, with which secret. They live in the state file, so a restart keeps them.

SKELETON: the value and the Protocol are the interface the hub's parts share; the SQLite
implementation is to be written (its table created with CREATE TABLE IF NOT EXISTS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Subscription:
    """An active subscription: verified (§5.3), not expired."""

    topic: str  # the feed document's self URL
    callback: str  # the subscriber's URL, as it gave it
    #: HMAC key of the deliveries' X-Hub-Signature (§5.1: fewer than 200 bytes); None: unsigned.
    secret: bytes | None
    #: Microseconds since the epoch (as every date in the state).
    expires_us: int
    #: When its deliveries started failing without a success since; None: not failing.
    failing_since_us: int | None = None


class SubscriptionStorage(Protocol):
    """What the hub needs of the state; every method may raise StoreError."""

    def subscribe(self, subscription: Subscription) -> None:
        """Add or renew (same topic and callback: replaced, lease and secret included)."""

    def unsubscribe(self, topic: str, callback: str) -> bool:
        """Remove; whether it was there."""

    def active(self, topic: str, now_us: int) -> list[Subscription]:
        """The topic's unexpired subscriptions."""

    def expire(self, now_us: int) -> int:
        """Remove the expired ones; how many."""

    def failing(self, topic: str, callback: str, since_us: int | None) -> None:
        """Record that deliveries to it fail since `since_us` (None: they work again)."""
