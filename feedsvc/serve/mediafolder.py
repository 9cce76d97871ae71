"""The media folder as the server sees it: a file opened for a request, with its strong ETag
(a hash of its bytes, made once per version of the file) and its Last-Modified. Called in a
worker thread (media.py): opening and hashing never run on the event loop."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.ingest.mediafiles import open_media

log = logging.getLogger("feedsvc")

#: Versions of files whose hash is kept; past it the cache starts again (a hash is cheap next
#: to sending a file, and a media folder rarely holds this many).
ETAG_CACHE_MAX = 16384
#: Read per system call while hashing.
PIECE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Opened:
    fd: int
    size: int
    etag: str
    last_modified: datetime  # whole seconds, never after the clock


class MediaFolder:
    """The media folder of a server, with the ETags of the files it served."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._etags: dict[tuple[int, int, int, int], str] = {}
        self._missing_said = False

    def open(self, segments: tuple[str, ...]) -> Opened | None:
        """In a worker thread: open the file, and hash it if this version is new."""
        if self.folder is None:
            return None
        opened = open_media(self.folder, segments)
        if opened is None:
            self._say_if_missing()
            return None
        self._missing_said = False
        fd, st = opened
        try:
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            etag = self._etags.get(key)
            if etag is None:
                etag = _hash(fd, st.st_size)
                if len(self._etags) >= ETAG_CACHE_MAX:
                    self._etags.clear()
                self._etags[key] = etag
            modified = min(datetime.fromtimestamp(st.st_mtime_ns // 1_000_000_000, UTC),
                           datetime.now(UTC).replace(microsecond=0))
        except BaseException:
            os.close(fd)
            raise
        return Opened(fd, st.st_size, etag, modified)

    def _say_if_missing(self) -> None:
        """Once per disappearance: a missing media folder is no error, every path is 404."""
        assert self.folder is not None
        if not self._missing_said and not os.path.isdir(self.folder):
            self._missing_said = True
            log.info("media folder %s is missing: /media/ answers 404", self.folder)


def _hash(fd: int, size: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    offset = 0
    while offset < size:
        piece = os.pread(fd, min(PIECE_BYTES, size - offset), offset)
        if not piece:
            break
        digest.update(piece)
        offset += len(piece)
    return f'"{digest.hexdigest()}"'
