"""Shared helpers of the speed benchmarks (`bench_backbone.py`, `bench_onnx.py`, `bench_train_step.py`):
the seeded full-size model, its straightforward eager baseline, interleaved timing and a machine line.

Timing: the candidates are measured in alternation (A, B, A, B, ...) within one process, each measurement long
enough (`min_seconds`), and the ratio is taken per round, so that load from other processes on a shared machine
hits both sides alike. The median and the min-max spread over rounds are reported.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_net1d import BaselineNet1D  # noqa: E402


def seeded_model(num_leads: int = 12):
    """`AnyECGForDiagnosis` with the parity fixture's seeded ECGFounder weights (random init without `assets/`)."""
    from anyecg_hf import AnyECGConfig, AnyECGForDiagnosis
    from anyecg_hf.testing import parity_dir, write_seeded_ecgfounder_checkpoint

    if (parity_dir() / "state_dict_layout.json").exists():
        with tempfile.TemporaryDirectory() as tmp:
            path = write_seeded_ecgfounder_checkpoint(Path(tmp) / "ecgfounder.pth", "12lead" if num_leads == 12 else "1lead")
            return AnyECGForDiagnosis.from_ecgfounder(path).eval(), "seeded fixture weights"
    torch.manual_seed(0)
    return AnyECGForDiagnosis(AnyECGConfig()).eval(), "random init (assets/ not found)"


def baseline_for(model) -> BaselineNet1D:
    return BaselineNet1D.from_anyecg(model)


def example_batch(batch_size: int, in_channels: int = 12, num_samples: int = 5000) -> torch.Tensor:
    """Fixture inputs (3 preprocessed CinC records + 1 noise row) tiled to `batch_size`, else seeded noise."""
    from anyecg_hf.testing import parity_dir

    path = parity_dir() / "inputs_12lead.npy"
    if path.exists() and in_channels == 12 and num_samples == 5000:
        x = np.load(path)
        return torch.from_numpy(np.ascontiguousarray(np.resize(x, (batch_size, *x.shape[1:]))))
    return torch.randn(batch_size, in_channels, num_samples, generator=torch.Generator().manual_seed(0))


def interleaved(candidates: dict, items_per_call: int, rounds: int = 5, min_seconds: float = 2.0, warmup: int = 1):
    """Time callables in alternation; returns `{name: np.array of items/s per round}`.

    Each measurement repeats the call until `min_seconds` have passed (at least once).
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    rates = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            calls, start = 0, time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            rates[name].append(items_per_call * calls / elapsed)
    return {k: np.asarray(v) for k, v in rates.items()}


def best_of_interleaved(methods: dict, rounds: int) -> tuple[dict, dict]:
    """Call each method once per round, in turn, `rounds` times: `({name: best seconds}, {name: last output})`."""
    times: dict = {name: [] for name in methods}
    outputs = {}
    for _ in range(rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}, outputs


def summarize(rates: np.ndarray) -> str:
    return f"{np.median(rates):8.1f} [{rates.min():.1f}-{rates.max():.1f}]"


def ratio_summary(a: np.ndarray, b: np.ndarray) -> str:
    r = a / b
    return f"{np.median(r):.2f}x [{r.min():.2f}-{r.max():.2f}]"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {cores} cores available, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"load average at start {load:.1f}")
