"""The static site's files on disk: each route at the file a static server maps it to, written
only when its bytes change, with its `Last-Modified` as its mtime, and what is no longer part
of the site removed.

Layout: route `/p` is file `p` (a document with an extension: `feed.atom`, `sitemap.xml`) or
`p/index.html` (an HTML page: `/entries/x` → `entries/x/index.html`, `/` → `index.html`), what
nginx `try_files $uri $uri/index.html`, object storage static hosting and CDNs serve. Each
document also as `p.gz` and `p.br` (nginx `gzip_static`, `brotli_static`).

Why the mtime matters: nginx's (and most static servers') `ETag` is `"{mtime}-{size}"` and its
`Last-Modified` the mtime. A file rewritten with the same bytes would get a new ETag, and every
reader would download it again; so a file whose bytes are unchanged is not touched (same inode,
same mtime), and a file's mtime is its document's `Last-Modified`, the same on every machine
built from the same state. A page sent without Last-Modified (the state-made pages, see
sitepages.py) gets, when its bytes change, the time it is written, and always a later second
than its previous version's: nginx's ETag and If-Modified-Since then never name two versions.

What is removed: the files named in the manifest (`.feedsvc-files`, one name a line) of the
previous write that this one did not write, and nothing else: a file a user put into the
output folder under another name is never touched. (An output written before the manifest
existed gets the old layout's page names removed once: `entries/*.html`, `page/*.html`,
`tags/**/*.html`, and archive pages `archive/…/{n}.{ext}` this write did not make.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedsvc.durable import fsync_path
from feedsvc.errors import FeedsvcError
from feedsvc.model import Document

MANIFEST = ".feedsvc-files"
HTML_TYPE_PREFIX = "text/html"
#: The codings written beside each document, with their file suffix.
SIBLINGS = (("identity", ""), ("gzip", ".gz"), ("br", ".br"))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND_NS = 1_000_000_000


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def file_name(path: str, content_type: str) -> str:
    """The file (relative to the output folder) of the document served at URL path `path`."""
    if not content_type.startswith(HTML_TYPE_PREFIX):
        return path.lstrip("/")
    return f"{path.lstrip('/')}index.html" if path.endswith("/") else \
        f"{path.lstrip('/')}/index.html"


def mtime_ns(moment: datetime) -> int:
    """A Last-Modified moment as an mtime, exactly (to the microsecond)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def dated(document: Document) -> bool:
    """Whether the document is sent with a Last-Modified (the state-made pages are not)."""
    identity = document.variants.get("identity")
    return identity is None or "Last-Modified" in identity.headers


@dataclass
class OutputCounts:
    written: int = 0  # files whose bytes changed (or new)
    touched: int = 0  # files whose bytes were right but mtime was not
    unchanged: int = 0
    removed: int = 0


