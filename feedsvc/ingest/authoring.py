"""`feedsvc new`: a new seed file with its front matter, written without ever overwriting."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from feedsvc.durable import fsync_path
from feedsvc.errors import FeedsvcError, Rejection, UsageError
from feedsvc.ingest.parser import DEFAULT_OPTIONS, SLUG_MAX, ParseOptions, parse_seed
from feedsvc.ingest.slugs import slugify_title

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


def check_seed(path: Path, title: str, slug: str, date: str | None, tags: Sequence[str],
               options: ParseOptions = DEFAULT_OPTIONS) -> None:
    """Refuse (UsageError) a seed the service would reject, or change (a warning: control
    characters removed), as the service itself reads it: with the real parser."""
    text = seed_text(title, slug, date, tags).encode("utf-8")
    result = parse_seed(str(path), text, options)
    if isinstance(result, Rejection):
        raise UsageError(f"nothing written: {result.message}")
    for _, message in result.warnings:
        raise UsageError(f"nothing written: the title or a tag would be changed: {message}")


def new_seed(folder: Path, title: str, date: str | None = None,
             tags: Sequence[str] = (), options: ParseOptions = DEFAULT_OPTIONS) -> Path:
    """Write `{slug}.txt` (or `{slug}-2.txt`, …) into `folder` and return its path. A seed the
    service would reject is refused (UsageError) before anything is written.

    Atomic and never overwriting: the text goes to a temporary file (fsynced), which is then
    hard-linked to its name (link fails if the name exists, where rename would replace it)."""
    base = slugify_title(title, max_length=SLUG_MAX - 5)  # room for "-1000"
    if not base:
        raise UsageError(f"cannot make a slug from the title {title!r}: it needs letters or "
                         "digits")
    check_seed(folder / f"{base}.txt", title, base, date, tags, options)
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
            fsync_path(folder)
            return target
        raise FeedsvcError(f"{folder}: {base}.txt and {MAX_SUFFIX - 1} numbered names exist")
    except OSError as e:
        raise FeedsvcError(f"cannot write into {folder}: {e.strerror}") from e
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


