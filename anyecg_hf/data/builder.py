"""Build a `datasets.Dataset` from a folder of ECG files and a label table (saving, splits and the dataset's
metadata are in `saving.py`, `splits.py`, `metadata.py`).

datasets 5 has no loading scripts, so builders are plain functions that return a `Dataset` / `DatasetDict` /
`IterableDataset`. A built dataset has one row per record:

| column | type | meaning |
| --- | --- | --- |
| `record_id`, `patient_id`, `source` | string | file stem, patient (record id if unknown), file path |
| `signal` | list of int16 / float16 / float32 | `(leads, samples)` flattened lead-major (see `storage`) |
| `gain` | list of float32 | mV per stored unit, per lead (ones for float storage) |
| `lead_names`, `sampling_rate`, `num_samples` | | shape and rate of `signal` |
| `age`, `sex` | float32, string | from the table if it has them, else from the file |
| `labels`, `label_mask` | list of float32 / bool | diagnosis targets over the dataset's label space |
| `event_times`, `events`, `at_risk_mask` | lists | risk targets over the risk label space (years) |
| `regression_targets`, `regression_mask` | lists | continuous traits |

Label spaces, storage and the build report travel in `dataset.info.description` (JSON, kept by `map`, `filter`,
`save_to_disk`) and in an `anyecg_dataset.json` file beside saved data; read them with `dataset_metadata`,
`get_label_space` and `get_risk_label_space`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, IterableDataset

from ..modeling.label_space import LabelSpace
from .labels import LabelTable, read_label_table
from .metadata import with_metadata
from .splits import PatientLeakageError, patient_split, split_by_column  # noqa: F401 (error importable here)
from .storage import encode_signal, record_features

logger = logging.getLogger(__name__)

# Extensions of files that hold a whole ECG record (WFDB data files .dat/.mat are reached through their .hea).
RECORD_EXTENSIONS = (".hea", ".xml", ".dcm", ".dicom", ".scp", ".edf", ".csv", ".tsv", ".npy", ".npz")


# ------------------------------------------------------------------------------------------------------ report
@dataclass
class BuildReport:
    """What a build did: rows built, records skipped (with the reason), records without labels.

    Attributes:
        n_table_rows (`int`): rows of the label table (or files found, without a table).
        n_built (`int`): rows in the dataset.
        skipped (`list[dict]`): `{"record_id", "path", "reason"}` for every record that could not be read.
        unlabeled (`list[str]`): record ids found in the folder but absent from the label table (not built).
        ignored_codes (`dict[str, int]`): codes left out because they are not in the label space (`unknown_codes=
            "ignore"`), with their counts.
    """

    n_table_rows: int = 0
    n_built: int = 0
    skipped: list = field(default_factory=list)
    unlabeled: list = field(default_factory=list)
    ignored_codes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = f"built {self.n_built} of {self.n_table_rows} records; skipped {len(self.skipped)} unreadable"
        if self.unlabeled:
            text += f"; {len(self.unlabeled)} file(s) without a label row not built"
        if self.ignored_codes:
            text += f"; {sum(self.ignored_codes.values())} code(s) outside the label space ignored"
        return text

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


# ------------------------------------------------------------------------------------------------------ files
def find_record_files(folder, recursive: bool = True, extensions=RECORD_EXTENSIONS) -> dict[str, str]:
    """Record id (file stem) -> path of every ECG file under `folder`.

    The folder walk is `anyecg_hf.io.walk_ecg_files` (hidden files and folders skipped); WFDB records are found
    through their `.hea`. Two files with the same stem (e.g. `a/1.xml` and `b/1.xml`) are an
    error listing both, because record ids must be unique; name them in the label table's `path` column instead.
    """
    from ..io import walk_ecg_files

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Records folder {folder} does not exist or is not a folder.")
    found: dict[str, str] = {}
    clashes: list[str] = []
    for path in map(Path, walk_ecg_files(folder, recursive=recursive, extensions=tuple(extensions))):
        rid = path.stem
        if rid in found:
            clashes.append(f"{found[rid]} and {path}")
            continue
        found[rid] = str(path)
    if clashes:
        raise ValueError(
            f"{len(clashes)} record id(s) in {folder} name more than one file: " + "; ".join(clashes[:20])
            + (" ..." if len(clashes) > 20 else "") + ". Give each row's file in a 'path' column of the label table."
        )
    return found


def _file_stamp(path: str) -> list:
    """Size and mtime of a record's files, so that the datasets cache is invalidated when a file changes."""
    p = Path(path)
    stamps = []
    for q in (p, p.with_suffix(".mat"), p.with_suffix(".dat")) if p.suffix.lower() == ".hea" else (p,):
        try:
            st = q.stat()
            stamps += [st.st_size, st.st_mtime_ns]
        except OSError:
            continue
    return stamps


