"""feedsvc benchmark suite: serve (vs nginx), publish (vs the raw watcher), scale (vs a plain
read+parse loop), push (WebSub: drop → subscriber callback, beside drop → served). Every
figure and its baseline are measured in the same run, on this machine.

Run it through `bench/run` (installs wrk and nginx, makes the venv). Directly:

    python bench/bench.py [--only serve,publish,scale,push] [--sizes 10000,100000] [--quick]

Everything listens on 127.0.0.1 on free ports; every process started here is stopped here (and
its pid is written to $BENCH_PIDFILE, which bench/run's trap reads); every load is bounded in
time. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import gzip
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (bench/corpus.py, beside this file)

# -- output ----------------------------------------------------------------------------------

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", flush=True)


class BenchFailure(Exception):
    """A check before a measurement failed: the figure would be meaningless."""


@dataclass
class Row:
    section: str
    figure: str
    value: str
    target: str = ""
    result: str = ""  # PASS / FAIL / INVALID / DNF / ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, section: str, figure: str, value: str, target: str = "",
            ok: bool | None = None, result: str | None = None) -> None:
        if result is None:
            result = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append(Row(section, figure, value, target, result))

    def problem(self, message: str) -> None:
        say("!!! " + message)
        self.problems.append(message)

    def table(self) -> str:
        header = Row("section", "figure", "value", "target", "result")
        order = {"serve": 0, "publish": 1, "scale": 2, "push": 3}
        rows = [header, *sorted(self.rows, key=lambda r: order.get(r.section, 3))]
        widths = [max(len(getattr(r, f)) for r in rows)
                  for f in ("section", "figure", "value", "target", "result")]
        lines = []
        for i, r in enumerate(rows):
            cells = [r.section, r.figure, r.value, r.target, r.result]
            lines.append(" | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
                         .rstrip())
            if i == 0:
                lines.append("-+-".join("-" * w for w in widths))
        return "\n".join(lines)


# -- processes -------------------------------------------------------------------------------

PIDFILE = os.environ.get("BENCH_PIDFILE")
_started: list[subprocess.Popen[bytes]] = []


def spawn(args: list[str], log: Path | None = None, capture: bool = False,
          **kw: Any) -> subprocess.Popen[bytes]:
    """Start a process we must stop: remembered here and in $BENCH_PIDFILE for bench/run.
    Its output goes to `log`, or to a pipe (`capture`), else nowhere."""
    out: Any = subprocess.PIPE if capture else open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if (log or capture) else
                                subprocess.DEVNULL, **kw)
    finally:
        if log and not capture:
            out.close()
    _started.append(proc)
    if PIDFILE:
        with open(PIDFILE, "a") as f:
            f.write(f"{proc.pid}\n")
    return proc


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
         timeout: float = 20) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _started:
        _started.remove(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in list(_started):
        stop(proc, timeout=10)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set (VmHWM) of one process, in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def peak_rss(pid: int) -> tuple[float | None, float | None, int]:
    """(MiB of the main process, MiB summed over it and its children, number of processes)."""
    tree = process_tree(pid)
    values = [v for v in (vm_hwm_kib(p) for p in tree) if v is not None]
    main = vm_hwm_kib(pid)
    return (None if main is None else main / 1024,
            sum(values) / 1024 if values else None, len(tree))


# -- HTTP ------------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection; sends exactly the headers given (http.client would
    add `Accept-Encoding: identity` on its own: not here)."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.putrequest("GET", path, skip_accept_encoding=True)
                for k, v in (headers or {}).items():
                    self.conn.putheader(k, v)
                self.conn.endheaders()
                resp = self.conn.getresponse()
                body = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                return resp.status, hdrs, body
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def healthz(port: int) -> dict[str, Any] | None:
    try:
        c = Client(port, timeout=30)
        status, _, body = c.get("/healthz")
        c.close()
        return json.loads(body) if status in (200, 503) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.01,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


# -- feedsvc ---------------------------------------------------------------------------------

def write_config(folder: Path, port: int, step_ms: int, debounce_ms: int,
                 extra_server: Iterable[str] = (), builtin_hub: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seeds").mkdir(exist_ok=True)
    server_lines = "\n".join(extra_server)
    path = folder / "config.toml"
    path.write_text(
        '[feed]\ntitle = "Les dépêches"\nsubtitle = "Banc d’essai de feedsvc"\n'
        f'base_url = "http://127.0.0.1:{port}/"\nlanguage = "fr"\nmax_entries = 50\n\n'
        '[paths]\nseeds = "seeds"\nstate = "state/feedsvc.sqlite3"\noutput = "public"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ncache_max_age = 60\n{server_lines}\n\n'
        f"[watch]\nstep_ms = {step_ms}\ndebounce_ms = {debounce_ms}\n"
        # The push section's hub: subscribers on loopback, all from one address at once.
        + ("\n[websub]\nbuiltin_hub = true\nallow_private_callbacks = true\n"
           "subscribe_rate_per_min = 100000\nmax_subscriptions_per_host = 100000\n"
           "max_subscriptions_per_topic = 100000\n" if builtin_hub else ""),
        encoding="utf-8")
    return path


class Feedsvc:
    """`python -m feedsvc serve` on a config, stderr to a log file."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.log = config.parent / "serve.log"
        self.started = time.perf_counter()
        self.proc = spawn([sys.executable, "-m", "feedsvc", "serve", "--config", str(config)],
                          log=self.log, cwd=config.parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchFailure(f"feedsvc serve exited with {self.proc.returncode}; "
                               f"log {self.log}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_published(self, count: int, timeout: float) -> float:
        """Seconds from process start to the first 200 on /feed.atom with `count` entries
        in /healthz."""
        def ready() -> float | None:
            self.check_alive()
            try:
                c = Client(self.port, timeout=60)
                status, _, _ = c.get("/feed.atom")
                if status != 200:
                    c.close()
                    return None
                done = time.perf_counter()
                _, _, body = c.get("/healthz")
                c.close()
            except (OSError, http.client.HTTPException):
                return None
            health = json.loads(body)
            if health.get("entries_published") == count:
                return done - self.started
            if health.get("seeds_rejected"):
                raise BenchFailure(f"feedsvc rejected seeds: {health.get('rejected', [])[:3]}")
            return None
        return float(wait_for(ready, timeout, 0.01, f"feedsvc publishing {count} entries"))

    def stop(self) -> int | None:
        code = stop(self.proc)
        return code

    def tracebacks(self) -> int:
        try:
            return self.log.read_text(errors="replace").count("Traceback")
        except OSError:
            return 0


def feedsvc_build(config: Path) -> None:
    log = config.parent / "build.log"
    with open(log, "wb") as out:
        r = subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config)],
                           cwd=config.parent, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    if r.returncode != 0:
        raise BenchFailure(f"feedsvc build failed ({r.returncode}): "
                           + log.read_text(errors="replace")[-2000:])


def write_seed_atomically(folder: Path, name: str, data: bytes) -> float:
    """temp file + rename, as a careful tool writes; returns perf_counter() right after the
    rename."""
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / name)
    return time.perf_counter()


def watcher_rust_timeout() -> int:
    """The rust timeout (ms) feedsvc's watcher uses."""
    try:
        from feedsvc.ingest import watcher
        return int(getattr(watcher, "FOLDER_CHECK_MS", 1000))
    except Exception:
        return 1000


def default_watch() -> tuple[int, int]:
    """feedsvc's default (step_ms, debounce_ms)."""
    try:
        from feedsvc.config import WatchConfig
        return WatchConfig.step_ms, WatchConfig.debounce_ms
    except Exception:
        return 10, 50


DEFAULT_WATCH = default_watch()


# -- statistics ------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


# -- serve -----------------------------------------------------------------------------------

NGINX_CONF = """\
# Written by bench/bench.py: nginx as the baseline for feedsvc's serving.
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    types {{ application/atom+xml atom; application/rss+xml rss; text/html html; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        gzip off;
        gzip_static on;
        gzip_vary on;
        etag on;
        add_header Cache-Control "public, max-age=60";
    }}
}}
"""


