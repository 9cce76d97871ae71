"""Distinct `updated` moments that never pass the clock, found in linear time. Pure.

Feed validators flag two entries sharing an `updated`, so every computed `updated` is distinct.
They used to be whole seconds, found by stepping forward one second at a time past taken ones:
10,000 seeds sharing one mtime (what `git clone`, `cp -r`, `rsync -t` or `unzip` leave) cost
10,000²/2 look-ups and pushed the last ones hours past the clock. They are microseconds now
(Atom and RFC 3339 allow a `time-secfrac`), chosen inside a window that ends at the clock, and
runs of taken moments met in this process are remembered so the next seed wanting the same
moment jumps to the end of its run: n seeds with one mtime cost O(n) look-ups.
"""

from __future__ import annotations

from collections.abc import Callable

from feedsvc.model import US


def _never(moment: int) -> bool:
    return False


class Moments:
    """The `updated` moments in use (Unix microseconds) and the allocation of free ones.

    `recorded(moment)` says whether a moment is some slug's `updated` already (in the state, or
    in stamps not written yet); moments given out by `allocate` and not yet recorded are held
    here until `settle` or `release`."""

    def __init__(self, recorded: Callable[[int], bool] = _never) -> None:
        self._recorded = recorded
        self._handed: set[int] = set()
        # start → end: every moment in [start, end) was found taken by this process. Only runs
        # that began with a clash are kept (one key per clashing wanted moment), so memory
        # stays small; a moment released later inside a run is merely skipped (still distinct).
        self._runs: dict[int, int] = {}
        #: Look-ups of `recorded` made so far (the cost a cold start is measured by).
        self.lookups = 0

    def __contains__(self, moment: object) -> bool:
        if not isinstance(moment, int):
            return False
        if moment in self._handed:
            return True
        self.lookups += 1
        return self._recorded(moment)

    def take(self, moment: int) -> None:
        """Hold a moment as used (a plain set's `add`)."""
        self._handed.add(moment)

    add = take

    def settle(self, moment: int) -> None:
        """The moment is recorded now (`recorded` answers for it)."""
        self._handed.discard(moment)

    def release(self, moment: int) -> None:
        """A slug moved away from this moment."""
        self._handed.discard(moment)

    discard = release

    def allocate(self, wanted: int, lo: int, hi: int) -> int:
        """A free moment for a stamp: `wanted` if free, else the nearest free one above it up
        to `hi` (the clock), else the nearest below it down to `lo` (the earliest the stamp
        allows); never above `hi`. Only if the whole window is taken (it would take a million
        stamps in one second) is a taken one shared. A window that ends before it starts (an
        entry scheduled later than the clock: `lo` is its `published`) is that second."""
        if hi < lo:
            hi = lo + US - 1
        wanted = min(max(wanted, lo), hi)
        moment = self._free_above(wanted, hi)
        if moment is None:
            moment = self._free_below(wanted - 1, lo)
        if moment is None:
            moment = wanted
        self._handed.add(moment)
        return moment

    def _free_above(self, start: int, hi: int) -> int | None:
        moment = start
        while moment <= hi:
            end = self._runs.get(moment)
            if end is not None and end > moment:
                moment = end  # a run met before: jump over it
            elif moment in self:
                moment += 1
            else:
                break
        if moment != start:
            # Remember the run from `start`, including the moment given out now: the next seed
            # wanting `start` looks up one moment, not the whole run again.
            self._runs[start] = moment + 1 if moment <= hi else moment
        return moment if moment <= hi else None

    def _free_below(self, moment: int, lo: int) -> int | None:
        # Rare (everything from the wanted moment to the clock is taken): a plain walk down.
        while moment >= lo:
            if moment not in self:
                return moment
            moment -= 1
        return None
