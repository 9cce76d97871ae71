"""fsync by path: what makes a file's bytes, or a rename in a folder, survive a crash. A leaf
module: the state, `build`'s output and `feedsvc new` all write through a temporary file,
fsync and rename."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder (which makes a rename or a link in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`, None if there is none: whether a file was
    replaced or deleted while open."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