# ------------------------------------------------------------------------------------------------------ rows
def _generate_rows(items, storage: str, gain, read_kwargs: dict, metadata_columns, keep_errors: bool):
    """Generator used by `Dataset.from_generator` (sharded over `items` with `num_proc`).

    Reads each record; a record that cannot be read yields an empty row with `_error` set (collected into the build
    report and removed afterwards) so that one bad file never stops the build.
    """
    from ..io import read_ecg  # imported here: the generator runs in worker processes

    for item in items:
        row = {
            "record_id": item["record_id"], "patient_id": item["patient_id"], "source": item["path"],
            "signal": [], "gain": [], "lead_names": [], "sampling_rate": 0.0, "num_samples": 0,
            "age": item.get("age"), "sex": item.get("sex"),
        }
        row.update({c: item.get(c) for c in metadata_columns})
        row.update(item["targets"])
        try:
            rec = read_ecg(item["path"], **read_kwargs)
            x = np.asarray(rec.signal, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] == 0:
                raise ValueError(f"empty signal of shape {x.shape}")
            if not np.isfinite(x).any():
                raise ValueError("every sample is missing (NaN)")
            flat, g = encode_signal(x, storage, gain)
            row.update(signal=flat, gain=g, lead_names=list(rec.lead_names), sampling_rate=float(rec.sampling_rate),
                       num_samples=int(x.shape[1]))
            meta = rec.metadata or {}
            if row["age"] is None and meta.get("age") is not None:
                row["age"] = meta["age"]
            if row["sex"] is None and meta.get("sex") is not None:
                row["sex"] = meta["sex"]
            error = ""
        except Exception as err:  # noqa: BLE001 - any reader failure skips this record, reported below
            error = f"{type(err).__name__}: {err}"
            if not keep_errors:
                logger.warning("skipping record %s (%s): %s", item["record_id"], item["path"], error)
                continue
        row["age"] = _as_float(row["age"])
        if keep_errors:
            row["_error"] = error
        yield row


