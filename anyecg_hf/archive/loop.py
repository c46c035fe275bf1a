"""The loop of one rank: DataLoader readers read + preprocess while the model runs under `torch.inference_mode`;
windows of long records are aggregated per record (`anyecg_hf.prediction.aggregate_windows`); rows and errors go to
atomically written Parquet chunks (`store.ShardWriter`)."""

from __future__ import annotations

import sys
import time

import numpy as np

from ..prediction import aggregate_windows, window_outputs
from ..runtime.precision import autocast as precision_autocast
from ..runtime.precision import precision_dtype
from . import store
from .guard import escape_text
from .cpu import readers_share_cores, worker_context, worker_init
from .dataset import ECGFileDataset, RampUpBatches, StringTable, collate_items
from .device_preprocessing import device_inputs, use_device_preprocessing
from .distributed import DistContext
from .memory import TRIM_EVERY, heap_trimmer, keep_freed_memory
from .rows import RowBuilder
from .settings import JobError, JobSettings


def forward_batch(model, inputs: dict, device, micro_batch: int, task: str, autocast) -> dict:
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
    preprocessor = None
    if use_device_preprocessing(settings.preprocess_on, device):
        from ..processing.torch_preprocessing import TorchPreprocessor

        preprocessor = TorchPreprocessor(extractor, device)
    dataset = ECGFileDataset(StringTable(paths), extractor, indices=indices, read_kwargs=settings.read_kwargs,
                             quality=settings.quality, gate=gate, raw=preprocessor is not None)
    del paths
    loader = DataLoader(
        dataset,
        batch_sampler=RampUpBatches(len(dataset), settings.batch_size, workers),
        num_workers=workers,
        collate_fn=collate_items,
        pin_memory=getattr(device, "type", "cpu") == "cuda",
        prefetch_factor=2 if workers else None,
        worker_init_fn=worker_init if workers else None,
        multiprocessing_context=mp_context,
    )
    writer = store.ShardWriter(settings.parts_dir, ctx.rank, meta, settings.chunk_size, settings.flush_seconds)
    dtype = precision_dtype(meta["precision"])  # resolved once, in the runner
    autocast = lambda: precision_autocast(dtype, device)  # noqa: E731
    bar = None
    if ctx.is_main and settings.progress:
        from tqdm.auto import tqdm

        desc = f"{settings.task} (rank 0 of {ctx.world_size})" if ctx.world_size > 1 else settings.task
        bar = tqdm(total=len(dataset), desc=desc, unit="ECG", dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
    t0 = time.perf_counter()
    model_s = 0.0  # time in the forward pass: model_s / seconds near 1 means reading keeps up with the model
    try:
        model_s = stream_batches(settings, loader, model, device, builder, writer, autocast, bar, gate, preprocessor)
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


def stream_batches(settings, loader, model, device, builder, writer, autocast, bar, gate=None,
                   preprocessor=None) -> float:
    model_s = 0.0
    trim = heap_trimmer()
    keep_freed_memory()
    for n_batch, batch in enumerate(loader, 1):
        if n_batch % TRIM_EVERY == 0:
            trim()
        rows = None
        if batch.items:
            tm = time.perf_counter()
            if gate is not None:
                gate.clear()  # readers pause: the model has the cores
            try:
                if "raw" in batch.inputs:  # preprocessing on the device (counted as model time: same device)
                    batch.inputs, batch.window_to_record = device_inputs(batch.inputs["raw"], preprocessor)
                    for j, count in enumerate(np.bincount(batch.window_to_record, minlength=len(batch.items))):
                        batch.items[j].meta["n_windows"] = int(count)
                outs = forward_batch(model, batch.inputs, device, settings.batch_size, settings.task, autocast)
            finally:
                if gate is not None:
                    gate.set()
            model_s += time.perf_counter() - tm
            n = len(batch.items)
            agg = {k: aggregate_windows(v, batch.window_to_record, settings.aggregate, num_records=n).astype(np.float32)
                   for k, v in outs.items()}
            rows = builder.build(batch.items, agg)
        errors = [{"input_index": it.index, "path": escape_text(it.path), "record_id": escape_text(it.record_id),
                   "error_class": it.error[0], "message": escape_text(it.error[1])} for it in batch.errors]
        writer.add(rows, errors)
        if bar is not None:
            bar.update(len(batch))
            if writer.errors_written or batch.errors:
                bar.set_postfix(failed=writer.errors_written + len(writer._errors), refresh=False)
    return model_s
