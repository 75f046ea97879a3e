"""Layer 0: the CPU backend's memory allocator settings (glibc).

Training allocates and frees the same multi-megabyte arrays every step. With glibc's
defaults, freed memory at the top of the heap goes back to the kernel and large blocks are
unmapped, so the next step's arrays start on fresh pages and the first write to every 4 KiB
page is a page fault. Measured on a 2-core VM (one step, one thread): LeNet-5 13.2 -> 7.1 ms
(3,100 page faults a step -> 0), the GPT benchmark 51.9 -> 37.6 ms (5,500 -> 0).

So ember asks glibc, once at import, to keep freed memory for reuse: blocks up to 32 MiB come
from the heap rather than their own mappings, up to 512 MiB of free heap top is kept before
trimming, and the heap grows 64 MiB at a time (address space only: untouched pages cost no
memory). Resident memory can then stay at a run's high-water mark instead of falling back
between steps; peak memory does not grow.

Skipped when the C library is not glibc, when the user has set any ``MALLOC_*_`` variable
or ``GLIBC_TUNABLES`` for malloc (their settings win), or when ``EMBER_MALLOC_TUNING=0``.
"""

from __future__ import annotations

import os
import sys

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 512 << 20), (_M_TOP_PAD, 64 << 20))

applied = False  # whether the settings are in effect in this process


def tune():
    """Apply ``SETTINGS`` through glibc's ``mallopt`` (see the module docstring)."""
    global applied
    if applied or not sys.platform.startswith("linux"):
        return applied
    if os.environ.get("EMBER_MALLOC_TUNING", "1") == "0":
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ) or \
            "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: leave them be
            return False
        ok = all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)
    except (OSError, AttributeError):
        return False
    applied = ok
    return ok


tune()
