"""config.toml → a frozen, validated Config. Every key is optional; paths resolve against it."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedsvc.errors import ConfigError
from feedsvc.logtext import escape, is_utf8

CONFIG_ENV = "FEEDSVC_CONFIG"
#: `[feed] tombstones_max` by default: this many times `max_entries` (see FeedConfig).
TOMBSTONES_PER_ENTRY = 10

# BCP 47 language tag, loosely: "fr", "fr-FR", "zh-Hant-TW", "de-CH-1996".
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")
_EMAIL_RE = re.compile(r"^[^@\s<>()]+@[^@\s<>()]+\.[^@\s<>()]+$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


@dataclass(frozen=True)
class FeedConfig:
    title: str = "feedsvc"
    subtitle: str = ""  # empty: the title is used (RSS requires a description)
    base_url: str = ""  # empty: http://{host}:{port}/
    id: str | None = None  # None: derived from base_url on the first run, then kept in the state
    language: str = "en"
    author_name: str = ""  # empty: the title is used (Atom requires an author)
    author_email: str | None = None
    max_entries: int = 50
    entry_url: str = "{base_url}entries/{slug}"
    #: IANA zone of front-matter dates written without one ("2026-11-24 08:30").
    timezone: str = "UTC"
    #: Whether "03/04/2027" is 3 April; None: as the language writes dates (fr: yes, en: no).
    dayfirst: bool | None = None
    #: Days a deleted entry's tombstone (RFC 6721 at:deleted-entry) stays in the Atom feeds,
    #: and a tag that lost its last entry answers 200 with an empty feed (then 410 Gone).
    tombstone_days: int = 30
    #: At most this many tombstones in each Atom document: the newest (tombstones.py). By
    #: default 10 times max_entries (500 with the default 50): a reader that polls rarely still
    #: learns of every deletion unless more than ten feeds' worth of entries were deleted
    #: between two of its polls, and a document carries at most ~80 KB of them (about 165
    #: bytes each) instead of 16 MB after deleting most of a 100k folder. load_config sets
    #: it from max_entries when the key is absent.
    tombstones_max: int = 500
    #: Entries per RFC 5005 archive page (/archive/{n}.atom): the entries older than the
    #: newest `max_entries`, oldest first.
    archive_page_entries: int = 50


@dataclass(frozen=True)
class PathsConfig:
    seeds: Path
    state: Path  # the SQLite file
    output: Path  # where `feedsvc build` writes
    #: Files served at /media/{path} and copied by `build` (None only for a Config made by
    #: hand; load_config always sets it: default `media` beside the config file).
    media: Path | None = None


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    cache_max_age: int = 60
    access_log: bool = False  # one line per request costs more than serving it
    workers: int = 1  # processes serving the port (SO_REUSEPORT); one pipeline in the first
    #   ("auto" in the file: one per usable core, resolved when the config is read)
    #: Open connections per process; 0: as many as the file descriptor limit allows, less a
    #: reserve for the seeds and the state (see connections.py).
    max_connections: int = 0
    #: Time allowed to send a whole request head (slowloris), like nginx's client_header_timeout.
    header_timeout_s: int = 10
    #: Time allowed between two successful writes of a body, like nginx's send_timeout.
    send_timeout_s: int = 60
    #: Serve /metrics (Prometheus text format); off: /metrics is a 404 like any unknown path.
    metrics: bool = False


@dataclass(frozen=True)
class WatchConfig:
    #: The watcher's tick: a batch closes after one step with no new change (watchfiles `step`).
    step_ms: int = 10
    #: The longest a batch that keeps growing waits before it is applied (watchfiles `debounce`).
    debounce_ms: int = 50
    rescan_s: int = 300  # full reconcile of the folder with what is published
    max_seed_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class WebSubConfig:
    """W3C WebSub: hubs to advertise and ping, and the built-in hub's bounds."""

    #: External hubs: advertised in every feed document and sent `hub.mode=publish` on every
    #: change (WebSub §4, §6).
    hubs: tuple[str, ...] = ()
    #: Serve a hub at `{base_url}websub` and advertise it (WebSub §5-§8).
    builtin_hub: bool = False
    #: Accept callbacks on loopback, private, link-local or other non-public addresses
    #: (intranets, tests). Off by default: no request into the operator's own network.
    allow_private_callbacks: bool = False
    #: The lease given when a subscriber asks for none, and the bounds of what it may ask.
    lease_default_s: int = 864_000  # 10 days
    lease_min_s: int = 300
    lease_max_s: int = 2_592_000  # 30 days
    #: Bounds against a flood of subscriptions.
    max_subscriptions_per_topic: int = 1_000
    max_subscriptions_per_host: int = 100
    #: Subscription requests per minute from one client address.
    subscribe_rate_per_min: int = 60
    #: One delivery (or verification, or ping) may take this long.
    request_timeout_s: int = 10
    #: A subscriber whose deliveries keep failing this long is dropped.
    give_up_after_s: int = 86_400


