"""Config: tomllib → frozen Config; ConfigError names the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feedsvc.config import find_config, load_config
from feedsvc.errors import ConfigError

from .conftest import ROOT, run_cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_empty_file_gives_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.feed.title == "feedsvc"
    assert config.feed.subtitle == "feedsvc"  # RSS needs a description
    assert config.feed.author_name == "feedsvc"  # Atom needs an author
    assert config.feed.base_url == "http://127.0.0.1:8080/"
    assert config.feed.id is None
    assert config.feed.language == "en"
    assert config.feed.max_entries == 50
    assert config.feed.tombstone_days == 30
    assert config.feed.tombstones_max == 500  # 10 times max_entries
    assert config.feed.archive_page_entries == 50
    assert config.server.cache_max_age == 60
    assert config.server.access_log is False
    assert config.watch.step_ms == 10
    assert config.feed.timezone == "UTC"
    assert config.feed.dayfirst is None
    assert config.watch.debounce_ms == 50
    assert config.watch.rescan_s == 300
    assert config.watch.max_seed_bytes == 1024 * 1024
    assert config.paths.seeds == tmp_path.resolve() / "seeds"
    assert config.paths.state == tmp_path.resolve() / "state" / "feedsvc.sqlite3"
    assert config.paths.media == tmp_path.resolve() / "media"
    assert config.entry_link("a-b") == "http://127.0.0.1:8080/entries/a-b"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "conf").mkdir()
    path = write(tmp_path / "conf", '[paths]\nseeds = "../content"\nstate = "/var/x.db"\n'
                                    'media = "../files"\n')
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.paths.seeds.resolve() == (tmp_path / "content").resolve()
    assert config.paths.media is not None
    assert config.paths.media.resolve() == (tmp_path / "files").resolve()
    assert config.paths.state == Path("/var/x.db")


def test_bundled_config_is_for_the_french_sample() -> None:
    config = load_config(ROOT / "config.toml")
    assert config.feed.language == "fr"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.paths.seeds == ROOT / "seeds"


def test_base_url_gets_a_trailing_slash_and_templates_use_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[feed]\nbase_url = "https://ex.org/blog"\n'
                                         'entry_url = "https://ex.org/posts/{slug}.html"\n'))
    assert config.feed.base_url == "https://ex.org/blog/"
    assert config.entry_link("x") == "https://ex.org/posts/x.html"


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("[feed]\ntitel = 'x'\n", "feed.titel", "unknown key"),
    ("[fed]\ntitle = 'x'\n", "fed", "unknown table"),
    ("feed = 3\n", "feed", "expected a table"),
    ("[feed]\nmax_entries = '50'\n", "feed.max_entries", "expected an integer, got a string"),
    ("[feed]\nmax_entries = 0\n", "feed.max_entries", "between 1 and"),
    ("[feed]\ntombstone_days = -1\n", "feed.tombstone_days", "between 0 and"),
    ("[feed]\ntombstone_days = 1.5\n", "feed.tombstone_days", "expected an integer"),
    ("[feed]\ntombstones_max = 0\n", "feed.tombstones_max", "between 1 and"),
    ("[feed]\ntombstones_max = 1000001\n", "feed.tombstones_max", "between 1 and"),
    ("[feed]\ntombstones_max = \"9\"\n", "feed.tombstones_max", "expected an integer"),
    ("[feed]\narchive_page_entries = 0\n", "feed.archive_page_entries", "between 1 and"),
    ("[feed]\narchive_page_entries = 10001\n", "feed.archive_page_entries", "between 1 and"),
    ("[server]\nport = true\n", "server.port", "expected an integer, got a boolean"),
    ("[server]\nport = 70000\n", "server.port", "between 0 and 65535"),
    ("[server]\ncache_max_age = -1\n", "server.cache_max_age", "between"),
    ("[server]\naccess_log = 1\n", "server.access_log", "expected a boolean"),
    ("[feed]\ntitle = 3\n", "feed.title", "expected a string"),
    ("[feed]\ntitle = ''\n", "feed.title", "must not be empty"),
    ("[feed]\nbase_url = 'example.org'\n", "feed.base_url", "absolute http"),
    ("[feed]\nlanguage = 'French!'\n", "feed.language", "language tag"),
    ("[feed]\nauthor_email = 'nobody'\n", "feed.author_email", "email"),
    ("[feed]\nid = 'not an iri'\n", "feed.id", "absolute IRI"),
    ("[feed]\nentry_url = '{base_url}e/{id}'\n", "feed.entry_url", "unknown placeholder {id}"),
    ("[feed]\nentry_url = '{base_url}e/'\n", "feed.entry_url", "must contain {slug}"),
    ("[feed]\nentry_url = 'e/{slug}'\n", "feed.entry_url", "absolute"),
    ("[watch]\ndebounce_ms = 0\n", "watch.debounce_ms", "between 1 and"),
    ("[watch]\nstep_ms = 10001\n", "watch.step_ms", "between 1 and"),
    ("[feed]\ntimezone = 'Europe/Lutece'\n", "feed.timezone", "IANA time zone"),
    ("[feed]\ntimezone = '../../etc/passwd'\n", "feed.timezone", "IANA time zone"),
    ("[feed]\ndayfirst = 'yes'\n", "feed.dayfirst", "expected a boolean"),
    ("[watch]\nrescan_s = 0\n", "watch.rescan_s", "between 1 and"),
    ("[watch]\nmax_seed_bytes = 1.5\n", "watch.max_seed_bytes", "expected an integer"),
    ("[paths]\nseeds = ''\n", "paths.seeds", "must not be empty"),
    ("[paths]\nmedia = ''\n", "paths.media", "must not be empty"),
    ("[paths]\nmedia = 3\n", "paths.media", "expected a string"),
    ("[server]\nworkers = 0\n", "server.workers", "between 1 and 64"),
    ("[server]\nworkers = 65\n", "server.workers", "between 1 and 64"),
    ("[server]\nworkers = '4'\n", "server.workers", 'expected an integer or "auto", got a string'),
    ("[server]\nworkers = 'Auto'\n", "server.workers", 'expected an integer or "auto"'),
    ("[server]\nworkers = true\n", "server.workers", "got a boolean"),
    ("[server]\nworkers = 2.0\n", "server.workers", "got a number"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert fragment in caught.value.message
    assert str(caught.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(("value", "cores", "workers"), [
    ("1", None, 1),
    ("64", None, 64),
    ('"auto"', {0}, 1),  # one process per core this process may run on: its affinity
    ('"auto"', None, len(os.sched_getaffinity(0))),
])
def test_workers_count_or_one_per_core(tmp_path: Path, value: str, cores: set[int] | None,
                                       workers: int) -> None:
    path = write(tmp_path, f"[server]\nworkers = {value}\n")
    # In a fresh interpreter, pinned to `cores` as taskset or a unit's CPUAffinity= would.
    script = (f"import os; os.sched_setaffinity(0, {cores!r}) if {cores!r} else None; "
              "from feedsvc.config import load_config; "
              f"print(load_config({str(path)!r}).server.workers)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == workers


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[feed\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_find_config_order(tmp_path: Path) -> None:
    env = {"FEEDSVC_CONFIG": "/etc/feedsvc/config.toml"}
    assert find_config("x.toml", tmp_path, env) == Path("x.toml")
    assert find_config(None, tmp_path, env) == Path("/etc/feedsvc/config.toml")
    write(tmp_path, "")
    assert find_config(None, tmp_path, env) == tmp_path / "config.toml"
    with pytest.raises(ConfigError, match="FEEDSVC_CONFIG"):
        find_config(None, tmp_path / "empty", {})


def test_cli_reports_a_bad_key_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 'eighty'\n")
    result = run_cli("build", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"feedsvc: {path}: server.port: expected an integer, got a string"]


def test_cli_finds_config_through_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[feed]\nbogus = 1\n")
    env = {**os.environ, "FEEDSVC_CONFIG": str(path)}
    (tmp_path / "elsewhere").mkdir()
    result = run_cli("build", cwd=tmp_path / "elsewhere", env=env)
    assert result.returncode == 2
    assert "feed.bogus: unknown key" in result.stderr
