"""One error root, so callers can catch everything feedsvc raises on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a seed is not published: the file, the 1-based line to look at, and the message,
    shown as `path:line: message`. A value, not an exception (see SeedError)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class FeedsvcError(Exception):
    """Root of every error feedsvc raises on purpose; the CLI turns it into one line."""


class ConfigError(FeedsvcError):
    """The configuration file is missing, unreadable, or has a bad key."""

    def __init__(self, path: Path | None, key: str | None, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = str(path) if path is not None else "config"
        if key:
            where = f"{where}: {key}"
        super().__init__(f"{where}: {message}")


class SeedError(FeedsvcError):
    """Raised where a seed turns out unusable; carries its `Rejection`, the value that is kept,
    compared, listed and sent to worker processes."""

    def __init__(self, path: str, line: int, message: str) -> None:
        # The three as args: the exception pickles and compares by them with no hand-written
        # methods (exceptions compare by identity; the Rejection is what is compared).
        super().__init__(path, line, message)
        self.rejection = Rejection(path, line, message)

    def __str__(self) -> str:
        return str(self.rejection)

    @property
    def path(self) -> str:
        return self.rejection.path

    @property
    def line(self) -> int:
        return self.rejection.line

    @property
    def message(self) -> str:
        return self.rejection.message


class UsageError(FeedsvcError):
    """A command given something it must refuse (`feedsvc new` with a title the service would
    reject): exit 2, like a bad config, since trying again changes nothing."""


class StoreError(FeedsvcError):
    """The state database cannot be opened, read or written."""
