"""Keep freed tensor memory inside the process, so a training step does not page-fault.

glibc's malloc serves every large block with a fresh ``mmap`` and hands it back to the kernel
on ``free`` (blocks above its mmap threshold: 128 KiB, rising to at most 32 MiB). A training
step allocates the same few hundred MB of activations and gradients every step, so with the
defaults every step pays a page fault and a kernel page-zeroing for each fresh 4 KiB of them.
On the memory-bound layers of a small CNN that is most of their time: measured on the CIFAR
speed-run net (bf16, channels-last, batch 500, 2 threads, Xeon with AMX), a 2×2 max-pool's
forward took 21 ms with glibc's defaults and 10 ms without the mmaps, and the whole
forward+backward step 558 ms against 467 ms. PyTorch's CPU tuning guides cure this by
preloading jemalloc or tcmalloc; glibc's own ``mallopt`` does the same job here without a
preload or a dependency: no mmap for big blocks (they come from the heap and are reused), and
no trimming of the heap's top until 2 GiB of it are free.

The cost: the process keeps its peak memory until it exits instead of returning it between
steps; for a training or benchmark process that reuses it every step, that is the point.
``CNNLAB_ALLOCATOR=system`` keeps glibc's defaults (recorded in ``machine_info()``).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # an int: the largest value mallopt takes

_state: str | None = None


def tune_allocator() -> str:
    """Switch glibc's malloc to reuse freed memory (see the module docstring); once per process.

    Returns what the process now runs with: ``"heap"`` (tuned), ``"system"`` (the
    ``CNNLAB_ALLOCATOR=system`` opt-out, or not Linux/glibc, or ``mallopt`` refused).
    """
    global _state
    if _state is not None:
        return _state
    _state = "system"
    if os.environ.get("CNNLAB_ALLOCATOR", "").strip().lower() == "system":
        return _state
    if not sys.platform.startswith("linux"):
        return _state
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return _state
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, so that a refused mmap switch
    # leaves nothing half-done that matters
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(M_MMAP_MAX, 0) == 1:
        _state = "heap"
    return _state


def allocator_state() -> str:
    """``"heap"`` once :func:`tune_allocator` switched malloc, else ``"system"``."""
    return _state or "system"
