"""Give freed message memory back to the system, so a burst does not stay in RSS for good.

glibc serves allocations above a threshold with their own ``mmap`` and unmaps them on free,
but it raises that threshold to the size of each such block freed (up to 32 MB). After a few
large messages (a model is 0.4-16 MB) have passed, later ones come from the heap, and a heap
rarely shrinks: a subscriber that held 400 MB of queued models for a while left the broker at
400 MB after it was gone. Fixing the threshold (``mallopt``, which also turns the adjustment
off) keeps every large message in its own mapping, returned whole when freed. Nothing else
does this from Python; on other C libraries it is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""
MMAP_THRESHOLD = 256 * 1024
"""Blocks this large or larger get a mapping of their own: messages above it are rare (a few
a second at most), so the cost of mapping them is nothing."""


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold for this process; True if it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    log.debug("large messages %s their own mappings", "get" if done else "cannot get")
    return done