def find_nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                      else None)
    if not found:
        raise BenchFailure("nginx not found (bench/run installs it: apt-get install nginx-light)")
    return found


def find_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchFailure("wrk not found (bench/run installs it: apt-get install wrk)")
    return found


@dataclass
class WrkResult:
    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    bytes_per_request: float
    errors: str
    non_2xx_3xx: int
    runs: int = 1
    rps_min: float = 0.0
    rps_max: float = 0.0


def median_result(rs: list[WrkResult]) -> WrkResult:
    """Median req/s and median p50/p99 over repeated runs, with the req/s range."""
    return WrkResult(
        rps=statistics.median(r.rps for r in rs), p50=statistics.median(r.p50 for r in rs),
        p99=statistics.median(r.p99 for r in rs), requests=sum(r.requests for r in rs),
        bytes_per_request=statistics.median(r.bytes_per_request for r in rs),
        errors="; ".join(sorted({r.errors for r in rs if r.errors})),
        non_2xx_3xx=sum(r.non_2xx_3xx for r in rs), runs=len(rs),
        rps_min=min(r.rps for r in rs), rps_max=max(r.rps for r in rs))


_UNITS_T = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(out: str) -> WrkResult:
    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        if not m:
            raise BenchFailure(f"wrk output has no {label}% line:\n{out}")
        return float(m.group(1)) * _UNITS_T[m.group(2)]
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read", out, re.M)
    if not rps or not total:
        raise BenchFailure(f"cannot read wrk output:\n{out}")
    requests = int(total.group(1))
    read = float(total.group(2)) * _UNITS_B[total.group(3)]
    errors = re.search(r"^\s+Socket errors: (.*)$", out, re.M)
    non = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", out, re.M)
    return WrkResult(rps=float(rps.group(1)), p50=latency("50"), p99=latency("99"),
                     requests=requests, bytes_per_request=read / max(1, requests),
                     errors=errors.group(1) if errors else "",
                     non_2xx_3xx=int(non.group(1)) if non else 0)


def run_wrk(wrk: str, port: int, path: str, headers: dict[str, str], args: argparse.Namespace,
            duration: float) -> WrkResult:
    cmd = [wrk, f"-t{args.wrk_threads}", f"-c{args.wrk_connections}", f"-d{duration:g}s",
           "--latency", "--timeout", "5s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    p = spawn(cmd, capture=True)
    try:
        out, _ = p.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise BenchFailure(f"wrk did not finish in {duration + 30:.0f} s") from None
    finally:
        if p in _started:
            _started.remove(p)
    text = out.decode(errors="replace")
    if p.returncode != 0:
        raise BenchFailure(f"wrk exited with {p.returncode}:\n{text}")
    return parse_wrk(text)


@dataclass(frozen=True)
class Case:
    name: str
    headers: dict[str, str]
    status: int
    encoding: str | None  # expected Content-Encoding, None for identity


#: A minimal aiohttp app with the same processes (bench/aiohttp_floor.py): the framework's own
#: per-request cost, measured beside feedsvc for the cases where that cost dominates.
FLOOR = "aiohttp floor"
FLOOR_CASES = ("200 identity", "200 gzip", "304")

CASES = [
    Case("200 identity", {}, 200, None),
    Case("200 gzip", {"Accept-Encoding": "gzip"}, 200, "gzip"),
    # A polling feed reader: it accepts gzip and revalidates with the ETag it was given.
    Case("304", {"Accept-Encoding": "gzip"}, 304, None),
]


def verify_case(server: str, port: int, case: Case, plain: bytes
                ) -> tuple[dict[str, str], int]:
    """Check the server answers this case as expected; return (headers for wrk, the expected
    bytes on the wire per response, body only)."""
    c = Client(port)
    try:
        status, hdrs, body = c.get("/feed.atom", case.headers)
        if status != 200:
            raise BenchFailure(f"{server} {case.name}: GET /feed.atom gave {status}")
        coding = hdrs.get("content-encoding")
        if coding == "identity":
            coding = None
        expected = case.encoding if case.status == 200 else case.headers.get("Accept-Encoding")
        if coding != expected:
            raise BenchFailure(f"{server} {case.name}: Content-Encoding {coding!r}, expected "
                               f"{expected!r}")
        decoded = gzip.decompress(body) if coding == "gzip" else body
        if decoded != plain:
            raise BenchFailure(f"{server} {case.name}: body ({len(decoded)} bytes decoded) is "
                               f"not the feed.atom written by `feedsvc build` ({len(plain)} "
                               "bytes)")
        etag = hdrs.get("etag")
        headers = dict(case.headers)
        if case.status == 304:
            if not etag:
                raise BenchFailure(f"{server} {case.name}: no ETag")
            headers["If-None-Match"] = etag
            status, hdrs, body = c.get("/feed.atom", headers)
            if status != 304 or body:
                raise BenchFailure(f"{server} {case.name}: If-None-Match {etag} gave {status} "
                                   f"with {len(body)} body bytes, expected 304 and none")
            return headers, 0
        return headers, len(body)
    finally:
        c.close()


def section_serve(args: argparse.Namespace, work: Path, report: Report) -> None:
    say("serve: corpus of 50 seeds, feedsvc build, nginx and feedsvc serve")
    nginx_bin, wrk = find_nginx(), find_wrk()
    site = work / "serve"
    port = free_port()
    processes = args.serve_processes
    server_option = list(args.server_option)
    if not any(line.split("=")[0].strip() == "workers" for line in server_option):
        server_option.append(f"workers = {processes}")
    nginx_workers = args.nginx_workers or str(processes)
    config = write_config(site, port, args.step_ms, args.debounce_ms, server_option)
    corpus.write_corpus(site / "seeds", 50)
    feedsvc_build(config)
    out = site / "public"
    plain = (out / "feed.atom").read_bytes()
    made_gz = []
    for name in ("feed.atom", "feed.rss"):
        if not (out / f"{name}.gz").exists():
            with open(out / f"{name}.gz", "wb") as f:
                subprocess.run(["gzip", "-9", "-n", "-c", str(out / name)], stdout=f, check=True)
            made_gz.append(name)
    gz_note = ("created by the bench with gzip -9 -n (feedsvc build wrote none)" if made_gz
               else "written by feedsvc build")
    say(f"serve: feed.atom {len(plain):,} bytes, feed.atom.gz "
        f"{(out / 'feed.atom.gz').stat().st_size:,} bytes ({gz_note})")
    report.data["serve"] = {"feed_atom_bytes": len(plain),
                            "feed_atom_gz_bytes": (out / "feed.atom.gz").stat().st_size,
                            "gz_source": gz_note, "cases": {}}

    prefix = work / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    for p in (work, site, out, prefix):
        os.chmod(p, 0o755)  # nginx workers run as nobody when started as root
    nginx_port = free_port()
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(
        workers=nginx_workers, prefix=prefix, port=nginx_port, root=out))
    nginx = spawn([nginx_bin, "-p", str(prefix), "-e", str(prefix / "error.log"),
                   "-c", str(prefix / "nginx.conf")], log=prefix / "stdout.log")
    server = floor = None
    try:
        def nginx_up() -> bool:
            if nginx.poll() is not None:
                raise BenchFailure(f"nginx exited with {nginx.returncode}: "
                                   + (prefix / "error.log").read_text(errors="replace")[-2000:])
            try:
                return Client(nginx_port, timeout=2).get("/feed.atom")[0] == 200
            except OSError:
                return False
        wait_for(nginx_up, 15, 0.05, "nginx answering")
        server = Feedsvc(config, port)
        server.wait_published(50, 120)
        floor_port = free_port()
        floor = spawn([sys.executable, str(Path(__file__).with_name("aiohttp_floor.py")),
                       str(floor_port), str(out / "feed.atom"), str(out / "feed.atom.gz"),
                       str(processes)],
                      log=site / "aiohttp-floor.log")

        def floor_up() -> bool:
            if floor.poll() is not None:
                raise BenchFailure(f"the aiohttp floor server exited with {floor.returncode}")
            try:
                return Client(floor_port, timeout=2).get("/feed.atom")[0] == 200
            except OSError:
                return False
        wait_for(floor_up, 15, 0.05, "aiohttp floor answering")
        servers = {"nginx": nginx_port, "feedsvc": port, FLOOR: floor_port}
        results: dict[str, dict[str, WrkResult | str]] = {}
        all_runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for case in CASES:
            results[case.name] = {}
            checked: dict[str, tuple[dict[str, str], int]] = {}
            for name, p in servers.items():
                if name == FLOOR and case.name not in FLOOR_CASES:
                    continue
                try:
                    checked[name] = verify_case(name, p, case, plain)
                except (BenchFailure, OSError, http.client.HTTPException) as e:
                    report.problem(f"serve {case.name}: {e}")
                    results[case.name][name] = f"INVALID: {e}"
            runs: dict[str, list[WrkResult]] = {name: [] for name in checked}
            for rep in range(args.repeat):
                # Alternate which server goes first, so drift in the machine hits both alike.
                order = list(servers.items()) if rep % 2 == 0 else list(servers.items())[::-1]
                for name, p in order:
                    if name not in runs:
                        continue
                    headers, body_len = checked[name]
                    if rep == 0 and args.wrk_warmup > 0:
                        run_wrk(wrk, p, "/feed.atom", headers, args, args.wrk_warmup)
                    r = run_wrk(wrk, p, "/feed.atom", headers, args, args.wrk_duration)
                    # wrk counts only 4xx/5xx as errors: check the bytes per response instead.
                    if not (body_len <= r.bytes_per_request <= body_len * 1.05 + 1024):
                        msg = (f"{name} {case.name}: {r.bytes_per_request:,.0f} bytes per "
                               f"response under load, expected the {body_len:,}-byte body plus "
                               "headers")
                        report.problem("serve " + msg)
                        results[case.name][name] = f"INVALID: {msg}"
                        del runs[name]
                        continue
                    if r.non_2xx_3xx or "timeout 0" not in (r.errors or "timeout 0"):
                        report.problem(f"serve {case.name} {name}: non-2xx/3xx "
                                       f"{r.non_2xx_3xx}, socket errors {r.errors}")
                    runs[name].append(r)
                    say(f"serve {case.name:13s} {name:13s}: {fmt_rate(r.rps):>8s} req/s, "
                        f"p50 {ms(r.p50)}, p99 {ms(r.p99)}, {r.bytes_per_request:,.0f} B/resp"
                        + (f", socket errors: {r.errors}" if r.errors else ""))
            for name, rs in runs.items():
                results[case.name][name] = median_result(rs)
                all_runs.setdefault(case.name, {})[name] = [r.__dict__ for r in rs]
        rss = peak_rss(server.pid)[0]
        report.data["serve"]["feedsvc_peak_rss_mib"] = rss
        report.data["serve"]["runs"] = all_runs
    finally:
        if server is not None:
            server.stop()
        if floor is not None:
            stop(floor, signal.SIGTERM)
        stop(nginx, signal.SIGQUIT)

    targets = {"200 identity": 0.6, "200 gzip": 0.5, "304": 0.5}
    load = (f"wrk -t{args.wrk_threads} -c{args.wrk_connections} -d{args.wrk_duration:g}s "
            f"x{args.repeat} per server and case; feedsvc workers {processes}, nginx "
            f"worker_processes {nginx_workers}, aiohttp floor {processes} process(es)")
    report.add("serve", "load (same for both)", load, "", result="")
    for case in CASES:
        res = results[case.name]
        n, f, a = res.get("nginx"), res.get("feedsvc"), res.get(FLOOR)
        for name, r in (("nginx", n), ("feedsvc", f), (FLOOR, a)):
            if name == FLOOR and case.name not in FLOOR_CASES:
                continue
            if isinstance(r, WrkResult):
                spread = (f" (median of {r.runs}: {fmt_rate(r.rps_min)}-{fmt_rate(r.rps_max)})"
                          if r.runs > 1 else "")
                report.add("serve", f"{case.name} {name}",
                           f"{fmt_rate(r.rps)} req/s, p99 {ms(r.p99)}{spread}")
            else:
                report.add("serve", f"{case.name} {name}", r or "not run", result="INVALID")
        if isinstance(n, WrkResult) and isinstance(f, WrkResult):
            ratio = f.rps / n.rps
            report.add("serve", f"{case.name} feedsvc/nginx req/s",
                       f"{ratio:.2f}x (p99 {f.p99 / n.p99:.1f}x nginx's)",
                       f">= {targets[case.name]}x", ratio >= targets[case.name])
        else:
            report.add("serve", f"{case.name} feedsvc/nginx req/s", "n/a",
                       f">= {targets[case.name]}x", result="INVALID")
        if isinstance(a, WrkResult) and isinstance(f, WrkResult):
            report.add("serve", f"{case.name} feedsvc/{FLOOR} req/s", f"{f.rps / a.rps:.2f}x",
                       "(what aiohttp itself allows)", result="")
        report.data["serve"]["cases"][case.name] = {
            k: (v.__dict__ if isinstance(v, WrkResult) else v) for k, v in res.items()}


