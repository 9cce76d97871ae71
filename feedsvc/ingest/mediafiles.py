"""The media folder: which paths name a file in it, opening one without ever leaving it, and
a file's media type. Used by the parser (a seed's `image:` and `enclosure:`), the server
(`/media/{path}`) and `build` (copying the folder).

Only regular files inside the folder are media: a path is split into segments, each segment
checked (no empty, `.`, `..` or hidden segment, no NUL, backslash or control character), and
the file is opened one segment at a time relative to the folder's descriptor with O_NOFOLLOW,
as the seeds are (source.py): a symbolic link anywhere on the way, inside the folder or out of
it, is refused, so no link swapped in while a file is opened can lead outside the folder.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

#: What a seed writes before a media path, and where the server answers it: `media/x.png`.
MEDIA_PREFIX = "media/"
#: Served when the extension names no type (RFC 9110 §8.3: the sender may not know it).
FALLBACK_TYPE = "application/octet-stream"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: a FIFO in the folder never blocks an open; fstat then says it is no file.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_BAD_SEGMENT_RE = re.compile(r"[\x00-\x1f\x7f\\]")

# Python's own table only (MimeTypes() reads no /etc/mime.types): a type is the same on every
# machine, so documents and headers are too. Completed with common media types it lacks.
_TYPES = mimetypes.MimeTypes()
for _type, _extension in (("image/webp", ".webp"), ("audio/mp4", ".m4a"), ("audio/ogg", ".ogg"),
                          ("audio/ogg", ".oga"), ("video/webm", ".webm"), ("audio/flac", ".flac"),
                          ("audio/aac", ".aac"), ("video/ogg", ".ogv"), ("image/avif", ".avif")):
    _TYPES.add_type(_type, _extension)


def media_type(name: str) -> str:
    """The media type of a file from its extension (case-insensitive), or
    application/octet-stream; no charset (see `served_type`)."""
    kind, _ = _TYPES.guess_type(name.lower(), strict=False)
    return kind or FALLBACK_TYPE


def served_type(name: str) -> str:
    """The Content-Type to serve a file with: text is taken to be UTF-8."""
    kind = media_type(name)
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


def media_segments(relative: str) -> tuple[str, ...] | None:
    """The segments of a path inside the media folder (`carte.png`, `2026/carte.png`), or None
    for anything that is not one: empty, absolute, `..`, `.`, hidden (`.git/x`, `.env`), an
    empty segment (`a//b`, a trailing `/`), a NUL, backslash or control character."""
    if not relative or relative.startswith("/"):
        return None
    segments = tuple(relative.split("/"))
    for segment in segments:
        if not segment or segment.startswith(".") or _BAD_SEGMENT_RE.search(segment):
            return None
    return segments


def open_media(folder: Path, segments: tuple[str, ...]) -> tuple[int, os.stat_result] | None:
    """A descriptor of the regular file at `segments` inside `folder`, and its fstat; None when
    there is none (missing, a folder, a FIFO, a link on the way, no folder at all). The caller
    closes the descriptor. Never follows a symbolic link below the folder itself."""
    try:
        current = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    try:
        for segment in segments[:-1]:
            following = os.open(segment, _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = following
        fd = os.open(segments[-1], _FILE_FLAGS, dir_fd=current)
    except (OSError, ValueError):  # ELOOP for a link, ENOTDIR, ENOENT, EACCES, NUL…
        return None
    finally:
        os.close(current)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def media_size(folder: Path, segments: tuple[str, ...]) -> int | None:
    """The size of a media file in bytes, or None when it is not one."""
    opened = open_media(folder, segments)
    if opened is None:
        return None
    os.close(opened[0])
    return opened[1].st_size


def walk_media(folder: Path) -> Iterator[tuple[str, ...]]:
    """The segments of every file `open_media` would open in the folder, in name order:
    hidden names and symbolic links are skipped, as the server refuses them."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if media_segments(entry.name) is None or entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            for inner in walk_media(Path(entry.path)):
                yield (entry.name, *inner)
        elif entry.is_file(follow_symlinks=False):
            yield (entry.name,)
