"""Shared helpers: real files, real config files, a real `feedsvc serve` process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feedsvc.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_NAME = "000_fbd1b2ad52eca990.txt"
SAMPLE_SEED = ROOT / "seeds" / SAMPLE_NAME
SAMPLE_SLUG = "poutine-trump-handshake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(slug: str | None, title: str, *paragraphs: str) -> str:
    """The text of a seed file in the documented format (no final newline)."""
    head = [slug, title] if slug is not None else [title]
    return "\n".join(head) + "\n\n" + "\n\n".join(paragraphs)


def write_seed(folder: Path, name: str, text: str | bytes, mtime: float | None = None) -> Path:
    """Write a seed atomically (temp file + rename), as a careful tool would."""
    path = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(text.encode() if isinstance(text, str) else text)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)
    return path


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; return its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def write_config(folder: Path, port: int = 8080, **feed: Any) -> Path:
    """A config.toml in `folder`, with a seeds folder beside it."""
    (folder / "seeds").mkdir(exist_ok=True)
    feed_lines = "\n".join(f"{key} = {_toml(value)}" for key, value in {
        "title": "Test feed", "language": "fr", "base_url": f"http://127.0.0.1:{port}/",
        **feed}.items())
    path = folder / "config.toml"
    path.write_text(
        f"[feed]\n{feed_lines}\n\n"
        '[paths]\nseeds = "seeds"\nstate = "state/feedsvc.sqlite3"\noutput = "public"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n[watch]\ndebounce_ms = 20\n',
        encoding="utf-8",
    )
    return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder with config.toml (free port) and an empty seeds/ folder."""
    write_config(tmp_path, port=free_port())
    return tmp_path


@pytest.fixture
def config(site: Path) -> Config:
    return load_config(site / "config.toml")


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedsvc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def http_get(url: str, headers: dict[str, str] | None = None,
             method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class ServeProcess:
    """`python -m feedsvc serve` in a subprocess, on the config's port."""

    def __init__(self, config_path: Path,
                 preexec_fn: Callable[[], None] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = load_config(config_path)
        self.url = f"http://127.0.0.1:{self.config.server.port}"
        self.stderr_path = config_path.parent / "serve.log"
        self._stderr = self.stderr_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "serve", "--config", str(config_path)],
            cwd=config_path.parent, stdout=subprocess.DEVNULL, stderr=self._stderr,
            preexec_fn=preexec_fn, env=env)
        try:
            wait_until(self._ready, timeout=30)
        except BaseException:
            # Never ready: the fixture has not got it yet, so stop it here (a leaked server
            # would keep its port and its watcher after the test).
            self.process.kill()
            self.process.wait()
            self._stderr.close()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log()}")
        try:
            return http_get(self.url + "/healthz")[0] == 200
        except OSError:
            return False

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url + path, headers, method)

    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        return self.process.returncode


@pytest.fixture
def serve() -> Iterator[Callable[[Path], ServeProcess]]:
    started: list[ServeProcess] = []

    def start(config_path: Path, preexec_fn: Callable[[], None] | None = None,
              env: dict[str, str] | None = None) -> ServeProcess:
        process = ServeProcess(config_path, preexec_fn, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture
def sample_seed() -> bytes:
    return SAMPLE_SEED.read_bytes()


def copy_sample(folder: Path) -> Path:
    return Path(shutil.copy(SAMPLE_SEED, folder / SAMPLE_NAME))