# -- watcher floor ---------------------------------------------------------------------------

def measure_floor(folder: Path, count: int, step_ms: int, debounce_ms: int,
                  gap_s: float) -> list[float]:
    """Raw watchfiles: rename → awatch yields it, with the step/debounce feedsvc uses."""
    from watchfiles import awatch

    try:
        from feedsvc.ingest.source import is_seed_name
    except Exception:
        def is_seed_name(name: str) -> bool:
            return name.endswith(".txt") and not name.startswith(".")

    rust_timeout = watcher_rust_timeout()
    folder.mkdir(parents=True, exist_ok=True)

    async def main() -> list[float]:
        stop_event = asyncio.Event()
        queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

        async def consume() -> None:
            async for changes in awatch(
                    folder, watch_filter=lambda _c, p: is_seed_name(Path(p).name),
                    step=step_ms, debounce=max(debounce_ms, step_ms),
                    stop_event=stop_event, rust_timeout=rust_timeout,
                    yield_on_timeout=True, recursive=False):
                now = time.perf_counter()
                for _, path in changes:
                    queue.put_nowait((now, Path(path).name))

        task = asyncio.create_task(consume())
        samples: list[float] = []
        gaps = Gaps(gap_s, step_ms)
        try:
            warm = 3
            for j in range(count + warm):
                name = f"floor-{j:04d}.txt"
                _slug, text = corpus.seed_text(20_000_000 + j)
                await asyncio.sleep(gaps.next() if j >= warm else gap_s)
                renamed = write_seed_atomically(folder, name, text.encode())
                while True:
                    seen_at, seen = await asyncio.wait_for(queue.get(), 10)
                    if seen == name:
                        break
                if j >= warm:
                    samples.append(seen_at - renamed)
        finally:
            stop_event.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        return samples

    return asyncio.run(main())


# -- publish + scale, per size ---------------------------------------------------------------

@dataclass
class Poller:
    """GET a path on one keep-alive connection with If-None-Match, every `interval` s, until
    `needle` is in the body. It asks for gzip, as feed readers do (feedparser, reader, NetNewsWire
    and the rest send Accept-Encoding with gzip): what it times is what a reader waits."""

    client: Client
    path: str
    interval: float = 0.001
    etag: str | None = None
    accept_encoding: str = "gzip"

    def until(self, needle: bytes, timeout: float) -> tuple[float, float]:
        """(perf_counter, wall clock) when the first GET showing `needle` completed."""
        deadline = time.perf_counter() + timeout
        while True:
            headers = {"Accept-Encoding": self.accept_encoding}
            if self.etag:
                headers["If-None-Match"] = self.etag
            status, hdrs, body = self.client.get(self.path, headers)
            now, wall = time.perf_counter(), time.time()
            if status == 200:
                self.etag = hdrs.get("etag")
                if hdrs.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if needle in body:
                    return now, wall
            elif status != 304:
                raise BenchFailure(f"GET {self.path} gave {status}")
            if now > deadline:
                raise TimeoutError(f"{needle!r} not in {self.path} within {timeout:.0f} s")
            time.sleep(self.interval)


