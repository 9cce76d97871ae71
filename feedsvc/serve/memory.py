"""glibc's malloc, tuned for the serving process: fewer arenas, a fixed mmap threshold.

glibc gives threads their own arenas (up to 8 per core) and keeps what is freed in each: the
pipeline's thread, the compressors and the readers of the state (long-tail pages, archive
pages, site pages) each held their own freed memory, ~20 MiB more at 100,000 seeds after a
few edits and page reads. Two arenas, as MALLOC_ARENA_MAX=2 (the setting gunicorn and others
recommend for such servers), bring that back to ~8 MiB at no measurable cost in speed here.

The bodies feedsvc makes and lets go of are 100-300 KB (a feed, an archive page, their
compressions). glibc serves a block that large with its own mmap and gives it back on free,
but its threshold is dynamic: the first such block freed raises it to that block's size (up
to 32 MiB), and from then on these bodies come from the heap, whose free holes are kept. At
100,000 seeds, a cold start then 300 archive page reads took the resident size to 154 MiB; with
the threshold fixed at 128 KiB, as MALLOC_MMAP_THRESHOLD_=131072 does, 145 MiB (and 136 instead
of 142 after the cold start). A few mmap calls per change and per page rendered: nothing
measurable beside the rendering.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger("feedsvc")

#: mallopt's parameter numbers (glibc malloc.h: M_ARENA_MAX, M_MMAP_THRESHOLD).
_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3
ARENAS = 2
#: glibc's own starting value, kept fixed (setting it turns the dynamic threshold off).
MMAP_THRESHOLD_BYTES = 128 * 1024


def _mallopt(parameter: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(parameter, value))


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas, before any thread starts; False where that is not glibc, or when
    MALLOC_ARENA_MAX is set (the operator's choice wins)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return _mallopt(_M_ARENA_MAX, arenas)  # (musl has no arenas to cap)


def fix_mmap_threshold(size: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Blocks from `size` bytes are always mmapped, and given back when freed; False where
    that is not glibc, or when MALLOC_MMAP_THRESHOLD_ is set (the operator's choice wins)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    return _mallopt(_M_MMAP_THRESHOLD, size)


def give_back_memory() -> bool:
    """Collect what a large structure just let go of (a publisher replaced by a reload) and
    ask glibc to return its free heap to the system (malloc_trim); False where that is not
    glibc."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
