"""The serving process caps glibc's malloc arenas: memory freed by threads (the pipeline, the
compressors, the readers of the state) is reused instead of kept per thread."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feedsvc.serve.memory import ARENAS

#: Eight threads allocating at once: each may get an arena (a `<heap>` in malloc_info) of its
#: own unless the arenas are capped. The count is read from glibc itself.
_THREADS = """
import ctypes, os, re, sys, tempfile, threading
if sys.argv[1] == "capped":
    from feedsvc.serve.memory import limit_malloc_arenas
    assert limit_malloc_arenas()
start = threading.Barrier(8)
kept = []
def churn():
    start.wait()
    for _ in range(20):
        kept.append([bytes(200) for _ in range(5_000)][::50])
threads = [threading.Thread(target=churn) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as f:
    stream = libc.fdopen(os.dup(f.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    f.seek(0)
    print(len(re.findall(rb"<heap nr=", f.read())))
"""


def _arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _THREADS, mode], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc arenas: Linux only")
def test_threads_share_two_arenas_once_capped() -> None:
    assert _arenas("capped") <= ARENAS
    assert _arenas("default") > ARENAS  # the test can tell: without the cap there are more


def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from feedsvc.serve.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
