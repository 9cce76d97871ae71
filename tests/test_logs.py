"""Log lines: journald priorities when stderr is the journal ($JOURNAL_STREAM matching stderr's
device and inode, as systemd sets it), --log-level, and `[log] format = "json"`. Real
subprocesses whose stderr is a real file."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from feedsvc.config import load_config
from feedsvc.logtext import syslog_priority
from tests.conftest import copy_sample, wait_until, write_seed

#: `2026-11-29 10:00:00,123 INFO …`: the text format's own timestamp.
STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
PRIORITY = re.compile(r"^<([0-7])>")


def run_logged(site: Path, *args: str, journal: str | None = "match",
               extra_env: dict[str, str] | None = None) -> list[str]:
    """`feedsvc *args` with stderr a file; JOURNAL_STREAM names that file ("match"), another
    one ("other"), or is unset (None). The lines of stderr."""
    log = site / "stderr.log"
    log.write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env.update(extra_env or {})
    with log.open("ab") as stderr:
        if journal == "match":
            st = os.fstat(stderr.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal == "other":
            st = os.stat(site / "config.toml")
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-m", "feedsvc", *args, "--config",
                        str(site / "config.toml")], cwd=site, env=env, stdout=subprocess.DEVNULL,
                       stderr=stderr, timeout=60, check=False)
    return log.read_text("utf-8").splitlines()


def with_log(site: Path, **keys: str) -> None:
    config = site / "config.toml"
    config.write_text(config.read_text("utf-8") + "\n[log]\n" + "".join(
        f'{key} = "{value}"\n' for key, value in keys.items()), "utf-8")


def site_with_a_rejected_seed(site: Path) -> None:
    copy_sample(site / "seeds")
    write_seed(site / "seeds", "bad.txt", "only a headline\n")  # a warning: rejected


@pytest.mark.parametrize(("levelno", "priority"), [
    (50, 2), (40, 3), (30, 4), (20, 6), (10, 7), (5, 7), (45, 3), (25, 6)])
def test_syslog_priorities_of_levels(levelno: int, priority: int) -> None:
    assert syslog_priority(levelno) == priority


def test_stderr_that_is_the_journal_gets_priorities_and_no_timestamps(site: Path) -> None:
    site_with_a_rejected_seed(site)
    lines = run_logged(site, "build")
    assert lines
    assert all(PRIORITY.match(line) for line in lines), lines
    assert not any(STAMPED.match(line[3:]) for line in lines), lines
    assert any(line.startswith("<4>") and "bad.txt" in line for line in lines), lines
    assert any(line.startswith("<6>wrote feed.atom") for line in lines), lines


@pytest.mark.parametrize("journal", ["other", None])
def test_journal_stream_of_another_file_or_none_keeps_the_timestamped_lines(
        site: Path, journal: str | None) -> None:
    """$JOURNAL_STREAM is inherited: a child whose stderr was redirected elsewhere must not
    take it for its own (systemd.exec(5))."""
    site_with_a_rejected_seed(site)
    lines = run_logged(site, "build", journal=journal)
    assert lines and all(STAMPED.match(line) for line in lines), lines
    assert any(" WARNING " in line and "bad.txt" in line for line in lines)


def test_log_level_warning_keeps_warnings_only_and_debug_shows_more(site: Path) -> None:
    site_with_a_rejected_seed(site)
    warned = run_logged(site, "build", "--log-level", "warning")
    assert warned and all(line.startswith("<4>") for line in warned), warned
    error_only = run_logged(site, "build", "--log-level", "error")
    assert error_only == []
    with_log(site, level="warning")  # the config's level, overridden by the flag
    assert run_logged(site, "build") == warned
    info = run_logged(site, "build", "--log-level", "info")
    assert any(line.startswith("<6>") for line in info)
    assert run_logged(site, "build", "-v") != warned


def test_serve_in_the_journal_with_debug_level(site: Path) -> None:
    """`serve` itself, and a debug line (<7>), under a matching JOURNAL_STREAM."""
    copy_sample(site / "seeds")
    log = site / "serve.log"
    with log.open("ab") as stderr:
        st = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        process = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "serve", "--log-level", "debug", "--config",
             str(site / "config.toml")], cwd=site, env=env, stdout=subprocess.DEVNULL,
            stderr=stderr)
    try:
        wait_until(lambda: "listening on" in log.read_text("utf-8"), timeout=30)
        # A request aiohttp cannot parse: one debug line (app.QuietBadRequests).
        port = load_config(site / "config.toml").server.port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            sock.recv(1024)
        wait_until(lambda: "<7>bad request refused" in log.read_text("utf-8"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    lines = log.read_text("utf-8").splitlines()
    assert any(line.startswith("<6>listening on http://") for line in lines), lines
    assert any(line.startswith("<7>") for line in lines), lines
    assert all(PRIORITY.match(line) for line in lines), lines


def test_json_lines(site: Path) -> None:
    site_with_a_rejected_seed(site)
    with_log(site, format="json")
    lines = run_logged(site, "build", journal=None)
    records = [json.loads(line) for line in lines]
    assert records
    for record in records:
        assert set(record) >= {"time", "level", "logger", "message"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert any(r["level"] == "warning" and "bad.txt" in r["message"] for r in records)
    assert any(r["level"] == "info" and r["logger"] == "feedsvc" for r in records)
    # In the journal: the priority first, no time of its own.
    journal = run_logged(site, "build")
    assert journal and all(PRIORITY.match(line) for line in journal)
    parsed = [json.loads(line[3:]) for line in journal]
    assert all("time" not in record for record in parsed)
    assert any(r["message"].startswith("wrote feed.atom") and r["level"] == "info"
               for r in parsed)


def test_json_lines_carry_extra_fields_and_escape_names(site: Path) -> None:
    """A record's `extra=` fields are written as fields; a file name with a newline and an
    undecodable byte stays one line and says what it holds."""
    script = (
        "import logging, sys\n"
        "from feedsvc.logtext import setup_logging\n"
        "setup_logging('info', 'json')\n"
        "logging.getLogger('feedsvc').warning('cannot read %s', 'a\\nb\\udcff.txt', "
        "extra={'path': 'x\\u202ey', 'count': 3})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, env={k: v for k, v in os.environ.items()
                                             if k != "JOURNAL_STREAM"})
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["message"] == "cannot read a\\nb\\xff.txt"
    assert record["path"] == "x\\u202ey" and record["count"] == 3


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("format", "xml", 'log.format: must be "text" or "json"'),
    ("level", "verbose", "log.level: must be"),
])
def test_a_bad_log_setting_names_its_key(site: Path, key: str, value: str,
                                         problem: str) -> None:
    with_log(site, **{key: value})
    result = subprocess.run([sys.executable, "-m", "feedsvc", "check", "--config",
                             str(site / "config.toml")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert problem in result.stderr


def test_json_access_log_lines_carry_the_request_fields(site: Path, serve) -> None:
    config = site / "config.toml"
    config.write_text(config.read_text("utf-8").replace(
        "[server]\n", "[server]\naccess_log = true\n"), "utf-8")
    with_log(site, format="json")
    copy_sample(site / "seeds")
    server = serve(config)
    assert server.get("/feed.atom")[0] == 200

    def access() -> list[dict]:
        records = [json.loads(line) for line in server.log().splitlines() if line]
        return [r for r in records if r["logger"] == "aiohttp.access"
                and r.get("first_request_line") == "GET /feed.atom HTTP/1.1"]

    [line] = wait_until(access)
    assert line["response_status"] == 200 and line["level"] == "info"
    assert line["remote_address"] == "127.0.0.1"
