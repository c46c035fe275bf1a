"""The engine behind `anyecg profile` and `anyecg embed`: one implementation from a few files to an archive.

A job runs as one process or as N processes under `accelerate launch` / `torchrun`:

1. rank 0 loads the model first (the default model is downloaded and converted once), then the other ranks;
2. rank 0 plans: discovers the inputs (directory walk or manifest), drops those already done when resuming, and
   writes the plan (`_plan.parquet`); the ranks then agree that planning succeeded (one `gather`) or all stop
   with the same error;
3. every rank takes its round-robin slice of the plan and streams it: DataLoader workers read + preprocess
   batches (`ECGFileDataset`) while the main process runs the model under `torch.inference_mode`; windows of long
   records are aggregated per record (`anyecg_hf.pipelines.outputs.aggregate_windows`); rows and errors go to
   atomically written Parquet chunks (`store.ShardWriter`);
4. the ranks exchange their counts; rank 0 writes `_SUCCESS`, renders a CSV/JSON output when asked, and prints
   the summary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..processing import filters
from . import guard, store
from .dataset import ECGFileDataset, RampUpBatches, StringTable, collate_items
from .discovery import discover_inputs
from .distributed import DistContext, init_distributed

TASKS = ("profile", "embed")
FORMATS = ("parquet", "csv", "json")


class JobError(Exception):
    """A job that cannot run; `code` is the exit code the CLI returns; `quiet` is set on the ranks other than 0,
    which stop with the same error without printing it again."""

    code = 1
    quiet = False


class JobUsageError(JobError, ValueError):
    """Bad arguments, no inputs, an output folder that holds another run's results."""

    code = 2


class ModelLoadError(JobError, OSError):
    """The model (or the default model) cannot be loaded."""

    code = 3


class OutputWriteError(JobError):
    """The output cannot be written (disk full, read-only, no permission); what was written is kept."""

    code = 4


# errors of writing the output (a full disk, a read-only or foreign folder), as opposed to bugs
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _write_error(err: OSError, folder: str) -> OutputWriteError:
    what = err.strerror or str(err)
    return OutputWriteError(f"cannot write the output in {folder}: {what} ({guard.escape_text(err.filename or '')}); "
                            "the rows written so far are kept: make room (or make it writable) and rerun with --resume")


@dataclass
class JobSettings:
    """Everything a profile/embed job needs. See `anyecg profile --help` for the user-facing meaning.

    Args:
        task (`str`): `"profile"` (diagnoses, risks; needs a model with a head) or `"embed"` (`pooler_output`).
        inputs (`Sequence[str]`): files and folders.
        out (`str`): output folder (`format="parquet"`) or file (`"csv"`, `"json"`).
        format (`str`): `"parquet"`, `"csv"` or `"json"`.
        manifest, manifest_root, manifest_column, extensions: see `discover_inputs`.
        model (`str`, *optional*): model folder / Hub id / ECGFounder `.pth`; `None` = the default model.
        revision (`str`, *optional*): Hub revision.
        device (`str`, *optional*): `"cpu"`, `"cuda"`, ...; default: Accelerate's choice per process.
        batch_size (`int`): records per batch (windows of long records are split into micro-batches of this size).
        workers (`int`, *optional*): DataLoader worker processes per rank (0 = read in the main process).
        chunk_size (`int`): rows per Parquet chunk (also the most work a kill can lose per rank).
        flush_seconds (`float`): a chunk is also written after this many seconds.
        resume (`bool`): skip inputs present in completed chunks of `out`.
        overwrite (`bool`): delete an earlier run's results in `out` first.
        retry_errors (`bool`): with `resume`, try the inputs of the errors table again.
        limit (`int`, *optional*): only the first `limit` inputs (dry run).
        aggregate (`str`): `"mean"` or `"max"` over a record's windows.
        windowing (`str`, *optional*): how records longer than the model's input are cut (`"sliding"`: windows over
            the whole record, as the pipelines do; `"first"`, `"center"`; `None`: the extractor's saved setting).
        top_k, threshold, horizons: CSV/JSON rendering of profiles (`profile_records`); `threshold` also decides
            the `positive` column of Parquet rows.
        read_kwargs (`dict`): passed to `read_ecg` (`format`, `sampling_rate`, `lead_names`, `units`).
        quality (`bool`): signal-quality flags in the `warnings` column.
        dtype (`str`): `"float32"`, or `"bfloat16"`/`"float16"` autocast (GPU).
        threads (`int`, *optional*): torch CPU threads per process.
        progress (`bool`): progress bar on rank 0.
        keep_parts (`bool`): keep the Parquet parts of a CSV/JSON output after rendering.
        follow_links (`bool`): read links in walked folders whose target is outside the folder (default: they are
            error rows of class `SkippedInput`).
        log (file-like): where rank 0 prints the summary (default `sys.stderr`).
    """

    task: str = "profile"
    inputs: Sequence[str] = ()
    out: str = "profile"
    format: str = "parquet"
    manifest: str | None = None
    manifest_root: str | None = None
    manifest_column: str | None = None
    extensions: str | None = None
    model: str | None = None
    revision: str | None = None
    device: str | None = None
    batch_size: int = 64
    workers: int | None = None
    chunk_size: int = 4096
    flush_seconds: float = 600.0
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    limit: int | None = None
    aggregate: str = "mean"
    windowing: str | None = "sliding"
    top_k: int | None = None
    threshold: float | None = None
    horizons: Sequence[float] | None = None
    read_kwargs: dict = field(default_factory=dict)
    quality: bool = True
    dtype: str = "float32"
    threads: int | None = None
    progress: bool = True
    keep_parts: bool = False
    follow_links: bool = False
    log: object = None

    @property
    def parts_dir(self) -> str:
        """Where the Parquet parts go: `out` itself, or `out + ".parts"` for a single-file output."""
        return self.out if self.format == "parquet" else self.out + ".parts"


