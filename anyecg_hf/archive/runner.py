"""The engine behind `anyecg profile` and `anyecg embed`: one implementation from a few files to an archive.

A job runs as one process or as N processes under `accelerate launch` / `torchrun`:

1. rank 0 loads the model first (the default model is downloaded and converted once), then the other ranks;
2. rank 0 plans: discovers the inputs (directory walk or manifest), drops those already done when resuming, and
   writes the plan (`_plan.parquet`); the ranks then agree that planning succeeded (one `gather`) or all stop
   with the same error;
3. every rank takes its round-robin slice of the plan and streams it: DataLoader workers read + preprocess
   batches (`ECGFileDataset`) while the main process runs the model under `torch.inference_mode`; windows of long
   records are aggregated per record (`anyecg_hf.prediction.aggregate_windows`); rows and errors go to
   atomically written Parquet chunks (`store.ShardWriter`);
4. the ranks exchange their counts; rank 0 writes `_SUCCESS`, renders a CSV/JSON output when asked, and prints
   the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time

from ..processing import filters
from ..runtime.precision import precision_label, resolve_precision
from . import guard, store
from .cpu import default_threads, default_workers, preprocessing_threads
from .distributed import DistContext, init_distributed
from .loop import stream
from .model import load_model
from .planning import job_metadata, plan_job
from .rows import RowBuilder
from .settings import (
    FORMATS,
    TASKS,
    WRITE_ERRNOS,
    JobError,
    JobResult,
    JobSettings,
    JobUsageError,
    ModelLoadError,
    OutputWriteError,
    output_write_error,
)
from .summary import print_summary

__all__ = ["FORMATS", "TASKS", "JobError", "JobResult", "JobSettings", "JobUsageError", "ModelLoadError", "run_job"]


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
    if settings.format == "fhir" and settings.task != "profile":
        raise JobUsageError("FHIR output is for profiles (diagnoses), not embeddings")
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
        if err.errno in WRITE_ERRNOS:
            raise output_write_error(err, settings.parts_dir) from None
        raise
    finally:
        if lock is not None:
            lock.release()


def _run_locked(settings: JobSettings, ctx: DistContext, lock) -> JobResult:
    import torch

    log = settings.log or sys.stderr
    workers = default_workers(ctx.device, ctx.local_world_size) if settings.workers is None else max(0, settings.workers)
    torch.set_num_threads(settings.threads or default_threads(ctx.device, ctx.local_world_size, workers))
    preprocessing_threads(ctx.local_world_size)
    # load numba's cached kernels (~0.4 s of one-time set-up) while the model loads, not in the first batch
    warm = threading.Thread(target=filters.warm_up, name="anyecg-warm-up", daemon=True)
    warm.start()

    try:  # e.g. fp16 on a CPU without native float16
        precision = precision_label(resolve_precision(settings.precision, ctx.device))
    except ValueError as err:
        raise JobUsageError(f"--precision: {err}") from None

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
        meta = job_metadata(settings, model, extractor, model_id, revision)
        meta["precision"] = precision
        if settings.task == "profile" and not any(model.heads.values()):
            status["error"] = ("JobUsageError", f"the model {model_id} ({type(model).__name__}) has no diagnosis or "
                               "risk head: use `anyecg embed` for embeddings, or a model with a head")
    if ctx.is_main and status["error"] is None:
        def plan():
            try:
                return plan_job(settings, meta, lock)
            except OSError as err:
                if err.errno in WRITE_ERRNOS:
                    raise output_write_error(err, settings.parts_dir) from None
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
                         settings.threshold, meta["precision"])
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
                              settings.top_k, settings.threshold, settings.horizons,
                              _model_info(settings, model, meta["precision"]))
            if not settings.keep_parts:
                shutil.rmtree(settings.parts_dir, ignore_errors=True)
        print_summary(result, settings, rendered, log)
    return result


def _model_info(settings: JobSettings, model, precision: str):
    """Model id / revision / the precision the job ran in, for FHIR output (`None` for the other formats)."""
    if settings.format != "fhir":
        return None
    from ..reporting.context import ModelInfo

    return ModelInfo.from_model(model, settings.model, settings.revision, precision)
