"""The content distribution's account, as /healthz shows it: counts since start, and the
subscribers whose deliveries fail (each logged once when it starts failing and once when it
works again, not at every retry). No socket, no storage: the Deliverer records in the state
what must survive a restart (since when a subscriber fails)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime

from feedsvc.logtext import escape
from feedsvc.serve.health import DeliveryReport, FailingSubscriber, LiveHealth
from feedsvc.state.subscriptions import Subscription

log = logging.getLogger("feedsvc")

#: Failing subscribers listed on /healthz (all are counted).
HEALTH_FAILING_MAX = 100
#: The counts on /healthz are brought up to date at most this often: a change delivered to
#: a hundred subscribers is one update of the health record, not a hundred. Failures and
#: recoveries are shown at once.
REPORT_EVERY_S = 0.05

Key = tuple[str, str]  # (topic, callback)


def key_of(subscription: Subscription) -> Key:
    return subscription.topic, subscription.callback


class DeliveryLedger:
    def __init__(self, health: LiveHealth | None) -> None:
        self._health = health
        self._failing: dict[Key, FailingSubscriber] = {}
        self._counts = {"delivered": 0, "failed_attempts": 0, "given_up": 0, "gone": 0}
        self._report_due: asyncio.TimerHandle | None = None
        self.report()

    def is_failing(self, key: Key) -> bool:
        return key in self._failing

    def delivered(self, subscription: Subscription) -> bool:
        """Counts a delivery; True when the subscriber was failing until now."""
        self._counts["delivered"] += 1
        if self._failing.pop(key_of(subscription), None) is None:
            self.report_soon()
            return False
        log.info("WebSub: delivering %s to %s works again", subscription.topic,
                 escape(subscription.callback))
        self.report()
        return True

    def failed(self, subscription: Subscription, error: str, now_us: int) -> int | None:
        """Counts a failed attempt; the moment the subscriber started failing when this is
        its first failure (kept across restarts: the subscription's own, else `now_us`)."""
        self._counts["failed_attempts"] += 1
        key = key_of(subscription)
        known = self._failing.get(key)
        if known is not None:
            if known.error != error:
                self._failing[key] = replace(known, error=error)
            self.report()
            return None
        since_us = subscription.failing_since_us or now_us
        since = datetime.fromtimestamp(since_us / 1e6, UTC).isoformat()
        self._failing[key] = FailingSubscriber(subscription.topic, subscription.callback,
                                               since, error)
        log.warning("WebSub: delivering %s to %s fails (%s); retrying with backoff",
                    subscription.topic, escape(subscription.callback), escape(error))
        self.report()
        return since_us

    def gave_up(self) -> None:
        self._counts["given_up"] += 1
        self.report()

    def gone(self, subscription: Subscription) -> None:
        log.info("WebSub: %s answered 410 Gone; its subscription to %s ends (WebSub §7)",
                 escape(subscription.callback), subscription.topic)
        self._counts["gone"] += 1
        self._failing.pop(key_of(subscription), None)
        self.report()

    def forget(self, key: Key) -> None:
        """An unsubscribed or expired subscription leaves the report."""
        if self._failing.pop(key, None) is not None:
            self.report()

    def keep_only(self, topic: str, callbacks: set[str]) -> None:
        """Failing subscribers of `topic` that are no longer subscribed leave the report: it
        holds only subscriptions that exist."""
        gone = [key for key in self._failing if key[0] == topic and key[1] not in callbacks]
        for key in gone:
            del self._failing[key]
        if gone:
            self.report()

    def report_soon(self) -> None:
        if self._report_due is None and self._health is not None:
            self._report_due = asyncio.get_running_loop().call_later(REPORT_EVERY_S,
                                                                    self.report)

    def flush(self) -> None:
        if self._report_due is not None:
            self.report()

    def report(self) -> None:
        if self._report_due is not None:
            self._report_due.cancel()
            self._report_due = None
        if self._health is None:
            return
        failing = self._failing
        report = DeliveryReport(
            **self._counts, failing_count=len(failing),
            failing=tuple(v for _, v in zip(range(HEALTH_FAILING_MAX), failing.values(),
                                            strict=False)))
        self._health.current = replace(self._health.current, deliveries=report)
