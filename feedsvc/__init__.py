"""feedsvc: drop a text file into a folder, serve it as Atom and RSS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("feedsvc")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
