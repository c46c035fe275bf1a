"""Build a `datasets.Dataset` from a folder of ECG files and a label table; save/load it as Arrow or Parquet shards.

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
from datasets import Dataset, DatasetDict, DatasetInfo, IterableDataset, load_dataset, load_from_disk

from ..modeling.label_space import LabelSpace
from .labels import LabelTable, read_label_table
from .storage import decode_signal, encode_signal, record_features

logger = logging.getLogger(__name__)

METADATA_FILE = "anyecg_dataset.json"
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

    WFDB records are found through their `.hea`. Two files with the same stem (e.g. `a/1.xml` and `b/1.xml`) are an
    error listing both, because record ids must be unique; name them in the label table's `path` column instead.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Records folder {folder} does not exist or is not a folder.")
    found: dict[str, str] = {}
    clashes: list[str] = []
    pattern = "**/*" if recursive else "*"
    for path in sorted(folder.glob(pattern)):
        if not path.is_file() or path.suffix.lower() not in extensions or path.name.startswith("."):
            continue
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
    ds = _with_metadata(ds, info_meta)
    if len(ds) == 0:
        raise ValueError(f"No record could be read ({len(report.skipped)} skipped); first errors: "
                         + "; ".join(f"{s['record_id']}: {s['reason']}" for s in report.skipped[:5]))
    if split is not None:
        if isinstance(split, dict):
            ds = patient_split(ds, split, seed=seed)
        else:
            ds = split_by_column(ds, split)
    return (ds, report) if return_report else ds


def _with_metadata(ds, meta: dict):
    """Store `meta` in `ds.info.description` (JSON under the key `anyecg_dataset`)."""
    info = ds.info.copy() if hasattr(ds.info, "copy") else DatasetInfo()
    info.description = json.dumps({"anyecg_dataset": meta})
    ds._info = info
    return ds


def dataset_metadata(ds) -> dict:
    """The AnyECG metadata of a built dataset (label spaces, storage, build report, preprocessing)."""
    if isinstance(ds, (DatasetDict, dict)):
        ds = next(iter(ds.values()))
    text = getattr(getattr(ds, "info", None), "description", "") or ""
    try:
        return json.loads(text).get("anyecg_dataset", {})
    except (json.JSONDecodeError, AttributeError):
        return {}


def set_dataset_metadata(ds, **updates):
    """A dataset (or every split of a `DatasetDict`) with its AnyECG metadata updated."""
    if isinstance(ds, DatasetDict):
        return DatasetDict({k: set_dataset_metadata(v, **updates) for k, v in ds.items()})
    meta = dict(dataset_metadata(ds))
    meta.update(updates)
    return _with_metadata(ds, meta)


def get_label_space(ds) -> LabelSpace | None:
    """The diagnosis label space the dataset's `labels` columns follow."""
    meta = dataset_metadata(ds)
    rows = meta.get("label_space")
    return None if rows is None else LabelSpace(rows, name=meta.get("label_space_name"))


def get_risk_label_space(ds) -> LabelSpace | None:
    """The risk label space of `event_times` / `events` / `at_risk_mask`."""
    meta = dataset_metadata(ds)
    rows = meta.get("risk_label_space")
    return None if rows is None else LabelSpace(rows, name=meta.get("risk_label_space_name"))


def decode_example(example: dict) -> np.ndarray:
    """The `(leads, samples)` float32 mV signal of one built row."""
    return decode_signal(example["signal"], example["gain"])


