"""The output folder of a job: sharded Parquet written atomically, the errors table, resume and `_SUCCESS`.

Layout of `OUT/` (readable as one table with `pandas.read_parquet(OUT)`, which skips `_*` and `.*` entries)::

    OUT/part-r00000-c000000.parquet     one row per record (rank 0, chunk 0)
    OUT/part-r00001-c000000.parquet     ...
    OUT/_errors/part-r00000-c000000.parquet   path, error_class, message of unreadable/invalid inputs
    OUT/_SUCCESS                        JSON manifest written last by rank 0: files, row counts, totals, settings

Why it survives being killed at any point:

* each chunk is written to a hidden temporary file in the same folder and `os.replace`d to its final name, so a
  final-named file is always complete; temporaries of a killed run are deleted by the next run;
* a record counts as done when its `path` is in a final-named part or errors file; `--resume` skips exactly those
  (rows still in memory when a process died were never written, so they are simply redone), hence exactly one
  row per readable input after any number of kills and restarts;
* chunk numbers continue after the highest existing one of the rank, so a restarted run (even with a different
  number of processes) never overwrites a completed chunk.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..files import atomic_path
from .guard import escape_text

ERRORS_DIR = "_errors"
SUCCESS_FILE = "_SUCCESS"
PLAN_FILE = "_plan.parquet"
METADATA_KEY = b"anyecg"
_PART_RE = re.compile(r"^part-r(\d+)-c(\d+)\.parquet$")

ERRORS_SCHEMA = pa.schema(
    [
        ("input_index", pa.int64()),
        ("path", pa.string()),
        ("record_id", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
    ]
)


def part_name(rank: int, chunk: int) -> str:
    return f"part-r{rank:05d}-c{chunk:06d}.parquet"


def list_parts(folder) -> list[str]:
    """Final-named part files directly in `folder`, sorted."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if _PART_RE.match(n))


def list_error_parts(out_dir) -> list[str]:
    return list_parts(os.path.join(out_dir, ERRORS_DIR))


def has_results(out_dir) -> bool:
    """True when `out_dir` holds part files of an earlier run."""
    return bool(list_parts(out_dir) or list_error_parts(out_dir))


def next_chunk(out_dir, rank: int) -> int:
    """First chunk number of `rank` that no completed file uses."""
    used = [-1]
    for f in list_parts(out_dir) + list_error_parts(out_dir):
        m = _PART_RE.match(os.path.basename(f))
        if int(m.group(1)) == rank:
            used.append(int(m.group(2)))
    return max(used) + 1


def clean_temporaries(out_dir) -> int:
    """Delete the hidden temporary files a killed run left behind; returns how many."""
    n = 0
    for folder in (out_dir, os.path.join(out_dir, ERRORS_DIR)):
        for f in glob.glob(os.path.join(folder, ".*.tmp*")):
            try:
                os.remove(f)
                n += 1
            except FileNotFoundError:
                pass
    return n


def atomic_write_table(table: pa.Table, path: str, compression: str = "zstd") -> None:
    """Write `table` to `path` so that `path` either does not exist or is complete: temp file, fsync, rename."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=compression)


def atomic_write_text(text: str, path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def path_hashes(paths) -> np.ndarray:
    """64-bit BLAKE2b digests of paths (`uint64`): the done-set of a resumed job costs 8 bytes per record
    (collision probability ~n^2 / 2^65, i.e. < 1e-5 for 10^7 records). A path is hashed as the rows store it
    (`guard.escape_text`: non-UTF-8 bytes as `\\xNN`), so an input and its stored row always match."""
    out = np.empty(len(paths), dtype=np.uint64)
    for i, p in enumerate(paths):
        out[i] = int.from_bytes(hashlib.blake2b(escape_text(p).encode("utf-8"), digest_size=8).digest(), "little")
    return out


def _read_paths(files) -> tuple[list, int]:
    keys, n = [], 0
    for f in files:
        try:
            col = pq.read_table(f, columns=["path"]).column("path")
        except (OSError, pa.ArrowException) as err:
            raise ValueError(f"{f}: cannot read this output part ({err}); move it away and run again") from None
        keys.append(np.asarray(path_hashes(col.to_pylist())))
        n += len(col)
    return keys, n


def scan_done(out_dir) -> dict:
    """What completed chunks of earlier runs hold.

    Returns:
        `dict` with `hashes` (sorted unique `uint64` path digests of every done input, rows and errors), `rows`
        (number of result rows), `errors` (number of error rows).
    """
    row_keys, n_rows = _read_paths(list_parts(out_dir))
    err_keys, n_err = _read_paths(list_error_parts(out_dir))
    keys = row_keys + err_keys
    hashes = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.uint64)
    return {"hashes": hashes, "rows": n_rows, "errors": n_err}


def write_plan(out_dir, indices: np.ndarray, paths: list, info: dict) -> str:
    """The inputs still to do (global positions + paths), written by rank 0 for every rank to shard. Paths are
    stored as the OS's bytes (`os.fsencode`): any file name, non-UTF-8 included, is read back exactly."""
    table = pa.table({"input_index": pa.array(indices, pa.int64()),
                      "path": pa.array([os.fsencode(p) for p in paths], pa.binary())})
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()})
    path = os.path.join(out_dir, PLAN_FILE)
    atomic_write_table(table, path, compression="none")
    return path


