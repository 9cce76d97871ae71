"""What /healthz reports beyond the snapshot, as one frozen value swapped in whole.

The leader's pipeline makes a new `HealthStatus` whenever something it reports changes and
sends it to the followers with each snapshot; a request reads `LiveHealth.current` once, so
the fields it answers with always belong together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class HubHealth:
    """An external WebSub hub's pings (serve/websub/pinger.py)."""

    url: str
    last_ok: datetime | None = None  # the last ping it accepted
    failing_since: datetime | None = None  # None: its last ping was accepted (or none yet)
    last_error: str | None = None
    failures: int = 0  # failed pings since start
    pending: int = 0  # topics waiting for it
    dropped: int = 0  # topics dropped: too many waited


@dataclass(frozen=True, slots=True)
class FailingSubscriber:
    """A subscription of the built-in hub whose deliveries fail (WebSub §7)."""

    topic: str
    callback: str
    since: str  # ISO 8601, UTC
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """The built-in hub's content distribution since start: counts, and the subscribers whose
    deliveries fail now (the first HEALTH_FAILING_MAX of them; all are counted)."""

    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0  # notifications abandoned after give_up_after_s of retries
    gone: int = 0  # subscriptions ended by a 410 from their callback
    failing_count: int = 0
    failing: tuple[FailingSubscriber, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """Is the watch live, did the last rescan work, is anything waiting to be written to the
    state."""

    watching: bool = True
    rescan_ok: bool = True
    pending_writes: int = 0
    state_problem: str | None = None
    #: Why the last batch of changes could not be applied; None once one works again.
    batch_problem: str | None = None
    #: The external WebSub hubs pinged on each change, in the configuration's order.
    hubs: tuple[HubHealth, ...] = ()
    #: The built-in WebSub hub's deliveries (None: no built-in hub).
    deliveries: DeliveryReport | None = None
    #: Writes of the state that failed since start (the leader's store counts them).
    write_failures: int = 0


class LiveHealth:
    """Holds the current HealthStatus; replacing it is the atomic swap (as `Live` does for
    the snapshot)."""

    def __init__(self, status: HealthStatus | None = None) -> None:
        self.current = status if status is not None else HealthStatus()
