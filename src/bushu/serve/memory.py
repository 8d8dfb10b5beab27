"""Giving memory back to the system after a model is unloaded or replaced.

A model's weights, its runtime's arenas and the buffers of the requests it served are freed
when it closes, but glibc's allocator keeps freed pages in its heaps for reuse. Each reload
then leaves the process larger: measured on the soak (four models, a reload a minute), RSS grew
by three quarters over fifteen minutes before it levelled off. `malloc_trim(0)` returns the free
pages of every heap (arena) to the kernel; it is called from a worker thread once a batcher has
released its model instances, and costs a few milliseconds there, none on the event loop.

Under steady load the same happens without any reload: glibc raises its mmap threshold each
time a large block is freed (up to 32 MiB), so large tensors move from mmap, which is returned
on free, into the heaps, which fragment. `keep_heap_steady` pins the threshold at 4 MiB and
trims the heaps every half minute from a daemon thread. Not lower: at 256 KiB every batch of the
digits CNN (393 KB) was mmapped and faulted in afresh, and bushu served 15–25% fewer requests
(benchmarks/serve_vs_peers.py, A/B on one machine); at 4 MiB it served as many as without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time

_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_MMAP_THRESHOLD = 4 * 1024 * 1024


@functools.cache
def _libc():  # -> glibc, or None elsewhere
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def release_freed() -> bool:
    """Hand the allocator's free pages back to the system; True if there was a way to ask."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(ctypes.c_size_t(0))  # ctypes releases the GIL for the call: other threads run meanwhile
    return True


@functools.cache
def keep_heap_steady(trim_every_s: float = 30.0) -> bool:
    """Once per process: large blocks always mmapped, heaps trimmed periodically; True on glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(_MMAP_THRESHOLD))

    def trim_forever() -> None:
        while True:
            time.sleep(trim_every_s)
            release_freed()

    threading.Thread(target=trim_forever, name="bushu-heap-trim", daemon=True).start()
    return True
