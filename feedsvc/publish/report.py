"""The publisher's log lines: what each batch did to the entries, and the seeds it rejects."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from feedsvc.errors import Rejection
from feedsvc.ingest.catalog import Record
from feedsvc.publish.ownership import Ownership
from feedsvc.timerange import datetime_of

log = logging.getLogger("feedsvc")


class Report:
    def __init__(self, ownership: Ownership, records: Mapping[str, Record]) -> None:
        self._ownership = ownership
        self._records = records  # file name → record, as the catalog has them
        self._reported: set[Rejection] = set()

    def changes(self, changed: dict[str, str], now: int, restarting: bool) -> None:
        """One log line per published, scheduled, updated or removed entry. A restart that
        finds everything as it was says nothing per entry."""
        owner, folder = self._ownership.owner, self._ownership.folder
        for slug in sorted(changed):
            what = changed[slug]
            if what == "removed":
                log.info("removed %s", slug)
                continue
            # Only an author's date is ever ahead (from the record: looking up every stamp
            # of a cold start would hold them all in memory).
            record = self._records.get(owner[slug])
            date = record.date if record is not None else None
            if date is not None and date > now:
                log.info("scheduled %s for %s from %s", slug, datetime_of(date).isoformat(),
                         folder / owner[slug])
            elif what != "republished" or not restarting:
                log.info("%s %s from %s", "published" if what == "republished" else what,
                         slug, folder / owner[slug])

    def batch(self, rejected: tuple[Rejection, ...], appeared: list[str]) -> None:
        """A line per scheduled entry that appeared, and per newly rejected seed."""
        for slug in appeared:
            log.info("published %s (scheduled)", slug)
        for error in rejected:
            if error not in self._reported:
                # Its last good version is shown unless the error is in showing it.
                record = self._records.get(Path(error.path).name)
                if (slug := self._ownership.last_good_of(error, record)) is not None:
                    log.warning("%s (still publishing its last good version of %s)",
                                error, slug)
                else:
                    log.warning("%s", error)
        # A file that was rejected and now reads well: one line, so that whoever watched the
        # log for its error sees it is over (a file deleted meanwhile is not "fixed").
        still = {error.path for error in rejected}
        for error in sorted(self._reported, key=lambda error: (error.path, error.line)):
            record = self._records.get(Path(error.path).name)
            if error.path not in still and record is not None and record.error is None:
                log.info("%s: fixed (was line %d: %s)", error.path, error.line, error.message)
        self._reported = set(rejected)
