"""Socket activation (sd_listen_fds(3)): `serve` on a real inherited listening socket, as
systemd/feedsvc.socket passes it, and restarts that refuse no connection."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

from feedsvc.serve.activation import listen_backlog

from .conftest import (
    ROOT,
    SAMPLE_SLUG,
    copy_sample,
    free_port,
    http_get,
    wait_until,
    write_config,
)

sys.path.insert(0, str(ROOT / "bench"))
import restart  # bench/restart.py: the activation wrapper, the load and the measurement


class Activated:
    """`feedsvc serve` started on `sock` as descriptor 3 with LISTEN_FDS=1 and LISTEN_PID."""

    def __init__(self, config: Path, sock: socket.socket) -> None:
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / "serve.log"
        self.process = restart.start(config, sock, self.log_path)
        restart.wait_ready(self.port, self.process, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        restart.stop(self.process)
        return self.process.returncode


@pytest.fixture
def activated():
    started: list[Activated] = []

    def start(config: Path, sock: socket.socket) -> Activated:
        server = Activated(config, sock)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_serves_the_feeds_on_the_inherited_socket_and_binds_nothing(tmp_path: Path,
                                                                    activated) -> None:
    configured_port = free_port()  # what the config says: not used when a socket is passed
    config = write_config(tmp_path, port=configured_port)
    copy_sample(tmp_path / "seeds")
    with restart.listening_socket() as sock:
        server = activated(config, sock)
        status, _, body = http_get(server.url + "/feed.atom")
        assert status == 200
        parsed = feedparser.parse(body)
        assert not parsed.bozo
        assert [entry.link.rsplit("/", 1)[1] for entry in parsed.entries] == [SAMPLE_SLUG]
        with pytest.raises(ConnectionRefusedError):  # nothing bound on the configured port
            socket.create_connection(("127.0.0.1", configured_port), timeout=5).close()
        assert f"listening on http://127.0.0.1:{server.port}/ (inherited)" in server.log()
        assert server.stop() == 0
        # The socket is the service manager's: still listening once feedsvc has stopped.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert "Traceback" not in server.log()


def test_workers_all_serve_the_one_inherited_socket(tmp_path: Path, activated) -> None:
    config = write_config(tmp_path, port=free_port())
    config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 2\n"))
    copy_sample(tmp_path / "seeds")
    with restart.listening_socket() as sock:
        server = activated(config, sock)

        def pids() -> set[int]:
            return {json.loads(http_get(server.url + "/healthz")[2])["pid"] for _ in range(40)}

        def both() -> set[int] | None:
            seen = pids()
            return seen if len(seen) == 2 else None

        found = wait_until(both, timeout=30)
        assert server.process.pid in found
        follower = (found - {server.process.pid}).pop()
        # The follower got the socket from its leader, not through the environment: the
        # leader unset LISTEN_PID and LISTEN_FDS before starting it (sd_listen_fds(3)).
        environ = Path(f"/proc/{follower}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith((b"LISTEN_PID=", b"LISTEN_FDS="))]
        assert {http_get(server.url + "/feed.atom")[0] for _ in range(10)} == {200}
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_a_restart_on_the_inherited_socket_refuses_no_connection(tmp_path: Path,
                                                                 activated) -> None:
    config = write_config(tmp_path, port=free_port())
    copy_sample(tmp_path / "seeds")
    with restart.listening_socket() as sock:
        first = activated(config, sock)
        with restart.Load(first.port, clients=4) as load:
            wait_until(lambda: load.outcomes["ok"] >= 20)
            assert first.stop() == 0  # as `systemctl restart`: stop, then start
            second = activated(config, sock)
            before = load.outcomes["ok"]
            wait_until(lambda: load.outcomes["ok"] >= before + 20)
        assert second.process.pid != first.process.pid
        # Connections that came while no process accepted waited in the socket's queue.
        assert dict(load.outcomes) == {"ok": load.outcomes["ok"]}, load.outcomes
        second.stop()


@pytest.mark.slow
def test_measured_restarts_refuse_connections_only_without_the_socket() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "restart.py"), "--json",
                             "--restarts", "2", "--clients", "4"],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    by_mode = {r["mode"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert by_mode["socket"]["failed"] == 0, by_mode["socket"]
    assert by_mode["socket"]["outcomes"]["ok"] > 100
    assert by_mode["bind"]["outcomes"].get("refused", 0) > 0, by_mode["bind"]


#: In a fresh interpreter: descriptor 3 a listening TCP socket, 4 a datagram socket; the
#: environment as given (LISTEN_PID "{pid}": this interpreter's); then sd_listen_fds.
CHILD = """
import json, os, socket, sys
stream = socket.create_server(("127.0.0.1", 0))
datagram = socket.socket(type=socket.SOCK_DGRAM)
os.dup2(stream.fileno(), 3)
os.dup2(datagram.fileno(), 4)
for key, value in json.loads(sys.argv[1]).items():
    os.environ[key] = value.replace("{pid}", str(os.getpid()))
from feedsvc.serve.activation import ActivationError, inherited_sockets
try:
    found = inherited_sockets()
    result = [[s.fileno(), s.getsockname() == stream.getsockname(), s.get_inheritable()]
              for s in found]
except ActivationError as e:
    result = str(e)
left = [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if os.getenv(k) is not None]
print(json.dumps({"result": result, "left": left}))
"""


@pytest.mark.parametrize(("env", "expected"), [
    ({}, []),  # not activated
    ({"LISTEN_FDS": "1"}, []),  # no LISTEN_PID: not for us
    ({"LISTEN_FDS": "1", "LISTEN_PID": "1"}, []),  # another process's, leaked to us
    ({"LISTEN_FDS": "0", "LISTEN_PID": "{pid}"}, []),
    ({"LISTEN_FDS": "1", "LISTEN_PID": "{pid}", "LISTEN_FDNAMES": "http"},
     [[3, True, False]]),  # descriptor 3, our socket, close-on-exec (as sd_listen_fds sets)
    ({"LISTEN_FDS": "x", "LISTEN_PID": "{pid}"}, "LISTEN_FDS='x' is not a number"),
    ({"LISTEN_FDS": "1", "LISTEN_PID": "me"}, "LISTEN_PID='me' is not a process id"),
    ({"LISTEN_FDS": "1000", "LISTEN_PID": "{pid}"}, "expected 0 to 64 sockets"),
    ({"LISTEN_FDS": "2", "LISTEN_PID": "{pid}"},
     "inherited descriptor 4 is not a listening stream socket"),
])
def test_the_environment_is_read_once_and_checked(env: dict[str, str],
                                                  expected: list[object] | str) -> None:
    """sd_listen_fds(3) with unset_environment: the variables are gone afterwards, whatever
    they said; sockets that are not listening stream sockets are an ActivationError."""
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(env)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    if isinstance(expected, str):
        assert expected in outcome["result"]
    else:
        assert outcome["result"] == expected
    assert outcome["left"] == []


def test_the_socket_units_backlog_survives_the_loops_listen() -> None:
    with restart.listening_socket(backlog=1000) as sock:
        assert listen_backlog(sock, 64) == 1000
    with socket.socket(socket.AF_UNIX) as unix:
        assert listen_backlog(unix, 64) == 64


def test_sigterm_on_an_inherited_socket_exits_0(tmp_path: Path, activated) -> None:
    config = write_config(tmp_path, port=free_port())
    with restart.listening_socket() as sock:
        server = activated(config, sock)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
