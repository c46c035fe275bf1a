"""Planning a job (rank 0): the job's metadata, the output folder (locked for the job's life; overwrite / resume
into the same job only, `guard`), the inputs to do, and the plan file the ranks read their slices from."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil

import numpy as np

from . import guard, store
from .discovery import discover_inputs
from .settings import JobSettings, JobUsageError


def job_metadata(settings: JobSettings, model, extractor, model_id: str, revision: str) -> dict:
    from ..version import __version__

    config = model.config
    meta = {
        "task": settings.task,
        "model": model_id,
        "model_revision": revision,
        "model_class": type(model).__name__,
        "aggregate": settings.aggregate,
        "preprocessing": json.loads(extractor.to_json_string()),
        "anyecg_version": __version__,
    }
    if settings.task == "profile":
        heads = model.heads
        if heads["diagnosis"]:
            meta["diagnosis_labels"] = config.label_space.names
            meta["diagnosis_codes"] = [c.code for c in config.label_space]
            meta["thresholds"] = (
                [float(settings.threshold)] * len(config.label_space) if settings.threshold is not None
                else [c.decision_threshold for c in config.label_space]
            )
        if heads["risk"]:
            meta["risk_labels"] = config.risk_label_space.names
            meta["risk_horizons"] = list(config.risk_horizons)
        if heads["regression"]:
            meta["regression_names"] = list(config.regression_names)
    else:
        meta["embedding_size"] = int(config.hidden_size)
    return meta


def _remove_results(parts_dir: str) -> None:
    for f in store.list_parts(parts_dir):
        os.remove(f)
    shutil.rmtree(os.path.join(parts_dir, store.ERRORS_DIR), ignore_errors=True)
    for name in (store.SUCCESS_FILE, store.PLAN_FILE, guard.JOB_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(parts_dir, name))


def _check_same_job(parts_dir: str, meta: dict) -> None:
    """Refuse to resume into results of another task or model (rows would silently mix)."""
    import pyarrow.parquet as pq

    files = store.list_parts(parts_dir)
    if not files:
        return
    old = json.loads((pq.read_schema(files[0]).metadata or {}).get(store.METADATA_KEY, b"{}"))
    for key in ("task", "model", "model_revision"):
        if key in old and old[key] != meta[key]:
            raise JobUsageError(
                f"{parts_dir} holds results of another job ({key} {old[key]!r}, this run {meta[key]!r}); "
                "resume with the same model and command, or use --overwrite / another --out"
            )


def _report_skipped(parts_dir: str, meta: dict, skipped: list, done: dict) -> None:
    """Error rows (input_index -1) for walked entries that were never opened (links leaving the input folder,
    FIFOs, devices, dangling links), once: a resumed job does not repeat those already in the errors table."""
    if not skipped:
        return
    paths = [entry[0] for entry in skipped]
    new = ~np.isin(store.path_hashes(paths), done["hashes"]) if done["hashes"].size else np.ones(len(paths), bool)
    rows = [{"input_index": -1, "path": guard.escape_text(p), "record_id": guard.escape_text(os.path.basename(p)),
             "error_class": cls, "message": guard.escape_text(msg)}
            for (p, cls, msg), keep in zip(skipped, new) if keep]
    if rows:
        writer = store.ShardWriter(parts_dir, 0, meta, chunk_size=len(rows) + 1)
        writer.add(None, rows)
        writer.flush()
        done["errors"] += len(rows)


def plan_job(settings: JobSettings, meta: dict, lock: guard.OutputLock | None = None) -> dict:
    """Rank 0: lock the output folder (`lock`, released by the caller when the job ends), check that a resumed job
    is the same job (`guard.check_resume`), prepare the folder, discover the inputs, drop the done ones, write the
    plan."""
    parts_dir = settings.parts_dir
    if os.path.exists(parts_dir) and not os.path.isdir(parts_dir):
        raise JobUsageError(f"--out {parts_dir} exists and is not a folder (use --format csv/json for a file)")
    os.makedirs(parts_dir, exist_ok=True)
    if lock is not None:
        try:
            lock.acquire()  # before anything in the folder is read, removed or written
        except guard.OutputBusyError as err:
            raise JobUsageError(str(err)) from None
    fingerprint = guard.fingerprint(settings, meta)
    if settings.resume:
        try:
            spelled = guard.check_resume(parts_dir, fingerprint)
        except ValueError as err:
            raise JobUsageError(str(err)) from None
        _check_same_job(parts_dir, meta)  # folders written before `_job.json` existed
        if spelled is not None:  # the same real inputs spelled another way: keep the first run's spelling
            settings = dataclasses.replace(settings, inputs=spelled)
            fingerprint["inputs"] = spelled
    if store.has_results(parts_dir) and not settings.resume:
        if not settings.overwrite:
            raise JobUsageError(
                f"{parts_dir} already holds results of an earlier run; pass --resume to continue it or "
                "--overwrite to start again"
            )
        _remove_results(parts_dir)
    store.clean_temporaries(parts_dir)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(parts_dir, store.SUCCESS_FILE))
    if settings.resume and settings.retry_errors:
        shutil.rmtree(os.path.join(parts_dir, store.ERRORS_DIR), ignore_errors=True)
    guard.write_job_file(parts_dir, fingerprint, store.atomic_write_text)
    skipped: list = []
    try:
        inputs = discover_inputs(settings.inputs, settings.manifest, root=settings.manifest_root,
                                 manifest_column=settings.manifest_column, extensions=settings.extensions,
                                 limit=settings.limit, skipped=skipped, follow_links=settings.follow_links)
    except ValueError as err:
        raise JobUsageError(str(err)) from None
    if not inputs:
        where = ", ".join(map(str, settings.inputs)) or str(settings.manifest)
        raise JobUsageError(f"no ECG files found in {where}")
    done = store.scan_done(parts_dir) if settings.resume else {"hashes": np.zeros(0, np.uint64), "rows": 0, "errors": 0}
    _report_skipped(parts_dir, meta, skipped, done)
    todo = np.ones(len(inputs), dtype=bool)
    if done["hashes"].size:
        todo = ~np.isin(store.path_hashes(inputs), done["hashes"])
    index = np.flatnonzero(todo)
    info = {"inputs": len(inputs), "skipped": int(len(inputs) - index.size), "previous_rows": done["rows"],
            "previous_errors": done["errors"]}
    store.write_plan(parts_dir, index, [inputs[i] for i in index], info)
    return info