#: `[log] level` and `--log-level`.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: `[log] format`: text lines, or JSON lines (logtext.JsonFormatter).
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    #: The least severe records written; `--log-level` (or `-v`: debug) overrides it.
    level: str = "info"
    format: str = "text"
    #: `level` came from `--log-level` (or `-v`), not the file: a reload keeps it.
    command_line: bool = False


@dataclass(frozen=True)
class BuildConfig:
    """The static site `build` writes into `[paths] output`."""

    #: `serve` keeps the output current on every change, as `build` writes it.
    on_change: bool = False


@dataclass(frozen=True)
class Config:
    feed: FeedConfig
    paths: PathsConfig
    server: ServerConfig
    watch: WatchConfig
    config_file: Path | None = None  # the file this came from
    websub: WebSubConfig = WebSubConfig()
    log: LogConfig = LogConfig()
    build: BuildConfig = BuildConfig()

    def entry_link(self, slug: str) -> str:
        return self.feed.entry_url.format(base_url=self.feed.base_url, slug=slug)


def find_config(explicit: str | os.PathLike[str] | None, cwd: Path | None = None,
                environ: Mapping[str, str] | None = None) -> Path:
    """The config to use: --config, else ./config.toml, else $FEEDSVC_CONFIG."""
    if explicit is not None:
        return Path(explicit)
    cwd = Path.cwd() if cwd is None else cwd
    environ = os.environ if environ is None else environ
    local = cwd / "config.toml"
    if local.is_file():
        return local
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    raise ConfigError(None, None,
                      f"no config.toml in {cwd} and ${CONFIG_ENV} is not set; pass --config PATH")


