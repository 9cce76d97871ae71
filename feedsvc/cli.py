"""argv → serve | build | check | new | state repair | state backup. One clear line and an
exit code on any FeedsvcError."""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import feedsvc
from feedsvc.config import LOG_LEVELS, Config, LogConfig, find_config, load_config
from feedsvc.errors import ConfigError, FeedsvcError, StoreError, UsageError
from feedsvc.ingest.catalog import Catalog
from feedsvc.ingest.dates import DateError, parse_date
from feedsvc.ingest.source import FolderMissing
from feedsvc.logtext import escape, setup_logging
from feedsvc.publish.ids import builtin_hub_url, hub_urls, parse_options
from feedsvc.publish.ownership import resolve_owners
from feedsvc.publish.publisher import Publisher
from feedsvc.publish.registry import MAIN, formats
from feedsvc.publish.sitebuild import SiteBuilder, feed_names
from feedsvc.state.store import backup_state, check_state, peek_stamps, repair_state
from feedsvc.state.subscriptions import SQLiteSubscriptions

log = logging.getLogger("feedsvc")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _and(names: Iterable[str]) -> str:
    """'a, b and c'."""
    *first, last = names
    return f"{', '.join(first)} and {last}" if first else last


def main(argv: Sequence[str] | None = None) -> int:
    parser = _argument_parser()
    args = parser.parse_args(argv)
    setup_logging(_cli_level(args) or LogConfig.level)
    try:
        config = with_cli_level(load_config(find_config(args.config)), args)
        setup_logging(config.log.level, config.log.format)
        return int(args.command(config, args))
    except (ConfigError, UsageError) as e:
        print(f"feedsvc: {escape(str(e))}", file=sys.stderr)
        return EXIT_CONFIG
    except FeedsvcError as e:
        print(f"feedsvc: {escape(str(e))}", file=sys.stderr)
        return EXIT_FAILURE


def serve(config: Config, args: argparse.Namespace | None = None) -> int:
    """Serve and watch until SIGTERM or SIGINT; SIGHUP reloads the config file."""
    from feedsvc.serve.notify import catch_hangups

    catch_hangups()  # before anything slow: SIGHUP's default action would kill the process
    from aiohttp import web

    from feedsvc.serve.activation import describe, inherited_sockets
    from feedsvc.serve.app import announce_ready, make_app
    from feedsvc.serve.connections import Limits, run_app
    from feedsvc.serve.keys import SETTINGS
    from feedsvc.serve.memory import fix_mmap_threshold, limit_malloc_arenas

    limit_malloc_arenas()  # before any thread starts
    fix_mmap_threshold()
    quiet_bad_requests()
    host, port = config.server.host, config.server.port
    # Socket activation (systemd/feedsvc.socket): serve on the sockets passed, bind nothing.
    sockets = inherited_sockets()
    where = (_and(describe(s) for s in sockets) + " (inherited)" if sockets
             else f"http://{host}:{port}/")

    def listening(limits: Limits) -> None:
        workers = config.server.workers
        log.info("listening on %s (%d process%s, at most %d connections each)",
                 where, workers, "es" if workers > 1 else "", limits.max_connections)

    def serve_app(app: web.Application, reuse_port: bool = False) -> None:
        def on_listening(limits: Limits) -> None:
            listening(limits)
            announce_ready(app)  # systemd's READY=1 (sd_notify)

        run_app(app, lambda: app[SETTINGS].current.server, loop=new_event_loop(),
                reuse_port=reuse_port, on_listening=on_listening, sockets=sockets)

    try:
        if config.server.workers > 1:
            serve_with_workers(config, serve_app, sockets)
        else:
            serve_app(make_app(config))
    except OSError as e:
        raise FeedsvcError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    return EXIT_OK


