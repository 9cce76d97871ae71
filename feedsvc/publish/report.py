"""The publisher's log lines: what each batch did to the entries, and the seeds it rejects."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from feedsvc.errors import Rejection
from feedsvc.ingest.catalog import Record
from feedsvc.publish.ownership import Ownership
from feedsvc.timerange import datetime_of

log = logging.getLogger("feedsvc")

#: A start that finds more new or changed seeds than this in one chunk says so in one line
#: at the end of the batch, not one per entry (those go to the debug level, `--verbose`):
#: a first start on 100,000 seeds wrote 100,000 lines, which cost a twentieth of the cold
#: start and are past journald's default burst (10,000 lines in 30 s: the rest dropped).
LOG_EACH_MAX = 100


class Report:
    def __init__(self, ownership: Ownership, records: Mapping[str, Record]) -> None:
        self._ownership = ownership
        self._records = records  # file name → record, as the catalog has them
        self._reported: set[Rejection] = set()
        self._quiet: Counter[str] = Counter()  # entries logged at debug level, by what happened

    def changes(self, changed: dict[str, str], now: int, restarting: bool) -> None:
        """One log line per published, scheduled, updated or removed entry. A restart that
        finds everything as it was says nothing per entry; one that finds more than
        LOG_EACH_MAX in a chunk logs them at debug level, and `batch` counts them in a line."""
        owner, folder = self._ownership.owner, self._ownership.folder
        quiet = restarting and len(changed) > LOG_EACH_MAX
        level = logging.DEBUG if quiet else logging.INFO
        said = self._quiet if quiet else Counter()
        for slug in sorted(changed):
            what = changed[slug]
            if what == "removed":
                log.log(level, "removed %s", slug)
                said["removed"] += 1
                continue
            # Only an author's date is ever ahead (from the record: looking up every stamp
            # of a cold start would hold them all in memory).
            record = self._records.get(owner[slug])
            date = record.date if record is not None else None
            if date is not None and date > now:
                log.log(level, "scheduled %s for %s from %s", slug,
                        datetime_of(date).isoformat(), folder / owner[slug])
                said["scheduled"] += 1
            elif what != "republished" or not restarting:
                what = "published" if what == "republished" else what
                log.log(level, "%s %s from %s", what, slug, folder / owner[slug])
                said[what] += 1

    def batch(self, rejected: tuple[Rejection, ...], appeared: list[str]) -> None:
        """A line per scheduled entry that appeared, and per newly rejected seed; the count
        of the entries `changes` logged at debug level."""
        if self._quiet:
            quiet, self._quiet = self._quiet, Counter()
            log.info("%s from %s (a line each with --verbose)", ", ".join(
                f"{what} {quiet[what]:,}" for what in
                ("published", "updated", "scheduled", "removed") if quiet[what]),
                self._ownership.folder)
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
