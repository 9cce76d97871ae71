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


class LiveHealth:
    """Holds the current HealthStatus; replacing it is the atomic swap (as `Live` does for
    the snapshot)."""

    def __init__(self, status: HealthStatus | None = None) -> None:
        self.current = status if status is not None else HealthStatus()
