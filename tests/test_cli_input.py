"""What the command line is given (issue 9, item 13): `feedsvc new` never writes a seed the
service would reject, and a config that is not a small regular file is refused at once. The
real CLI in a subprocess, with a timeout: a hang fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import free_port, run_cli, write_config


@pytest.mark.parametrize(("title", "tags", "message"), [
    ("x" * 10_000, None, "title is 10000 characters long; at most 1000"),
    ("Première ligne\nseconde ligne", None, "title must be on one line"),
    ("Titre \x1b[31men rouge", None, "control or non-text character U+001B"),
    ("Titre\r", None, "control or non-text character U+000D"),
    ("Titre", ",".join(f"tag {n}" for n in range(60)), "60 tags; at most 50"),
    ("Titre", "y" * 200, "tag is 200 characters long; at most 100"),
    ("Titre \ufffd", None, "would be changed: removed 1 control or non-text character"),
], ids=["10 KB title", "two-line title", "ESC", "CR", "60 tags", "200-character tag",
        "U+FFFD"])
def test_new_refuses_what_the_service_would_reject(tmp_path: Path, title: str,
                                                    tags: str | None, message: str) -> None:
    write_config(tmp_path, port=free_port())
    args = ["new", title] + (["--tags", tags] if tags is not None else [])
    result = run_cli(*args, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("feedsvc: nothing written: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "\x1b" not in result.stderr
    assert result.stdout == ""
    assert list((tmp_path / "seeds").iterdir()) == []  # not even a temporary file
    # What it accepts, the service publishes as a draft without a word.
    ok = run_cli("new", "Titre « correct »", "--tags", "a,b", cwd=tmp_path, timeout=30)
    assert ok.returncode == 0, ok.stderr
    check = run_cli("check", cwd=tmp_path, timeout=30)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    assert "1 seeds: 0 publishable now, 0 scheduled, 1 draft, 0 rejected" in check.stdout


def _refused(tmp_path: Path, config: str | Path, fragment: str) -> None:
    result = run_cli("check", "--config", str(config), cwd=tmp_path, timeout=20)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("feedsvc: ") and len(result.stderr.splitlines()) == 1
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_a_config_that_is_a_device_is_refused_unread(tmp_path: Path) -> None:
    _refused(tmp_path, "/dev/zero", "/dev/zero: not a regular file")  # before: read 2.6 GB


def test_a_config_that_is_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)  # no writer ever comes: an open that blocks would hang here
    _refused(tmp_path, fifo, "not a regular file")


def test_a_huge_config_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB that cost no disk
    _refused(tmp_path, huge, "2147483648 bytes; a config file is at most 1048576")


def test_a_config_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    _refused(tmp_path, deep, "nested too deeply")


def test_a_folder_as_config_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path, tmp_path, "is a folder")
