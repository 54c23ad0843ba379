"""The C allocator under a long-running node (issue 11, bench/soak).

A node's memory is mostly short-lived buffers handed between the C
allocator and Python: frames and GOP caches (a few KiB each, alive a GOP or
two), HLS segments and parts (tens to hundreds of KiB, alive a playlist
window), a viewer's merged socket writes (up to MiBs for one that lags).
glibc's malloc raises its mmap threshold to the size of each mmapped block
freed (up to 32 MiB) and its trim threshold to twice that: after the first
large backlog is freed, every block below it comes from the heap, whose
free space is returned to the system only from its top. Under viewers'
churn the heap then keeps the high-water mark of each such burst, with the
free space scattered between live blocks (fragmentation, not objects kept:
bench/README.md, "Try 5" and after).

`tune` fixes both thresholds (which also stops glibc moving them), so
blocks of `mmap_threshold` bytes or more are mapped and unmapped on their
own (unless a free chunk already in the heap holds one: glibc serves a
request from its free chunks first, whatever its size); `trim` returns
the free pages inside the heap too (malloc_trim(0) madvises them away
since glibc 2.8); the node calls it every
`malloc_trim_seconds`. `figures` is mallinfo2's summary for /_node/status.

All three do nothing (None / False) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import time

log = logging.getLogger(__name__)

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes the heaps (main and thread arenas) hold, not mmapped blocks
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped blocks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes allocated in the heaps
            "fordblks",  # bytes free in the heaps
            "keepcost",
        )
    ]


def _load_libc():
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2  # glibc 2.33 and later
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


def available() -> bool:
    return _libc is not None


def tune(mmap_threshold: int) -> bool:
    """Blocks of `mmap_threshold` bytes or more are mmapped (and unmapped
    when freed) from now on, and the heap's top is given back past twice
    that; both fixed. Returns whether it was applied."""
    if _libc is None or mmap_threshold <= 0:
        return False
    return bool(_libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        _libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_threshold)
    )


def trim() -> bool:
    """Give the free pages of every heap back to the system; whether any was."""
    if _libc is None:
        return False
    return bool(_libc.malloc_trim(0))


def figures() -> dict[str, int] | None:
    """The allocator's bytes: in use and free in its heaps, and mmapped."""
    if _libc is None:
        return None
    info = _libc.mallinfo2()
    return {
        "heap_bytes": info.arena,
        "in_use_bytes": info.uordblks,
        "free_bytes": info.fordblks,
        "mmapped_bytes": info.hblkhd,
    }


def timed_trim() -> float:
    """`trim`, and how long it took (s), logged at debug."""
    began = time.perf_counter()
    released = trim()
    took = time.perf_counter() - began
    log.debug("malloc_trim: %s in %.1f ms", "released memory" if released else "nothing to release", took * 1000)
    return took
