"""Input discovery: the list of ECG inputs of a job, from files, directory walks or a manifest.

Every process of a distributed job must see the same list in the same order (sharding is by position), so the
list is sorted and deduplicated deterministically:

* a directory is walked recursively in sorted order (hidden files and folders skipped); the files kept are those
  `anyecg_hf.io.read_ecg_dir` reads (ECG extensions, XML, extension-less files whose content is an ECG format),
  or those with one of `extensions=`;
* a WFDB record is ONE input, its `.hea`: a `.mat`/`.dat` with a `.hea` beside it is dropped (or mapped to the
  `.hea` when named explicitly), so `anyecg profile data/*` does not profile each record twice;
* a manifest (CSV or Parquet) lists one input per row in a `path` column (else `record_id`/`record`, else the
  first column); relative entries are resolved against `root` (default: the manifest's folder); an entry without
  extension that names a WFDB record (`HR06000` with `HR06000.hea` beside it) resolves to its `.hea`;
* the same file named twice is kept once (first occurrence).

Inputs are absolute paths (symlinks are NOT resolved: a symlink is its own input). In a folder walk, a link whose
real path leaves the walked folder is not read (reported instead) unless `follow_links=True` (`--follow-links`: a
folder of links to a dataset elsewhere).
Entries that do not exist are kept: the job reports them in its errors table instead of silently dropping them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..io.folders import walk_ecg_files

WFDB_DATA_EXTENSIONS = (".mat", ".dat")
MANIFEST_COLUMNS = ("path", "record_id", "record", "file", "filename")


def _normalize_extensions(extensions) -> tuple[str, ...] | str | None:
    """`None` -> the readers' rule; `"*"` -> every file; else lower-cased extensions with a leading dot."""
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [e for e in extensions.split(",")]
    exts = []
    for e in extensions:
        e = e.strip().lower()
        if e == "*":
            return "*"
        if e:
            exts.append(e if e.startswith(".") else "." + e)
    return tuple(exts) or None


def _wfdb_header(path: str) -> str | None:
    """The `.hea` beside a `.mat`/`.dat` data file (or of an extension-less record path), if it exists."""
    stem, ext = os.path.splitext(path)
    if ext.lower() in WFDB_DATA_EXTENSIONS:
        hea = stem + ".hea"
        return hea if os.path.isfile(hea) else None
    if not ext and not os.path.exists(path) and os.path.isfile(path + ".hea"):
        return path + ".hea"
    return None


def walk_directory(directory, extensions=None, skipped: list | None = None, follow_links: bool = False) -> Iterator[str]:
    """Yield the ECG inputs under `directory` in sorted order (recursive, hidden entries skipped, WFDB pairs deduplicated).

    Args:
        directory (`str` or `os.PathLike`): folder to walk.
        extensions (`str`, `Sequence[str]` or `None`): extensions to keep (`".hea,.xml"` or a list); `"*"` keeps
            every file; `None` keeps what `anyecg_hf.io.read_ecg_dir` reads.
        skipped (`list`, *optional*): receives `(path, error class, message)` for entries never opened: links (to
            files or folders) whose real path leaves `directory` (a link to `/etc/passwd` must not be read as
            samples), FIFOs, sockets, devices, dangling links (`anyecg_hf.io.folders.walk_ecg_files`). Without
            it they are left out silently.
        follow_links (`bool`, defaults to `False`): read file links whose target is outside `directory` (a
            folder of links to a dataset elsewhere); folder links are never walked.
    """
    return walk_ecg_files(os.path.abspath(directory), extensions=_normalize_extensions(extensions), errors=skipped,
                          follow_links=follow_links)


def read_manifest(manifest, root=None, column: str | None = None) -> list[str]:
    """Inputs listed in a CSV or Parquet manifest, one per row.

    Args:
        manifest (`str` or `os.PathLike`): `.csv`/`.tsv` or `.parquet` file.
        root (*optional*): folder that relative entries are relative to (default: the manifest's folder).
        column (`str`, *optional*): column holding the entries (default: the first of `MANIFEST_COLUMNS` present,
            else the first column).

    Raises:
        ValueError: the manifest cannot be read, or has no such column.
    """
    manifest = Path(manifest)
    suffix = manifest.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            schema_names = pq.read_schema(manifest).names
            col = column or next((c for c in MANIFEST_COLUMNS if c in schema_names), schema_names[0] if schema_names else None)
            if col not in schema_names:
                raise ValueError(f"no column {col!r} (columns: {', '.join(schema_names)})")
            entries = pq.read_table(manifest, columns=[col]).column(col).to_pylist()
        else:
            import pandas as pd

            df = pd.read_csv(manifest, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
            col = column or next((c for c in MANIFEST_COLUMNS if c in df.columns), df.columns[0] if len(df.columns) else None)
            if col not in df.columns:
                raise ValueError(f"no column {col!r} (columns: {', '.join(map(str, df.columns))})")
            entries = df[col].tolist()
    except (OSError, ValueError) as err:
        raise ValueError(f"{manifest}: cannot read the manifest: {err}") from None
    base = Path(root) if root is not None else manifest.parent
    out = []
    for entry in entries:
        if entry is None or str(entry).strip() == "":
            continue
        p = os.path.expanduser(str(entry).strip())
        if not os.path.isabs(p):
            p = os.path.join(base, p)
        out.append(p)
    return out


def discover_inputs(
    paths: Sequence = (),
    manifest=None,
    *,
    root=None,
    manifest_column: str | None = None,
    extensions=None,
    limit: int | None = None,
    skipped: list | None = None,
    follow_links: bool = False,
) -> list[str]:
    """The job's inputs, deterministic across processes: absolute paths, deduplicated, in argument order.

    Args:
        paths (`Sequence[str]`): files and folders (folders are walked with `walk_directory`).
        manifest (*optional*): a CSV/Parquet manifest (`read_manifest`), appended after `paths`.
        root (*optional*): base folder for the manifest's relative entries.
        manifest_column (`str`, *optional*): manifest column to read.
        extensions (*optional*): extensions kept in directory walks (see `walk_directory`).
        limit (`int`, *optional*): keep only the first `limit` inputs (dry runs).
        skipped (`list`, *optional*): receives `(path, error class, message)` of walked entries never opened
            (`walk_directory`).
        follow_links (`bool`): read file links leading outside a walked folder (`walk_directory`).

    Returns:
        `list[str]`: absolute paths (missing files included, so that they are reported as errors).
    """

    def candidates():
        for p in paths:
            p = os.path.expanduser(os.fspath(p))
            if os.path.isdir(p):
                yield from walk_directory(p, extensions, skipped, follow_links)
            else:
                yield p
        if manifest is not None:
            yield from read_manifest(manifest, root=root, column=manifest_column)

    seen: set[str] = set()
    out: list[str] = []
    if limit is not None and limit <= 0:
        return out
    for p in candidates():
        p = os.path.abspath(p)
        p = _wfdb_header(p) or p
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        if limit is not None and len(out) >= limit:
            break
    return out
