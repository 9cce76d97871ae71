"""README's systemd install, walked by systemd/install.sh in a temp root: a venv made from
Debian's system Python, feedsvc (and uvloop) installed in it, config and seeds readable by a user
in none of our groups, and the installed feedsvc serving the installed config."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from .conftest import ROOT, SAMPLE_SLUG, free_port, http_get, wait_until

INSTALL = ROOT / "systemd" / "install.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3")
#: The service's user is allocated at start; `nobody` stands for it: no group of ours.
NOBODY = 65534


def _system_python_can_make_a_venv() -> bool:
    return SYSTEM_PYTHON.exists() and subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv, sys; "
                                   "sys.exit(sys.version_info < (3, 11))"],
        capture_output=True, timeout=60).returncode == 0


def install(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(INSTALL), "--root", str(root), *options],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def root() -> Iterator[Path]:
    """A temp root the service's user can walk into (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="feedsvc-root-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_refuses_a_python_the_unit_hides(tmp_path: Path) -> None:
    pyenv = tmp_path / "python3"
    pyenv.symlink_to("/home/alice/.pyenv/versions/3.12.4/bin/python3")
    result = install(tmp_path / "root", "--python", str(pyenv))
    assert result.returncode == 1
    assert "ProtectHome=yes" in result.stderr and "/usr/bin/python3" in result.stderr
    assert not (tmp_path / "root").exists()  # refused before anything was made


@pytest.mark.slow
@pytest.mark.skipif(not _system_python_can_make_a_venv(),
                    reason="needs Debian's /usr/bin/python3 (3.11+) with venv "
                           "(apt-get install python3-venv)")
def test_install_walkthrough_serves_the_installed_config(root: Path) -> None:
    result = install(root, "--sample-seeds")
    assert result.returncode == 0, result.stderr
    venv = root / "opt" / "feedsvc" / "venv"

    # The venv's interpreter is the system's: nothing under /home or /root.
    assert (venv / "bin" / "python").resolve() == SYSTEM_PYTHON.resolve()
    assert "home = /usr/bin" in (venv / "pyvenv.cfg").read_text()
    imported = subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import feedsvc, uvloop; print(feedsvc.__file__)"],
                              capture_output=True, text=True, cwd=root, timeout=60)
    assert imported.returncode == 0, imported.stderr  # uvloop: a default dependency
    assert imported.stdout.startswith(str(venv))  # installed, not this checkout

    units = root / "etc" / "systemd" / "system"
    for name in ("feedsvc.service", "feedsvc.socket"):
        assert (units / name).read_bytes() == (ROOT / "systemd" / name).read_bytes()
    config = root / "etc" / "feedsvc" / "config.toml"
    assert config.read_bytes() == (ROOT / "systemd" / "config.toml.example").read_bytes()
    seeds = root / "srv" / "feedsvc" / "seeds"
    assert [p.name for p in seeds.iterdir()] == [p.name for p in (ROOT / "seeds").iterdir()]
    for path in (config, *seeds.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) & 0o444 == 0o444, path  # readable by all
    for folder in (root / "etc" / "feedsvc", seeds, root / "srv" / "feedsvc" / "media", venv):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o555 == 0o555, folder

    # The operator edits the config (here: the temp root's paths and a free port) ...
    port = free_port()
    text = config.read_text()
    for path in ("/srv/feedsvc", "/var/lib/feedsvc"):
        text = text.replace(f'"{path}', f'"{root}{path}')
    text = text.replace("port = 8080", f"port = {port}").replace(
        'base_url = "https://news.example.org/"', f'base_url = "http://127.0.0.1:{port}/"')
    text = text.replace('workers = "auto"', "workers = 1")
    config.write_text(text)
    # ... and installing again upgrades feedsvc but keeps that config.
    again = install(root)
    assert again.returncode == 0, again.stderr
    assert "keeping" in again.stdout and config.read_text() == text

    # systemd's StateDirectory=: /var/lib/feedsvc, owned by the service's user.
    state = root / "var" / "lib" / "feedsvc"
    state.mkdir(parents=True)
    as_nobody = os.geteuid() == 0
    if as_nobody:
        os.chown(state, NOBODY, NOBODY)
    log = (root / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(venv / "bin" / "feedsvc"), "serve", "--config", str(config)],
        cwd="/", stdout=subprocess.DEVNULL, stderr=log, env={"PATH": "/usr/bin:/bin"},
        **({"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_nobody else {}))
    try:
        url = f"http://127.0.0.1:{port}"

        def feed() -> bytes | None:
            if server.poll() is not None:
                raise AssertionError((root / "serve.log").read_text())
            try:
                status, _, body = http_get(url + "/feed.atom")
            except OSError:
                return None
            return body if status == 200 else None

        body = wait_until(feed, timeout=60)
        parsed = feedparser.parse(body)
        assert not parsed.bozo
        assert [e.link.rsplit("/", 1)[1] for e in parsed.entries] == [SAMPLE_SLUG]
        assert (state / "feedsvc.sqlite3").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        log.close()
    assert code == 0, (root / "serve.log").read_text()
    assert "Traceback" not in (root / "serve.log").read_text()


def test_install_script_is_posix_sh() -> None:
    checker = shutil.which("shellcheck")
    result = subprocess.run(["sh", "-n", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if checker is not None:
        checked = subprocess.run([checker, "-s", "sh", str(INSTALL)], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, checked.stdout
    assert os.access(INSTALL, os.X_OK)