# ------------------------------------------------------------------------------------------------------ splits
def patient_split(ds: Dataset, fractions: dict, seed: int = 0, patient_column: str = "patient_id") -> DatasetDict:
    """Split by patient: every record of a patient lands in the same split.

    Patients are shuffled (seeded) and assigned in turn to the split furthest below its target share of records, so
    the record fractions match `fractions` as closely as whole patients allow.

    Args:
        ds (`Dataset`): with a `patient_column`.
        fractions (`dict[str, float]`): split name -> fraction of records (normalised to sum to 1).
        seed (`int`): shuffling seed.
    """
    if not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {fractions}.")
    names = list(fractions)
    target = np.array([fractions[n] for n in names], float)
    target /= target.sum()
    patients = list(ds[patient_column])
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    order = list(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    counts = np.zeros(len(names))
    assigned: list[list[int]] = [[] for _ in names]
    for p in order:
        idx = groups[p]
        # the split whose share would be furthest below target after adding this patient
        deficit = target * (counts.sum() + len(idx)) - counts
        k = int(np.argmax(deficit))
        assigned[k].extend(idx)
        counts[k] += len(idx)
    return DatasetDict({n: ds.select(sorted(a)) for n, a in zip(names, assigned)})


def split_by_column(ds: Dataset, column: str, mapping: dict | None = None,
                    patient_column: str = "patient_id") -> DatasetDict:
    """Split on the values of `column` (e.g. a `split` column, or PTB-XL folds with `mapping={"9": "validation"}`).

    Args:
        mapping (`dict`, *optional*): value (as text) -> split name; values not in it keep their own name. Map a value
            to `None` to drop its rows.
        patient_column (`str`): a patient found in two splits is a `PatientLeakageError` listing every such
            patient (records of one patient in train and test inflate every metric).
    """
    if column not in ds.column_names:
        raise ValueError(f"Cannot split on {column!r}: the dataset has columns {ds.column_names}.")
    values = [None if v is None else str(v) for v in ds[column]]
    mapping = mapping or {}
    splits: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        name = mapping.get(v, v)
        if name is None:
            continue
        splits.setdefault(name, []).append(i)
    if patient_column in ds.column_names:  # a split column that puts one patient in two splits leaks
        patients = ds[patient_column]
        _raise_on_leakage({n: [patients[i] for i in idx] for n, idx in splits.items()}, f"column {column!r}")
    return DatasetDict({n: ds.select(idx) for n, idx in splits.items()})


class PatientLeakageError(ValueError):
    """The same patient is in more than one split (their ECGs would be trained on and evaluated on).

    Attributes:
        patients (`dict[str, list[str]]`): each leaking patient -> the splits holding them.
    """

    def __init__(self, patients: dict, where: str = ""):
        self.patients = patients
        shown = "; ".join(f"{p} ({', '.join(s)})" for p, s in list(patients.items())[:20])
        more = f" ... and {len(patients) - 20} more (see .patients)" if len(patients) > 20 else ""
        super().__init__(f"patient-level leakage{' from ' + where if where else ''}: {len(patients)} patient(s) "
                         f"are in more than one split: {shown}{more}. Split by patient (split={{'train': 0.8, ...}}) "
                         "or fix the split column")

    def __reduce__(self):
        return (type(self), (self.patients,))


def _raise_on_leakage(patients_by_split: dict, where: str = "") -> None:
    splits_of: dict[str, list[str]] = {}
    for name, patients in patients_by_split.items():
        for p in dict.fromkeys(patients):
            splits_of.setdefault(str(p), []).append(str(name))
    leaks = {p: s for p, s in sorted(splits_of.items()) if len(s) > 1}
    if leaks:
        raise PatientLeakageError(leaks, where)


def check_patient_disjoint(dsd: DatasetDict, patient_column: str = "patient_id") -> None:
    """Raise `PatientLeakageError` (a `ValueError`) listing the patients that appear in more than one split."""
    _raise_on_leakage({name: part[patient_column] for name, part in dsd.items()})


# ------------------------------------------------------------------------------------------------------ save / load
def save_ecg_dataset(ds, out, format: str = "arrow", num_shards: int | None = None, max_shard_size: str | int = "500MB"):
    """Write a built dataset.

    Args:
        ds: `Dataset` or `DatasetDict`.
        out: output folder.
        format (`str`): `"arrow"` (`save_to_disk`; reload with `load_ecg_dataset` or `datasets.load_from_disk`) or
            `"parquet"` (shards `data/<split>-00000-of-000NN.parquet`, the Hub's layout: `load_ecg_dataset(out,
            streaming=True)` or `datasets.load_dataset("parquet", ...)` read them lazily).
        num_shards (`int`, *optional*): Parquet/Arrow shards per split (default: from `max_shard_size`).
        max_shard_size: largest shard (Arrow format and the Parquet default).
    Writes `anyecg_dataset.json` (label spaces, storage, build report) beside the data.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dataset_metadata(ds)
    if format == "arrow":
        kwargs = {"num_shards": num_shards} if num_shards else {"max_shard_size": max_shard_size}
        if isinstance(ds, DatasetDict):
            kwargs = {"num_shards": {k: num_shards for k in ds}} if num_shards else {"max_shard_size": max_shard_size}
        ds.save_to_disk(str(out), **kwargs)
    elif format == "parquet":
        parts = ds if isinstance(ds, DatasetDict) else {"train": ds}
        (out / "data").mkdir(exist_ok=True)
        for name, part in parts.items():
            n = num_shards or max(1, math.ceil(part.data.nbytes / _parse_size(max_shard_size)))
            n = min(n, max(1, len(part)))
            for i in range(n):
                part.shard(n, i, contiguous=True).to_parquet(str(out / "data" / f"{name}-{i:05d}-of-{n:05d}.parquet"))
        meta = dict(meta, splits=list(parts))
    else:
        raise ValueError(f"format must be 'arrow' or 'parquet', got {format!r}.")
    (out / METADATA_FILE).write_text(json.dumps({"anyecg_dataset": dict(meta, format=format)}, indent=1))
    return out


def _parse_size(size) -> int:
    if isinstance(size, int):
        return size
    text = str(size).strip().upper()
    for unit, mult in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * mult)
    return int(text)


def load_ecg_dataset(path, split: str | None = None, streaming: bool = False, cache_dir=None):
    """Load a dataset written by `save_ecg_dataset` (Arrow folder or Parquet shards) or a Hub dataset repo of
    Parquet shards, with its AnyECG metadata restored.

    Args:
        path: local folder, or a Hub dataset repo id.
        split (`str`, *optional*): one split (a `Dataset`); default all (a `DatasetDict` for split data).
        streaming (`bool`): return an `IterableDataset` (Parquet is read lazily, row group by row group; Arrow folders
            are memory-mapped and converted with `to_iterable_dataset`).
    """
    p = Path(path)
    meta = {}
    if p.is_dir():
        if (p / METADATA_FILE).exists():
            meta = json.loads((p / METADATA_FILE).read_text()).get("anyecg_dataset", {})
        if (p / "dataset_dict.json").exists() or (p / "state.json").exists():
            ds = load_from_disk(str(p))
            if split is not None:
                if not isinstance(ds, DatasetDict) or split not in ds:
                    raise ValueError(f"{path} has no split {split!r} (splits: {list(ds) if isinstance(ds, DatasetDict) else ['<single>']}).")
                ds = ds[split]
            if streaming:
                ds = (DatasetDict({k: v.to_iterable_dataset() for k, v in ds.items()}) if isinstance(ds, DatasetDict)
                      else ds.to_iterable_dataset())
        else:
            shards = sorted((p / "data").glob("*.parquet")) or sorted(p.glob("*.parquet"))
            if not shards:
                raise FileNotFoundError(f"{path} holds neither a saved dataset nor Parquet shards.")
            by_split: dict[str, list[str]] = {}
            for s in shards:
                name = s.name.split("-")[0] if "-of-" in s.name else "train"
                by_split.setdefault(name, []).append(str(s))
            ds = load_dataset("parquet", data_files=by_split, split=split, streaming=streaming,
                              cache_dir=None if cache_dir is None else str(cache_dir))
    else:
        ds = load_dataset(str(path), split=split, streaming=streaming, cache_dir=None if cache_dir is None else str(cache_dir))
        try:
            from huggingface_hub import hf_hub_download

            meta = json.loads(Path(hf_hub_download(str(path), METADATA_FILE, repo_type="dataset")).read_text()).get("anyecg_dataset", {})
        except Exception:  # noqa: BLE001 - a plain Hub dataset without our metadata
            meta = {}
    if meta:
        meta.pop("format", None)
        meta.pop("splits", None)
        if isinstance(ds, (DatasetDict, dict)) or type(ds).__name__ == "IterableDatasetDict":
            for v in ds.values():
                _with_metadata(v, {**dataset_metadata(v), **meta} if dataset_metadata(v) else meta)
        else:
            _with_metadata(ds, {**dataset_metadata(ds), **meta} if dataset_metadata(ds) else meta)
    return ds