def serve_with_workers(config: Config, serve_app: Callable[..., None],
                       sockets: Sequence[socket.socket] = ()) -> None:
    """`[server] workers` > 1: start the followers, then serve as the leader until stopped;
    then stop them (see `workers`). Inherited `sockets` are handed to each follower (the
    descriptors are passed to the spawned process): all accept from the same queue."""
    from feedsvc.serve.app import make_app

    context = multiprocessing.get_context("spawn")  # no fork of a running event loop
    processes, pipes = [], []
    for number in range(1, config.server.workers):
        receiving, sending = context.Pipe(duplex=False)
        process = context.Process(target=_follower_main,
                                  args=(config, receiving, number, list(sockets)),
                                  name=f"feedsvc-worker-{number}", daemon=True)
        process.start()
        receiving.close()
        processes.append(process)
        pipes.append(sending)
    try:
        serve_app(make_app(config, followers=pipes), reuse_port=True)
    finally:
        for pipe in pipes:
            pipe.close()  # followers see EOF and stop
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _follower_main(config: Config, leader: Connection, number: int,
                   sockets: Sequence[socket.socket] = ()) -> None:
    """A follower process: serves the snapshots the leader sends it."""
    from feedsvc.serve.app import make_follower_app
    from feedsvc.serve.connections import run_app
    from feedsvc.serve.keys import SETTINGS
    from feedsvc.serve.notify import ignore_hangups

    ignore_hangups()  # the leader reloads; the followers get its config with its snapshots
    setup_logging(config.log.level, config.log.format)
    quiet_bad_requests()
    app = make_follower_app(config, leader)
    run_app(app, lambda: app[SETTINGS].current.server, loop=new_event_loop(), reuse_port=True,
            sockets=sockets)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency on CPython outside Windows), else
    asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def build(config: Config, args: argparse.Namespace | None = None) -> int:
    """Render once and write the whole site into the output folder, as `serve` serves it."""
    publisher = Publisher.open(config)
    try:
        snapshot = publisher.scan()
        if not publisher.store.writable:
            # Documents whose dates cannot be kept would change on the next build.
            raise FeedsvcError(f"{publisher.store.problem}; nothing written")
    finally:
        publisher.close()
    if not snapshot.seeds_readable:
        raise FeedsvcError(f"seeds folder {config.paths.seeds} is missing or unreadable")
    output = config.paths.output
    builder = SiteBuilder(config, output)
    builder.start(publisher.info)
    try:
        counts = builder.write(snapshot)
    finally:
        builder.close()
    feeds, tags = feed_names(snapshot)
    linked, copied, unchanged = builder.media
    if linked or copied:
        log.info("media: %d files linked, %d copied, %d unchanged into %s/media",
                 linked, copied, unchanged, output)
    log.info("wrote the site to %s: %d files written, %d redated, %d unchanged, %d removed",
             output, counts.written, counts.touched, counts.unchanged, counts.removed)
    log.info("wrote %s to %s (%d entries, %d tag feeds, %d archive pages, %d seeds rejected)",
             _and(feeds), output, snapshot.published_count, tags, builder.archive_pages,
             len(snapshot.rejected))
    return EXIT_OK


def check(config: Config, args: argparse.Namespace | None = None) -> int:
    """Print every seed that would be rejected as path:line: message, every warning, the
    scheduled entries with their times and the WebSub hubs the feeds advertise; exit 1 if a
    seed is rejected (with --strict, also if a seed has a warning)."""
    catalog = Catalog(config.paths.seeds, config.watch.max_seed_bytes, parse_options(config))
    try:
        for _ in catalog.scan():
            pass  # check only needs the records
    except FolderMissing as e:
        raise FeedsvcError(f"seeds folder {config.paths.seeds} is missing or unreadable") from e
    results = catalog.results()
    # Duplicates are decided as `serve` would: the owner recorded in the state keeps its slug.
    # Drafts publish nothing and claim no slug.
    owners, rejected = resolve_owners({path: record for path, record in results.items()
                                       if not record.draft},
                                      peek_stamps(config.paths.state))
    # Names and texts come from whoever writes seeds: escaped, so that each line is one line
    # and nothing reaches the terminal as a control sequence.
    for error in rejected:
        print(escape(str(error)))
    warnings = catalog.all_warnings()
    for warning in warnings:
        print(escape(f"{warning.path}:{warning.line}: warning: {warning.message}"))
    now = datetime.now(UTC).timestamp()
    draft_count = sum(1 for record in results.values() if record.draft)
    scheduled = sorted((record.date, slug, owners[slug]) for slug in owners
                       if (record := results[owners[slug]]).date is not None
                       and record.date > now and not record.draft)
    for when, slug, path in scheduled:
        print(f"scheduled: {slug} at {datetime.fromtimestamp(when, UTC).isoformat()} "
              f"({escape(str(path))})")
    print(f"{len(results)} seeds: {len(owners) - len(scheduled)} publishable now, "
          f"{len(scheduled)} scheduled, {draft_count} draft{'s' if draft_count != 1 else ''}, "
          f"{len(rejected)} rejected"
          + (f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""))
    builtin = builtin_hub_url(config) if config.websub.builtin_hub else None
    for hub in hub_urls(config):  # WebSub §4: what every feed document advertises
        print(f"websub hub: {escape(hub)}" + (" (built-in)" if hub == builtin else
                                               " (pinged on every change)"))
    _print_subscriptions(config)
    strict = args is not None and getattr(args, "strict", False)
    return EXIT_FAILURE if rejected or (strict and warnings) else EXIT_OK