#: A config is a few hundred bytes; anything past this is not one (a log, a disk image).
MAX_CONFIG_BYTES = 1024 * 1024


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError naming the file and the key."""
    path = Path(path)
    try:
        text = _read_config(path).decode("utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError as e:
        raise ConfigError(path, None, "file not found") from e
    except OSError as e:
        raise ConfigError(path, None, f"cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, None, f"not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(path, None, "not valid UTF-8") from e
    except RecursionError as e:  # tomllib descends once per nested array or table
        raise ConfigError(path, None, "not valid TOML: nested too deeply") from e
    return parse_config(data, path)


def _read_config(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES. Opened without blocking (a
    FIFO would wait for a writer forever) and checked with fstat on what was opened, so
    /dev/zero, a FIFO or a 2 GB file is refused before a byte is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(path, None, "is a folder, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(path, None, "not a regular file (a device, FIFO or socket)")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(path, None, f"{st.st_size} bytes; a config file is at most "
                                          f"{MAX_CONFIG_BYTES}")
        chunks: list[bytes] = []
        remaining = MAX_CONFIG_BYTES + 1  # one byte more tells a file that grew past it
        while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 16))):
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(path, None, f"over {MAX_CONFIG_BYTES} bytes")
        return data
    finally:
        os.close(fd)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate already-parsed TOML. Relative paths resolve against `path`'s folder."""
    tables = _Tables(data, path)
    base = path.resolve().parent

    server = ServerConfig(
        host=tables.get("server", "host", str, ServerConfig.host, _non_empty),
        port=tables.get("server", "port", int, ServerConfig.port, _in_range(0, 65535)),
        cache_max_age=tables.get("server", "cache_max_age", int, ServerConfig.cache_max_age,
                                 _in_range(0, 31_536_000)),
        access_log=tables.get("server", "access_log", bool, ServerConfig.access_log),
        workers=_workers(tables),
        max_connections=tables.get("server", "max_connections", int,
                                   ServerConfig.max_connections, _in_range(0, 1_000_000)),
        header_timeout_s=tables.get("server", "header_timeout_s", int,
                                    ServerConfig.header_timeout_s, _in_range(1, 3600)),
        send_timeout_s=tables.get("server", "send_timeout_s", int,
                                  ServerConfig.send_timeout_s, _in_range(1, 3600)),
        metrics=tables.get("server", "metrics", bool, ServerConfig.metrics),
    )
    watch = WatchConfig(
        step_ms=tables.get("watch", "step_ms", int, WatchConfig.step_ms, _in_range(1, 10_000)),
        debounce_ms=tables.get("watch", "debounce_ms", int, WatchConfig.debounce_ms,
                               _in_range(1, 60_000)),
        rescan_s=tables.get("watch", "rescan_s", int, WatchConfig.rescan_s,
                            _in_range(1, 86_400)),
        max_seed_bytes=tables.get("watch", "max_seed_bytes", int, WatchConfig.max_seed_bytes,
                                  _in_range(64, 64 * 1024 * 1024)),
    )
    paths = PathsConfig(
        seeds=base / tables.get("paths", "seeds", str, "seeds", _non_empty),
        state=base / tables.get("paths", "state", str, "state/feedsvc.sqlite3", _non_empty),
        output=base / tables.get("paths", "output", str, "public", _non_empty),
        media=base / tables.get("paths", "media", str, "media", _non_empty),
    )
    for key in ("seeds", "state", "output", "media"):
        # A folder whose name is not UTF-8 (os.fsdecode gives its bytes as lone surrogates)
        # cannot be watched (watchfiles takes UTF-8 paths), put in a SQLite URI, or written in
        # JSON: refused here, with the name escaped, rather than failing later for ever.
        where = getattr(paths, key)
        if not is_utf8(str(where)):
            raise ConfigError(path, f"paths.{key}", f"{escape(str(where))} is not valid UTF-8; "
                              "rename the folder (or give another path)")

    title = tables.get("feed", "title", str, FeedConfig.title, _non_empty)
    default_base = f"http://{_url_host(server.host)}:{server.port}/"
    base_url = tables.get("feed", "base_url", str, default_base, _http_url) or default_base
    if not base_url.endswith("/"):
        base_url += "/"  # entry and feed URLs are made by appending to it
    max_entries = tables.get("feed", "max_entries", int, FeedConfig.max_entries,
                             _in_range(1, 10_000))
    feed = FeedConfig(
        title=title,
        subtitle=tables.get("feed", "subtitle", str, "") or title,
        base_url=base_url,
        id=tables.get("feed", "id", str, None, _absolute_iri),
        language=tables.get("feed", "language", str, FeedConfig.language, _language),
        author_name=tables.get("feed", "author_name", str, "") or title,
        author_email=tables.get("feed", "author_email", str, None, _email),
        max_entries=max_entries,
        entry_url=tables.get("feed", "entry_url", str, FeedConfig.entry_url, _entry_template),
        timezone=tables.get("feed", "timezone", str, FeedConfig.timezone, _timezone),
        dayfirst=tables.get("feed", "dayfirst", bool, None),
        tombstone_days=tables.get("feed", "tombstone_days", int, FeedConfig.tombstone_days,
                                  _in_range(0, 36_500)),
        archive_page_entries=tables.get("feed", "archive_page_entries", int,
                                        FeedConfig.archive_page_entries, _in_range(1, 10_000)),
        tombstones_max=tables.get("feed", "tombstones_max", int,
                                  TOMBSTONES_PER_ENTRY * max_entries, _in_range(1, 1_000_000)),
    )

    websub = _websub(tables)
    log = LogConfig(
        level=tables.get("log", "level", str, LogConfig.level, _one_of(LOG_LEVELS)),
        format=tables.get("log", "format", str, LogConfig.format, _one_of(LOG_FORMATS)),
    )
    build = BuildConfig(on_change=tables.get("build", "on_change", bool, BuildConfig.on_change))
    tables.reject_unknown()
    return Config(feed=feed, paths=paths, server=server, watch=watch, config_file=path,
                  websub=websub, log=log, build=build)