@dataclass
class JobResult:
    """What a job did (identical on every rank).

    Attributes:
        processed (`int`): inputs that got a row in this run.
        failed (`int`): inputs that went to the errors table in this run.
        skipped (`int`): inputs skipped because an earlier run did them (`--resume`).
        inputs (`int`): inputs of the job.
        rows_total (`int`): result rows in the output (this and earlier runs).
        errors_total (`int`): error rows in the output (this and earlier runs).
        seconds (`float`): wall time of the streaming phase (slowest rank).
        model_busy (`float`): fraction of that time spent in the model's forward pass (near 1: the readers keep up;
            well below 1: reading/preprocessing is the bottleneck, more `workers` help if there are idle cores).
        world_size (`int`): processes.
        out (`str`): the output written.
        manifest (`dict`): the `_SUCCESS` content (rank 0; `{}` elsewhere).
        errors (`list[dict]`): the first error rows (rank 0), for the summary.
    """

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    inputs: int = 0
    rows_total: int = 0
    errors_total: int = 0
    seconds: float = 0.0
    world_size: int = 1
    out: str = ""
    model_busy: float = 0.0
    manifest: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    @property
    def ecgs_per_s(self) -> float:
        done = self.processed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------------------------------------ model
def _sha256_prefix(path: str, n: int = 16) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _model_identity(requested, revision, source, model) -> tuple[str, str]:
    """`(model id, revision)` recorded with every row: the Hub id + revision/commit, or for local folders the
    folder and a hash of its weights (so results can be traced to the exact weights)."""
    from ..pipelines.default_model import DEFAULT_MODEL_ID, _DEFAULT_ALIASES

    source = str(source)
    meta_file = os.path.join(source, "anyecg_source.json")
    if requested in _DEFAULT_ALIASES or (isinstance(requested, str) and requested.lower() in _DEFAULT_ALIASES):
        info = {}
        if os.path.isfile(meta_file):
            with open(meta_file) as f:
                info = json.load(f)
        rev = info.get("revision") or revision or "main"
        sha = info.get("sha256")
        return DEFAULT_MODEL_ID, f"{rev} (checkpoint sha256 {sha[:16]})" if sha else rev
    if os.path.isdir(source):
        weights = os.path.join(source, "model.safetensors")
        rev = revision or (f"sha256:{_sha256_prefix(weights)}" if os.path.isfile(weights) else "local")
        return os.path.abspath(source), rev
    commit = getattr(model.config, "_commit_hash", None)
    return str(requested), revision or commit or "main"


