"""The seeds folder, at the edge: which names are seeds, what is there, and reading one safely."""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from feedsvc.errors import SeedError
from feedsvc.logtext import escape, is_utf8

SEED_SUFFIXES = (".txt", ".md")  # plain seeds, Markdown seeds
MAX_SEED_BYTES = 1024 * 1024


def is_seed_name(name: str) -> bool:
    """A `*.txt` or `*.md` file that is not hidden (`.*`) or an editor's leftover (`*~`,
    `*.swp`, `*.tmp`, `#*#`). Leftovers cannot end in `.txt`, but the watcher sees their
    events too."""
    if not name.endswith(SEED_SUFFIXES) or name.startswith("."):
        return False
    return not (name.endswith(("~", ".swp", ".tmp")) or
                (len(name) > 1 and name.startswith("#") and name.endswith("#")))


def name_error(path: Path) -> SeedError | None:
    """Why a seed's file name cannot be carried, or None. A name that is not UTF-8 (from a
    Latin-1 archive, a Samba share) reaches Python as lone surrogates (os.fsdecode, PEP 383):
    no log line, JSON answer, terminal or SQLite text column can hold it, so it is refused
    here, at the edge, shown escaped, with the command that renames it."""
    name = path.name
    if is_utf8(name):
        return None
    raw = os.fsencode(name)
    # Such names mostly come from Windows or old Unix archives: read the bytes as cp1252
    # (Latin-1 plus the quotes and dashes Windows adds), else as Latin-1, which reads any byte.
    try:
        guess = raw.decode("cp1252")
    except UnicodeDecodeError:
        guess = raw.decode("latin-1")
    if is_seed_name(guess) and escape(guess) == guess:
        advice = (f"rename it in the seeds folder: mv {_shell_word(name)} {_shell_word(guess)} "
                  "(its bytes read as Windows-1252 or Latin-1), or convmv -f cp1252 -t utf8 "
                  "--notest *.txt for many")
    else:
        advice = "rename it in UTF-8 (convmv -t utf8 --notest -f ENCODING *.txt renames many)"
    return SeedError(escape(str(path)), 1, f"file name is not valid UTF-8; {advice}")


def _shell_word(name: str) -> str:
    """`name` as one bash word that names the very bytes: $'caf\\xe9.txt'."""
    if escape(name) == name and "'" not in name:
        return f"'{name}'"
    return "$'" + escape(name.replace("\\", "\\\\").replace("'", "\\'")) + "'"


@dataclass(frozen=True, slots=True)
class Signature:
    """What a stat says about a file; when it has not moved, the bytes need not be read again."""

    mtime_ns: int
    size: int
    inode: int
    ctime_ns: int


@dataclass(frozen=True, slots=True)
class SeedFile:
    path: Path
    data: bytes
    signature: Signature

    @property
    def mtime(self) -> int:
        return self.signature.mtime_ns // 1_000_000_000


class FolderMissing(Exception):
    """The seeds folder is not there (deleted, unmounted, not a folder)."""


def list_seeds(folder: Path) -> list[Path]:
    """Every seed in the folder, in name order. Raises FolderMissing when it cannot be listed."""
    return [folder / name for name in list_seed_names(folder)]


def list_seed_names(folder: Path) -> list[str]:
    """The names of every seed in the folder, in name order, interned. Raises FolderMissing
    when it cannot be listed.

    Names, not Paths: a rescan of 100,000 seeds would build 100,000 Path objects (~30 MB,
    the process's peak memory) only to take their names. Interned, so that a name the catalog
    already holds is not held twice while the listing lives."""
    try:
        with os.scandir(folder) as it:
            names = sorted(sys.intern(entry.name) for entry in it if is_seed_name(entry.name))
    except (FileNotFoundError, NotADirectoryError) as e:
        raise FolderMissing(str(folder)) from e
    except PermissionError as e:
        raise FolderMissing(f"{folder}: permission denied") from e
    except OSError as e:  # a link loop, EIO from a failing disk or share: cannot be listed
        raise FolderMissing(f"{folder}: {e.strerror or e}") from e
    return names


def stat_seed(path: Path) -> Signature | SeedError | None:
    """The file's signature; None when it is gone; SeedError when it is not a readable file.
    A symbolic link is followed if it stays inside the seeds folder, refused otherwise."""
    if (outside := _link_outside(path)) is not None:
        return outside
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        return SeedError(str(path), 1, "permission denied")
    except OSError as e:
        if e.errno == errno.ELOOP:
            return SeedError(str(path), 1, "symbolic link loop")
        return SeedError(str(path), 1, f"cannot stat: {e.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return _not_regular(path, st.st_mode)
    return Signature(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def _link_outside(path: Path) -> SeedError | None:
    """A symbolic link whose target is not in the seeds folder: publishing it would publish
    whatever file on the machine the link names."""
    try:
        if not os.path.islink(path):  # one lstat, without pathlib's overhead (every read)
            return None
        target = path.resolve()
    except (OSError, RuntimeError):  # a loop: stat reports it
        return None
    if target.is_relative_to(path.parent.resolve()):
        return None
    return SeedError(str(path), 1, f"symbolic link to {target}, outside the seeds folder")


def _not_regular(path: Path, mode: int) -> SeedError:
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    return SeedError(str(path), 1, f"{kind}; seeds are regular files")


def read_seed(path: Path, max_bytes: int = MAX_SEED_BYTES) -> SeedFile | SeedError | None:
    """Read one seed, never more than `max_bytes` (+1). None when it vanished before it could be
    read (not an error)."""
    if (outside := _link_outside(path)) is not None:
        return outside
    try:
        # O_NONBLOCK: a FIFO named *.txt must not hang the reader; fstat below refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        return SeedError(str(path), 1, "permission denied")
    except OSError as e:
        # Callers may skip stat_seed before reading (nothing to compare a new file with):
        # say what it would have said (a socket, a link loop), else why the open failed.
        known = stat_seed(path)
        if isinstance(known, SeedError):
            return known
        return SeedError(str(path), 1, f"cannot open: {e.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _not_regular(path, st.st_mode)
        if st.st_size > max_bytes:
            return SeedError(str(path), 1, f"file is {st.st_size} bytes; at most {max_bytes}")
        chunks: list[bytes] = []
        remaining = max_bytes + 1  # one byte more tells a file that grew past the limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            return SeedError(str(path), 1, f"file is over {max_bytes} bytes")
        signature = Signature(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        return SeedFile(path=path, data=data, signature=signature)
    except OSError as e:
        return SeedError(str(path), 1, f"cannot read: {e.strerror}")
    finally:
        os.close(fd)