def _print_subscriptions(config: Config) -> None:
    """The built-in WebSub hub's active subscriptions, from the state (read-only)."""
    path = config.paths.state
    if not config.websub.builtin_hub and not path.exists():
        return
    if not path.exists():
        print("websub: 0 subscriptions")
        return
    try:
        storage = SQLiteSubscriptions.open_for_reading(path)
        try:
            subscriptions = list(storage.all_active(time.time_ns() // 1000))
        finally:
            storage.close()
    except StoreError as e:  # the seeds' check stands; this is only told
        print(f"websub: {e}")
        return
    if not subscriptions and not config.websub.builtin_hub:
        return
    for s in subscriptions:  # callbacks come from anyone: escaped as the seeds' names
        expires = datetime.fromtimestamp(s.expires_us / 1e6, UTC).isoformat(timespec="seconds")
        failing = "" if s.failing_since_us is None else ", failing since " + (
            datetime.fromtimestamp(s.failing_since_us / 1e6, UTC).isoformat(timespec="seconds"))
        print(f"websub: {escape(s.topic)} <- {escape(s.callback)} (until {expires}, "
              f"{'signed' if s.secret else 'unsigned'}{failing})")
    print(f"websub: {len(subscriptions)} subscription{'s' if len(subscriptions) != 1 else ''}")


def new(config: Config, args: argparse.Namespace) -> int:
    """Write a new draft seed with its front matter into the seeds folder and print its path;
    with --edit, open it in $EDITOR."""
    from feedsvc.ingest.authoring import new_seed

    options = parse_options(config)
    if args.date is not None:
        try:  # refused now, not when the service reads it
            parse_date(args.date, tz=options.timezone, dayfirst=options.dayfirst)
        except DateError as e:
            raise UsageError(f"--date {args.date!r}: {e}") from e
    tags = [tag.strip() for tag in (args.tags or "").split(",") if tag.strip()]
    path = new_seed(config.paths.seeds, args.title, args.date, tags, options)
    print(escape(str(path)))
    if args.edit:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if not editor:
            raise FeedsvcError(f"--edit: set $EDITOR to open {path}")
        return subprocess.call([*shlex.split(editor), str(path)])
    return EXIT_OK


def state_repair(config: Config, args: argparse.Namespace | None = None) -> int:
    """With feedsvc stopped: copy what can still be read of a damaged state into a fresh
    one, keep the damaged file aside, and print what was saved and what was lost."""
    path = config.paths.state
    report, kept = repair_state(path)
    if report is None:
        print(f"{path}: the state is sound; nothing to repair")
        return EXIT_OK
    print(f"{path}: repaired")
    for line in report.lines():
        print(f"  {line}")
    if kept:  # the file itself is the last one moved; its -wal and -shm go with it
        extra = " (with its -wal and -shm)" if len(kept) > 1 else ""
        print(f"the damaged file is kept as {kept[-1]}{extra}")
    if not report.complete:
        print("entries whose rows were lost are dated again from their files when feedsvc "
              "next sees them; the seeds folder still holds their text")
    return EXIT_OK


def state_backup(config: Config, args: argparse.Namespace) -> int:
    """Write a consistent copy of the state to DEST, also while `serve` runs (SQLite's
    online backup API); refused if DEST exists, unless --force."""
    dest = Path(args.path)
    slugs = backup_state(config.paths.state, dest, overwrite=args.force)
    print(f"{dest}: {slugs} slugs copied from {config.paths.state}")
    return EXIT_OK


def state_check(config: Config, args: argparse.Namespace) -> int:
    """Check a state file (by default the configured one; or a backup, before restoring it)
    without changing it: every page and index, the schema; print what it holds. Exit 1 if it
    is damaged or not a feedsvc state."""
    path = Path(args.path) if args.path else config.paths.state
    summary = check_state(path, time.time_ns() // 1000)
    if not summary.sound:
        print(f"{path}: not sound")
        for problem in summary.problems:
            print(f"  {escape(problem)}")
        return EXIT_FAILURE
    print(f"{path}: sound (schema {summary.schema}); feed id {summary.feed_id or '(none yet)'}; "
          f"{summary.slugs} slugs, {summary.published} published; "
          f"{summary.subscriptions} WebSub subscriptions")
    return EXIT_OK


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedsvc", description="Publish the text files in a seeds folder as Atom and RSS.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show program's version number and exit")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for name, fn, help_text in (
        ("serve", serve, "serve the feeds over HTTP and republish on every change"),
        ("build", build, f"write {_and(fmt.path(MAIN)[1:] for fmt in formats())} into the "
                         "output folder, then exit"),
        ("check", check, "list the seeds that cannot be published; exit 1 if any"),
        ("new", new, "write a new draft seed for a title; print its path"),
        ("backup", state_backup, "write a consistent copy of the state, also while it runs"),
    ):
        command = _command(commands, name, fn, help_text)
        if fn is new:
            command.add_argument("title", help="the headline; the slug is made from it")
            command.add_argument("--date", help="publication date, e.g. '2026-11-24 08:30' or "
                                                "'mardi 24 novembre 2026 à 8h30' (in the "
                                                "future: scheduled)")
            command.add_argument("--tags", help="comma-separated tags")
            command.add_argument("--edit", action="store_true", help="open it in $EDITOR")
        if fn is state_backup:
            _backup_arguments(command)
        if fn is check:
            command.add_argument("--strict", action="store_true",
                                 help="exit 1 on any warning too (an unknown front-matter key)")
    state = commands.add_parser("state", help="look after the state file",
                                description="Look after the state file (SQLite).")
    actions = state.add_subparsers(title="actions", required=True, metavar="ACTION")
    for name, fn, help_text in (
        ("repair", state_repair, "rebuild a damaged state from what can be read"),
        ("backup", state_backup, "the same as `feedsvc backup`"),
        ("check", state_check, "check a state file or a backup of it, without changing it"),
    ):
        action = _command(actions, name, fn, help_text)
        if fn is state_backup:
            _backup_arguments(action)
        if fn is state_check:
            action.add_argument("path", nargs="?", metavar="PATH",
                                help="the file to check (default: the configured state)")
    return parser


def _backup_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("path", metavar="DEST", help="the copy to write")
    command.add_argument("--force", action="store_true", help="replace DEST if it exists")


def _command(commands: argparse._SubParsersAction, name: str,  # type: ignore[type-arg]
             fn: Callable[..., int], help_text: str) -> argparse.ArgumentParser:
    """A command (or `state` action) with the options every command takes."""
    command = commands.add_parser(name, help=help_text, description=fn.__doc__)
    command.add_argument("--config", metavar="PATH",
                         help="config file (default: ./config.toml, else $FEEDSVC_CONFIG)")
    command.add_argument("-v", "--verbose", action="store_true",
                         help="log debug details (--log-level debug)")
    command.add_argument("--log-level", choices=LOG_LEVELS,
                         help="the least severe records logged (default: [log] level, info)")
    command.set_defaults(command=fn)
    return command


class _Version(argparse.Action):
    """--version, with the version looked up only when asked for (see feedsvc.__getattr__)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"feedsvc {feedsvc.__version__}")  # to stdout, as argparse's own action does
        parser.exit()


def _cli_level(args: argparse.Namespace) -> str | None:
    """--log-level, else -v's debug, else None (the config's [log] level)."""
    level = getattr(args, "log_level", None)
    return level or ("debug" if getattr(args, "verbose", False) else None)


def with_cli_level(config: Config, args: argparse.Namespace) -> Config:
    """The config with --log-level (or -v) in place of its [log] level: worker processes get
    it with the config."""
    level = _cli_level(args)
    return config if level is None else replace(
        config, log=replace(config.log, level=level, command_line=True))


def quiet_bad_requests() -> None:
    """For the commands that serve only: the others never load aiohttp (a third of their
    start-up time)."""
    from feedsvc.serve.app import QuietBadRequests

    logging.getLogger("aiohttp.server").addFilter(QuietBadRequests())
