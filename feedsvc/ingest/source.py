"""The seeds folder, at the edge: which names are seeds, what is there, and reading one safely.

Seeds are opened relative to a descriptor of the seeds folder, never by path, and never through
a symbolic link the kernel follows for us: the check (is it inside the folder? a regular file?)
and the read are one operation, as nginx's `disable_symlinks` does. A check by path followed by
an open by path could be raced by a link flipped in between; here nothing outside the folder can
ever be read, whatever changes under us.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from feedsvc.errors import FeedsvcError, Rejection, SeedError
from feedsvc.logtext import escape, is_utf8

SEED_SUFFIXES = (".txt", ".md")  # plain seeds, Markdown seeds
MAX_SEED_BYTES = 1024 * 1024

# O_NONBLOCK: a FIFO named *.txt must not hang the reader (fstat then refuses it).
# O_NOFOLLOW: a symbolic link fails with ELOOP instead of being followed; we resolve it.
_SEED_FLAGS = (os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
#: What open(O_NOFOLLOW) says for a link: ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on NetBSD.
_LINK_ERRNOS = {errno.ELOOP, errno.EMLINK, getattr(errno, "EFTYPE", errno.ELOOP)}
#: Out of file descriptors (the process's, or the system's): nothing is wrong with the file.
_NO_FDS = {errno.EMFILE, errno.ENFILE}
#: A name flipping between a link and a file while we look: this many tries, then an error.
_RACE_TRIES = 3


def is_seed_name(name: str) -> bool:
    """A `*.txt` or `*.md` file that is not hidden (`.*`) or an editor's leftover (`*~`,
    `*.swp`, `*.tmp`, `#*#`). Leftovers cannot end in `.txt`, but the watcher sees their
    events too."""
    if not name.endswith(SEED_SUFFIXES) or name.startswith("."):
        return False
    return not (name.endswith(("~", ".swp", ".tmp")) or
                (len(name) > 1 and name.startswith("#") and name.endswith("#")))


def name_error(path: Path) -> Rejection | None:
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
    return Rejection(escape(str(path)), 1, f"file name is not valid UTF-8; {advice}")


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


class FolderMissing(FeedsvcError):
    """The seeds folder is not there (deleted, unmounted, not a folder)."""


class DescriptorsExhausted(FeedsvcError):
    """No file descriptor was left to open a seed (EMFILE/ENFILE). Nothing is wrong with the
    file: the caller keeps what it knew of it and tries again soon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path}: too many open files; will try again")


class SeedFolder:
    """The seeds folder opened as a directory descriptor, every seed opened relative to it.

    Opened on first use and held until `close()`: callers hold it for a batch or a scan, not
    longer, so that an unmount is never kept busy and the folder the path names now (deleted
    and made again, a mount that came back) is the one the next batch reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._st: os.stat_result | None = None

    def open(self) -> tuple[int, os.stat_result] | None:
        """The folder's descriptor and its stat; None when the folder is not there."""
        if self._fd is None:
            try:
                fd = os.open(self.path, _DIR_FLAGS)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                return None
            except OSError as e:
                if e.errno in _NO_FDS:
                    raise DescriptorsExhausted(self.path) from e
                return None
            self._fd, self._st = fd, os.fstat(fd)
        assert self._st is not None
        return self._fd, self._st

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._st = None

    def __enter__(self) -> SeedFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        if e.errno in _NO_FDS:
            raise DescriptorsExhausted(folder) from e
        raise FolderMissing(f"{folder}: {e.strerror or e}") from e
    return names


class _Retry(Exception):
    """The name changed between a link and a file while we looked: look again."""


def _link_target(dir_fd: int, dir_st: os.stat_result, path: Path, name: str) -> str:
    """The name, in the seeds folder, of the file the link `name` points to; SeedError when
    it points anywhere else. One level only: what it names is opened with O_NOFOLLOW too.

    Accepted: a plain name (`real.txt`), or a path whose folder is the seeds folder itself
    (`/srv/seeds/real.txt`, `../seeds/real.txt`). Whatever that folder path resolves through,
    only the base name is ever opened, relative to the folder's descriptor."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.EINVAL:  # not a link (any more)
            raise _Retry from e
        raise
    head, base = os.path.split(target)
    outside = SeedError(str(path), 1, f"symbolic link to {target}, outside the seeds folder")
    if base in ("", ".", ".."):
        raise outside
    if head:
        try:
            st = os.stat(head, dir_fd=dir_fd)  # relative heads resolve from the folder
        except OSError:
            raise outside from None
        if (st.st_dev, st.st_ino) != (dir_st.st_dev, dir_st.st_ino):
            raise outside
    return base


def _link_to_link(path: Path, name: str, target: str) -> Rejection:
    """Why a link to a link is refused. Only the message resolves the chain (nothing is read
    through it): say so when it ends outside the folder."""
    if target == name:
        return Rejection(str(path), 1, "symbolic link loop")
    try:
        end = Path(os.path.realpath(path))
        outside = not end.is_relative_to(Path(os.path.realpath(path.parent)))
    except (OSError, ValueError):
        outside = False
    if outside:
        return Rejection(str(path), 1, f"symbolic link to {end}, outside the seeds folder")
    return Rejection(str(path), 1, f"symbolic link to {target}, itself a symbolic link; "
                                   "link to the file itself")


def _folder(path: Path, folder: SeedFolder | None) -> tuple[SeedFolder, bool]:
    """The folder to open `path` in: the caller's (kept open), or one opened for this call."""
    if folder is not None:
        return folder, False
    return SeedFolder(path.parent), True