def parse_iso(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except (TypeError, ValueError):
        return None


def read_parse_loop(folder: Path) -> tuple[float, int]:
    """The baseline: list the folder, read and parse every seed, nothing else."""
    from feedsvc.ingest.parser import parse_seed
    began = time.perf_counter()
    count = 0
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.name.endswith(".txt"))
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        parse_seed(path, data)
        count += 1
    return time.perf_counter() - began, count


class Profiler:
    """py-spy record on a pid (if py-spy is installed), collapsed stacks to a file."""

    def __init__(self, pid: int, out: Path, rate: int = 50) -> None:
        self.out = out
        self.proc = None
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.access(exe, os.X_OK):
            say("profile: py-spy not installed (bench/run --profile installs it)")
            return
        self.proc = spawn([exe, "record", "--pid", str(pid), "--rate", str(rate),
                           "--format", "raw", "--nonblocking", "-o", str(out)],
                          log=out.with_suffix(".log"))

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGINT, timeout=60)

    def summary(self, top: int = 14) -> list[str]:
        """Top frames by inclusive share of samples (feedsvc's own frames and what they call)."""
        if not self.out.exists():
            return []
        inclusive: dict[str, int] = {}
        own: dict[str, int] = {}
        total = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            count = int(n)
            total += count
            frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")]
            for fr in set(frames):
                inclusive[fr] = inclusive.get(fr, 0) + count
            own[frames[-1]] = own.get(frames[-1], 0) + count
        if not total:
            return []
        lines = [f"{total} samples; inclusive share of the top frames:"]
        interesting = [(c, f) for f, c in inclusive.items()
                       if "feedsvc" in f or "feedgen" in f or "lxml" in f or "sqlite" in f]
        for c, f in sorted(interesting, reverse=True)[:top]:
            lines.append(f"  {100 * c / total:5.1f}%  {f}")
        lines.append("self time, top frames:")
        for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:top // 2]:
            lines.append(f"  {100 * c / total:5.1f}%  {f}")
        return lines


class Gaps:
    """Quiet time before each drop: `base` plus a uniform share of one watcher step, from a
    fixed seed. A fixed gap would lock every drop to the same phase of the watcher's
    `step` ticks (the floor would read always ~1 or always ~2 steps); the floor and feedsvc
    get the same sequence."""

    def __init__(self, base: float, step_ms: int, seed: int = 4) -> None:
        self.rng = random.Random(seed)
        self.base, self.step = base, step_ms / 1000

    def next(self) -> float:
        return self.base + self.rng.uniform(0, self.step)


def edit_seed(folder: Path, name: str, original: bytes, token: str) -> float:
    data = original.rstrip(b"\n") + f"\n\nMise à jour : {token}.\n".encode()
    return write_seed_atomically(folder, name, data)


def run_size(k: int, do_scale: bool, do_publish: bool, args: argparse.Namespace, work: Path,
             report: Report, do_push: bool = False) -> None:
    site = work / f"size-{k}"
    port = free_port()
    config = write_config(site, port, args.step_ms, args.debounce_ms, args.server_option,
                          builtin_hub=do_push)
    seeds = site / "seeds"
    data: dict[str, Any] = {"seeds": k}
    report.data.setdefault("push" if do_push else "sizes", {})[str(k)] = data
    label = f"{k:,} seeds"
    if k:
        began = time.perf_counter()
        corpus.write_corpus(seeds, k)
        say(f"{label}: corpus written in {time.perf_counter() - began:.1f} s")
    server = None
    profiler = None
    try:
        if do_scale and k:
            loop_s, n = read_parse_loop(seeds)
            data["read_parse_loop_s"] = loop_s
            say(f"{label}: plain read+parse loop {loop_s:.2f} s ({n} files)")
        server = Feedsvc(config, port)
        if args.profile and k == max(args.sizes):
            time.sleep(0.3)
            profiler = Profiler(server.pid, work / f"profile-cold-{k}.txt")
        try:
            cold = server.wait_published(k, args.cold_timeout)
        except TimeoutError:
            msg = f"did not finish in {args.cold_timeout:.0f} s"
            say(f"{label}: cold start {msg}")
            data["cold_start_s"] = None
            if do_scale:
                report.add("scale", f"cold start, {label}", msg,
                           "< 2x read+parse" if k == 10_000 else "", result="DNF")
            if do_publish:
                report.add("publish", f"drops, {label}", f"not run: cold start {msg}",
                           result="DNF")
            return
        finally:
            if profiler is not None:
                profiler.stop()
                data["profile_cold"] = profiler.summary()
                for line in data["profile_cold"]:
                    say("profile cold start: " + line)
                profiler = None
        rss_cold = peak_rss(server.pid)
        data["cold_start_s"] = cold
        data["peak_rss_after_cold_mib"] = rss_cold[0]
        say(f"{label}: cold start {cold:.2f} s; peak RSS {rss_cold[0] or 0:.0f} MiB")

        client = Client(port)
        feed = Poller(client, "/feed.atom", args.poll_ms / 1000)
        # Warm-up: the first drops also wait out the rescan the watcher asks for at start.
        for j in range(2):
            name = f"warmup-{j}.txt"
            slug, text = corpus.seed_text(30_000_000 + k + j, slug_prefix="chauffe-")
            write_seed_atomically(seeds, name, text.encode())
            feed.until(slug.encode(), args.cold_timeout)
        say(f"{label}: watcher live, warm-up drops seen")
        floor: list[float] = []
        if do_publish or do_push or (do_scale and k):
            n_floor = args.drops if do_publish or do_push else max(20, args.updates)
            floor = measure_floor(site / "floor", n_floor, args.step_ms, args.debounce_ms,
                                  args.drop_gap)
            data["floor_ms"] = [x * 1000 for x in floor]
            say(f"{label}: raw watchfiles floor p50 {ms(pct(floor, 50))}, "
                f"p99 {ms(pct(floor, 99))}")

        if do_scale and k:
            scale_updates(k, server, seeds, feed, client, floor, args, data, report)
        if do_publish:
            publish_drops(k, server, seeds, feed, floor, args, data, report, work)
        if do_push:
            push_drops(k, server, seeds, feed, floor, args, data, report, site)
        rss_end = peak_rss(server.pid)
        data["peak_rss_end_mib"] = rss_end[0]
        data["peak_rss_tree_mib"] = rss_end[1]
        data["processes"] = rss_end[2]
        health = healthz(port) or {}
        data["healthz_end"] = {k2: health.get(k2) for k2 in
                               ("status", "entries_published", "renders", "seeds_rejected")}
        client.close()
        if do_scale and k:
            loop_s = data["read_parse_loop_s"]
            ratio = cold / loop_s
            target = "< 2x read+parse" if k == 10_000 else "(no target)"
            report.add("scale", f"cold start, {label}",
                       f"{cold:.2f} s vs read+parse {loop_s:.2f} s = {ratio:.2f}x",
                       target, (ratio < 2) if k == 10_000 else None)
            rss_txt = (f"{rss_cold[0] or 0:.0f} MiB after cold start, "
                       f"{rss_end[0] or 0:.0f} MiB at end")
            if rss_end[2] > 1:
                rss_txt += f" ({rss_end[2]} processes: {rss_end[1] or 0:.0f} MiB summed)"
            peak = max(rss_end[1] or 0, rss_end[0] or 0)
            report.add("scale", f"peak RSS (VmHWM), {label}", rss_txt,
                       "< 150 MB (143 MiB)" if k >= 100_000 else "(no target)",
                       (peak * 1024 * 1024 < 150e6) if k >= 100_000 else None)
    finally:
        if profiler is not None:
            profiler.stop()
        if server is not None:
            code = server.stop()
            tb = server.tracebacks()
            if tb:
                report.problem(f"{label}: {tb} traceback(s) in {server.log}")
            if code not in (0, None):
                report.problem(f"{label}: feedsvc serve exited with {code} on SIGTERM")