#: The most processes `[server] workers` asks for, "auto" included.
MAX_WORKERS = 64


def _workers(tables: _Tables) -> int:
    """`[server] workers`: 1 to MAX_WORKERS, or "auto", one process per core this process may
    run on (see usable_cores)."""
    value = tables.get("server", "workers", object, ServerConfig.workers)
    if value == "auto":
        return min(usable_cores(), MAX_WORKERS)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(tables.path, "server.workers",
                          f'expected an integer or "auto", got {_type_name(type(value))}')
    if problem := _in_range(1, MAX_WORKERS)(value):
        raise ConfigError(tables.path, "server.workers", problem)
    return value


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what taskset, a container's
    cpuset or a unit's CPUAffinity= leave it; os.process_cpu_count() from Python 3.13), else
    the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _websub(tables: _Tables) -> WebSubConfig:
    hubs = tables.get("websub", "hubs", list, [], _http_urls)
    websub = WebSubConfig(
        hubs=tuple(hubs),
        builtin_hub=tables.get("websub", "builtin_hub", bool, WebSubConfig.builtin_hub),
        allow_private_callbacks=tables.get("websub", "allow_private_callbacks", bool,
                                           WebSubConfig.allow_private_callbacks),
        lease_default_s=tables.get("websub", "lease_default_s", int,
                                   WebSubConfig.lease_default_s, _in_range(60, 31_536_000)),
        # From 1 s: a short lease is legal (§5.3.1 only forbids perpetual ones), and tests
        # see leases expire.
        lease_min_s=tables.get("websub", "lease_min_s", int, WebSubConfig.lease_min_s,
                               _in_range(1, 31_536_000)),
        lease_max_s=tables.get("websub", "lease_max_s", int, WebSubConfig.lease_max_s,
                               _in_range(60, 31_536_000)),
        max_subscriptions_per_topic=tables.get(
            "websub", "max_subscriptions_per_topic", int,
            WebSubConfig.max_subscriptions_per_topic, _in_range(1, 1_000_000)),
        max_subscriptions_per_host=tables.get(
            "websub", "max_subscriptions_per_host", int,
            WebSubConfig.max_subscriptions_per_host, _in_range(1, 1_000_000)),
        subscribe_rate_per_min=tables.get("websub", "subscribe_rate_per_min", int,
                                          WebSubConfig.subscribe_rate_per_min,
                                          _in_range(1, 1_000_000)),
        request_timeout_s=tables.get("websub", "request_timeout_s", int,
                                     WebSubConfig.request_timeout_s, _in_range(1, 300)),
        give_up_after_s=tables.get("websub", "give_up_after_s", int,
                                   WebSubConfig.give_up_after_s, _in_range(1, 31_536_000)),
    )
    if not websub.lease_min_s <= websub.lease_default_s <= websub.lease_max_s:
        raise ConfigError(tables.path, "websub.lease_default_s",
                          "must be between websub.lease_min_s and websub.lease_max_s")
    return websub


