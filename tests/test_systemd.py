"""The shipped systemd unit runs our real CLI, unprivileged, with only the state writable."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from feedsvc.config import load_config

from .conftest import ROOT

UNIT = ROOT / "systemd" / "feedsvc.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_unit_runs_serve_unprivileged_with_restart_on_failure() -> None:
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[1:] == ["serve", "--config", "/etc/feedsvc/config.toml"]
    assert command[0].endswith("/bin/feedsvc")
    assert service["DynamicUser"] == "yes" or service.get("User") not in (None, "root")
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"  # everything read-only ...
    assert service["StateDirectory"] == "feedsvc"  # ... but /var/lib/feedsvc
    assert "2" in service["RestartPreventExitStatus"].split()  # a bad config is not retried
    assert int(service["LimitNOFILE"]) >= 65536  # connections never starve seeds of fds
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_example_config_keeps_writes_in_the_state_directory() -> None:
    config = load_config(ROOT / "systemd" / "config.toml.example")
    assert config.paths.state.is_relative_to(Path("/var/lib/feedsvc"))
    assert config.paths.output.is_relative_to(Path("/var/lib/feedsvc"))
    assert config.paths.seeds.is_absolute()
    assert config.paths.media is not None and config.paths.media.is_absolute()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    # Point ExecStart at a binary that exists here; everything else as shipped.
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/feedsvc/venv/bin/feedsvc", shutil.which("true") or "/bin/true")
    copy = tmp_path / "feedsvc.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "feedsvc.service" in line]
    assert problems == [], result.stderr
