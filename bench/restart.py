"""Requests during restarts under load: `feedsvc serve` binding its port itself, against
`feedsvc serve` on an inherited listening socket (what systemd/feedsvc.socket gives it).

    .venv/bin/python bench/restart.py                    # both modes, 5 restarts each
    .venv/bin/python bench/restart.py --mode socket --restarts 3 --json

Client threads each send GET /feed.atom on a new connection, back to back, while the server
is restarted: SIGTERM, wait for the exit, start a new process (as `systemctl restart` does).
Every request ends as `ok` (200), `refused` (ECONNREFUSED: nothing listens), `reset` (the
connection was closed or reset before a response) or `error` (anything else, a timeout
included). In socket mode this script holds the listening socket, as systemd does with a socket
unit, and starts each process with it as descriptor 3, LISTEN_FDS=1 and LISTEN_PID set to that
process (sd_listen_fds(3)).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run as the service manager would: set LISTEN_PID to the pid that execs feedsvc, move the
#: inherited socket to descriptor 3, then exec.
WRAPPER = """
import os, sys
fd = int(os.environ.pop("ACTIVATION_FD"))
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "feedsvc", *sys.argv[1:]])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_socket(port: int = 0, backlog: int = 4096) -> socket.socket:
    """What systemd makes for ListenStream=127.0.0.1:PORT (Backlog=4096)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    return sock


def make_site(folder: Path, port: int, workers: int = 1) -> Path:
    """A config and the repository's sample seeds in `folder`."""
    seeds = folder / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    for seed in (ROOT / "seeds").iterdir():
        shutil.copy2(seed, seeds / seed.name)
    config = folder / "config.toml"
    config.write_text(
        f'[feed]\ntitle = "Restart"\nbase_url = "http://127.0.0.1:{port}/"\n\n'
        '[paths]\nseeds = "seeds"\nstate = "state/feedsvc.sqlite3"\noutput = "public"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = {workers}\n',
        encoding="utf-8")
    return config


def start(config: Path, sock: socket.socket | None, log: Path) -> subprocess.Popen[bytes]:
    """`feedsvc serve` binding its port, or on `sock` (socket activation)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with log.open("ab") as stderr:
        if sock is None:
            return subprocess.Popen([sys.executable, "-m", "feedsvc", "serve", "--config",
                                     str(config)], stdout=subprocess.DEVNULL, stderr=stderr,
                                    env=env, cwd=config.parent)
        env["ACTIVATION_FD"] = str(sock.fileno())
        return subprocess.Popen([sys.executable, "-c", WRAPPER, "serve", "--config",
                                 str(config)], stdout=subprocess.DEVNULL, stderr=stderr,
                                env=env, cwd=config.parent, pass_fds=(sock.fileno(),))


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def get(port: int, path: str = "/feed.atom", timeout: float = 15) -> str:
    """One request on a new connection: its outcome."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return "ok" if response.status == 200 else f"status {response.status}"
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        return "reset"
    except OSError as e:
        return "refused" if e.errno == errno.ECONNREFUSED else f"error {type(e).__name__}"
    finally:
        connection.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while get(port, "/healthz", timeout=5) != "ok":
        if process.poll() is not None:
            raise RuntimeError(f"feedsvc exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("feedsvc not ready in time")
        time.sleep(0.05)


class Load:
    """`clients` threads sending requests back to back until stopped; outcomes counted."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            outcome = get(self.port)
            with self._lock:
                self.outcomes[outcome] += 1
            if outcome == "refused":
                time.sleep(0.001)  # a refusal is instant: do not spin


def measure(mode: str, restarts: int, clients: int, workers: int = 1,
            settle_s: float = 1.0) -> dict[str, object]:
    """Outcomes of the requests sent while `feedsvc serve` is restarted `restarts` times."""
    with tempfile.TemporaryDirectory(prefix="feedsvc-restart-") as tmp:
        folder = Path(tmp)
        sock = listening_socket() if mode == "socket" else None
        port = sock.getsockname()[1] if sock is not None else free_port()
        config = make_site(folder, port, workers)
        log = folder / "serve.log"
        process = start(config, sock, log)
        gaps = []
        try:
            wait_ready(port, process)
            with Load(port, clients) as load:
                time.sleep(settle_s)
                for _ in range(restarts):
                    began = time.monotonic()
                    stop(process)
                    process = start(config, sock, log)
                    wait_ready(port, process)
                    gaps.append(time.monotonic() - began)
                    time.sleep(settle_s)
            outcomes = dict(load.outcomes)
        finally:
            stop(process)
            if sock is not None:
                sock.close()
        total = sum(outcomes.values())
        return {"mode": mode, "restarts": restarts, "clients": clients, "workers": workers,
                "requests": total, "outcomes": outcomes,
                "failed": total - outcomes.get("ok", 0),
                "restart_s_median": sorted(gaps)[len(gaps) // 2] if gaps else None,
                "traceback_in_log": "Traceback" in log.read_text(errors="replace")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("socket", "bind", "both"), default="both")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per mode")
    args = parser.parse_args()
    modes = ("socket", "bind") if args.mode == "both" else (args.mode,)
    for mode in modes:
        result = measure(mode, args.restarts, args.clients, args.workers)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{mode:6}  {result['requests']:6d} requests, {result['failed']:5d} failed "
                  f"{result['outcomes']}  restart (stop + ready) "
                  f"{result['restart_s_median']:.2f} s median", flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
