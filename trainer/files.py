"""Files that appear complete or not at all.

Checkpoints, run summaries and downloaded datasets are all read later by something that trusts
them; a crash, Ctrl-C or full disk half-way through a write must leave the old file (or none),
never half a new one. So every such write goes to a hidden temporary file beside the target,
is flushed to disk, and is renamed over the target only when it is whole.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write ``path`` through the yielded binary file; it replaces ``path`` only if the block
    finishes without an exception (raise inside the block to reject what was written)."""
    path = Path(path)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    # Like mkstemp, but with the umask's permissions, as the file would have had anyway.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
