"""Instructions per request, feedsvc vs the bare aiohttp handler (bench/aiohttp_floor.py), for
the serve section's three cases: CPU-time figures that do not depend on what else the machine
runs (wrk's req/s do, on a shared machine).

Each server runs alone (one process) under `valgrind --tool=callgrind` with instrumentation
off until it answers; then, per case: a warm-up, the counters zeroed, `--requests` requests
sent one after the other on one keep-alive connection, a dump. The figure is the dump's total
instructions (every thread of the process) divided by the requests, less what the process
does when idle for as long (measured the same way, without requests: timers, the watcher).

    python bench/instructions.py [--requests 2000] [--keep DIR] [--pythonpath DIR]
           [--callgrind-out DIR]

`--pythonpath`: run feedsvc from another tree (e.g. `git archive <commit> feedsvc | tar -x -C
/tmp/v/<c>`), to compare versions. `--callgrind-out DIR`: keep the dumps, for
`callgrind_annotate` (start a server with `--only feedsvc` and read where its instructions go).
Needs valgrind (`apt-get install valgrind`). Python, aiohttp and uvloop as for the bench.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402

from bench import BenchFailure, feedsvc_build, free_port, wait_for, write_config  # noqa: E402

CASES = {
    "200 identity": {},
    "200 gzip": {"Accept-Encoding": "gzip"},
    "304": {"Accept-Encoding": "gzip"},  # + If-None-Match: the gzip variant's ETag
}


class Conn:
    """One keep-alive connection sending fixed request bytes and reading whole responses."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""

    def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _more(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise BenchFailure("connection closed by the server")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def raw_request(headers: dict[str, str]) -> bytes:
    lines = ["GET /feed.atom HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Callgrind:
    """A server under callgrind, and its dumps."""

    def __init__(self, name: str, args: list[str], port: int, out: Path, cwd: Path,
                 env: dict[str, str]) -> None:
        self.name, self.port, self.out = name, port, out
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / f"{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}/{name}.callgrind", *args],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
            start_new_session=True)
        self.dumps = 0

    def control(self, *flags: str) -> None:
        subprocess.run(["callgrind_control", *flags, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def dump(self) -> int:
        """Dump the counters since the last zero; return their total instructions."""
        self.control("-d")
        self.dumps += 1
        path = self.out / f"{self.name}.callgrind.{self.dumps}"
        wait_for(lambda: path.exists() and b"totals:" in path.read_bytes()[-4096:], 60, 0.05,
                 f"callgrind dump {path}")
        match = re.search(rb"^(?:totals|summary): (\d+)", path.read_bytes(), re.MULTILINE)
        if match is None:
            raise BenchFailure(f"no totals in {path}")
        return int(match.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def measure(server: Callgrind, requests: int, warmup: int, plain: bytes,
            cases: list[str]) -> dict[str, float]:
    def up() -> bool:
        if server.proc.poll() is not None:
            raise BenchFailure(f"{server.name} exited: see {server.log.name}")
        try:
            c = Conn(server.port)
            try:
                status, _, _ = c.request(raw_request(CASES["200 gzip"]))
            finally:
                c.close()
        except OSError:
            return False
        return status == 200
    wait_for(up, 600, 0.5, f"{server.name} answering under valgrind")
    time.sleep(2)  # the gzip and br variants, made after the first swap
    server.control("-i", "on")
    results: dict[str, float] = {}
    conn = Conn(server.port)
    try:
        # Idle: what the process does without requests, per second.
        server.control("-z")
        started = time.perf_counter()
        time.sleep(3)
        idle_per_s = server.dump() / (time.perf_counter() - started)
        results["idle per s"] = idle_per_s
        for name in cases:
            headers = dict(CASES[name])
            status, hdrs, body = conn.request(raw_request(headers))
            if name == "304":
                headers["If-None-Match"] = hdrs["etag"]
            raw = raw_request(headers)
            status, hdrs, body = conn.request(raw)
            expected = 304 if name == "304" else 200
            if status != expected:
                raise BenchFailure(f"{server.name} {name}: {status}, expected {expected}")
            if status == 200:
                decoded = gzip.decompress(body) if hdrs.get("content-encoding") == "gzip" \
                    else body
                if decoded != plain:
                    raise BenchFailure(f"{server.name} {name}: not the bytes of feed.atom")
            for _ in range(warmup):
                conn.request(raw)
            server.control("-z")
            started = time.perf_counter()
            for _ in range(requests):
                conn.request(raw)
            total = server.dump()
            elapsed = time.perf_counter() - started
            results[name] = (total - idle_per_s * elapsed) / requests
            print(f"{server.name:8s} {name:13s} {results[name]:10,.0f} instructions/request "
                  f"({total:,} in {elapsed:.1f} s, idle {idle_per_s * elapsed:,.0f})",
                  flush=True)
    finally:
        conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", default="feedsvc,bare")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--pythonpath", default="", help="feedsvc's tree (default: installed)")
    parser.add_argument("--callgrind-out", default="", help="keep the dumps here")
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra line in feedsvc's [server] table")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="feedsvc-instr-"))
    out = Path(args.callgrind_out) if args.callgrind_out else work / "callgrind"
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    servers: list[Callgrind] = []
    try:
        site = work / "site"
        port = free_port()
        config = write_config(site, port, 10, 50, ["workers = 1", *args.server_option])
        corpus.write_corpus(site / "seeds", 50)
        feedsvc_build(config)
        plain = (site / "public" / "feed.atom").read_bytes()
        gz = work / "feed.atom.gz"
        gz.write_bytes(gzip.compress(plain, 6, mtime=0))
        print(f"feed.atom {len(plain):,} bytes; {args.requests} requests per case, one "
              f"keep-alive connection; {os.uname().machine}, Python {sys.version.split()[0]}",
              flush=True)
        table: dict[str, dict[str, float]] = {}
        for name in args.only.split(","):
            if name == "feedsvc":
                cmd = [sys.executable, "-m", "feedsvc", "serve", "--config", str(config)]
                server = Callgrind(name, cmd, port, out, site, env)
            else:
                bare_port = free_port()
                cmd = [sys.executable, str(HERE / "aiohttp_floor.py"), str(bare_port),
                       str(site / "public" / "feed.atom"), str(gz), "1"]
                server = Callgrind(name, cmd, bare_port, out, site, env)
            servers.append(server)
            try:
                table[name] = measure(server, args.requests, args.warmup, plain,
                                      args.cases.split(","))
            finally:
                server.stop()
        print(f"\n{'case':13s} " + " ".join(f"{n:>12s}" for n in table)
              + ("  feedsvc/bare" if len(table) == 2 else ""))
        for case in args.cases.split(","):
            row = [table[n][case] for n in table]
            print(f"{case:13s} " + " ".join(f"{x:12,.0f}" for x in row)
                  + (f"  {row[0] / row[1]:.3f}" if len(row) == 2 else ""))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
