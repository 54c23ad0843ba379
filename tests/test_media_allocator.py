"""The node keeps the C allocator from holding each burst's high-water mark
(livecenter/media/allocator.py; issue 11, the soak's RSS growth): large
blocks are mapped apart from the heap even after a larger one was freed,
and the heaps' free pages go back to the system every malloc_trim_seconds.

glibc only (the node's platform); elsewhere the module does nothing."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livecenter.media import allocator
from tests.mediasupport import NodeThread

pytestmark = pytest.mark.skipif(not allocator.available(), reason="glibc's malloc only")

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


# glibc's chunk header: the size word before the block, whose bit 1 is
# IS_MMAPPED (malloc/malloc.c). A bytes object of a MiB is one malloc'd block
# that starts at the object (bytes are not tracked by the GC: no header before).
_IS_MMAPPED = 0x2


def is_mapped(block: bytes) -> bool:
    """Whether glibc gave this object's block its own mapping, not heap space."""
    size_word = ctypes.c_size_t.from_address(id(block) - ctypes.sizeof(ctypes.c_size_t)).value
    return bool(size_word & _IS_MMAPPED)


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def blocks_mapped_after_a_larger_one_was_freed(**config) -> dict:
    """Run a node, free a large mapped block, then allocate blocks below its
    size: which of them glibc mapped apart ("segments", 1 MiB each) and
    whether a block under the node's threshold was ("small", 64 KiB)."""
    node = NodeThread(**config).start()
    try:
        # A lagging viewer's backlog: one large block, mapped, then freed. Left
        # to itself glibc now carves every block below its size from the heap.
        backlog = bytes(16 * MIB)
        del backlog
        segments = [bytes(MIB) for _ in range(32)]
        # Each block's own header says where it is: the process-wide figures
        # move with what other threads map and unmap meanwhile.
        return {"segments": [is_mapped(s) for s in segments], "small": is_mapped(bytes(64 * 1024))}
    finally:
        node.stop()


def in_a_fresh_process(**config) -> dict:
    """`blocks_mapped_after_a_larger_one_was_freed` in a new interpreter.
    glibc maps a block of the threshold or more only when no free chunk of
    the heap fits it (mallopt(3), M_MMAP_THRESHOLD): in the test process the
    heap keeps the holes the tests before left, and the threshold what they
    set (after tests/test_codecs.py or test_timecode.py, whose PyAV buffers
    were freed under glibc's raised threshold, most of the 32 came from the
    heap). A fresh process starts with neither, as a node's own does."""
    script = (
        "import json, sys\n"
        "from tests.test_media_allocator import blocks_mapped_after_a_larger_one_was_freed as run\n"
        "print(json.dumps(run(**json.loads(sys.argv[1]))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_large_blocks_stay_out_of_the_heap_after_a_larger_one_was_freed():
    placed = in_a_fresh_process()  # the default configuration
    assert placed["segments"] == [True] * 32
    assert not placed["small"], "a block under the threshold comes from the heap"


def test_without_the_bound_glibc_carves_them_from_the_heap():
    """What the bound is for, and that the test above can tell: with glibc's
    own threshold, the freed backlog raises it past the blocks' size."""
    placed = in_a_fresh_process(malloc_mmap_threshold_bytes=0)
    assert placed["segments"] == [False] * 32


def test_the_node_gives_the_free_pages_inside_the_heap_back():
    node = NodeThread(malloc_trim_seconds=0.2).start()
    try:
        # Churn: blocks under the mmap threshold freed around small ones that
        # stay, so the heap cannot shrink from its top. The pages are touched
        # (bytes() zero-fills them), so they count in RSS until given back.
        blocks, kept = [], []
        for _ in range(1200):
            blocks.append(bytes(64 * 1024))
            kept.append(bytes(1024))
        full = rss_bytes()
        del blocks
        deadline = time.monotonic() + 15
        while rss_bytes() > full - 40 * MIB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rss_bytes() <= full - 40 * MIB, (full, rss_bytes())
        assert len(kept) == 1200
    finally:
        node.stop()


def test_a_node_with_both_off_leaves_the_allocator_alone():
    node = NodeThread(malloc_mmap_threshold_bytes=0, malloc_trim_seconds=0).start()
    try:
        names = {task.get_name() for task in node.node._tasks}
        assert "media-malloc-trim" not in names
    finally:
        node.stop()


def test_status_reports_the_allocators_bytes():
    figures = allocator.figures()
    assert set(figures) == {"heap_bytes", "in_use_bytes", "free_bytes", "mmapped_bytes"}
    assert figures["in_use_bytes"] > 0 and figures["heap_bytes"] >= figures["in_use_bytes"]
