"""File helpers used across the package: the one SHA-256 of a file and the one atomic write.

Standard-library only (no numpy), so that every package may use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

__all__ = ["atomic_path", "sha256_file"]


def sha256_file(path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks (checkpoints are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path):
    """Write `path` so that it either does not exist or is complete, also when the process is killed or the disk
    fills: yields a hidden temporary path in the same folder; when the block ends without error, the file is
    fsynced and renamed to `path` (atomic on POSIX); on error the temporary file is removed.

    ```python
    with atomic_path("out/table.parquet") as tmp:
        pq.write_table(table, tmp)
    ```
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