class SiteOutput:
    """One write of the site into `root`: `put` each document (or `keep` a name written by
    someone else, the media copy), then `finish` (stale files removed, manifest written)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: set[str] = set()
        self.counts = OutputCounts()
        self._folders: set[Path] = set()
        self._gone: set[str] = set()
        self._previous: frozenset[str] | None = None  # read once: `previous`

    def put(self, document: Document, name: str | None = None) -> str:
        """Write the document and its .gz and .br siblings (only the ones whose bytes or mtime
        are not right already); returns its file name."""
        name = name or file_name(document.path, document.content_type)
        variants = document.variants
        target = self.root / name
        body = variants["identity"].body
        when = self._mtime(target, body, mtime_ns(document.last_modified), dated(document))
        for coding, suffix in SIBLINGS:
            variant = variants.get(coding)
            if variant is None:
                raise FeedsvcError(f"{document.path}: no {coding} variant to write")
            self._file(self.root / f"{name}{suffix}", variant.body, when)
            self.names.add(f"{name}{suffix}")
        return name

    def keep(self, name: str) -> None:
        """A file written meanwhile by another way (the media copy): part of the site."""
        self.names.add(name)

    def keep_names(self, names: Iterable[str]) -> None:
        """Files as they are, many at once: part of the site."""
        self.names.update(names)

    def keep_all(self, name: str) -> None:
        """A document's files, as they are (with their .gz and .br): part of the site."""
        self.names.update(f"{name}{suffix}" for _, suffix in SIBLINGS)

    def previous(self) -> frozenset[str]:
        """The names the previous write listed (none when it left no list)."""
        if self._previous is None:
            self._previous = self._previous_names()
        return self._previous or frozenset()

    def drop(self, name: str) -> None:
        """A document of feedsvc's that is gone (a tag's feed, 410 when served): its files
        are removed even when no manifest lists them."""
        self._gone.update(f"{name}{suffix}" for _, suffix in SIBLINGS)

    def finish(self) -> OutputCounts:
        """Remove the files of the last write that this one did not write, then record this
        one's names."""
        previous = self._previous if self._previous is not None else self._previous_names()
        stale = self._old_layout() if previous is None else sorted(previous - self.names)
        stale = sorted({*stale, *(self._gone - self.names)})
        for name in stale:
            self._remove(name)
        for folder in sorted(self._folders):
            fsync_path(folder)  # the renames themselves, once per folder
        manifest = "".join(f"{name}\n" for name in sorted(self.names)).encode()
        self._file(self.root / MANIFEST, manifest, None)
        fsync_path(self.root)
        return self.counts

    def _mtime(self, target: Path, body: bytes, wanted: int, is_dated: bool) -> int:
        """The mtime the document's files get: its Last-Modified; for an undated page, its
        file's when the bytes are the same, else now (a later second than the file's)."""
        try:
            st = os.stat(target)
        except FileNotFoundError:
            return wanted if is_dated else _now_ns()
        except OSError as e:
            raise FeedsvcError(f"cannot read {target}: {e.strerror or e}") from e
        same = st.st_size == len(body) and _read(target) == body
        if same:
            return wanted if is_dated else st.st_mtime_ns
        if is_dated and wanted // _SECOND_NS > st.st_mtime_ns // _SECOND_NS:
            return wanted
        # New bytes whose date is not a later second than the file's (an undated page, or
        # an output written from another state): never the same (mtime, size) for two
        # versions, which static servers make their ETag of.
        return max(_now_ns(), (st.st_mtime_ns // _SECOND_NS + 1) * _SECOND_NS)

    def _file(self, path: Path, data: bytes, when: int | None) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise FeedsvcError(f"cannot read {path}: {e.strerror or e}") from e
        if st is not None and st.st_size == len(data) and _read(path) == data:
            if when is None or st.st_mtime_ns == when:
                self.counts.unchanged += 1
                return
            try:
                os.utime(path, ns=(when, when))
            except OSError as e:
                raise FeedsvcError(f"cannot set the mtime of {path}: {e.strerror or e}") from e
            self.counts.touched += 1
            return
        try:
            _write(path, data, when)
        except OSError as e:
            raise FeedsvcError(f"cannot write {path}: {e.strerror or e}") from e
        self._folders.add(path.parent)
        self.counts.written += 1

    def _previous_names(self) -> frozenset[str] | None:
        try:
            text = (self.root / MANIFEST).read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise FeedsvcError(f"cannot read {self.root / MANIFEST}: {e}") from e
        if _all_inside(text):  # a few looks at the whole text, not one per line
            return frozenset(text.split("\n")) - {""}
        return frozenset(line for line in text.split("\n") if line and _inside(line))

    def _old_layout(self) -> list[str]:
        """The pages of a build made before the manifest (`x.html` for route `/x`, with
        their .gz and .br), except those this write made."""
        found: list[str] = []
        for folder, pattern in (("entries", "*.html*"), ("page", "*.html*"),
                                ("tags", "**/*.html*")):
            base = self.root / folder
            if base.is_dir():
                found += [name for p in sorted(base.glob(pattern))
                          if p.name.endswith((".html", ".html.gz", ".html.br")) and p.is_file()
                          and (name := p.relative_to(self.root).as_posix()) not in self.names]
        # Archive pages of another page size, or of the layout before sizes were in the URL
        # (`archive/{n}.{ext}`): digits, a dot, an extension.
        base = self.root / "archive"
        if base.is_dir():
            found += [name for p in sorted(base.rglob("*"))
                      if p.is_file() and p.name.split(".", 1)[0].isdigit()
                      and (name := p.relative_to(self.root).as_posix()) not in self.names]
        return found

    def _remove(self, name: str) -> None:
        path = self.root / name
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise FeedsvcError(f"cannot remove {path}: {e.strerror or e}") from e
        self.counts.removed += 1
        self._folders.add(path.parent)
        # Folders left empty (an entry's `entries/{slug}/`), up to the output folder.
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                break
            self._folders.discard(folder)
            folder = folder.parent
            self._folders.add(folder)


def _all_inside(text: str) -> bool:
    """Whether every line of `text` is `_inside`, when no line starts with `/` or `.` and
    no part does (False: look line by line)."""
    lines = f"\n{text}\n"
    return not any(bad in lines for bad in ("\n/", "\n.", "/.", "//", "/\n"))


def _inside(name: str) -> bool:
    """A manifest line names a file inside the output (no `..`, not absolute)."""
    parts = name.split("/")
    return not name.startswith("/") and all(part not in ("", ".", "..") for part in parts)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _now_ns() -> int:
    """Now, to the second below (an mtime is never later than the clock)."""
    return int(datetime.now(UTC).timestamp()) * _SECOND_NS


def _write(path: Path, data: bytes, when: int | None) -> None:
    """Temporary file, fsync, mode and mtime, rename: a reader sees the old file or the new
    one, never a part, and the new one with its date (the folder's fsync: `finish`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)  # mkstemp makes 0600; a web server must read it
        if when is not None:
            os.utime(tmp, ns=(when, when))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
