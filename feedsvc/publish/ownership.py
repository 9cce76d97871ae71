"""Which file publishes which slug: claims, owners, duplicates and the files' own errors. Pure.

Every usable seed claims one slug (a draft claims none; a broken file claims, while it is
broken, the slug of its last good version, which stays published until the file is fixed or
deleted). Of the files claiming a slug, the one the state records as its owner keeps it while
it still claims it, else the first by name publishes it; every other one is a duplicate,
rejected until it changes. Deleting the owner hands the slug to the next claimant.
What the state remembers of past owners comes through `ClaimHistory`.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from feedsvc.errors import Rejection
from feedsvc.ingest.catalog import Record
from feedsvc.logtext import escape, is_utf8
from feedsvc.model import Stamp

log = logging.getLogger("feedsvc")


class ClaimHistory(Protocol):
    """What the state remembers of the files that published a slug (None when it cannot say:
    an unreadable state is logged by the implementation, and claims nothing)."""

    def last_slug_of(self, file_name: str) -> str | None:
        """The slug this file published last."""
        ...

    def file_name_of(self, slug: str) -> str | None:
        """The file that publishes this slug by its stamp."""
        ...


def choose_owner(claimants: list[str], recorded: str | None) -> str:
    """Which of the files (sorted by name) claiming a slug publishes it: the one the state
    records while it still claims it, else the first by name."""
    return recorded if recorded in claimants else claimants[0]


def duplicate(path: str, slug: str, owner: str) -> Rejection:
    return Rejection(path, 1, f"duplicate slug '{slug}': {owner} already publishes it")


def rejection_order(rejection: Rejection) -> tuple[str, int]:
    return Path(rejection.path).name, rejection.line


def resolve_owners(records: Mapping[Path, Record], stamps: Mapping[str, Stamp]
                   ) -> tuple[dict[str, Path], tuple[Rejection, ...]]:
    """All owners and rejected seeds at once, as `feedsvc check` reports them."""
    claims: dict[str, list[str]] = {}
    errors: list[Rejection] = []
    folder = {path.name: path for path in records}
    for path in sorted(records, key=lambda p: p.name):
        record = records[path]
        if record.error is not None:
            errors.append(record.error)
        elif record.slug is not None:
            claims.setdefault(record.slug, []).append(path.name)
    owners: dict[str, Path] = {}
    for slug, names in claims.items():
        stamp = stamps.get(slug)
        owner = choose_owner(names, stamp.file_name if stamp else None)
        owners[slug] = folder[owner]
        errors.extend(duplicate(str(folder[name]), slug, owner)
                      for name in names if name != owner)
    errors.sort(key=rejection_order)
    return owners, tuple(errors)


class Ownership:
    """The claims and owners of the seeds folder, kept up to date file by file."""

    def __init__(self, folder: Path, history: ClaimHistory) -> None:
        self.folder = folder
        self._history = history
        # slug → the file name claiming it, or the sorted names when several do (duplicates).
        # One string, not a list, in the usual case: a compact entry per seed.
        self._claims: dict[str, str | list[str]] = {}
        self.claim_of: dict[str, str] = {}  # file name → slug it claims
        self.owner: dict[str, str] = {}  # slug → file name publishing it
        self.errors: dict[str, Rejection] = {}  # file name → why it cannot be used
        self.duplicates: dict[str, Rejection] = {}  # file name → its duplicate slug
        self.drafts: set[str] = set()  # file names of drafts (they claim no slug)

    def absorb(self, name: str, record: Record | None) -> tuple[str, ...]:
        """A file's new record (None: deleted); returns the slugs whose owner may change."""
        self.errors.pop(name, None)
        self.drafts.discard(name)
        if record is not None and record.error is not None:
            self.errors[name] = record.error
        if record is not None and record.draft:
            self.drafts.add(name)
        return self.reclaim(name, self.claim_for(name, record))

    def claim_for(self, name: str, record: Record | None) -> str | None:
        """The slug a file claims: its own, or, while it is broken, the slug of its last good
        version (which stays published until the file is fixed or deleted)."""
        if record is None or record.draft:
            return None  # a draft publishes nothing, not even a last good version
        if record.slug is not None:
            return record.slug
        # Broken now: the slug it published last (it still claims it), from memory or, after a
        # restart, from the state.
        slug = self.claim_of.get(name)
        if slug is None and is_utf8(name):  # a name SQLite cannot take published nothing
            slug = self._history.last_slug_of(name)
        if slug and self._history.file_name_of(slug) == name:
            return slug
        return None

    def reclaim(self, name: str, slug: str | None) -> tuple[str, ...]:
        """Move a file's claim; returns the slugs whose owner may change."""
        old = self.claim_of.get(name)
        if old == slug:
            return (slug,) if slug else ()
        if old is not None:
            claimants = self._claims[old]
            if isinstance(claimants, str):
                del self._claims[old]
            else:
                claimants.remove(name)
                if len(claimants) == 1:
                    self._claims[old] = claimants[0]
            del self.claim_of[name]
            self.duplicates.pop(name, None)
        if slug is not None:
            claimants = self._claims.get(slug)
            if claimants is None:
                self._claims[slug] = name
            elif isinstance(claimants, str):
                self._claims[slug] = sorted((claimants, name))
            else:
                bisect.insort(claimants, name)
            self.claim_of[name] = slug
        return tuple(s for s in (old, slug) if s)

    def claimants(self, slug: str) -> list[str]:
        """The files claiming a slug, sorted by name."""
        claimants = self._claims.get(slug)
        if claimants is None:
            return []
        return [claimants] if isinstance(claimants, str) else list(claimants)

    def choose_owners(self, slugs: Iterable[str]) -> dict[str, str]:
        """The owner of each of these slugs that some file claims, and its other claimants
        marked as duplicates. The owners are not taken yet: `hand_over` does that, slug by
        slug."""
        owners = {}
        for slug in slugs:
            claimants = self._claims.get(slug)
            if isinstance(claimants, str):
                claimants = [claimants]
            if claimants:
                owners[slug] = owner = choose_owner(claimants, self._history.file_name_of(slug))
                for name in claimants:
                    if name != owner and name not in self.errors:
                        self.duplicates[name] = duplicate(str(self.folder / name), slug, owner)
                    else:
                        self.duplicates.pop(name, None)
        return owners

    def hand_over(self, slug: str, owner: str | None) -> bool:
        """Give a slug to its new owner (None: nobody publishes it); True if it had one."""
        was_owned = self.owner.pop(slug, None) is not None
        if owner is not None:
            self.owner[slug] = owner
        return was_owned

    def reject_unexpected(self, name: str | None, error: Exception, doing: str) -> None:
        """An unexpected error (a bug some input found) while handling one file: the file is
        rejected, named, until it changes; the batch goes on without it."""
        log.debug("%s failed", doing, exc_info=True)
        if name:
            self.errors[name] = Rejection(
                str(self.folder / name), 1,
                f"{doing}: unexpected error {type(error).__name__}: {escape(str(error))} (a "
                "bug; run with -v for the traceback, and report it)")

    def rejected(self) -> tuple[Rejection, ...]:
        """Every rejected file, by name and line."""
        return tuple(sorted((*self.errors.values(), *self.duplicates.values()),
                            key=rejection_order))

    def last_good_of(self, rejection: Rejection, record: Record | None) -> str | None:
        """The slug whose last good version a broken file still publishes (None: it publishes
        nothing, or the error is in showing it)."""
        name = Path(rejection.path).name
        slug = self.claim_of.get(name)
        if (name in self.errors and slug and self.owner.get(slug) == name
                and (record is None or record.slug is None)):
            return slug
        return None