class _Tables:
    """Typed look-ups into the TOML tables that remember which keys were read."""

    KNOWN: ClassVar[dict[str, set[str]]] = {
        "feed": {"title", "subtitle", "base_url", "id", "language", "author_name",
                 "author_email", "max_entries", "entry_url", "timezone", "dayfirst",
                 "tombstone_days", "archive_page_entries", "tombstones_max"},
        "paths": {"seeds", "state", "output", "media"},
        "server": {"host", "port", "cache_max_age", "access_log", "workers", "max_connections",
                   "header_timeout_s", "send_timeout_s", "metrics"},
        "watch": {"step_ms", "debounce_ms", "rescan_s", "max_seed_bytes"},
        "websub": {"hubs", "builtin_hub", "allow_private_callbacks", "lease_default_s",
                   "lease_min_s", "lease_max_s", "max_subscriptions_per_topic",
                   "max_subscriptions_per_host", "subscribe_rate_per_min",
                   "request_timeout_s", "give_up_after_s"},
        "log": {"level", "format"},
        "build": {"on_change"},
    }

    def __init__(self, data: Mapping[str, Any], path: Path) -> None:
        self.data = data
        self.path = path
        for table, value in data.items():
            if table in self.KNOWN and not isinstance(value, dict):
                raise ConfigError(path, table, "expected a table, like [" + table + "]")

    def get(self, table: str, key: str, kind: type, default: Any,
            check: Callable[[Any], str | None] | None = None) -> Any:
        section = self.data.get(table, {})
        if key not in section:
            return default
        value = section[key]
        # TOML booleans are ints to Python; a port of `true` is a mistake, not 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(self.path, f"{table}.{key}",
                              f"expected {_type_name(kind)}, got {_type_name(type(value))}")
        if check is not None and (problem := check(value)):
            raise ConfigError(self.path, f"{table}.{key}", problem)
        return value

    def reject_unknown(self) -> None:
        for table, value in self.data.items():
            if table not in self.KNOWN:
                raise ConfigError(self.path, table, "unknown table")
            for key in value:
                if key not in self.KNOWN[table]:
                    raise ConfigError(self.path, f"{table}.{key}", "unknown key")


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", float: "a number",
            list: "an array", dict: "a table"}.get(kind, kind.__name__)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _in_range(low: int, high: int) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"
    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else "must be " + " or ".join(
            f'"{choice}"' for choice in choices)
    return check


def _http_url(value: str) -> str | None:
    if value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an absolute http:// or https:// URL"
    if parts.query or parts.fragment:
        return "must not have a query or a fragment"
    return None


def _http_urls(value: list[Any]) -> str | None:
    for index, url in enumerate(value):
        if not isinstance(url, str) or not url:
            return f"item {index + 1}: expected an http:// or https:// URL"
        if problem := _http_url(url):
            return f"item {index + 1}: {problem}"
        # Written as is into XML attributes and the HTTP Link header (`<url>`): RFC 3986
        # characters only.
        if not url.isascii() or any(c.isspace() or not c.isprintable() or c in '<>"\\^`{|}'
                                    for c in url):
            return (f"item {index + 1}: must be a URI: no spaces, control or non-ASCII "
                    "characters, nor any of < > \" \\ ^ ` { | } (percent-encode them)")
    if len(set(value)) != len(value):
        return "lists a hub twice"
    return None


def _absolute_iri(value: str) -> str | None:
    if _SCHEME_RE.match(value):
        return None
    return "must be an absolute IRI such as urn:uuid:… or tag:…"


def _language(value: str) -> str | None:
    return None if _LANGUAGE_RE.match(value) else "must be a language tag such as fr or en-GB"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone such as Europe/Paris or UTC"
    return None


def _email(value: str) -> str | None:
    return None if _EMAIL_RE.match(value) else "must be an email address"


def _entry_template(value: str) -> str | None:
    try:
        fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
    except ValueError as e:
        return f"not a valid template: {e}"
    if unknown := fields - {"base_url", "slug"}:
        return f"unknown placeholder {{{sorted(unknown)[0]}}}; use {{base_url}} and {{slug}}"
    if "slug" not in fields:
        return "must contain {slug}"
    sample = value.format(base_url="http://example.org/", slug="x")
    if _http_url(sample):
        return "must give an absolute http:// or https:// URL"
    return None