def load_model(settings: JobSettings, device):
    """Load `(model, feature_extractor, model_id, revision)` with the pipelines' loader.

    Raises:
        ModelLoadError: the model cannot be resolved or loaded (message says why; offline default included).
    """
    from transformers.utils import logging as hf_logging

    from ..pipelines.default_model import load_model_and_extractor, resolve_model

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the weight-loading bar of every process is noise in a job's log
    try:
        source = resolve_model(settings.model, revision=settings.revision)
        model, extractor = load_model_and_extractor(
            source, device=None, revision=None if os.path.isdir(str(source)) else settings.revision
        )
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        msg = str(err)
        if settings.model is not None and not msg.startswith(str(settings.model)):
            msg = f"cannot load the model {settings.model!r}: {msg}"
        raise ModelLoadError(msg) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.to(device)
    if settings.windowing is not None and settings.windowing != extractor.windowing:
        extractor = copy.deepcopy(extractor)  # same variant the pipelines build (`ECGPipelineBase._extractor`)
        extractor.windowing = settings.windowing
        extractor._validate()
    model_id, rev = _model_identity(settings.model, settings.revision, source, model)
    return model, extractor, model_id, rev


def _heads(model) -> dict:
    """Which outputs a model gives: `diagnosis` (has a classifier), `risk`, `regression`."""
    return {
        "diagnosis": hasattr(model, "classifier"),
        "risk": getattr(model, "risk_head", None) is not None,
        "regression": getattr(model, "regression_head", None) is not None,
    }


def window_outputs(model, out, task: str) -> dict:
    """Per-window numpy outputs of one forward pass.

    `profile`: `probabilities` = sigmoid of the diagnosis logits (`diagnosis_logits`, else `logits` of a model
    with a classifier), `risk_scores`, `cumulative_incidence` `(n, n_risk, n_horizons)`, `regression_outputs`;
    `embed`: `embedding` = `pooler_output` (what the `ecg-embedding` pipeline returns).
    """
    import torch

    def np32(t):
        return None if t is None else t.detach().float().cpu().numpy()

    if task == "embed":
        return {"embedding": np32(out.pooler_output)}
    heads = _heads(model)
    res = {}
    if heads["diagnosis"]:
        logits = getattr(out, "diagnosis_logits", None)
        logits = out.logits if logits is None else logits
        res["probabilities"] = np32(torch.sigmoid(logits.float()))
    for key in ("risk_scores", "cumulative_incidence", "regression_outputs"):
        value = getattr(out, key, None)
        if value is not None:
            res[key] = np32(value)
    return res


# ------------------------------------------------------------------------------------------------ rows
def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    """A constant string column that costs one dictionary entry (model id, revision, preprocessing)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def _fixed_list(values: np.ndarray) -> pa.Array:
    """`(n, d)` or `(n, a, b)` float array -> Arrow fixed-size list column (nested for 3-D)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, int(size))
    return flat