def read_plan(out_dir, rank: int, world_size: int, batch_rows: int = 1 << 20) -> tuple[np.ndarray, pa.Array, dict]:
    """This rank's slice (`rank::world_size`) of the plan: `(input_indices, paths, info)`, `paths` an Arrow binary
    array of `os.fsencode`d paths (compact; read in record batches so that a huge plan is never all in memory as Python objects)."""
    pf = pq.ParquetFile(os.path.join(out_dir, PLAN_FILE))
    info = json.loads((pf.schema_arrow.metadata or {}).get(METADATA_KEY, b"{}"))
    indices, paths, start = [], [], 0
    for batch in pf.iter_batches(batch_size=batch_rows):
        take = np.arange((rank - start) % world_size, batch.num_rows, world_size)
        start += batch.num_rows
        part = batch.take(pa.array(take, pa.int64()))
        indices.append(part.column(0).to_numpy())
        paths.append(part.column(1))
    if not paths:
        return np.zeros(0, np.int64), pa.array([], pa.large_binary()), info
    return np.concatenate(indices), pa.concat_arrays([p.cast(pa.large_binary()) for p in paths]), info


class ShardWriter:
    """Buffers one rank's result rows and error rows and writes them as numbered chunks.

    Args:
        out_dir (`str`): the job's output folder.
        rank (`int`): this process's rank (goes into the file names).
        metadata (`dict`): JSON-serialisable job description stored in every file's schema metadata.
        chunk_size (`int`): rows (results + errors) per chunk; a chunk is also written after `flush_seconds`, so
            a killed job loses at most that much work.
        flush_seconds (`float`): see `chunk_size`.
    """

    def __init__(self, out_dir, rank: int, metadata: dict, chunk_size: int = 4096, flush_seconds: float = 600.0):
        self.out_dir = out_dir
        self.rank = rank
        self.metadata = {METADATA_KEY: json.dumps(metadata).encode()}
        self.chunk_size = max(1, int(chunk_size))
        self.flush_seconds = flush_seconds
        self.chunk = next_chunk(out_dir, rank)
        self._rows: list[pa.Table] = []
        self._n_rows = 0
        self._errors: list[dict] = []
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.errors_written = 0
        self.files: list[str] = []

    def add(self, rows: pa.Table | None, errors: list[dict]) -> None:
        """Queue a batch's result rows (a table) and error rows (dicts with the `ERRORS_SCHEMA` fields)."""
        if rows is not None and rows.num_rows:
            self._rows.append(rows)
            self._n_rows += rows.num_rows
        self._errors.extend(errors)
        if self._n_rows + len(self._errors) >= self.chunk_size or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows as the next chunk (results file, then errors file)."""
        if not self._rows and not self._errors:
            return
        name = part_name(self.rank, self.chunk)
        if self._rows:
            table = pa.concat_tables(self._rows).replace_schema_metadata(self.metadata)
            atomic_write_table(table, os.path.join(self.out_dir, name))
            self.files.append(name)
            self.rows_written += table.num_rows
        if self._errors:
            table = pa.Table.from_pylist(self._errors, schema=ERRORS_SCHEMA).replace_schema_metadata(self.metadata)
            atomic_write_table(table, os.path.join(self.out_dir, ERRORS_DIR, name))
            self.errors_written += table.num_rows
        self._rows, self._n_rows, self._errors = [], 0, []
        self.chunk += 1
        self._last_flush = time.monotonic()


def write_success(out_dir, info: dict) -> dict:
    """Merge the row counts of every completed part into `_SUCCESS` (JSON, written atomically) and return it."""
    files = [{"file": os.path.basename(f), "rows": pq.read_metadata(f).num_rows} for f in list_parts(out_dir)]
    errors = [{"file": f"{ERRORS_DIR}/{os.path.basename(f)}", "rows": pq.read_metadata(f).num_rows}
              for f in list_error_parts(out_dir)]
    manifest = dict(info)
    manifest.update(
        rows=sum(f["rows"] for f in files),
        errors=sum(f["rows"] for f in errors),
        files=files,
        error_files=errors,
    )
    atomic_write_text(json.dumps(manifest, indent=2, default=str) + "\n", os.path.join(out_dir, SUCCESS_FILE))
    return manifest


def read_results(out_dir, columns=None) -> pa.Table:
    """All result rows of `out_dir`, sorted by input position."""
    files = list_parts(out_dir)
    if not files:
        return pa.table({})
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")
    if "input_index" in table.column_names:
        table = table.sort_by("input_index")
    return table


def read_errors(out_dir) -> pa.Table:
    """All error rows of `out_dir` (path, error_class, message, ...), sorted by input position."""
    files = list_error_parts(out_dir)
    if not files:
        return ERRORS_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("input_index")
