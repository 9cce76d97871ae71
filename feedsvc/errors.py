"""One error root, so callers can catch everything feedsvc raises on purpose."""

from __future__ import annotations

from pathlib import Path


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
    """A seed file that cannot be published, with the file and the (1-based) line to look at."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeedError):
            return NotImplemented
        return (self.path, self.line, self.message) == (other.path, other.line, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.line, self.message))

    def __repr__(self) -> str:
        return f"SeedError({self.path!r}, {self.line}, {self.message!r})"

    def __reduce__(self) -> tuple[type[SeedError], tuple[str, int, str]]:
        return SeedError, (self.path, self.line, self.message)  # snapshots go to workers


class UsageError(FeedsvcError):
    """A command given something it must refuse (`feedsvc new` with a title the service would
    reject): exit 2, like a bad config, since trying again changes nothing."""


class StoreError(FeedsvcError):
    """The state database cannot be opened, read or written."""
