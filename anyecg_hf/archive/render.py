"""Single-file outputs (`--out profile.csv` / `.json`): rendered by rank 0 from the job's Parquet parts.

The engine always writes Parquet parts (that is what makes a job shardable and resumable); a CSV/JSON output is
the last step, so `profile.csv` is the same whatever number of processes produced it. Profiles are rebuilt from
the stored per-record outputs with `anyecg_hf.prediction.profile_records` / `profile_rows`, the functions
the `ecg-profiling` pipeline uses, so a record gets the same rows from the pipeline, the CLI and the archive engine.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pyarrow as pa

from ..files import atomic_path
from . import store

_ROW_BATCH = 1024  # records per rendering step (bounded memory for long CSVs)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def _nested(values) -> np.ndarray | None:
    if values is None:
        return None
    return np.asarray([np.asarray(v, dtype=np.float64) for v in values] if isinstance(values, list) and values and
                      isinstance(values[0], (list, np.ndarray)) else values, dtype=np.float64)


def profile_dicts(table: pa.Table, config, top_k=None, threshold=None, horizons=None):
    """Yield `(profile, path)` for each record of `table`: its profile rebuilt with `profile_records`, plus the
    cart's `measurements` (a dict, from the file) when the record has them."""
    from ..prediction import profile_records

    cols = set(table.column_names)
    for batch in table.to_batches(max_chunksize=_ROW_BATCH):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            outputs = {"horizons": config.risk_horizons}
            for key in ("probabilities", "risk_scores", "cumulative_incidence", "regression_outputs"):
                if key in cols and data[key][i] is not None:
                    outputs[key] = _nested(data[key][i])
            profile = profile_records(outputs, config, top_k=top_k, threshold=threshold, horizons=horizons,
                                      record=data["record_id"][i], warnings=data["warnings"][i] or [])
            if "measurements" in cols and data["measurements"][i]:
                profile["measurements"] = json.loads(data["measurements"][i])
            if "precision" in cols:
                profile["precision"] = data["precision"][i]
            yield profile, data["path"][i]


def profile_row_dicts(table: pa.Table, config, top_k=None, threshold=None, horizons=None):
    """Yield the table rows of each record of `table`: `profile_rows(profile_records(...))` plus its `path`, the
    cart's `measurements` (JSON, from the file; empty when it stores none) and the `precision` the job ran in. The
    record's column is `record_id`, as in the Parquet output (the pipelines' Python dicts say `record`)."""
    from ..prediction import profile_rows

    for profile, path in profile_dicts(table, config, top_k, threshold, horizons):
        measured = json.dumps(profile["measurements"]) if profile.get("measurements") else None
        for row in profile_rows(profile):
            out = {"record_id": row.pop("record"), "path": path}  # the name of the Parquet output and datasets
            out.update(row)
            out["precision"] = profile.get("precision")  # always present (None for results of older versions)
            out["measurements"] = measured  # always present: the CSV header comes from the first row
            yield out


def embedding_row_dicts(table: pa.Table):
    """Yield `{"record_id", "path", "embedding": [...], "warnings", "measurements"}` per record (`record_id`, as in
    the Parquet output)."""
    has_measurements = "measurements" in table.column_names
    for batch in table.to_batches(max_chunksize=_ROW_BATCH):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            yield {"record_id": data["record_id"][i], "path": data["path"][i], "embedding": data["embedding"][i],
                   "warnings": "; ".join(data["warnings"][i] or []),
                   "precision": data["precision"][i] if "precision" in data else None,
                   "measurements": data["measurements"][i] if has_measurements else None}


def _write_rows(rows, path: str, fmt: str, flatten_embedding: bool = False) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        if fmt == "json":
            f.write("[")
            for row in rows:
                f.write(("\n  " if n == 0 else ",\n  ") + json.dumps(row, default=_json_default))
                n += 1
            f.write("\n]\n" if n else "]\n")
        else:
            writer = None
            for row in rows:
                if flatten_embedding:
                    emb = row.pop("embedding")
                    row.update({f"e{j}": v for j, v in enumerate(emb)})
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
                n += 1
    return n


def errors_path(path: str, fmt: str) -> str:
    """`profile.csv` -> `profile.errors.csv` (where a single-file output lists its unreadable inputs)."""
    stem, _ = os.path.splitext(path)
    return f"{stem}.errors.{fmt}"


def render(parts_dir: str, path: str, fmt: str, task: str, config=None, top_k=None, threshold=None,
           horizons=None, model_info=None) -> dict:
    """Write the single-file output `path` (`fmt` = `"csv"` or `"json"`) from the parts in `parts_dir`, plus
    `errors_path(path)` when some inputs failed (a stale one is removed otherwise). `fmt="fhir"` writes the folder
    `path` of FHIR R4 bundles, one per record (`anyecg_hf.reporting.fhir`; `model_info` names the model in them),
    and lists the failed inputs in `<path>.errors.json`.

    Returns:
        `dict` with `rows` (table rows written; FHIR: bundles), `records`, `errors`, `errors_path`.
    """
    if fmt == "fhir":
        from ..reporting.fhir import write_fhir_folder

        table = store.read_results(parts_dir)
        profiles = (p for p, _ in profile_dicts(table, config, top_k, threshold, horizons)) if table.num_rows else ()
        n = len(write_fhir_folder(profiles, path, model_info))
        path, fmt = os.path.normpath(path) + ".json", "json"  # where the errors go: beside the folder
    elif task == "profile":
        columns = None
        table = store.read_results(parts_dir, columns=columns)
        rows = profile_row_dicts(table, config, top_k, threshold, horizons) if table.num_rows else iter(())
        n = _write_rows(rows, path, fmt)
    else:
        table = store.read_results(parts_dir)
        rows = embedding_row_dicts(table) if table.num_rows else iter(())
        n = _write_rows(rows, path, fmt, flatten_embedding=fmt == "csv")
    errors = store.read_errors(parts_dir)
    epath = errors_path(path, fmt)
    if errors.num_rows:
        _write_rows(iter(errors.drop_columns(["input_index"]).to_pylist()), epath, fmt)
    elif os.path.exists(epath):
        os.remove(epath)
    return {"rows": n, "records": table.num_rows, "errors": errors.num_rows,
            "errors_path": epath if errors.num_rows else None}