class RowBuilder:
    """Turns a batch's aggregated outputs into an Arrow table of result rows (one per record)."""

    def __init__(self, task: str, config, model_id: str, revision: str, preprocessing: str, threshold=None):
        self.task = task
        self.model_id = model_id
        self.revision = revision
        self.preprocessing = preprocessing
        space = getattr(config, "label_space", None)
        self.names = np.asarray(space.names if space is not None else [], dtype=object)
        if threshold is not None:
            self.thresholds = np.full(len(self.names), float(threshold))
        else:
            self.thresholds = np.asarray([c.decision_threshold for c in space] if space is not None else [])

    def build(self, items, outputs: dict) -> pa.Table:
        n = len(items)
        cols = {
            "input_index": pa.array([it.index for it in items], pa.int64()),
            "path": pa.array([guard.escape_text(it.path) for it in items], pa.string()),
            "record_id": pa.array([guard.escape_text(it.record_id) for it in items], pa.string()),
            "sampling_rate": pa.array([it.meta.get("sampling_rate") for it in items], pa.float32()),
            "duration_s": pa.array([it.meta.get("duration_s") for it in items], pa.float32()),
            "n_leads": pa.array([it.meta.get("n_leads") for it in items], pa.int16()),
            "n_windows": pa.array([it.meta.get("n_windows") for it in items], pa.int32()),
        }
        if self.task == "embed":
            cols["embedding"] = _fixed_list(outputs["embedding"])
        else:
            probs = outputs.get("probabilities")
            if probs is not None:
                cols["probabilities"] = _fixed_list(probs)
                positive = probs >= self.thresholds[None, :]
                cols["positive"] = pa.array([self.names[row].tolist() for row in positive], pa.list_(pa.string()))
            for key in ("risk_scores", "cumulative_incidence", "regression_outputs"):
                if outputs.get(key) is not None:
                    cols[key] = _fixed_list(outputs[key])
        cols["warnings"] = pa.array([it.meta.get("warnings") or [] for it in items], pa.list_(pa.string()))
        cols["model"] = _dict_column(self.model_id, n)
        cols["model_revision"] = _dict_column(self.revision, n)
        cols["preprocessing"] = _dict_column(self.preprocessing, n)
        return pa.table(cols)


# ------------------------------------------------------------------------------------------------ planning
def _job_metadata(settings: JobSettings, model, extractor, model_id: str, revision: str) -> dict:
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
        heads = _heads(model)
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
    """Error rows (input_index -1) for walked entries that were never read (links leaving the input folder), once:
    a resumed job does not repeat the ones already in the errors table."""
    if not skipped:
        return
    paths = [p for p, _ in skipped]
    new = ~np.isin(store.path_hashes(paths), done["hashes"]) if done["hashes"].size else np.ones(len(paths), bool)
    rows = [{"input_index": -1, "path": guard.escape_text(p), "record_id": guard.escape_text(os.path.basename(p)),
             "error_class": "SkippedInput", "message": guard.escape_text(f"{p}: {why}")}
            for (p, why), keep in zip(skipped, new) if keep]
    if rows:
        writer = store.ShardWriter(parts_dir, 0, meta, chunk_size=len(rows) + 1)
        writer.add(None, rows)
        writer.flush()
        done["errors"] += len(rows)


