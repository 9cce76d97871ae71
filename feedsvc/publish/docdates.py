"""Each served document's Last-Modified: forward, strictly, whenever its bytes change.

A feed's date used to be the newest `updated` among the entries it shows. Deleting the newest
entry moved it back, and changing a past `date:` changed the bytes but not the date, so a
client sending only If-Modified-Since got 304 for changed content (RFC 9110 §13.1.3). Now the
state keeps, per document, a hash of its bytes, its modified moment and the one before
(Revision), and a document is dated anew only when its bytes differ from the stored hash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from feedsvc.errors import StoreError
from feedsvc.model import US, Revision, from_micros, to_micros
from feedsvc.publish.snapshot import Rendered, body_digest
from feedsvc.state.store import Store

log = logging.getLogger("feedsvc")


class DocumentDates:
    """The revisions of the documents served now, and those not written to the state yet
    (`unsaved`: the publisher writes them with the batch's stamps)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._revisions: dict[str, Revision] = {}
        self.unsaved: dict[str, Revision] = {}
        #: The paths `dated` anew (their bytes changed) since `take_redated`: what WebSub
        #: announces. ArchiveDates adds its page rows (`/archive/{P}/{k}`, `/archive/after/1`);
        #: `touch` adds none (an entry's page, never a feed).
        self.redated: set[str] = set()

    def take_redated(self) -> set[str]:
        """The paths dated anew since the last call (whether written to the state or not)."""
        taken, self.redated = self.redated, set()
        return taken

    def load(self, paths: Iterable[str]) -> None:
        """Read the stored revisions of these documents, for the `dated` calls that follow."""
        missing = [path for path in paths if path not in self._revisions]
        if not missing:
            return
        try:
            self._revisions.update(self.store.load_revisions(missing))
        except StoreError as e:
            log.error("%s", e)  # dated as new documents: still not before the newest entry

    def retain(self, documents: Mapping[str, object]) -> None:
        """Forget the revisions of documents no longer served (the state keeps them)."""
        self._revisions = {path: revision for path, revision in self._revisions.items()
                           if path in documents or path in self.unsaved}

    def touch(self, path: str, newest_us: int, before_us: int, now_us: int) -> None:
        """A page that changed without being rendered here (an entry page outside the feeds,
        made from the state on request): dated as `dated` dates changed bytes, after both its
        stored date and `before_us`, the date it was shown with (its entry's `updated` then).
        Its digest is unknown (""): rendered later, it is dated again, forward."""
        stored = self._revisions.get(path)
        before = max(before_us, stored.modified) if stored is not None else before_us
        next_second = (before // US + 1) * US
        moment = max(min(newest_us, now_us), min(next_second, now_us), before + 1)
        self._revisions[path] = self.unsaved[path] = Revision(path, "", moment, before)

    def dated(self, path: str, content_type: str, newest: datetime, now_us: int,
              render: Callable[[datetime], bytes] | bytes, changed: bool = False) -> Rendered:
        """A document with its Last-Modified, which moves forward, strictly, whenever its
        bytes change, and only then; never after the clock.

        Changed bytes are dated max(newest shown `updated` (at most now), stored + 1 µs, the
        second after the stored one if now is past it); the first time, the newest `updated`
        (or the state's creation time with no entries). `render`: the bytes, or, for a feed,
        which carries its date inside (Atom `<updated>`, RSS `<lastBuildDate>`), a function of
        that date: rendered with the stored date and compared, then again with the new date
        only when they differ (`changed`: the caller knows they differ; rendered once).
        Revisions are kept in the state: output stays a function of seeds plus state, across
        restarts and `build`."""
        stored = self._revisions.get(path)
        moment = min(to_micros(newest), now_us)
        if stored is not None:
            if not changed or isinstance(render, bytes):
                body = (render if isinstance(render, bytes)
                        else render(from_micros(stored.modified)))
                digest = body_digest(body)
                if digest == stored.digest:
                    return Rendered(path, content_type, body, from_micros(stored.modified),
                                 _or_none(stored.previous), digest)
            # At least a microsecond later; rather the next whole second when the clock has
            # passed it, so that the header's second moves too and If-Modified-Since keeps
            # working (two versions within one second make it answer 200: see make_document).
            next_second = (stored.modified // US + 1) * US
            moment = max(moment, min(next_second, now_us), stored.modified + 1)
        if not isinstance(render, bytes):
            body = render(from_micros(moment))
        elif stored is None:
            body = render
        digest = body_digest(body)
        revision = Revision(path, digest, moment, stored.modified if stored else None)
        self._revisions[path] = self.unsaved[path] = revision
        self.redated.add(path)
        return Rendered(path, content_type, body, from_micros(moment), _or_none(revision.previous),
                     digest)


def _or_none(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)