def _as_float(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _items_from_table(table: LabelTable, files: dict[str, str], records_dir: Path | None) -> list[dict]:
    items = []
    meta_cols = [c for c in table.metadata if c not in ("age", "sex")]
    for i, rid in enumerate(table.record_ids):
        path = table.paths[i]
        if path is not None:
            path = str(records_dir / path) if records_dir is not None and not os.path.isabs(path) else path
            if not os.path.exists(path) and os.path.exists(path + ".hea"):
                path += ".hea"  # WFDB record named without extension
        else:
            path = files[rid]
        item = {"record_id": rid, "patient_id": table.patient_ids[i], "path": path, "targets": table.targets(i),
                "age": table.metadata.get("age", [None] * len(table))[i], "sex": table.metadata.get("sex", [None] * len(table))[i],
                "stamp": _file_stamp(path)}
        item.update({c: table.metadata[c][i] for c in meta_cols})
        items.append(item)
    return items


# ------------------------------------------------------------------------------------------------------ build
def build_ecg_dataset(
    records,
    labels=None,
    label_space: LabelSpace | str | os.PathLike | None = None,
    risk_label_space: LabelSpace | str | os.PathLike | None = None,
    *,
    storage: str = "int16",
    gain="auto",
    split=None,
    seed: int = 0,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    streaming: bool = False,
    read_kwargs: dict | None = None,
    scan: bool = True,
    return_report: bool = False,
    **table_kwargs,
):
    """Build an ECG dataset from a folder of ECG files and a label table.

    The label table is read and validated first (`read_label_table`): every problem (records that do not exist,
    codes not in the label space, duplicate ids, negative event times, ...) is listed in one `LabelTableError` before
    any file is read. Records are then read in `num_proc` processes with `anyecg_hf.io.read_ecg` (any supported
    format); a record that cannot be read is skipped and listed in the `BuildReport` (logged as a warning), never a
    crash midway. The result is cached by `datasets` (keyed on the inputs and the files' sizes and mtimes).

    Args:
        records: folder of ECG files (searched recursively), or a `{record_id: path}` dict.
        labels: label table (CSV/TSV/Parquet path or DataFrame); `None` builds every file with no targets.
        label_space, risk_label_space: `LabelSpace` or a path to a CSV/JSON label table (`LabelSpace.load`); `None`
            infers them from the table (see `read_label_table`).
        storage (`str`): `"int16"` (default, with `gain`), `"float16"` or `"float32"` (see `anyecg_hf.data.storage`).
        gain: int16 gain in mV per count, or `"auto"`.
        split: `None` (one `Dataset`), a dict of fractions such as `{"train": 0.8, "validation": 0.1, "test": 0.1}`
            for a patient-level split (`patient_split`), or the name of a table column (e.g. `"split"`, `"fold"`)
            whose values name the splits. Returns a `DatasetDict` when given.
        seed (`int`): seed of the patient-level split.
        num_proc (`int`, *optional*): processes reading records (datasets shards the record list).
        cache_dir (*optional*): datasets cache folder (default `~/.cache/huggingface/datasets`).
        streaming (`bool`): return an `IterableDataset` that reads records lazily while iterating (corpora larger
            than the disk); unreadable records are skipped with a warning; `split` is not supported.
        read_kwargs (`dict`, *optional*): passed to `read_ecg` (e.g. `{"format": "wfdb"}`).
        scan (`bool`): list the folder's ECG files (to find records by id and report files without labels); turn
            off when the table's `path` column names every file (large corpora such as PTB-XL).
        return_report (`bool`): also return the `BuildReport`.
        table_kwargs: passed to `read_label_table` (`id_column`, `codes_column`, `regression_columns`,
            `unknown_codes`, `code_aliases`, ...).

    Returns:
        `Dataset`, `DatasetDict` or `IterableDataset` (and the `BuildReport` when `return_report`).
    """
    records_dir = None
    if isinstance(records, dict):
        files = {str(k): str(v) for k, v in records.items()}
    else:
        records_dir = Path(records)
        if not records_dir.is_dir():
            raise FileNotFoundError(f"Records folder {records_dir} does not exist or is not a folder.")
        files = find_record_files(records_dir) if scan else {}
    label_space = LabelSpace.load(label_space) if isinstance(label_space, (str, os.PathLike)) else label_space
    risk_label_space = LabelSpace.load(risk_label_space) if isinstance(risk_label_space, (str, os.PathLike)) else risk_label_space

    if labels is None:
        if not files:
            raise ValueError(f"No ECG file found in {records}.")
        table = LabelTable(record_ids=list(files), patient_ids=list(files), paths=[None] * len(files), source="<files>")
    else:
        table = read_label_table(labels, label_space, risk_label_space, available_records=files if scan else None,
                                 records_dir=records_dir, **table_kwargs)
        if not scan and any(p is None for p in table.paths):
            raise ValueError("scan=False needs a 'path' column naming every record's file.")
    report = BuildReport(n_table_rows=len(table), ignored_codes=dict(table.ignored_codes))
    in_table = set(table.record_ids)
    report.unlabeled = sorted(r for r in files if r not in in_table)
    items = _items_from_table(table, files, records_dir)
    meta_cols = [c for c in table.metadata if c not in ("age", "sex")]
    features = record_features(
        storage,
        None if table.label_space is None else len(table.label_space),
        None if table.risk_label_space is None else len(table.risk_label_space),
        None if table.regression_names is None else len(table.regression_names),
        meta_cols,
    )
    info_meta = {
        "storage": storage,
        "label_space": None if table.label_space is None else table.label_space.to_list(),
        "label_space_name": None if table.label_space is None else table.label_space.name,
        "risk_label_space": None if table.risk_label_space is None else table.risk_label_space.to_list(),
        "risk_label_space_name": None if table.risk_label_space is None else table.risk_label_space.name,
        "regression_names": table.regression_names,
    }
    gen_kwargs = {"items": items, "storage": storage, "gain": gain, "read_kwargs": dict(read_kwargs or {}),
                  "metadata_columns": tuple(meta_cols)}

    if streaming:
        if split is not None:
            raise ValueError("split is not supported with streaming=True: split the label table and build each part.")
        ds = IterableDataset.from_generator(_generate_rows, features=features, gen_kwargs={**gen_kwargs, "keep_errors": False})
        ds.info.description = json.dumps({"anyecg_dataset": info_meta})
        return (ds, report) if return_report else ds

    with_error = features.copy()
    from datasets import Value

    with_error["_error"] = Value("string")
    num_proc = None if not num_proc or num_proc <= 1 or len(items) < 2 else min(int(num_proc), len(items))
    ds = Dataset.from_generator(_generate_rows, features=with_error, gen_kwargs={**gen_kwargs, "keep_errors": True},
                                num_proc=num_proc, cache_dir=None if cache_dir is None else str(cache_dir))
    errors = list(ds["_error"])
    bad = [i for i, e in enumerate(errors) if e]
    if bad:
        ids, sources = ds.select(bad)["record_id"], ds.select(bad)["source"]
        report.skipped = [{"record_id": r, "path": s, "reason": errors[i]} for r, s, i in zip(ids, sources, bad)]
        for s in report.skipped:
            logger.warning("skipped unreadable record %s (%s): %s", s["record_id"], s["path"], s["reason"])
        keep = [i for i, e in enumerate(errors) if not e]
        ds = ds.select(keep).flatten_indices(cache_file_name=None)
    ds = ds.remove_columns("_error")
    report.n_built = len(ds)
    info_meta["build_report"] = report.to_dict()
    ds = with_metadata(ds, info_meta)
    if len(ds) == 0:
        raise ValueError(f"No record could be read ({len(report.skipped)} skipped); first errors: "
                         + "; ".join(f"{s['record_id']}: {s['reason']}" for s in report.skipped[:5]))
    if split is not None:
        if isinstance(split, dict):
            ds = patient_split(ds, split, seed=seed)
        else:
            ds = split_by_column(ds, split)
    return (ds, report) if return_report else ds
