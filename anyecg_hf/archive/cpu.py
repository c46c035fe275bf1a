"""CPU and process policy of a job: reader workers and torch threads per process, whether the readers are gated,
preprocessing threads, and how reader processes start (fork / forkserver)."""

from __future__ import annotations

import os
import sys


def cores_per_process(local_world_size: int) -> int:
    """This process's share of the cores it may run on (at least 1)."""
    from ..runtime.threads import available_cpus

    return max(1, available_cpus() // max(1, local_world_size))


def default_workers(device, local_world_size: int = 1) -> int:
    """DataLoader workers per process: on GPU, the cores of this process (preprocessing must keep up with the GPU);
    on CPU, none with 1 core per process, one per core with 2 (they share the cores with the model, gated: see
    `readers_share_cores`), else about one per 4 cores on cores of their own.

    Measured on 2 cores (1,000 WFDB files, full-size model, 2 model threads): no reader 110-113 ECGs/s, 2 gated
    readers 113-117, 2 ungated readers 106 (they stall the model's threads), 1 reader + 1 model thread 69."""
    per_process = cores_per_process(local_world_size)
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
    cores = cores_per_process(local_world_size)
    return cores if workers >= cores else max(1, cores - workers)


def readers_share_cores(device, local_world_size: int, workers: int, threads: int) -> bool:
    """Whether the reader workers and the model's threads together exceed this process's cores (CPU only). The job
    then gates the readers: they read and preprocess while the model waits for a batch and pause (within one stage
    of 4 records, ~3 ms) while it runs, so the cores alternate between the two instead of being contended."""
    if not workers or getattr(device, "type", str(device)) != "cpu":
        return False
    return workers + threads > cores_per_process(local_world_size)


def worker_init(_worker_id: int) -> None:
    from torch.utils.data import get_worker_info

    # Parallelism comes from the worker processes: one preprocessing thread each (torch already sets 1 in workers).
    os.environ["ANYECG_NUM_THREADS"] = "1"
    info = get_worker_info()
    if info is not None and hasattr(info.dataset, "parent_pid"):
        info.dataset.parent_pid = os.getppid()  # alive now: it just started this reader


def preprocessing_threads(local_world_size: int) -> None:
    """Preprocessing threads of this process (`ANYECG_NUM_THREADS`, unless the user set it): its share of the cores,
    so that several processes on one machine do not each start one filter thread per core."""
    if "ANYECG_NUM_THREADS" not in os.environ:
        os.environ["ANYECG_NUM_THREADS"] = str(cores_per_process(local_world_size))


def worker_context():
    """Start method for the reader processes: `fork` (instant) unless this process already ran numba's parallel
    kernels (e.g. preprocessing in a notebook before the job): numba's OpenMP thread pool does not survive a
    fork, so then a `forkserver` with the readers' modules preloaded is used."""
    import multiprocessing as mp

    numba_parallel = sys.modules.get("numba.np.ufunc.parallel")
    if numba_parallel is None or not getattr(numba_parallel, "_is_initialized", False):
        return None
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["anyecg_hf.archive.dataset", "anyecg_hf.io", "anyecg_hf.processing"])
    return ctx