def stat_seed(path: Path, folder: SeedFolder | None = None
              ) -> Signature | Rejection | None:
    """The file's signature; None when it is gone; a Rejection when it is not a readable file.
    A symbolic link is followed if it names a file in the seeds folder, refused otherwise.
    Raises DescriptorsExhausted when no descriptor is left to open the folder."""
    held, own = _folder(path, folder)
    try:
        opened = held.open()
        if opened is None:
            return None
        dir_fd, dir_st = opened
        name = path.name
        for _ in range(_RACE_TRIES):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    target = _link_target(dir_fd, dir_st, path, name)
                    st = os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        return _link_to_link(path, name, target)
            except _Retry:
                continue
            except (SeedError, OSError) as e:
                return _failure(path, e, "stat")
            if not stat.S_ISREG(st.st_mode):
                return _not_regular(path, st.st_mode)
            return Signature(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        return _flipping(path)
    finally:
        if own:
            held.close()


def _flipping(path: Path) -> Rejection:
    return Rejection(str(path), 1, "keeps changing between a link and a file; read again "
                                   "on its next change")


def _not_regular(path: Path, mode: int) -> Rejection:
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    return Rejection(str(path), 1, f"{kind}; seeds are regular files")


def _open_seed(dir_fd: int, dir_st: os.stat_result, path: Path) -> int | Rejection:
    """A descriptor of the seed `path` names in the folder, opened without following any link
    (a link to a file in the folder is resolved by hand, one level). Raises OSError as open
    does (FileNotFoundError: gone) and SeedError for a link that leads elsewhere."""
    name = path.name
    for _ in range(_RACE_TRIES):
        try:
            return os.open(name, _SEED_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if e.errno not in _LINK_ERRNOS:
                raise
        try:
            target = _link_target(dir_fd, dir_st, path, name)
        except _Retry:
            continue
        try:
            return os.open(target, _SEED_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if e.errno not in _LINK_ERRNOS:
                raise
            return _link_to_link(path, name, target)
    return _flipping(path)


def _failure(path: Path, error: SeedError | OSError, doing: str) -> Rejection | None:
    """What a failed stat or open of a seed means: the rejection of its own SeedError (a link
    leading out), None when it is gone (not an error), else a Rejection saying why. Raises
    DescriptorsExhausted when no descriptor was left: the file is not at fault."""
    if isinstance(error, SeedError):
        return error.rejection
    if isinstance(error, FileNotFoundError | NotADirectoryError):
        return None
    if isinstance(error, PermissionError):
        return Rejection(str(path), 1, "permission denied")
    if error.errno in _NO_FDS:
        raise DescriptorsExhausted(path) from error
    return Rejection(str(path), 1, f"cannot {doing}: {error.strerror}")


def read_seed(path: Path, max_bytes: int = MAX_SEED_BYTES, folder: SeedFolder | None = None
              ) -> SeedFile | Rejection | None:
    """Read one seed, never more than `max_bytes` (+1). None when it vanished before it could be
    read (not an error). `folder`: the seeds folder held open (else opened for this call).
    Raises DescriptorsExhausted when no descriptor is left to open it."""
    held, own = _folder(path, folder)
    try:
        opened = held.open()
        if opened is None:
            return None
        dir_fd, dir_st = opened
        try:
            fd = _open_seed(dir_fd, dir_st, path)
        except (SeedError, OSError) as e:
            return _failure(path, e, "open")
        if isinstance(fd, Rejection):
            return fd
        try:
            return _read_open(fd, path, dir_fd, dir_st, max_bytes)
        finally:
            os.close(fd)
    finally:
        if own:
            held.close()


def _mount_id(fd: int) -> int | None:
    """The mount an open descriptor is on (`mnt_id:` of /proc/self/fdinfo/FD, Linux 3.15+;
    proc(5)); None where that cannot be read."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"mnt_id:"):
                    return int(line[7:])
    except (OSError, ValueError):
        pass
    return None


def _same_mount(fd: int, dir_fd: int) -> bool:
    """Whether a seed whose st_dev is not its folder's is on the folder's mount all the same:
    on an overlay file system whose layers are on different file systems (a tmpfs over a disk:
    `systemd-nspawn --volatile=overlay`, some containers and live systems), a file reports
    the st_dev of the layer it comes from, and the folder the overlay's. Asked only then, so
    the usual seed costs nothing more."""
    mine = _mount_id(fd)
    return mine is not None and mine == _mount_id(dir_fd)


def _read_open(fd: int, path: Path, dir_fd: int, dir_st: os.stat_result, max_bytes: int
               ) -> SeedFile | Rejection:
    try:
        # What was opened is what is checked: no name is looked up again after this.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _not_regular(path, st.st_mode)
        if st.st_dev != dir_st.st_dev and not _same_mount(fd, dir_fd):
            # A file mounted over a name in the folder (a bind mount), not one of its files.
            return Rejection(str(path), 1, "on another file system than the seeds folder")
        if st.st_size > max_bytes:
            return Rejection(str(path), 1, f"file is {st.st_size} bytes; at most {max_bytes}")
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
            return Rejection(str(path), 1, f"file is over {max_bytes} bytes")
        signature = Signature(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
        return SeedFile(path=path, data=data, signature=signature)
    except OSError as e:
        return Rejection(str(path), 1, f"cannot read: {e.strerror}")
