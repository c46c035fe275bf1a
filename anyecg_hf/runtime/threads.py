"""CPU thread settings shared by PyTorch and ONNX Runtime."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity, which containers and `taskset` restrict), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def default_num_threads() -> int:
    """`$OMP_NUM_THREADS` when set to a positive integer, else `available_cpus()`."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cpus()


def configure_cpu_threads(num_threads: int | None = None, interop_threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads (and, when still possible, inter-op threads) for CPU inference.

    One intra-op thread per available core is fastest for this convolutional backbone; more threads than cores
    (the default on some container setups, where `os.cpu_count()` reports the host) oversubscribe and slow every
    convolution down. Call it once, early; pass the returned number to `OnnxECGModel(num_threads=...)` so both
    runtimes agree.

    Args:
        num_threads: intra-op threads; `None` uses `default_num_threads()` (`$OMP_NUM_THREADS`, else one per
            available core).
        interop_threads: inter-op threads; `None` leaves PyTorch's setting. PyTorch only accepts this before
            its first parallel work, so a late call skips it silently.

    Returns:
        The number of intra-op threads now in use.
    """
    import torch

    num_threads = default_num_threads() if num_threads is None else int(num_threads)
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}.")
    torch.set_num_threads(num_threads)
    if interop_threads is not None:
        try:
            torch.set_num_interop_threads(int(interop_threads))
        except RuntimeError:  # parallel work already started
            pass
    return torch.get_num_threads()
