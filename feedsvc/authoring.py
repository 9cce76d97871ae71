"""`feedsvc new`: a new seed file with its front matter, written without ever overwriting."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from feedsvc.errors import FeedsvcError
from feedsvc.parser import SLUG_MAX
from feedsvc.slugs import slugify_title

#: How many numbered names (-2, -3…) are tried before giving up.
MAX_SUFFIX = 1000


def seed_text(title: str, slug: str, date: str | None, tags: Sequence[str]) -> str:
    """The new seed: front matter only, as a draft (nothing is published before the author
    has written the body and removed `draft: true`)."""
    front: dict[str, object] = {"title": title, "slug": slug}
    if date:
        front["date"] = date
    if tags:
        front["tags"] = list(tags)
    front["draft"] = True
    # safe_dump quotes what YAML would read as something else ("2026-11-24 08:30", "yes").
    block = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{block}---\n\n"


def new_seed(folder: Path, title: str, date: str | None = None,
             tags: Sequence[str] = ()) -> Path:
    """Write `{slug}.txt` (or `{slug}-2.txt`, …) into `folder` and return its path.

    Atomic and never overwriting: the text goes to a temporary file (fsynced), which is then
    hard-linked to its name (link fails if the name exists, where rename would replace it)."""
    base = slugify_title(title, max_length=SLUG_MAX - 5)  # room for "-1000"
    if not base:
        raise FeedsvcError(f"cannot make a slug from the title {title!r}: it needs letters or "
                           "digits")
    if not folder.is_dir():
        raise FeedsvcError(f"seeds folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".new-", suffix=".tmp", dir=folder)
    try:
        for n in range(1, MAX_SUFFIX + 1):
            slug = base if n == 1 else f"{base}-{n}"
            data = seed_text(title, slug, date, tags).encode("utf-8")
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            os.chmod(tmp, 0o644)
            target = folder / f"{slug}.txt"
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            _fsync_dir(folder)
            return target
        raise FeedsvcError(f"{folder}: {base}.txt and {MAX_SUFFIX - 1} numbered names exist")
    except OSError as e:
        raise FeedsvcError(f"cannot write into {folder}: {e.strerror}") from e
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
