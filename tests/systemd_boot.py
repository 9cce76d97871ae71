"""A real systemd, booted as PID 1 of a Debian 12 container, for tests/test_systemd_live.py and
tests/test_scaling_live.py (each boots its own machine from the same tree).

This machine (and CI's) runs no systemd: PID 1 is something else. `systemd-nspawn --boot` starts
one anyway, in a container made from a Debian 12 (bookworm) tree that `debootstrap` builds once
and that is kept OUTSIDE the repository, in CACHE (keyed by what goes into it):

    /var/cache/feedsvc-ci/rootfs-bookworm-<key>   the tree (~320 MB), never written to:
                                                  each boot runs on a throw-away copy
                                                  (`--ephemeral`)
    /var/cache/feedsvc-ci/wheels-<python>          the wheels feedsvc needs, built by this
                                                  Python's pip (its cache makes a second build
                                                  a few seconds), bind-mounted read-only

How the container is started, and why (found by trying without):
- `--register=no --keep-unit`: otherwise nspawn asks the host's systemd (machined, a scope
  unit) over D-Bus, which fails without one ("Failed to open system bus").
- SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the host mounts cgroup v1 controllers beside
  /sys/fs/cgroup/unified (hybrid); by default the container's systemd would run hybrid too,
  where it cannot attach BPF programs (IPAddressDeny= is then ignored: "the local system does
  not support BPF/cgroup firewalling"). Where the host cannot give the container a cgroup v2
  tree, the boot is tried again without (Machine.note says so; the IP firewall test skips).
- `--capability=CAP_BPF,CAP_NET_ADMIN` and `--system-call-filter=bpf`: by default nspawn
  keeps neither capability and filters out bpf(); with cgroup v2 but without these two, systemd
  still found no BPF firewall; with both it works (they were not tried one at a time).
- `--rlimit=RLIMIT_NOFILE=1024:524288`: what systemd gives itself on a real boot (its
  HIGH_RLIMIT_NOFILE). Otherwise the container inherits the test runner's limit, and systemd
  cuts LimitNOFILE=65536 down to it. Raising a hard limit needs CAP_SYS_RESOURCE, which root
  lacks on the project's VM (hard limit 20000): there nspawn cannot raise it either, and the
  service gets 20000 (test_systemd_live checks the unit's value or that ceiling).
- `--private-network`: only a loopback, so port 8080 of the README is the container's own, and
  nothing leaves it. pip installs from the wheels folder (PIP_NO_INDEX, PIP_FIND_LINKS):
  HTTPS from the container would also need the host's certificate authorities.
- `--ephemeral`: a throw-away copy of the tree for each boot. (`--volatile=overlay` first
  showed that feedsvc rejected every seed on an overlay whose layers are on two file systems,
  "on another file system than the seeds folder": fixed in ingest/source.py, tested in
  test_source.py.)

Commands run in the container with `nsenter` into all its namespaces (no machined to ask).
Run as a script to build the cache ahead: `python3 tests/systemd_boot.py`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FEEDSVC_CI_CACHE", "/var/cache/feedsvc-ci"))
SUITE = "bookworm"
MIRROR = os.environ.get("FEEDSVC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: What the README's install needs (python3, python3-venv, procps for /bin/kill), what the
#: test drives it with (curl, iproute2), systemd itself and the nginx of README "Scaling"
#: (nginx-light: the container has no network for its `apt-get install`, which then finds it
#: installed, enabled and serving Debian's welcome site, as on a machine where it was just
#: installed).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "procps",
            "curl", "ca-certificates", "iproute2", "nginx-light")
#: The container's environment for every command: an operator's root shell. pip reads the
#: wheels folder instead of PyPI (the container has no network).
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", "SYSTEMD_PAGER": "",
       "SYSTEMD_COLORS": "0", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels",
       "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
#: Where the work tree's copy goes in the container.
SOURCE = "/root/feedsvc"


class Unavailable(Exception):
    """No systemd can be booted here; the message says exactly why."""


def missing() -> str:
    """Why the boot cannot even be tried here ("" when it can)."""
    if sys.platform != "linux":
        return "systemd-nspawn needs Linux"
    if os.geteuid() != 0:
        return "systemd-nspawn and debootstrap need root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return (f"{tool} not found: apt-get install systemd-container debootstrap "
                    "util-linux (.ci/run does)")
    if sys.version_info[:2] != (3, 11):
        return (f"the wheels for Debian 12's Python 3.11 are built with this Python's pip; "
                f"this is {sys.version.split()[0]}")
    return ""


def rootfs_key() -> str:
    text = "\n".join([SUITE, MIRROR, "minbase", *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def rootfs() -> Path:
    """The cached Debian 12 tree, made by debootstrap on first use (about a minute)."""
    target = CACHE / f"rootfs-{SUITE}-{rootfs_key()}"
    with _locked(target.name):
        if (target / "sbin" / "init").exists():
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(building), MIRROR], capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise Unavailable(f"debootstrap {SUITE} from {MIRROR} failed: "
                              f"{(result.stdout + result.stderr)[-1500:]}")
        building.rename(target)
    return target


def wheels() -> Path:
    """feedsvc's dependencies (and the setuptools its build needs) as wheels, refreshed at
    every boot: pip's cache makes that quick, and a dependency added to pyproject.toml is in."""
    folder = CACHE / f"wheels-cp{sys.version_info[0]}{sys.version_info[1]}"
    with _locked(folder.name):
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder),
             str(ROOT), "setuptools>=77"], capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise Unavailable(f"pip wheel for the container failed: {result.stderr[-1500:]}")
        for built in folder.glob("feedsvc-*"):
            built.unlink()  # install.sh builds feedsvc from the copied tree itself
    return folder


