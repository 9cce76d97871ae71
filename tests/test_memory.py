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


def _count(script: str, mode: str) -> int:
    """What `script` prints, run in a fresh interpreter (glibc's settings are per process)."""
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc arenas: Linux only")
def test_threads_share_two_arenas_once_capped() -> None:
    assert _count(_THREADS, "capped") <= ARENAS
    assert _count(_THREADS, "default") > ARENAS  # the test can tell: without the cap there are more


def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from feedsvc.serve.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


#: A 1 MiB block freed (glibc's dynamic threshold then rises to 1 MiB), then a 300 KB one:
#: mmapped (mallinfo2's hblks) only while the threshold is fixed.
_BIG_BLOCKS = """
import ctypes, sys
if sys.argv[1] == "fixed":
    from feedsvc.serve.memory import fix_mmap_threshold
    assert fix_mmap_threshold()
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
big = bytearray(1 << 20)
del big
before = libc.mallinfo2().hblks
body = bytearray(300_000)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_bodies_of_100_kb_and_more_stay_mmapped_once_the_threshold_is_fixed() -> None:
    assert _count(_BIG_BLOCKS, "fixed") == 1  # given back to the system when freed
    assert _count(_BIG_BLOCKS, "default") == 0  # the test can tell: from the heap, its hole kept


def test_the_operators_mmap_threshold_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from feedsvc.serve.memory import fix_mmap_threshold

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert fix_mmap_threshold() is False