def run_migration(k: int, args: argparse.Namespace, work: Path, report: Report) -> None:
    """A site moving its archive in: k seeds sharing one mtime (git clone, cp -r, rsync -t,
    unzip). The cold start must stay linear (it was quadratic: 324 s at 10,000 seeds, against
    ~2 s with spread mtimes) and no `updated` may pass the clock (it was 2.7 hours ahead)."""
    site = work / f"migration-{k}"
    port = free_port()
    config = write_config(site, port, args.step_ms, args.debounce_ms, args.server_option)
    seeds = site / "seeds"
    label = f"{k:,} seeds, one mtime"
    data: dict[str, Any] = {"seeds": k}
    report.data.setdefault("migration", {})[str(k)] = data
    corpus.write_corpus(seeds, k, same_mtime=int(time.time()))
    loop_s, _ = read_parse_loop(seeds)
    data["read_parse_loop_s"] = loop_s
    server = Feedsvc(config, port)
    try:
        try:
            cold = server.wait_published(k, args.cold_timeout)
        except TimeoutError:
            msg = f"did not finish in {args.cold_timeout:.0f} s"
            report.add("scale", f"migration cold start, {label}", msg, "< 2x read+parse",
                       result="DNF")
            return
        client = Client(port)
        _, headers, _ = client.get("/feed.atom")
        client.close()
        lm_ahead = (email.utils.parsedate_to_datetime(headers["last-modified"])
                    - email.utils.parsedate_to_datetime(headers["date"])).total_seconds()
    finally:
        code = server.stop()
        if server.tracebacks():
            report.problem(f"{label}: traceback(s) in {server.log}")
        if code not in (0, None):
            report.problem(f"{label}: feedsvc serve exited with {code} on SIGTERM")
    # The state after the start, read directly: `updated` is in microseconds (schema 3).
    db = sqlite3.connect(f"file:{site / 'state' / 'feedsvc.sqlite3'}?mode=ro", uri=True)
    try:
        newest, distinct, rows = db.execute(
            "SELECT max(updated), count(DISTINCT updated), count(*) FROM stamps").fetchone()
    finally:
        db.close()
    ahead = newest / 1e6 - time.time()
    ratio = cold / loop_s
    data.update(cold_start_s=cold, max_updated_minus_clock_s=ahead,
                last_modified_minus_date_s=lm_ahead, distinct_updated=distinct == rows)
    say(f"{label}: cold start {cold:.2f} s (read+parse {loop_s:.2f} s), newest updated "
        f"{ahead:+.3f} s from the clock, Last-Modified {lm_ahead:+.0f} s from Date")
    report.add("scale", f"migration cold start, {label}",
               f"{cold:.2f} s vs read+parse {loop_s:.2f} s = {ratio:.2f}x",
               "< 2x read+parse" if k == 10_000 else "(no target)",
               (ratio < 2) if k == 10_000 else None)
    report.add("scale", f"migration: newest updated minus clock, {label}",
               f"{ahead:+.3f} s ({'all distinct' if distinct == rows else 'SHARED'}); "
               f"Last-Modified minus Date {lm_ahead:+.0f} s", "≤ 0, distinct",
               ahead <= 0 and lm_ahead <= 0 and distinct == rows)