def _tree_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True)
    if listed.returncode == 0:
        return [name for name in listed.stdout.decode().split("\0")
                if name and (ROOT / name).is_file()]
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", "build"}
    return [str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
            if path.is_file() and not skip.intersection(path.relative_to(ROOT).parts)]


def _halt_with_parent() -> None:
    """In nspawn before its exec: SIGTERM (a clean halt, the ephemeral copy removed) when the
    test process dies, even killed, so that no container outlives it."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Machine:
    """A booted container: `run` executes a command in it as root."""

    def __init__(self, log: Path) -> None:
        self.name = f"feedsvc-live-{os.getpid()}"
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.note = ""  # how the boot differs from the intended one, if it does

    def boot(self, image: Path, wheelhouse: Path, timeout: float = 180) -> None:
        """Boot with a cgroup v2 tree of the container's own; where the host cannot give one,
        with the host's kind of hierarchy (then IPAddressDeny= is not enforced: `note`)."""
        try:
            self._boot(image, wheelhouse, timeout, unified=True)
        except Unavailable as first:
            self.shutdown()
            self.leader = 0
            try:
                self._boot(image, wheelhouse, timeout, unified=False)
            except Unavailable as second:
                raise Unavailable(f"with a cgroup v2 tree of its own: {first}; with the "
                                  f"host's cgroup hierarchy: {second}") from None
            self.note = f"booted without a cgroup v2 tree of its own ({first})"

    def _boot(self, image: Path, wheelhouse: Path, timeout: float, unified: bool) -> None:
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1" if unified else "0"}
        argv = ["systemd-nspawn", "--quiet", f"--directory={image}", "--ephemeral", "--boot",
                f"--machine={self.name}", "--register=no", "--keep-unit",
                "--private-network", "--console=pipe",
                "--capability=CAP_BPF,CAP_NET_ADMIN", "--system-call-filter=bpf",
                "--rlimit=RLIMIT_NOFILE=1024:524288",
                f"--bind-ro={wheelhouse}:/wheels"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=env,
                                            preexec_fn=_halt_with_parent)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"systemd-nspawn --boot exited with "
                                  f"{self.process.returncode}: {self.log()[-1500:]}")
            self.leader = self.leader or self._find_leader()
            if self.leader:
                state = self.run("systemctl is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.5)
        raise Unavailable(f"the container's systemd was not up after {timeout:.0f} s "
                          f"(is-system-running: {state!r}): {self.log()[-1500:]}")

    def _find_leader(self) -> int:
        """The container's PID 1, as the host sees it: a descendant of nspawn whose PID in its
        own namespace is 1."""
        assert self.process is not None
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    text = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(text.rsplit(")", 1)[1].split()[1])
        for pid in parents:
            ancestor = parents.get(pid)
            while ancestor and ancestor != self.process.pid:
                ancestor = parents.get(ancestor)
            if ancestor != self.process.pid:
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("NSpid:") and line.split()[1:] == [str(pid), "1"]:
                        return pid
        return 0

    def run(self, script: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`sh -c script` in the container, as root, in an operator's environment."""
        argv = ["nsenter", f"--target={self.leader}", "--all", "env", "-i",
                *(f"{k}={v}" for k, v in ENV.items()), "/bin/sh", "-c", script]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"{script!r} exited with {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def path(self, inside: str) -> Path:
        """A path of the container's file system, as the host reaches it."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def copy_work_tree(self) -> None:
        """The work tree (committed or not, without what git ignores) at SOURCE."""
        target = self.path(SOURCE)
        for name in _tree_files():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def shutdown(self, timeout: float = 60) -> None:
        """Power off (nspawn turns SIGTERM into a clean halt); the ephemeral copy goes."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)  # the second one: at once
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def booted(log: Path) -> Iterator[Machine]:
    """A booted machine with the work tree copied in, halted afterwards (for a module-scoped
    fixture); the test skips, saying why, where none can be booted."""
    import pytest

    reason = missing()
    if reason:
        pytest.skip(f"no systemd can be booted here: {reason}")
    machine = Machine(log)
    try:
        try:
            machine.boot(rootfs(), wheels())
        except Unavailable as e:
            pytest.skip(f"no systemd can be booted here: {e}")
        machine.copy_work_tree()
        yield machine
    finally:
        machine.shutdown()


def install_as_the_readme_says(machine: Machine, base_url: str
                               ) -> tuple[subprocess.CompletedProcess[str],
                                          subprocess.CompletedProcess[str]]:
    """README, Running under systemd, Install (Debian 12), as root from a clone of this
    repository; `editor /etc/feedsvc/config.toml` sets `base_url` before the first start.
    What the install and the enable printed."""
    install = machine.run(f"cd {SOURCE} && apt-get install -y python3 python3-venv procps"
                          " && systemd/install.sh --sample-seeds", timeout=900)
    machine.run(f"sed -i 's|^base_url = .*|base_url = \"{base_url}\"|' "
                "/etc/feedsvc/config.toml")
    enable = machine.run("systemctl daemon-reload && "
                         "systemctl enable --now feedsvc.socket feedsvc.service")
    return install, enable


def load_script(port: int, cache_status: bool = False) -> str:
    """A client load for the booted machine (python3 there): 4 threads GET /feed.atom on new
    connections to 127.0.0.1:`port` until /run/feedsvc-load-stop exists, then print the
    counts by outcome as JSON: "ok" (200; "ok HIT", "ok STALE"… with nginx's X-Cache-Status
    when `cache_status`), "status N", "refused", or the error's name."""
    ok = ('("ok " + (response.getheader("X-Cache-Status") or "none"))' if cache_status
          else '"ok"')
    return f"""
import http.client, json, os, threading
counts, lock = {{}}, threading.Lock()
def client():
    while not os.path.exists("/run/feedsvc-load-stop"):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", {port}, timeout=30)
            connection.request("GET", "/feed.atom")
            response = connection.getresponse()
            response.read()
            connection.close()
            key = {ok} if response.status == 200 else f"status {{response.status}}"
        except ConnectionRefusedError:
            key = "refused"
        except OSError as e:
            key = type(e).__name__
        with lock:
            counts[key] = counts.get(key, 0) + 1
threads = [threading.Thread(target=client) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(counts))
"""


if __name__ == "__main__":
    reason = missing()
    if reason:
        sys.exit(f"systemd_boot: {reason}")
    started = time.monotonic()
    print(f"{rootfs()} and {wheels()} ready in {time.monotonic() - started:.0f} s")
