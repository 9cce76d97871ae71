"""`build`'s copy of the media folder into its output, under `media/`: what /media/ serves.

Each file is hard-linked when the output is on the same file system (no bytes copied), else
copied; either way it appears whole (a temporary name in the same folder, then a rename), and a
file already there and unchanged (the same inode, or the same size and mtime) is left alone. The
files are those the server would serve (mediafiles.walk_media): no hidden name, no link.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from feedsvc.durable import fsync_path
from feedsvc.ingest.mediafiles import MEDIA_PREFIX, open_media, walk_media


@dataclass
class MediaCopy:
    linked: int = 0
    copied: int = 0
    unchanged: int = 0
    #: The files' names in the output (`media/a/b.jpg`): part of the site (sitebuild).
    names: list[str] = field(default_factory=list)


def copy_media(source: Path, output: Path) -> MediaCopy:
    """Bring `output`/media/ up to date with the media folder `source` (missing: nothing)."""
    counts = MediaCopy()
    target_root = output / MEDIA_PREFIX.rstrip("/")
    folders: set[Path] = set()
    for segments in walk_media(source):
        opened = open_media(source, segments)
        if opened is None:  # gone, or swapped for a link, since the listing
            continue
        fd, st = opened
        try:
            target = target_root.joinpath(*segments)
            counts.names.append("/".join((MEDIA_PREFIX.strip("/"), *segments)))
            if _unchanged(target, st):
                counts.unchanged += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if _link(source.joinpath(*segments), target, st):
                counts.linked += 1
            else:
                _copy(fd, target, st)
                counts.copied += 1
            folders.add(target.parent)
        finally:
            os.close(fd)
    for folder in sorted(folders):
        fsync_path(folder)  # the renames themselves
    return counts


def _unchanged(target: Path, st: os.stat_result) -> bool:
    try:
        there = os.lstat(target)
    except OSError:
        return False
    if not stat.S_ISREG(there.st_mode):
        return False
    if (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino):
        return True  # the same file, linked by an earlier build
    return (there.st_size, there.st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def _temporary(target: Path) -> Path:
    return Path(tempfile.mktemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


def _link(path: Path, target: Path, st: os.stat_result) -> bool:
    """A hard link of the file opened (checked by inode: the name may have been swapped since),
    put in place with a rename. False when linking is not possible (another file system, a
    file system without links, not permitted)."""
    for _ in range(3):  # a temporary name taken meanwhile: try another
        tmp = _temporary(target)
        try:
            os.link(path, tmp, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                return False
            raise
        try:
            linked = os.lstat(tmp)
            if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
                tmp.unlink()
                return False  # not the file checked: copy from the descriptor instead
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True
    return False


def _copy(fd: int, target: Path, st: os.stat_result) -> None:
    """The bytes of the open file, through a temporary file, fsync and rename; its mode and
    mtime kept (so the next build sees it unchanged)."""
    out_fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(out_fd, "wb") as out, os.fdopen(os.dup(fd), "rb") as src:
            src.seek(0)
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))  # the file's own mode, as a link has
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
