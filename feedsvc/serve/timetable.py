"""When the pipeline wakes up and when it rescans: its decisions as a small pure object.

The loop passes its clock in (`loop.time()`, and how far away the next scheduled entry is) and
does what the answers say; nothing here sleeps, reads a file or looks at a clock, so every rule
below is tested without a server (tests/test_timetable.py).
"""

from __future__ import annotations

from dataclasses import dataclass

#: A scheduled entry is applied this long after its time, so the clock has surely passed it.
SCHEDULE_SLACK_S = 0.005
#: While changes are kept in memory (state not writable), how often writing is retried.
WRITE_RETRY_S = 5.0
#: Batches this large together may come from a burst big enough to overflow the kernel's event
#: queue, which watchfiles drops silently: a rescan a moment later makes sure nothing was missed.
BURST_PATHS = 256
BURST_RESCAN_S = 1.0
#: After a batch failed, its files are tried again this soon, then twice as late each time it
#: fails again, up to the cap: a lasting fault costs a line a minute, not a line a second.
FAILED_RETRY_S = 1.0
FAILED_RETRY_MAX_S = 60.0
#: Seeds that could not be opened for lack of file descriptors are read again this soon.
FD_RETRY_S = 0.5


@dataclass
class Timetable:
    """The next rescan, the failure backoff and the burst counters, on the loop's clock (s)."""

    #: The periodic rescan's interval (`[watch] rescan_s`).
    rescan_s: float
    #: When the next rescan is due.
    next_rescan: float
    #: How soon a failed batch is tried again; doubles with each failure in a row.
    retry_s: float = FAILED_RETRY_S
    #: Paths of the update batches that followed each other closely (a burst), and when the
    #: last of them was applied.
    burst_paths: int = 0
    burst_last: float = 0.0

    @classmethod
    def starting(cls, now: float, rescan_s: float, failed: bool) -> Timetable:
        """After the initial scan: the first rescan a period later, or soon when it failed."""
        return cls(rescan_s, now + (FAILED_RETRY_S if failed else rescan_s))

    def timeout(self, now: float, *, deferred: bool, left_over: bool,
                due_in: float | None) -> float:
        """How long to wait for the watcher's next batch before waking up anyway.
        `deferred`: seeds wait for file descriptors; `left_over`: the last batch's parsing
        budget ran out; `due_in`: seconds until the next scheduled entry, if any."""
        # At least every WRITE_RETRY_S: to retry writing the state while it cannot be
        # written, and else to notice soon that its file was deleted or replaced (a stat).
        timeout = min(max(0.0, self.next_rescan - now), WRITE_RETRY_S)
        if deferred:  # out of descriptors a moment ago: not a rescan away
            timeout = min(timeout, FD_RETRY_S)
        if left_over:  # the last batch's budget ran out: go on at once
            timeout = 0.0
        if due_in is not None:
            # A timer for the next scheduled entry: an empty batch then makes it appear.
            timeout = max(0.0, min(timeout, due_in + SCHEDULE_SLACK_S))
        return timeout

    def rescan_due(self, now: float) -> bool:
        return now >= self.next_rescan

    def rescanning(self, now: float) -> None:
        """A rescan starts: the next one is a period away."""
        self.next_rescan = now + self.rescan_s

    def updated(self, now: float, paths: int) -> None:
        """An update batch of `paths` was applied."""
        # A burst arrives as several batches (one per `debounce_ms` at most): count the paths
        # of batches that follow each other closely.
        if now - self.burst_last > BURST_RESCAN_S:
            self.burst_paths = 0
        self.burst_paths, self.burst_last = self.burst_paths + paths, now
        if self.burst_paths >= BURST_PATHS:
            self.next_rescan = min(self.next_rescan, now + BURST_RESCAN_S)

    def recovered(self) -> None:
        """A batch worked after failures: the next failure is retried soon again."""
        self.retry_s = FAILED_RETRY_S

    def failed(self, now: float) -> float:
        """A batch failed: its files are tried again with a rescan `retry_s` from now (that
        delay is returned), and the next failure in a row waits twice as long."""
        delay = self.retry_s
        self.next_rescan = min(self.next_rescan, now + delay)
        self.retry_s = min(delay * 2, FAILED_RETRY_MAX_S)
        return delay

    def descriptors_exhausted(self, now: float) -> None:
        """Not even the folder could be listed: try again shortly."""
        self.next_rescan = min(self.next_rescan, now + FD_RETRY_S)


def only_a_check(*, rescan: bool, needs_retry: bool, left_over: bool, due_passed: bool) -> bool:
    """Whether a wake-up with no batch from the watcher has nothing to apply: no rescan due,
    no write to retry, no left-over of the parsing budget, no scheduled entry whose time has
    come. Then it only checks that the state file is still the one open."""
    return not (rescan or needs_retry or left_over or due_passed)
