"""Memory a server gives back when it replaces or unloads a model (`serve.memory`, issue 11's soak:
RSS grew at each reload until glibc's heaps stopped growing)."""

import gc
import sys
import weakref

import pytest

import bushu
from bushu.serve.memory import release_freed


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and calls glibc's malloc_trim")
def test_pages_freed_inside_the_heap_go_back_to_the_system():
    """Free most of 200 MiB of malloc'd blocks but keep one in 64 alive, so the heap cannot
    shrink from its top: the pages stay in the process until `release_freed` hands them back."""
    blocks = [bytearray(1024) for _ in range(200 * 1024)]  # 1 KiB each: malloc's heap, not mmap
    kept = blocks[::64]
    del blocks
    gc.collect()
    before = _rss_mib()
    assert release_freed()
    after = _rss_mib()
    assert before - after > 100, (before, after)
    assert len(kept) == 3200


def test_closing_an_onnx_runtime_model_drops_its_session_at_once(tiny_package):
    """Not when the last reference to the model goes (a request, a traceback may hold it):
    the batcher closes its instances, then trims, and the session's memory is in what it frees."""
    model = bushu.load(tiny_package)
    model.warm_up()
    session = weakref.ref(model._session)
    model.close()
    assert session() is None