def plan_job(settings: JobSettings, meta: dict, lock: guard.OutputLock | None = None) -> dict:
    """Rank 0: lock the output folder (`lock`, held by the caller for the job's life), check that a resumed job is
    the same job (`guard.check_resume`), prepare the folder, discover the inputs, drop the done ones, write the
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


# ------------------------------------------------------------------------------------------------ running
def _cores_per_process(local_world_size: int) -> int:
    """This process's share of the cores it may run on (at least 1)."""
    from ..runtime.threads import available_cpus

    return max(1, available_cpus() // max(1, local_world_size))


def default_workers(device, local_world_size: int = 1) -> int:
    """DataLoader workers per process: on GPU, the cores of this process (preprocessing must keep up with the GPU);
    on CPU, none with 1 core per process, one per core with 2 (they share the cores with the model, gated: see
    `readers_share_cores`), else about one per 4 cores on cores of their own.

    Measured on 2 cores (1,000 WFDB files, full-size model, 2 model threads): no reader 110-113 ECGs/s, 2 gated
    readers 113-117, 2 ungated readers 106 (they stall the model's threads), 1 reader + 1 model thread 69."""
    per_process = _cores_per_process(local_world_size)
    if getattr(device, "type", str(device)) == "cuda":
        return max(2, per_process - 1)
    if per_process <= 2:
        return 0 if per_process == 1 else 2
    return max(1, per_process // 4)


def default_threads(device, local_world_size: int = 1, workers: int = 0) -> int:
    """torch threads per process on CPU: the process's cores minus its reader workers, or all of its cores when the
    readers take every core anyway (they are then gated, `readers_share_cores`). Oversubscribing ungated (model
    threads + readers > cores) makes OpenMP threads wait on each other at every layer: measured on 2 cores,
    1 thread + 1 reader ran 2-4x faster than 2 threads + 1 reader."""
    import torch

    if getattr(device, "type", str(device)) != "cpu":
        return torch.get_num_threads()
    cores = _cores_per_process(local_world_size)
    return cores if workers >= cores else max(1, cores - workers)


def readers_share_cores(device, local_world_size: int, workers: int, threads: int) -> bool:
    """Whether the reader workers and the model's threads together exceed this process's cores (CPU only). The job
    then gates the readers: they read and preprocess while the model waits for a batch and pause (within one stage
    of 4 records, ~3 ms) while it runs, so the cores alternate between the two instead of being contended."""
    if not workers or getattr(device, "type", str(device)) != "cpu":
        return False
    return workers + threads > _cores_per_process(local_world_size)


def _worker_init(_worker_id: int) -> None:
    from torch.utils.data import get_worker_info

    # Parallelism comes from the worker processes: one preprocessing thread each (torch already sets 1 in workers).
    os.environ["ANYECG_NUM_THREADS"] = "1"
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "parent_pid"):
        info.dataset.parent_pid = os.getppid()  # alive now: it just started this reader


def _preprocessing_threads(local_world_size: int) -> None:
    """Preprocessing threads of this process (`ANYECG_NUM_THREADS`, unless the user set it): its share of the cores,
    so that several processes on one machine do not each start one filter thread per core."""
    if "ANYECG_NUM_THREADS" not in os.environ:
        os.environ["ANYECG_NUM_THREADS"] = str(_cores_per_process(local_world_size))


def worker_context():
    """Start method for the reader processes: `fork` (instant) unless this process already ran numba's parallel
    kernels (e.g. preprocessing in a notebook before the job): numba's OpenMP thread pool does not survive a
    fork, so then a `forkserver` with the readers' modules preloaded is used."""
    import multiprocessing as mp

    numba_parallel = sys.modules.get("numba.np.ufunc.parallel")
    if numba_parallel is None or not getattr(numba_parallel, "_is_initialized", False):
        return None
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["anyecg_hf.inference.dataset", "anyecg_hf.io", "anyecg_hf.processing"])
    return ctx


def _forward(model, inputs: dict, device, micro_batch: int, task: str, autocast) -> dict:
    import torch

    n = inputs["input_values"].shape[0]
    pieces = []
    with torch.inference_mode():
        for a in range(0, n, micro_batch):
            chunk = {k: v[a:a + micro_batch].to(device, non_blocking=True) for k, v in inputs.items()}
            with autocast():
                out = model(**chunk, return_dict=True)
            pieces.append(window_outputs(model, out, task))
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0] if pieces[0][k] is not None}


def _autocast_factory(dtype: str, device):
    import torch

    if dtype in (None, "float32", "fp32"):
        return contextlib.nullcontext
    torch_dtype = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    return lambda: torch.autocast(device.type, dtype=torch_dtype)


