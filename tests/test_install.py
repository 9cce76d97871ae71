"""README's systemd install, walked by systemd/install.sh in a temp root: a venv made from
Debian's system Python, feedsvc (and uvloop) installed in it, config and seeds readable by a user
in none of our groups; the installed feedsvc serving the installed config, as that user, then
under the confinement feedsvc.service asks for (emulated: tests/unit_sandbox.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import pytest

from .conftest import ROOT, SAMPLE_SLUG, free_port, http_get, seed, wait_until, write_seed

sys.path.insert(0, str(Path(__file__).parent))
import unit_sandbox  # runs under /usr/bin/python3 too: a plain script, not in the package

INSTALL = ROOT / "systemd" / "install.sh"
UNIT = ROOT / "systemd" / "feedsvc.service"
SYSTEM_PYTHON = Path("/usr/bin/python3")
#: The service's user is allocated at start; `nobody` stands for it: in no group of ours.
NOBODY = 65534


def _system_python_can_make_a_venv() -> bool:
    return SYSTEM_PYTHON.exists() and subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv, sys; "
                                   "sys.exit(sys.version_info < (3, 11))"],
        capture_output=True, timeout=60).returncode == 0


needs_system_python = pytest.mark.skipif(
    not _system_python_can_make_a_venv(),
    reason="needs Debian's /usr/bin/python3 (3.11+) with venv (apt-get install python3-venv)")


def install(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(INSTALL), "--root", str(root), *options],
                          capture_output=True, text=True, timeout=600)


@dataclass
class Installed:
    root: Path
    first: subprocess.CompletedProcess[str]  # install.sh --sample-seeds
    again: subprocess.CompletedProcess[str]  # install.sh once the config is edited
    config: Path
    edited: str  # the config's text as the operator left it
    port: int

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "feedsvc" / "venv"

    @property
    def state(self) -> Path:
        return self.root / "var" / "lib" / "feedsvc"


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """install.sh into a temp root the service's user can walk into (pytest's tmp_path is
    0700); the operator's edit of the config (the temp root's paths, a free port); install.sh
    again; the StateDirectory= systemd would make. Shared by the tests below: installing
    takes a while."""
    if not _system_python_can_make_a_venv():
        pytest.skip("needs Debian's /usr/bin/python3 (3.11+) with venv")
    root = Path(tempfile.mkdtemp(prefix="feedsvc-root-"))
    root.chmod(0o755)
    try:
        first = install(root, "--sample-seeds")
        assert first.returncode == 0, first.stderr
        config = root / "etc" / "feedsvc" / "config.toml"
        assert config.read_bytes() == (ROOT / "systemd" / "config.toml.example").read_bytes()
        port = free_port()
        text = config.read_text()
        for path in ("/srv/feedsvc", "/var/lib/feedsvc"):
            text = text.replace(f'"{path}', f'"{root}{path}')
        text = text.replace("port = 8080", f"port = {port}").replace(
            'base_url = "https://news.example.org/"', f'base_url = "http://127.0.0.1:{port}/"')
        config.write_text(text)
        again = install(root)
        state = root / "var" / "lib" / "feedsvc"
        state.mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(state, NOBODY, NOBODY)
        yield Installed(root, first, again, config, text, port)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_service_user() -> dict[str, object]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


#: Moves the descriptor given first to 3, then execs the rest.
TO_FD_3 = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""


class Server:
    """The installed feedsvc (possibly wrapped), started and stopped with SIGTERM."""

    def __init__(self, argv: list[str], port: int, log: Path,
                 listening: socket.socket | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        env, fds = {"PATH": "/usr/bin:/bin"}, ()
        if listening is not None:  # passed as descriptor 3, as systemd's socket unit does
            argv = [str(SYSTEM_PYTHON), "-c", TO_FD_3, str(listening.fileno()), *argv]
            env["LISTEN_FDS"], fds = "1", (listening.fileno(),)
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(argv, cwd="/", stdout=subprocess.DEVNULL,
                                            stderr=stderr, env=env, pass_fds=fds,
                                            **as_service_user())  # type: ignore[call-overload]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> bytes | None:
        if self.process.poll() is not None:
            raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()}")
        try:
            status, _, body = http_get(self.url + path)
        except OSError:
            return None
        return body if status == 200 else None

    def stop(self, pid: int | None = None) -> int:
        os.kill(pid or self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def entries(body: bytes) -> list[str]:
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.bozo_exception
    return [e.link.rsplit("/", 1)[1] for e in parsed.entries]


def test_refuses_a_python_the_unit_hides(tmp_path: Path) -> None:
    pyenv = tmp_path / "python3"
    pyenv.symlink_to("/home/alice/.pyenv/versions/3.12.4/bin/python3")
    result = install(tmp_path / "root", "--python", str(pyenv))
    assert result.returncode == 1
    assert "ProtectHome=yes" in result.stderr and "/usr/bin/python3" in result.stderr
    assert not (tmp_path / "root").exists()  # refused before anything was made


@pytest.mark.slow
@needs_system_python
def test_install_walkthrough_serves_the_installed_config(installed: Installed) -> None:
    root, venv, config = installed.root, installed.venv, installed.config
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
    seeds = root / "srv" / "feedsvc" / "seeds"
    assert [p.name for p in seeds.iterdir()] == [p.name for p in (ROOT / "seeds").iterdir()]
    for path in (config, *seeds.iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) & 0o444 == 0o444, path  # readable by all
    for folder in (root / "etc" / "feedsvc", seeds, root / "srv" / "feedsvc" / "media", venv):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o555 == 0o555, folder
    # Installing again upgraded feedsvc and kept the operator's config.
    assert installed.again.returncode == 0, installed.again.stderr
    assert "keeping" in installed.again.stdout and config.read_text() == installed.edited

    server = Server([str(venv / "bin" / "feedsvc"), "serve", "--config", str(config)],
                    installed.port, root / "serve.log")
    try:
        assert entries(wait_until(lambda: server.get("/feed.atom"), timeout=60)) == [SAMPLE_SLUG]
        assert (installed.state / "feedsvc.sqlite3").exists()
    finally:
        code = server.stop()
    assert code == 0, server.log()
    assert "Traceback" not in server.log()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat_line.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


@pytest.mark.slow
@needs_system_python
@pytest.mark.skipif(bool(unit_sandbox.available()), reason=str(unit_sandbox.available()))
def test_installed_feedsvc_works_under_the_units_confinement(installed: Installed) -> None:
    """Each directive tested for not breaking the service: the installed feedsvc, confined as
    feedsvc.service says (as far as it can be without systemd, see unit_sandbox), with two
    processes (spawn, pipes, SO_REUSEPORT), uvloop, lxml, brotli, SQLite and the watcher."""
    config = installed.root / "etc" / "feedsvc" / "confined.toml"
    config.write_text(installed.edited.replace('workers = "auto"', "workers = 2"))
    config.chmod(0o644)
    seeds = installed.root / "srv" / "feedsvc" / "seeds"
    argv = unit_sandbox.command(
        UNIT, [str(installed.venv / "bin" / "feedsvc"), "serve", "--config", str(config)],
        readable=[installed.root], writable=[installed.state])
    server = Server(argv, installed.port, installed.root / "confined.log")
    try:
        assert SAMPLE_SLUG in entries(wait_until(lambda: server.get("/feed.atom"), timeout=60))
        # Both processes answer (the follower was spawned inside the confinement).
        pids = wait_until(lambda: len({json.loads(server.get("/healthz") or b"{}").get("pid")
                                       for _ in range(30)} - {None}) == 2, timeout=30)
        assert pids
        # The watcher sees a new seed; every coding of every format renders.
        write_seed(seeds, "confined.txt", seed("confined", "Confiné", "Corps."))
        os.chmod(seeds / "confined.txt", 0o644)
        wait_until(lambda: "confined" in entries(server.get("/feed.atom") or b""), timeout=30)
        for path in ("/feed.atom", "/feed.rss", "/feed.json", "/", "/entries/confined"):
            for coding in ("br", "gzip", "identity"):
                status, headers, _ = http_get(server.url + path, {"Accept-Encoding": coding})
                assert status == 200, (path, coding)
                assert headers.get("Content-Encoding", "identity") == coding, (path, coding)
        # bwrap is PID 1 of the sandbox (it ignores SIGTERM); feedsvc's leader its child.
        leader = next(pid for pid in _descendants(server.process.pid)
                      if _cmdline(pid)[1:3] == [argv[-4], "serve"])
    finally:
        code = server.stop(locals().get("leader"))
    log = server.log()
    assert code == 0, log
    for trouble in ("Traceback", "Operation not permitted", "Permission denied",
                    "Read-only file system", "ERROR"):
        assert trouble not in log, log
    os.remove(seeds / "confined.txt")


@pytest.mark.slow
@needs_system_python
@pytest.mark.skipif(bool(unit_sandbox.available()), reason=str(unit_sandbox.available()))
def test_socket_activation_under_the_units_confinement(installed: Installed) -> None:
    """The socket unit's socket, inherited through the confinement, served by two processes;
    the configured port stays unbound."""
    config = installed.root / "etc" / "feedsvc" / "activated.toml"
    config.write_text(installed.edited.replace('workers = "auto"', "workers = 2"))
    config.chmod(0o644)
    feedsvc = str(installed.venv / "bin" / "feedsvc")
    argv = unit_sandbox.command(UNIT, [feedsvc, "serve", "--config", str(config)],
                                readable=[installed.root], writable=[installed.state])
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as listening:
        port = listening.getsockname()[1]
        server = Server(argv, port, installed.root / "activated.log", listening)
        try:
            assert SAMPLE_SLUG in entries(wait_until(lambda: server.get("/feed.atom"),
                                                     timeout=60))
            wait_until(lambda: len({json.loads(server.get("/healthz") or b"{}").get("pid")
                                    for _ in range(30)} - {None}) == 2, timeout=30)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", installed.port), timeout=5).close()
            leader = next(pid for pid in _descendants(server.process.pid)
                          if _cmdline(pid)[1:3] == [feedsvc, "serve"])
        finally:
            code = server.stop(locals().get("leader"))
    log = server.log()
    assert code == 0, log
    assert f"listening on http://127.0.0.1:{port}/ (inherited) (2 processes" in log
    assert "Traceback" not in log and "ERROR" not in log, log


@pytest.mark.skipif(bool(unit_sandbox.available()), reason=str(unit_sandbox.available()))
def test_the_emulated_confinement_denies_what_the_unit_denies(tmp_path: Path) -> None:
    """The emulation is no placebo: inside it, writable and executable memory, namespaces,
    netlink sockets, @resources calls, writes outside the state, /home and capabilities
    are refused."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    folder = Path(tempfile.mkdtemp(prefix="feedsvc-probe-"))
    try:
        folder.chmod(0o755)
        shutil.copy(probe, folder / "probe.py")
        (folder / "probe.py").chmod(0o644)
        argv = unit_sandbox.command(UNIT, [str(SYSTEM_PYTHON), str(folder / "probe.py")],
                                    readable=[folder], writable=[])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                **as_service_user())  # type: ignore[call-overload]
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "wx_memory": "EACCES",  # MemoryDenyWriteExecute=yes
        "unshare": "EPERM",  # RestrictNamespaces=yes
        "netlink_socket": "EAFNOSUPPORT",  # RestrictAddressFamilies=
        "setpriority": "EPERM",  # SystemCallFilter=~@resources
        "write_usr": "EROFS",  # ProtectSystem=strict
        "tcp_socket": "allowed",
        "home": [],  # ProtectHome=yes
        "capabilities": "0000000000000000",  # CapabilityBoundingSet=
        "processes": [1, 2],  # ProtectProc=invisible: only its own
    }


PROBE = """
import ctypes, errno, json, mmap, os, socket
out = {}
def attempt(name, f):
    try:
        f()
        out[name] = "allowed"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
attempt("wx_memory", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE
                                                       | mmap.PROT_EXEC))
libc = ctypes.CDLL(None, use_errno=True)
def unshare():
    if libc.unshare(0x00020000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
attempt("unshare", unshare)
attempt("netlink_socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
attempt("write_usr", lambda: open("/usr/feedsvc-probe", "w"))
attempt("tcp_socket", lambda: socket.socket().close())
out["home"] = os.listdir("/home")
out["capabilities"] = next(line.split()[1] for line in open("/proc/self/status")
                           if line.startswith("CapBnd"))
out["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(out))
"""


def test_install_script_is_posix_sh() -> None:
    result = subprocess.run(["sh", "-n", str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    checker = shutil.which("shellcheck")
    if checker is not None:
        checked = subprocess.run([checker, "-s", "sh", str(INSTALL)], capture_output=True,
                                 text=True)
        assert checked.returncode == 0, checked.stdout
    assert os.access(INSTALL, os.X_OK)
