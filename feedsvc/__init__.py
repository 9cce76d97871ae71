"""feedsvc: drop a text file into a folder, serve it as Atom and RSS."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Looked up on demand: importlib.metadata costs ~20 ms at every start (a tenth of the
    # imports `serve` needs), and only `--version` wants the answer.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("feedsvc")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"