def stream(settings: JobSettings, ctx: DistContext, model, extractor, builder: RowBuilder, meta: dict,
           indices: np.ndarray, paths, workers: int) -> dict:
    """Run this rank's slice: read + preprocess in workers, forward, aggregate, write chunks. Returns counts."""
    import torch
    from torch.utils.data import DataLoader

    device = ctx.device
    mp_context = worker_context() if workers else None
    gate = None
    if readers_share_cores(device, ctx.local_world_size, workers, torch.get_num_threads()):
        import multiprocessing as mp

        gate = (mp_context or mp.get_context()).Event()
        gate.set()
    dataset = ECGFileDataset(StringTable(paths), extractor, indices=indices, read_kwargs=settings.read_kwargs,
                             quality=settings.quality, gate=gate)
    del paths
    loader = DataLoader(
        dataset,
        batch_sampler=RampUpBatches(len(dataset), settings.batch_size, workers),
        num_workers=workers,
        collate_fn=collate_items,
        pin_memory=getattr(device, "type", "cpu") == "cuda",
        prefetch_factor=2 if workers else None,
        worker_init_fn=_worker_init if workers else None,
        multiprocessing_context=mp_context,
    )
    writer = store.ShardWriter(settings.parts_dir, ctx.rank, meta, settings.chunk_size, settings.flush_seconds)
    autocast = _autocast_factory(settings.dtype, device)
    bar = None
    if ctx.is_main and settings.progress:
        from tqdm.auto import tqdm

        desc = f"{settings.task} (rank 0 of {ctx.world_size})" if ctx.world_size > 1 else settings.task
        bar = tqdm(total=len(dataset), desc=desc, unit="ECG", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    t0 = time.perf_counter()
    model_s = 0.0  # time in the forward pass: model_s / seconds near 1 means reading keeps up with the model
    try:
        model_s = _stream_batches(settings, loader, model, device, builder, writer, autocast, bar, gate)
    except RuntimeError as err:
        if "DataLoader worker" not in str(err):
            raise
        writer.flush()  # keep every completed row: a --resume continues from here
        raise JobError(f"a reader process died ({err}); the results so far are saved in {settings.parts_dir}. "
                       "Rerun with --resume; if it happens again, --workers 0 shows which file kills the reader.") from None
    writer.flush()
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return {"rank": ctx.rank, "processed": writer.rows_written, "failed": writer.errors_written, "seconds": seconds,
            "model_seconds": model_s, "workers": workers, "readers_gated": gate is not None, "files": writer.files}


_TRIM_EVERY = 16  # batches


def _libc_function(name: str):
    """A function of the C library (glibc's allocator controls), or `None` where there is none."""
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _heap_trimmer():
    """`malloc_trim(0)` of glibc, or a no-op elsewhere.

    Why: each batch leaves a few small long-lived allocations (the result rows waiting for their chunk) between large
    short-lived ones (model activations, arrays) on glibc's heap; the heap then cannot shrink and the RSS of a long
    job creeps up (measured: +2-3 MB per batch of 64 with a tiny model until the chunk is written). Trimming every
    few batches hands the free pages back and keeps the memory flat."""
    import ctypes

    trim = _libc_function("malloc_trim")
    if trim is None:
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def _keep_freed_memory() -> None:
    """Ask glibc to serve every allocation from its heap (`M_MMAP_MAX = 0`) and not to shrink the heap on free
    (`M_TRIM_THRESHOLD = 1 GiB`); `_TRIM_EVERY` batches still hand free pages back (`malloc_trim`).

    Why: by default the model's large activations (tens of MB each) are mmapped and unmapped at every forward, so
    every batch page-faults ~100-400 MB of fresh, zeroed memory: measured 16k-95k page faults and 5-10 % slower
    forwards of the full-size model at batch 64 on one core; none with these settings. A no-op outside glibc."""
    import ctypes

    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(-4, 0)  # M_MMAP_MAX
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def _stream_batches(settings, loader, model, device, builder, writer, autocast, bar, gate=None) -> float:
    from ..pipelines.outputs import aggregate_windows

    model_s = 0.0
    trim = _heap_trimmer()
    _keep_freed_memory()
    for n_batch, batch in enumerate(loader, 1):
        if n_batch % _TRIM_EVERY == 0:
            trim()
        rows = None
        if batch.items:
            tm = time.perf_counter()
            if gate is not None:
                gate.clear()  # readers pause: the model has the cores
            try:
                outs = _forward(model, batch.inputs, device, settings.batch_size, settings.task, autocast)
            finally:
                if gate is not None:
                    gate.set()
            model_s += time.perf_counter() - tm
            n = len(batch.items)
            agg = {k: aggregate_windows(v, batch.window_to_record, settings.aggregate, num_records=n).astype(np.float32)
                   for k, v in outs.items()}
            rows = builder.build(batch.items, agg)
        errors = [{"input_index": it.index, "path": guard.escape_text(it.path),
                   "record_id": guard.escape_text(it.record_id), "error_class": it.error[0],
                   "message": guard.escape_text(it.error[1])} for it in batch.errors]
        writer.add(rows, errors)
        if bar is not None:
            bar.update(len(batch))
            if writer.errors_written or batch.errors:
                bar.set_postfix(failed=writer.errors_written + len(writer._errors), refresh=False)
    return model_s


def run_job(settings: JobSettings) -> JobResult:
    """Run a profile/embed job in this process (and, under a launcher, together with the other ranks).

    Raises:
        JobUsageError: bad settings, no inputs, an output folder holding another run without `--resume`.
        ModelLoadError: the model cannot be loaded.
    """
    if settings.task not in TASKS:
        raise JobUsageError(f"task must be one of {TASKS}, got {settings.task!r}")
    if settings.format not in FORMATS:
        raise JobUsageError(f"format must be one of {FORMATS}, got {settings.format!r}")
    if settings.windowing not in (None, "sliding", "first", "center"):
        raise JobUsageError(f"windowing must be 'sliding', 'first' or 'center', got {settings.windowing!r}")
    if settings.aggregate not in ("mean", "max"):
        raise JobUsageError(f"aggregate must be 'mean' or 'max', got {settings.aggregate!r}")
    if settings.batch_size < 1:
        raise JobUsageError(f"batch size must be >= 1, got {settings.batch_size}")
    if settings.threshold is not None and not 0 < settings.threshold < 1:
        raise JobUsageError(f"threshold must be in (0, 1), got {settings.threshold}")
    try:
        ctx = init_distributed(settings.device)
    except RuntimeError as err:
        raise JobUsageError(str(err)) from None
    try:
        return _run(settings, ctx)
    finally:
        ctx.close()


def _run(settings: JobSettings, ctx: DistContext) -> JobResult:
    """`_run_locked`, holding the output folder's lock (`guard.OutputLock`, taken by `plan_job` on rank 0) until
    the job ends (the kernel releases it if the process dies); a full or read-only output is `OutputWriteError`."""
    lock = guard.OutputLock(settings.parts_dir) if ctx.is_main else None
    try:
        return _run_locked(settings, ctx, lock)
    except OSError as err:  # inputs that cannot be read are error rows: an OSError here is the output's
        if err.errno in _WRITE_ERRNOS:
            raise _write_error(err, settings.parts_dir) from None
        raise
    finally:
        if lock is not None:
            lock.release()


def _run_locked(settings: JobSettings, ctx: DistContext, lock) -> JobResult:
    import torch

    log = settings.log or sys.stderr
    workers = default_workers(ctx.device, ctx.local_world_size) if settings.workers is None else max(0, settings.workers)
    torch.set_num_threads(settings.threads or default_threads(ctx.device, ctx.local_world_size, workers))
    _preprocessing_threads(ctx.local_world_size)
    # load numba's cached kernels (~0.4 s of one-time set-up) while the model loads, not in the first batch
    warm = threading.Thread(target=filters.warm_up, name="anyecg-warm-up", daemon=True)
    warm.start()

    # 1-2. model (rank 0 first: it converts the default model once) and plan (rank 0); then agree.
    status: dict = {"error": None}
    loaded = meta = None

    def attempt(fn):
        try:
            return fn()
        except JobError as err:
            status["error"] = (type(err).__name__, str(err))
        except (OSError, ValueError) as err:
            status["error"] = ("JobUsageError", str(err))
        return None

    for turn in ("main", "others"):
        if (turn == "main") == ctx.is_main:
            loaded = attempt(lambda: load_model(settings, ctx.device))
        if turn == "main":
            ctx.barrier()
    if loaded is not None:
        model, extractor, model_id, revision = loaded
        meta = _job_metadata(settings, model, extractor, model_id, revision)
        if settings.task == "profile" and not any(_heads(model).values()):
            status["error"] = ("JobUsageError", f"the model {model_id} ({type(model).__name__}) has no diagnosis or "
                               "risk head: use `anyecg embed` for embeddings, or a model with a head")
    if ctx.is_main and status["error"] is None:
        def plan():
            try:
                return plan_job(settings, meta, lock)
            except OSError as err:
                if err.errno in _WRITE_ERRNOS:
                    raise _write_error(err, settings.parts_dir) from None
                raise

        attempt(plan)
    for st in ctx.gather(status):
        if st["error"] is not None:
            cls = {"ModelLoadError": ModelLoadError, "JobUsageError": JobUsageError,
                   "OutputWriteError": OutputWriteError}.get(st["error"][0], JobError)
            err = cls(st["error"][1])
            err.quiet = not ctx.is_main  # every rank stops with the same error; rank 0 reports it
            warm.join()  # a native thread still running at exit aborts the interpreter (exit 134)
            raise err

    # 3. stream this rank's slice (after the warm-up: reader workers forked from here inherit loaded kernels).
    warm.join()
    indices, paths, info = store.read_plan(settings.parts_dir, ctx.rank, ctx.world_size)
    builder = RowBuilder(settings.task, model.config, model_id, revision, json.dumps(meta["preprocessing"], sort_keys=True),
                         settings.threshold)
    t_start = time.perf_counter()
    counts = stream(settings, ctx, model, extractor, builder, meta, indices, paths, workers)
    counts["wall"] = time.perf_counter() - t_start

    # 4. merge.
    all_counts = ctx.gather(counts)
    result = JobResult(
        processed=sum(c["processed"] for c in all_counts),
        failed=sum(c["failed"] for c in all_counts),
        skipped=info["skipped"],
        inputs=info["inputs"],
        rows_total=info["previous_rows"] + sum(c["processed"] for c in all_counts),
        errors_total=(0 if settings.retry_errors else info["previous_errors"]) + sum(c["failed"] for c in all_counts),
        seconds=max(c["wall"] for c in all_counts),
        world_size=ctx.world_size,
        out=settings.out,
        model_busy=sum(c["model_seconds"] for c in all_counts) / max(1e-9, sum(c["seconds"] for c in all_counts)),
    )
    if ctx.is_main:
        run_info = {"processes": ctx.world_size, "processed": result.processed, "failed": result.failed,
                    "skipped": result.skipped, "seconds": round(result.seconds, 3),
                    "ecgs_per_s": round(result.ecgs_per_s, 2),
                    "model_busy": round(result.model_busy, 3),
                    "workers_per_process": all_counts[0]["workers"], "readers_gated": all_counts[0]["readers_gated"],
                    "torch_threads": torch.get_num_threads(),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        manifest = store.write_success(settings.parts_dir, dict(meta, inputs=info["inputs"], format="parquet", run=run_info))
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(settings.parts_dir, store.PLAN_FILE))
        result.manifest = manifest
        result.rows_total, result.errors_total = manifest["rows"], manifest["errors"]
        errors = store.read_errors(settings.parts_dir)
        result.errors = errors.slice(0, 20).to_pylist()
        rendered = None
        if settings.format != "parquet":
            from .render import render

            rendered = render(settings.parts_dir, settings.out, settings.format, settings.task, model.config,
                              settings.top_k, settings.threshold, settings.horizons)
            if not settings.keep_parts:
                shutil.rmtree(settings.parts_dir, ignore_errors=True)
        print_summary(result, settings, rendered, log)
    return result


def print_summary(result: JobResult, settings: JobSettings, rendered, log) -> None:
    """The end-of-run summary: counts, speed, unreadable inputs, where the results are."""
    procs = f", {result.world_size} processes" if result.world_size > 1 else ""
    print(
        f"anyecg {settings.task}: {result.processed} ECGs processed, {result.skipped} skipped (done earlier), "
        f"{result.failed} failed in {result.seconds:.1f} s ({result.ecgs_per_s:.1f} ECGs/s{procs}, model busy "
        f"{result.model_busy:.0%} of the time)",
        file=log,
    )
    if result.errors_total:
        where = (rendered or {}).get("errors_path") or os.path.join(settings.parts_dir, store.ERRORS_DIR)
        print(f"{result.errors_total} input(s) could not be read (listed in {where}):", file=log)
        for e in result.errors:
            print(f"  {e['path']}: {e['error_class']}: {e['message']}", file=log)
        if result.errors_total > len(result.errors):
            print(f"  ... and {result.errors_total - len(result.errors)} more", file=log)
    if rendered is not None:
        print(f"wrote {settings.out}: {rendered['rows']} rows for {rendered['records']} records", file=log)
    else:
        print(f"wrote {settings.out}: {result.rows_total} rows in {len(result.manifest.get('files', []))} Parquet "
              f"file(s), manifest {os.path.join(settings.out, store.SUCCESS_FILE)}", file=log)
