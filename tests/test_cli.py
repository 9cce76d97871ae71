"""End to end: the real CLI in a subprocess, a real socket, feedparser as the feed reader."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import brotli
import feedparser

from .conftest import (
    ROOT,
    SAMPLE_NAME,
    SAMPLE_SLUG,
    copy_sample,
    free_port,
    run_cli,
    seed,
    wait_until,
    write_seed,
)
from .feedcheck import check_atom, check_rss


def read_feed(url: str, **kwargs: str) -> feedparser.FeedParserDict:
    """What a feed reader does: fetch over HTTP (with its ETag when it has one), then parse."""
    parsed = feedparser.parse(url, **kwargs)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_serve_publishes_drops_and_answers_a_reader_with_304(site: Path, serve) -> None:
    copy_sample(site / "seeds")
    server = serve(site / "config.toml")
    atom_url = f"{server.url}/feed.atom"

    feed = read_feed(atom_url)
    assert feed.status == 200 and feed.feed.language == "fr"
    assert [e.link for e in feed.entries] == [f"{server.url}/entries/{SAMPLE_SLUG}"]
    again = feedparser.parse(atom_url, etag=feed.etag)
    assert again.status == 304 and again.entries == []

    write_seed(site / "seeds", "drop.txt", seed("dropped", "Déposé « à chaud »", "Texte’."))
    fresh = wait_until(lambda: _if_changed(atom_url, feed.etag))
    assert fresh.status == 200 and fresh.etag != feed.etag
    assert fresh.entries[0].title == "Déposé « à chaud »"
    for url, check in ((atom_url, check_atom), (f"{server.url}/feed.rss", check_rss)):
        status, _, body = server.get(url.removeprefix(server.url))
        assert status == 200 and check(body, url) == []

    write_seed(site / "seeds", "bad.txt", "bad\n\n\nno headline")
    wait_until(lambda: f"{site / 'seeds' / 'bad.txt'}:2: missing headline" in server.log())
    assert server.get("/healthz")[0] == 200
    assert "published dropped from" in server.log()
    assert server.stop() == 0  # SIGTERM: clean exit


def _if_changed(url: str, etag: str) -> feedparser.FeedParserDict | None:
    parsed = feedparser.parse(url, etag=etag)
    return parsed if parsed.status == 200 else None


def test_restart_and_build_give_the_same_bytes(site: Path, serve) -> None:
    seeds = site / "seeds"
    copy_sample(seeds)
    for n in range(3):
        write_seed(seeds, f"{n}.txt", seed(f"post-{n}", f"Titre {n}", "Corps « cité »."),
                   mtime=1_700_000_000 + n)
    first = serve(site / "config.toml")
    served = {path: first.get(path) for path in ("/feed.atom", "/feed.rss")}
    assert first.stop(signal.SIGINT) == 0

    second = serve(site / "config.toml")
    for path, (status, headers, body) in served.items():
        status2, headers2, body2 = second.get(path)
        assert (status2, body2) == (status, body)
        assert headers2["ETag"] == headers["ETag"]
        assert headers2["Last-Modified"] == headers["Last-Modified"]
    assert second.stop() == 0

    result = run_cli("build", "--config", str(site / "config.toml"), cwd=site)
    assert result.returncode == 0, result.stderr
    assert (site / "public" / "feed.atom").read_bytes() == served["/feed.atom"][2]
    assert (site / "public" / "feed.rss").read_bytes() == served["/feed.rss"][2]
    assert gzip.decompress((site / "public" / "feed.atom.gz").read_bytes()) == \
        served["/feed.atom"][2]
    assert brotli.decompress((site / "public" / "feed.rss.br").read_bytes()) == \
        served["/feed.rss"][2]
    assert oct((site / "public" / "feed.atom").stat().st_mode & 0o777) != "0o600"
    # No temporary file left; the one hidden file is the build's list of its files.
    assert [p.name for p in (site / "public").iterdir() if p.name.startswith(".")] == \
        [".feedsvc-files"]


def test_bundled_config_and_seeds_serve_the_french_sample(tmp_path: Path, serve) -> None:
    """The Quick start: the shipped config.toml and seeds/, as a new user runs them."""
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "seeds", tmp_path / "seeds")
    port = free_port()
    text = (tmp_path / "config.toml").read_text(encoding="utf-8")
    assert "port = 8080" in text and 'language = "fr"' in text
    (tmp_path / "config.toml").write_text(text.replace("8080", str(port)), encoding="utf-8")
    server = serve(tmp_path / "config.toml")
    feed = read_feed(f"{server.url}/feed.rss")
    [entry] = feed.entries
    raw = (ROOT / "seeds" / SAMPLE_NAME).read_text(encoding="utf-8").split("\n")
    assert entry.title == raw[1]
    for paragraph in filter(None, raw[3:]):
        assert paragraph in entry.content[0].value  # every character, « » ’ included
    assert server.stop() == 0


def test_console_script_and_module_agree(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("feedsvc")
    for command in ([str(script), "--version"], [sys.executable, "-m", "feedsvc", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.startswith("feedsvc ")
    result = run_cli("frobnicate", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_failures_are_one_clear_line(site: Path) -> None:
    # Port already taken.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = site / "config.toml"
        config.write_text(config.read_text().replace(
            f"port = {_port(config)}", f"port = {port}"))
        result = run_cli("serve", "--config", str(config), cwd=site, timeout=30)
    assert result.returncode == 1
    assert f"feedsvc: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr

    # State that cannot be created.
    shutil.rmtree(site / "state", ignore_errors=True)
    (site / "state").write_text("a file where the state folder should be")
    result = run_cli("build", "--config", str(config), cwd=site)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "feedsvc: " in result.stderr and "state" in result.stderr

    # No config anywhere.
    env = {k: v for k, v in os.environ.items() if k != "FEEDSVC_CONFIG"}
    result = run_cli("build", cwd=site / "seeds", env=env)
    assert result.returncode == 2 and "pass --config" in result.stderr


def _port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("port = "):
            return int(line.split("=")[1])
    raise AssertionError("no port")


def test_build_rejects_bad_seeds_but_writes_the_rest(site: Path) -> None:
    copy_sample(site / "seeds")
    write_seed(site / "seeds", "empty.txt", "")
    started = time.monotonic()
    result = run_cli("build", "--config", str(site / "config.toml"), cwd=site)
    assert result.returncode == 0
    assert f"{site / 'seeds' / 'empty.txt'}:1: empty seed" in result.stderr
    feed = feedparser.parse((site / "public" / "feed.atom").read_bytes())
    assert [e.link.rsplit("/", 1)[-1] for e in feed.entries] == [SAMPLE_SLUG]
    assert time.monotonic() - started < 30


def test_check_lists_rejected_seeds_and_exits_1(site: Path) -> None:
    seeds = site / "seeds"
    copy_sample(seeds)
    config = str(site / "config.toml")
    result = run_cli("check", "--config", config, cwd=site)
    assert (result.returncode, result.stdout) == (
        0, "1 seeds: 1 publishable now, 0 scheduled, 0 drafts, 0 rejected\n")

    write_seed(seeds, "a-broken.txt", b"slug\nHeadline\n\nok\n\xff")
    write_seed(seeds, "0-dup.txt", seed(SAMPLE_SLUG, "Same slug", "Body"))
    result = run_cli("check", "--config", config, cwd=site)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [  # in file name order
        # With no state yet, the first file by name keeps the slug.
        f"{seeds / SAMPLE_NAME}:1: duplicate slug '{SAMPLE_SLUG}': 0-dup.txt already "
        "publishes it",
        f"{seeds / 'a-broken.txt'}:5: not valid UTF-8: invalid start byte at byte offset 18 "
        "(0xff)",
        "3 seeds: 1 publishable now, 0 scheduled, 0 drafts, 2 rejected",
    ]
    assert not (site / "state").exists()  # check never writes the state

    # Once the state records the sample as the owner, check agrees with serve.
    (seeds / "0-dup.txt").unlink()
    assert run_cli("build", "--config", config, cwd=site).returncode == 0
    write_seed(seeds, "0-dup.txt", seed(SAMPLE_SLUG, "Same slug", "Body"))
    result = run_cli("check", "--config", config, cwd=site)
    assert f"{seeds / '0-dup.txt'}:1: duplicate slug '{SAMPLE_SLUG}': {SAMPLE_NAME} already " \
        "publishes it" in result.stdout.splitlines()


def test_access_log_is_off_by_default_and_can_be_switched_on(site: Path, serve) -> None:
    copy_sample(site / "seeds")
    quiet = serve(site / "config.toml")
    assert quiet.get("/feed.atom")[0] == 200
    assert quiet.stop() == 0
    assert "GET /feed.atom" not in quiet.log()

    config = site / "config.toml"
    config.write_text(config.read_text().replace("[server]\n", "[server]\naccess_log = true\n"))
    loud = serve(config)
    assert loud.get("/feed.atom")[0] == 200
    wait_until(lambda: '"GET /feed.atom HTTP/1.1" 200' in loud.log())
    assert loud.stop() == 0