def scale_updates(k: int, server: Feedsvc, seeds: Path, feed: Poller, client: Client,
                  floor: list[float], args: argparse.Namespace, data: dict[str, Any],
                  report: Report) -> None:
    """Edit one existing seed ~20 times; time rename → served; estimate the update itself."""
    label = f"{k:,} seeds"
    floor_p50 = pct(floor, 50) if floor else 0.0
    results: dict[str, dict[str, Any]] = {}
    shown = {"in feed": "in feed", "not in feed": "not in feed"}
    # The newest seed is in the capped feed; a seed from the middle is only on its own page
    # (polled there), and one a quarter in is polled on the archive page that holds it.
    archived = k // 4
    archive_path = find_archive_page(client, corpus.seed_text(archived)[0], archived)
    data["archive_page"] = archive_path
    shown["archived"] = f"archived, {archive_path}"
    for kind, index in (("in feed", k - 1), ("not in feed", k // 2), ("archived", archived)):
        name = corpus.file_name(index)
        slug, _ = corpus.seed_text(index)
        original = (seeds / name).read_bytes()
        if kind == "archived" and archive_path is None:
            report.problem(f"{label}: no archive page holds {slug}")
            continue
        poller = (feed if kind == "in feed" else
                  Poller(client, archive_path if kind == "archived" else f"/entries/{slug}",
                         args.poll_ms / 1000))
        lat, proc_est = [], []
        renders_before = (healthz(server.port) or {}).get("renders")
        gaps = Gaps(args.drop_gap, args.step_ms)
        try:
            for j in range(args.updates):
                token = f"maj-{k}-{kind.replace(' ', '')}-{j}-{time.time_ns()}"
                time.sleep(gaps.next())
                renamed = edit_seed(seeds, name, original, token)
                renamed_wall = time.time()
                seen, seen_wall = poller.until(token.encode(), args.drop_timeout)
                lat.append(seen - renamed)
                last = parse_iso((healthz(server.port) or {}).get("last_change"))
                if last is not None and renamed_wall <= last <= seen_wall:
                    proc_est.append(seen_wall - last)
        except TimeoutError as e:
            report.problem(f"{label} update ({kind}): {e}")
        renders_after = (healthz(server.port) or {}).get("renders")
        results[kind] = {"latency_ms": [x * 1000 for x in lat],
                         "since_last_change_ms": [x * 1000 for x in proc_est],
                         "renders": (renders_after - renders_before
                                     if isinstance(renders_before, int)
                                     and isinstance(renders_after, int) else None)}
        if not lat:
            report.add("scale", f"single-seed update ({shown.get(kind, kind)}), {label}",
                       "no sample", "< 10 ms", result="DNF")
            continue
        med = statistics.median(lat)
        est = med - floor_p50
        say(f"{label}: update ({kind}) rename→served p50 {ms(med)} (n={len(lat)}), minus floor "
            f"p50 = {ms(est)}; /healthz last_change→served p50 "
            + (ms(statistics.median(proc_est)) if proc_est else "n/a")
            + f"; renders {results[kind]['renders']}")
        if proc_est:
            # last_change is stamped when feedsvc starts applying the batch: from it to the
            # first GET that shows the edit is the update itself (+ up to one 1 ms poll).
            upd = statistics.median(proc_est)
            report.add("scale", f"single-seed update ({shown.get(kind, kind)}), {label}",
                       f"{upd * 1000:.1f} ms p50 (max {max(proc_est) * 1000:.1f}); "
                       f"rename→served p50 {med * 1000:.1f} ms = floor p50 "
                       f"{floor_p50 * 1000:.1f} {est * 1000:+.1f}",
                       "< 10 ms", upd < 0.010)
        else:
            why = ("no render: the edit is served without a new snapshot"
                   if results[kind]["renders"] == 0 else "/healthz last_change unusable")
            report.add("scale", f"single-seed update ({shown.get(kind, kind)}), {label}",
                       f"~{est * 1000:.1f} ms = rename→served p50 {med * 1000:.1f} - floor p50 "
                       f"{floor_p50 * 1000:.1f} ({why})",
                       "< 10 ms", est < 0.010)
    data["updates"] = results
    if archive_path is not None:
        archive_latency(k, archive_path, archived, seeds, client, args, data, report)


#: feedsvc's default [feed] archive_page_entries (the bench's config does not set it).
ARCHIVE_PAGE_ENTRIES = 50
_PREV_ARCHIVE = re.compile(rb'<link\b[^>]*\brel="prev-archive"[^>]*>')
_HREF = re.compile(rb'\bhref="([^"]+)"')


def find_archive_page(client: Client, slug: str, index: int) -> str | None:
    """The path of the Atom archive page holding corpus seed `index` (RFC 5005): computed
    (oldest first, ARCHIVE_PAGE_ENTRIES a page, page 1 the oldest: corpus mtimes follow the
    index) and checked; else found by walking prev-archive from /feed.atom (once)."""
    needle = f"/entries/{slug}\"".encode()
    guess = f"/archive/{ARCHIVE_PAGE_ENTRIES}/{index // ARCHIVE_PAGE_ENTRIES + 1}.atom"
    status, _, body = client.get(guess)
    if status == 200 and needle in body:
        return guess
    path: str | None = "/feed.atom"
    seen: set[str] = set()
    while path is not None and path not in seen:
        seen.add(path)
        status, _, body = client.get(path)
        if status != 200:
            return None
        if path != "/feed.atom" and needle in body:
            return path
        link = _PREV_ARCHIVE.search(body)
        href = _HREF.search(link.group(0)) if link else None
        path = urlsplit(href.group(1).decode()).path if href else None
    return None


def timed_get(client: Client, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
    """(seconds to the whole response, status, body decoded: a page rendered a moment ago
    may come in identity while its gzip is being made)."""
    began = time.perf_counter()
    status, hdrs, body = client.get(path, headers)
    took = time.perf_counter() - began
    return took, status, gzip.decompress(body) if hdrs.get("content-encoding") == "gzip" else body


def archive_latency(k: int, archive_path: str, index: int, seeds: Path, client: Client,
                    args: argparse.Namespace, data: dict[str, Any], report: Report) -> None:
    """Request latency of an archive page, cold (the first GET after an edit of one of its
    entries: read from the state and rendered) and warm (its cache), against /feed.atom (a
    snapshot document, held in memory) in the same run; gzip, as readers ask."""
    label = f"{k:,} seeds"
    gz = {"Accept-Encoding": "gzip"}
    name, slug = corpus.file_name(index), corpus.seed_text(index)[0]
    original = (seeds / name).read_bytes()
    entry = Poller(client, f"/entries/{slug}", args.poll_ms / 1000)
    cold: list[float] = []
    warm: list[float] = []
    snap: list[float] = []
    gaps = Gaps(args.drop_gap, args.step_ms)
    for j in range(args.updates):
        token = f"arch-{k}-{j}-{time.time_ns()}"
        time.sleep(gaps.next())
        edit_seed(seeds, name, original, token)
        # Applied when the entry's page shows it (served from the state on request; the
        # archive page itself is not asked for until the timed GET).
        try:
            entry.until(token.encode(), args.drop_timeout)
        except TimeoutError as e:
            report.problem(f"{label} archive latency: {e}")
            break
        took, status, body = timed_get(client, archive_path, gz)
        if status != 200 or token.encode() not in body:
            # Not applied to the page yet: not a cold sample of this edit.
            continue
        cold.append(took)
        warm.extend(timed_get(client, archive_path, gz)[0] for _ in range(3))
        snap.extend(timed_get(client, "/feed.atom", gz)[0] for _ in range(3))
    data["archive_latency_ms"] = {"cold": [x * 1000 for x in cold],
                                  "warm": [x * 1000 for x in warm],
                                  "snapshot": [x * 1000 for x in snap]}
    if not cold or not snap:
        report.add("scale", f"archive page latency, {label}", "no sample", result="DNF")
        return
    c, w, f = (statistics.median(x) for x in (cold, warm, snap))
    say(f"{label}: {archive_path} GET p50 cold {ms(c)} (n={len(cold)}), warm {ms(w)}; "
        f"/feed.atom {ms(f)}")
    report.add("scale", f"archive page GET (gzip), {label}",
               f"cold {c * 1000:.2f} ms = {c / f:.1f}x, warm {w * 1000:.2f} ms = {w / f:.1f}x "
               f"/feed.atom's {f * 1000:.2f} ms (p50)", "(no target)")


def publish_drops(k: int, server: Feedsvc, seeds: Path, feed: Poller, floor: list[float],
                  args: argparse.Namespace, data: dict[str, Any], report: Report,
                  work: Path) -> None:
    label = f"{k:,} seeds"
    lat: list[float] = []
    timeouts = 0
    profiler = None
    if args.profile and k == max(args.sizes):
        profiler = Profiler(server.pid, work / f"profile-drops-{k}.txt")
    began = time.monotonic()
    gaps = Gaps(args.drop_gap, args.step_ms)
    try:
        for j in range(args.drops):
            if time.monotonic() - began > args.drops_budget:
                report.problem(f"{label}: drops stopped after {j} (budget "
                               f"{args.drops_budget:.0f} s)")
                break
            slug, text = corpus.seed_text(10_000_000 + j, slug_prefix=f"depeche-k{k}-")
            time.sleep(gaps.next())
            renamed = write_seed_atomically(seeds, f"zz-depeche-{j:04d}.txt", text.encode())
            try:
                seen, _ = feed.until(slug.encode(), args.drop_timeout)
            except TimeoutError:
                timeouts += 1
                report.problem(f"{label}: drop {j} not served within {args.drop_timeout:.0f} s")
                if timeouts >= 3:
                    break
                continue
            lat.append(seen - renamed)
    finally:
        if profiler is not None:
            profiler.stop()
            data["profile_drops"] = profiler.summary()
            for line in data["profile_drops"]:
                say("profile drops: " + line)
    data["drops_ms"] = [x * 1000 for x in lat]
    data["drop_timeouts"] = timeouts
    if not lat:
        report.add("publish", f"drop→served, {label}", "no sample", result="DNF")
        return
    p50, p99, mx = pct(lat, 50), pct(lat, 99), max(lat)
    f50, f99 = pct(floor, 50), pct(floor, 99)
    say(f"{label}: drop→served p50 {ms(p50)}, p99 {ms(p99)}, max {ms(mx)} (n={len(lat)}); "
        f"floor p50 {ms(f50)}")
    n_txt = f"n={len(lat)}" + (f", {timeouts} timed out" if timeouts else "")
    report.add("publish", f"drop→served, {label}",
               f"p50 {p50 * 1000:.1f} / p99 {p99 * 1000:.1f} / max {mx * 1000:.1f} ms ({n_txt})",
               "p99 < 60 ms", p99 < 0.060 and not timeouts)
    below = f99 >= 0.060
    report.add("publish", f"raw watchfiles floor, {label}",
               f"p50 {f50 * 1000:.1f} / p99 {f99 * 1000:.1f} ms (n={len(floor)})"
               + ("; the p99 < 60 ms target is below this floor" if below else ""),
               f"(step {args.step_ms} ms)")
    report.add("publish", f"feedsvc - floor at p50, {label}", f"{(p50 - f50) * 1000:+.1f} ms",
               "<= 10 ms", (p50 - f50) <= 0.010)


# -- push: WebSub content distribution ---------------------------------------------------------

class Subscribers:
    """bench/subscribers.py in a process of its own: N WebSub callbacks on loopback."""

    def __init__(self, n: int, log: Path) -> None:
        self.n = n
        self.port = free_port()
        self.proc = spawn([sys.executable, str(HERE / "subscribers.py"), str(self.port),
                           str(n)], log=log)
        self.client = Client(self.port, timeout=60)
        wait_for(self._up, 30, 0.05, "the subscribers' server")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise BenchFailure(f"subscribers.py exited with {self.proc.returncode}")
        try:
            return self.client.get("/control/verified")[0] == 200
        except OSError:
            self.client.close()
            return False

    def callback(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/cb/{i}"

    def verified(self) -> int:
        return int(json.loads(self.client.get("/control/verified")[2])["verified"])

    def watch(self, needle: bytes) -> None:
        conn = self.client
        if conn.conn is None:
            conn.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.conn.request("POST", "/control/watch", body=needle)
        conn.conn.getresponse().read()

    def wait(self, timeout: float) -> dict[str, Any]:
        return dict(json.loads(self.client.get(f"/control/wait?timeout={timeout}")[2]))

    def stop(self) -> None:
        self.client.close()
        stop(self.proc)


def subscribe_all(port: int, subs: Subscribers) -> None:
    """WebSub §5.1 subscription requests to the built-in hub, one per callback, each with a
    secret (deliveries signed, §7.1); then the hub verifies each (§5.3)."""
    from urllib.parse import urlencode
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(subs.n):
            body = urlencode({"hub.mode": "subscribe",
                              "hub.topic": f"http://127.0.0.1:{port}/feed.atom",
                              "hub.callback": subs.callback(i),
                              "hub.secret": f"bench-secret-{i}"})
            conn.request("POST", "/websub", body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 202:
                raise BenchFailure(f"subscription {i} refused: {resp.status} {text[:200]!r}")
    finally:
        conn.close()
    wait_for(lambda: subs.verified() >= subs.n, 60, 0.05, f"{subs.n} verifications")


def push_drops(k: int, server: Feedsvc, seeds: Path, feed: Poller, floor: list[float],
               args: argparse.Namespace, data: dict[str, Any], report: Report,
               site: Path) -> None:
    """Drops as in publish, each timed twice in the same run: rename → served (the 1 ms poll
    of /feed.atom) and rename → each subscriber's callback received the document holding it."""
    label = f"{k:,} seeds, {args.subscribers} subscribers"
    subs = Subscribers(args.subscribers, site / "subscribers.log")
    try:
        subscribe_all(server.port, subs)
        # Verified is not yet active (the hub stores it after the answer): a warm-up drop
        # reaching every callback shows they all are.
        for j in range(30):
            slug, text = corpus.seed_text(40_000_000 + k + j, slug_prefix="abonnes-")
            subs.watch(slug.encode())
            write_seed_atomically(seeds, f"push-warmup-{j}.txt", text.encode())
            got = subs.wait(5)
            if len(got["times"]) >= subs.n:
                break
        else:
            raise BenchFailure(f"only {len(got['times'])} of {subs.n} subscribers got the "
                               "warm-up drops")
        say(f"push, {label}: all subscribed and verified, warm-up delivered")
        served: list[float] = []
        first: list[float] = []
        every: list[float] = []
        last: list[float] = []
        missing = 0
        gaps = Gaps(args.drop_gap, args.step_ms)
        began = time.monotonic()
        for j in range(args.drops):
            if time.monotonic() - began > args.drops_budget:
                report.problem(f"push, {label}: drops stopped after {j} (budget)")
                break
            slug, text = corpus.seed_text(50_000_000 + j, slug_prefix=f"pousse-k{k}-")
            subs.watch(slug.encode())
            time.sleep(gaps.next())
            renamed = write_seed_atomically(seeds, f"zz-pousse-{j:04d}.txt", text.encode())
            seen, _ = feed.until(slug.encode(), args.drop_timeout)
            got = subs.wait(args.drop_timeout)
            times = sorted(float(t) - renamed for t in got["times"].values())
            served.append(seen - renamed)
            missing += subs.n - len(times)
            if times:
                first.append(times[0])
                every.extend(times)
            if len(times) == subs.n:
                last.append(times[-1])
        bad = int(got["bad_signatures"])
        if got.get("unsupported"):
            raise BenchFailure(f"the subscribers did not understand {got['unsupported']} "
                               "requests (bench/subscribers.py: Content-Length bodies only)")
        # The floor, same run, same subscribers: a bare sender of the feed as served now.
        status, _, document = Client(server.port).get("/feed.atom")
        if status != 200:
            raise BenchFailure(f"/feed.atom answered {status}")
        sender = subprocess.run([sys.executable, str(HERE / "push_floor.py"), str(subs.port),
                                 str(subs.n), str(max(10, len(served) // 2))],
                                input=document, capture_output=True, timeout=600)
        if sender.returncode:
            raise BenchFailure(f"push_floor.py failed: {sender.stderr.decode()[-500:]}")
        bare = json.loads(sender.stdout)
    finally:
        subs.stop()
    data.update(push_served_ms=[x * 1000 for x in served], push_first_ms=[x * 1000 for x in first],
                push_every_ms=[x * 1000 for x in every], push_last_ms=[x * 1000 for x in last],
                push_missing=missing, push_bad_signatures=bad, subscribers=args.subscribers,
                push_body_bytes=len(document),
                push_floor_every_ms=[x * 1000 for x in bare["every"]],
                push_floor_first_ms=[x * 1000 for x in bare["first"]])
    if bad:
        report.problem(f"push, {label}: {bad} deliveries with a wrong X-Hub-Signature")
    if missing:
        report.problem(f"push, {label}: {missing} callbacks never got their drop")
    if not served or not every:
        report.add("push", f"drop→callback, {label}", "no sample", result="DNF")
        return

    def line(xs: list[float]) -> str:
        return (f"p50 {pct(xs, 50) * 1000:.1f} / p99 {pct(xs, 99) * 1000:.1f} / "
                f"max {max(xs) * 1000:.1f} ms (n={len(xs)})")

    s50, e50 = pct(served, 50), pct(every, 50)
    say(f"push, {label}: drop→served p50 {ms(s50)}; drop→callback p50 {ms(e50)}, "
        f"first {ms(pct(first, 50))}, all {ms(pct(last, 50)) if last else 'n/a'}")
    report.add("push", f"drop→served, {label}", line(served))
    report.add("push", f"drop→callback (every callback), {label}", line(every))
    report.add("push", f"drop→first callback, {label}", line(first))
    if last:
        report.add("push", f"drop→all {subs.n} callbacks, {label}", line(last))
    report.add("push", f"callback - served at p50, {label}", f"{(e50 - s50) * 1000:+.1f} ms",
               "<= 15 ms", (e50 - s50) <= 0.015 and not missing and not bad)
    if bare["every"]:
        # What any hub in Python pays here for the same 100 signed POSTs of the same bytes,
        # from the moment it starts sending: the part of `callback - served` feedsvc can
        # not take away on this machine (the subscribers share its cores).
        b50 = pct(bare["every"], 50)
        report.add("push", f"bare sender→callback (every callback), {label}, "
                   f"{len(document) / 1000:.0f} KB", line(bare["every"]))
        report.add("push", f"feedsvc's own share: callback - served - bare sender, p50, "
                   f"{label}", f"{(e50 - s50 - b50) * 1000:+.1f} ms")
    f50, f99 = pct(floor, 50), pct(floor, 99)
    report.add("push", f"raw watchfiles floor, {label}",
               f"p50 {f50 * 1000:.1f} / p99 {f99 * 1000:.1f} ms (n={len(floor)})",
               f"(step {args.step_ms} ms)")


# -- main ------------------------------------------------------------------------------------

def code_fingerprint() -> str:
    """A hash of feedsvc/*.py as they are on disk: the code a run measured."""
    import hashlib
    h = hashlib.blake2b(digest_size=6)
    for path in sorted((ROOT / "feedsvc").glob("*.py")):
        with contextlib.suppress(OSError):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def machine_info() -> dict[str, Any]:
    def cmd(*a: str) -> str:
        try:
            r = subprocess.run(a, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) else ""
        except (OSError, subprocess.SubprocessError):
            return "not found"
    mem = ""
    with contextlib.suppress(OSError):
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB" if m else ""
    def has(module: str) -> bool:
        import importlib.util
        return importlib.util.find_spec(module) is not None
    rev = cmd("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "feedsvc"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(),
        "python": platform.python_version(), "feedsvc_rev": rev + (" + uncommitted changes in "
                                                                   "feedsvc/" if dirty else ""),
        "nginx": cmd(shutil.which("nginx") or "/usr/sbin/nginx", "-v"),
        "wrk": cmd(shutil.which("wrk") or "wrk", "-v"),
        "feedsvc_code": code_fingerprint(),
        "uvloop_installed": has("uvloop"), "brotli_installed": has("brotli"),
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="serve,publish,scale",
                   help="sections to run, comma-separated: serve, publish, scale, push "
                        "(default: the first three)")
    p.add_argument("--subscribers", type=int, default=100,
                   help="push section: WebSub subscribers of /feed.atom (default 100)")
    p.add_argument("--sizes", default=None,
                   help="seeds on disk for publish and scale (default 10000,100000; "
                        "--quick: 2000). publish also always runs with 0")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small sizes, 20 drops, 3 s wrk runs (< 2 minutes)")
    p.add_argument("--drops", type=int, default=None, help="drops per size (default 100)")
    p.add_argument("--updates", type=int, default=None,
                   help="edits of one existing seed per size and kind (default 20)")
    p.add_argument("--drop-gap", type=float, default=0.05,
                   help="seconds of quiet before each drop/edit (default 0.05)")
    p.add_argument("--drop-timeout", type=float, default=15.0,
                   help="seconds one drop may take to be served (default 15)")
    p.add_argument("--drops-budget", type=float, default=600.0,
                   help="seconds all drops of one size may take (default 600)")
    p.add_argument("--cold-timeout", type=float, default=900.0,
                   help="seconds a cold start may take before it is reported as not finished "
                        "(default 900)")
    p.add_argument("--poll-ms", type=float, default=1.0,
                   help="pause between two GETs while waiting for a drop (default 1 ms; each "
                        "GET is a keep-alive If-None-Match, answered 304 until it changes)")
    p.add_argument("--step-ms", type=int, default=DEFAULT_WATCH[0],
                   help=f"[watch] step_ms for feedsvc and the floor's watchfiles step "
                        f"(default {DEFAULT_WATCH[0]}, feedsvc's)")
    p.add_argument("--debounce-ms", type=int, default=DEFAULT_WATCH[1],
                   help=f"[watch] debounce_ms for feedsvc and the floor's watchfiles debounce "
                        f"(default {DEFAULT_WATCH[1]}, feedsvc's)")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--wrk-connections", type=int, default=64)
    p.add_argument("--wrk-duration", type=float, default=None,
                   help="seconds per measured wrk run (default 10; --quick: 3)")
    p.add_argument("--wrk-warmup", type=float, default=None,
                   help="seconds of unmeasured wrk before each run (default 2; --quick: 1)")
    p.add_argument("--repeat", type=int, default=None,
                   help="measured wrk runs per server and case, alternating the servers; the "
                        "table shows medians (default 3; --quick: 1)")
    p.add_argument("--serve-processes", type=int, default=os.cpu_count() or 1,
                   help="serve section only: feedsvc [server] workers, nginx worker_processes "
                        "and aiohttp floor processes (default: one per core, as nginx's "
                        "'auto'); 1 compares single processes")
    p.add_argument("--nginx-workers", default=None,
                   help="nginx worker_processes, when it must differ from --serve-processes")
    p.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra line for feedsvc's [server] table, e.g. 'workers = 2' "
                        "(repeatable)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy record feedsvc during the cold start and the drops at the "
                        "largest size, and print the top frames")
    p.add_argument("--json", default=str(HERE / "results.json"),
                   help="write the results here (default bench/results.json; '' for none)")
    p.add_argument("--workdir", default=None,
                   help="folder for corpora, states and logs (default: a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(a.sections) - {"serve", "publish", "scale", "push"}
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    push_only = set(a.sections) <= {"push"}
    sizes = a.sizes or ("2000" if a.quick else "10000" if push_only else "10000,100000")
    a.sizes = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    if any(s <= 0 for s in a.sizes):
        p.error("--sizes must be positive (publish always runs with 0 too)")
    a.drops = a.drops if a.drops is not None else (20 if a.quick else 100)
    a.updates = a.updates if a.updates is not None else (5 if a.quick else 20)
    a.wrk_duration = a.wrk_duration if a.wrk_duration is not None else (3 if a.quick else 10)
    a.wrk_warmup = a.wrk_warmup if a.wrk_warmup is not None else (1 if a.quick else 2)
    a.repeat = max(1, a.repeat if a.repeat is not None else (1 if a.quick else 3))
    if a.quick:
        a.cold_timeout = min(a.cold_timeout, 120)
        a.drops_budget = min(a.drops_budget, 60)
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    report = Report()
    report.data["machine"] = machine_info()
    report.data["args"] = {k: v for k, v in vars(args).items()}
    info = report.data["machine"]
    say(f"machine: {info['cpus']} CPUs, {info['memory']}, Python {info['python']}, "
        f"{info['nginx']}, {info['wrk']}, uvloop {'yes' if info['uvloop_installed'] else 'no'}"
        f", feedsvc {info['feedsvc_rev']}")
    say("note: the servers, wrk and this script share the machine's "
        f"{info['cpus']} cores; nothing is pinned")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="feedsvc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"work folder: {work}")
    if PIDFILE and not (args.keep or args.workdir):
        with open(PIDFILE, "a") as f:
            f.write(f"workdir {work}\n")  # bench/run removes it if this process is killed
    exit_code = 0
    try:
        if "serve" in args.sections:
            try:
                section_serve(args, work, report)
            except BenchFailure as e:
                report.problem(f"serve: {e}")
                report.add("serve", "section", f"failed: {str(e).splitlines()[0]}",
                           result="INVALID")
        do_publish, do_scale = "publish" in args.sections, "scale" in args.sections
        do_push = "push" in args.sections
        sizes = (([0] if do_publish or do_push else []) + sorted(set(args.sizes))
                 if do_publish or do_scale or do_push else [])
        for k in sizes:
            try:
                # The push section runs on a server of its own (with the built-in hub and its
                # subscribers): the publish figures stay those of a service without them.
                if do_publish or (do_scale and k > 0):
                    run_size(k, do_scale and k > 0, do_publish, args, work, report)
                if do_push:
                    run_size(k, False, False, args, work / "push", report, do_push=True)
            except (BenchFailure, TimeoutError, OSError, http.client.HTTPException) as e:
                report.problem(f"{k:,} seeds: {e}")
                report.add("scale" if do_scale else "push" if do_push else "publish",
                           f"{k:,} seeds", f"failed: {str(e).splitlines()[0]}",
                           result="INVALID")
        for k in sorted(set(args.sizes)) if do_scale else []:
            try:
                run_migration(k, args, work, report)
            except (BenchFailure, TimeoutError, OSError, http.client.HTTPException,
                    sqlite3.Error) as e:
                report.problem(f"migration, {k:,} seeds: {e}")
                report.add("scale", f"migration, {k:,} seeds",
                           f"failed: {str(e).splitlines()[0]}", result="INVALID")
    except KeyboardInterrupt:
        report.problem("interrupted")
        exit_code = 130
    finally:
        stop_all()
        if args.keep or args.workdir:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    code_end = code_fingerprint()
    report.data["machine"]["feedsvc_code_end"] = code_end
    if code_end != info["feedsvc_code"]:
        report.problem(f"feedsvc/*.py changed during the run (code {info['feedsvc_code']} at "
                       f"start, {code_end} at the end): figures may mix two versions")
    print()
    print(f"feedsvc benchmark — {info['cpus']} CPUs, {info['memory']}; servers, wrk and the "
          f"bench share them; feedsvc {info['feedsvc_rev']} (code {info['feedsvc_code']})")
    print(report.table())
    if report.problems:
        print("\nproblems:")
        for p in report.problems:
            print("  - " + p.splitlines()[0])
        exit_code = exit_code or 1
    report.data["rows"] = [r.__dict__ for r in report.rows]
    report.data["problems"] = report.problems
    if args.json:
        Path(args.json).write_text(json.dumps(report.data, indent=1, ensure_ascii=False,
                                              default=str) + "\n")
        print(f"\nresults: {args.json}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
