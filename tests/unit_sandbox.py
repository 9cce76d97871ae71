"""Run a command under the confinement systemd/feedsvc.service asks for, without systemd.

This machine (and CI's containers) has no running systemd, so `systemd-run -p …` cannot apply
the unit. This emulates the directives that could break feedsvc, read from the unit file
itself, with the kernel features systemd uses:

- bubblewrap (Debian `bubblewrap`) for the namespaces, started as an unprivileged user (as
  DynamicUser=): ProtectSystem=strict (/ read-only, StateDirectory= and the test's files
  writable), ProtectHome=yes, PrivateTmp=yes, PrivateDevices=yes, ProtectProc=/ProcSubset= (a
  /proc of its own PID namespace), PrivateUsers=yes, ProtectHostname=yes, RemoveIPC= (own IPC
  namespace), CapabilityBoundingSet= (every capability dropped);
- then, inside, this file run by /usr/bin/python3 with Debian's `python3-seccomp`:
  MemoryDenyWriteExecute=yes as prctl(PR_SET_MDWE) (Linux 6.3+; what systemd 255+ uses), and
  one seccomp filter for SystemCallFilter= (the unit's groups, expanded by
  `systemd-analyze syscall-filter`), SystemCallErrorNumber=, SystemCallArchitectures=native,
  RestrictAddressFamilies=, RestrictNamespaces=yes and NoNewPrivileges=yes; then it execs the
  command.

Not emulated: IPAddressDeny=/IPAddressAllow= (cgroup BPF needs systemd's cgroup), LimitNOFILE=,
LockPersonality=, RestrictRealtime= (its system calls are in @resources, denied already),
ProtectKernel*=/ProtectControlGroups=/ProtectClock= beyond what an unprivileged user namespace
already forbids.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

#: prctl(2) options.
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
#: Namespace flags of clone(2) (RestrictNamespaces=yes refuses them all).
CLONE_NEW = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
             | 0x40000000 | 0x00000080)  # NEWNS UTS IPC USER PID NET CGROUP TIME


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` line of a unit, repeated keys kept in order (SystemCallFilter=)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def syscall_groups() -> dict[str, list[str]]:
    """Every @group of this systemd, as `systemd-analyze syscall-filter` lists it."""
    text = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= expand(groups[name], groups) if name.startswith("@") else {name}
    return found


def allowed_syscalls(settings: dict[str, list[str]]) -> set[str]:
    """SystemCallFilter= lines in order: an allow list, then `~` lines taking from it."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for line in settings.get("SystemCallFilter", []):
        if line.startswith("~"):
            allowed -= expand(line[1:].split(), groups)
        else:
            allowed |= expand(line.split(), groups)
    return allowed


def confine(unit: Path) -> None:
    """In this process, for itself and what it execs: MDWE, then the seccomp filter."""
    import seccomp  # Debian's python3-seccomp, for /usr/bin/python3 only

    settings = unit_settings(unit)
    if settings.get("MemoryDenyWriteExecute") == ["yes"]:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")
    denied = getattr(errno, settings.get("SystemCallErrorNumber", ["EPERM"])[0])
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(denied))  # native arch only
    allowed = allowed_syscalls(settings)
    families = [getattr(socket, name) for line in settings.get("RestrictAddressFamilies", [])
                for name in line.split()]
    namespaces = settings.get("RestrictNamespaces") == ["yes"]
    special = {"socket"} if families else set()
    if namespaces:
        special |= {"clone", "clone3", "unshare", "setns"}
    for name in sorted(allowed - special):
        with contextlib.suppress(RuntimeError, ValueError):  # a call unknown here
            rules.add_rule(seccomp.ALLOW, name)
    for family in families:
        rules.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, family))
    if families:  # systemd answers EAFNOSUPPORT for the other families
        for family in range(1, 46):
            if family not in families:
                rules.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket",
                               seccomp.Arg(0, seccomp.EQ, family))
    if namespaces and "clone" in allowed:
        rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEW, 0))
        # clone3 passes its flags in memory a filter cannot read: systemd answers ENOSYS so
        # that the C library falls back to clone.
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()  # sets no_new_privs first (NoNewPrivileges=yes)


def command(unit: Path, argv: list[str], *, writable: list[Path],
            readable: list[Path]) -> list[str]:
    """bwrap … /usr/bin/python3 this-file UNIT -- argv: run it as `subprocess` with
    user=65534 (the dynamic user)."""
    settings = unit_settings(unit)
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap, "--die-with-parent", "--new-session", "--ro-bind", "/", "/"]
    if settings.get("ProtectHome") == ["yes"]:
        args += ["--tmpfs", "/home", "--tmpfs", "/root", "--tmpfs", "/run/user"]
    if settings.get("PrivateTmp") == ["yes"]:
        args += ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
    if settings.get("PrivateDevices") == ["yes"]:
        args += ["--dev", "/dev"]
    args += ["--unshare-pid", "--proc", "/proc"]  # ProtectProc=invisible, ProcSubset=pid
    if settings.get("PrivateUsers") == ["yes"]:
        args += ["--unshare-user"]
    if settings.get("ProtectHostname") == ["yes"]:
        args += ["--unshare-uts"]
    args += ["--unshare-ipc", "--cap-drop", "ALL"]
    # This script and the unit it reads, wherever the clone is (under /tmp in a CI's clean
    # clone: PrivateTmp's tmpfs would hide them).
    readable = [Path(__file__).resolve(), unit.resolve(), *readable]
    for path in readable:  # after the tmpfs mounts that would hide them
        args += ["--ro-bind", str(path), str(path)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    return [*args, "/usr/bin/python3", str(Path(__file__).resolve()), str(unit), "--", *argv]


def available() -> str | None:
    """Why the emulation cannot run here, or None."""
    for tool in ("bwrap", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install bubblewrap systemd)"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True)
    if probe.returncode != 0:
        return "python3-seccomp not installed (apt-get install python3-seccomp)"
    release = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if release is None or (int(release[1]), int(release[2])) < (6, 3):
        return "PR_SET_MDWE needs Linux 6.3 or later"
    return None


if __name__ == "__main__":
    unit_path, separator, *rest = sys.argv[1:]
    assert separator == "--" and rest
    confine(Path(unit_path))
    if "LISTEN_FDS" in os.environ:  # socket activation: as systemd, the pid that execs it
        os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(rest[0], rest)
