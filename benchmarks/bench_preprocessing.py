"""Preprocessing throughput: `AnyECGFeatureExtractor` (exact mode, the only one) vs a plain per-record, per-lead scipy
implementation of the same ECGFounder recipe (`anyecg_hf.processing.filters.reference_preprocess`: filtfilt (b, a)
+ medfilt per lead), measured in the same run on the same records (the 48 CinC 2021 records of `assets/data` that
have no zeroed lead, repeated to `--batch`).

    python benchmarks/bench_preprocessing.py [--batch 64] [--rounds 5] [--device cuda]

It also times `processing.torch_preprocessing.TorchPreprocessor` (the same recipe as torch operations, issue 19),
float64 and float32, on `--device` (default cpu: the CPU fallback of the GPU path; a GPU when one is lent). On a
GPU the input copy to the device is included and the result is synchronised before the clock stops.

A second table times the signal-quality flags of the same batch: `fe.check_quality(batch)` (all leads of a record
at once, float32 numba filters, one record per worker-thread task) against the same checks written per lead with
scipy (`anyecg_hf.testing.reference_quality_flags`), and checks that both give the same flags.

Each method is timed on one batched call (`fe(batch)`) and on one call per record (`[fe(x) for x in batch]`).
Rounds are interleaved (baseline, numba batched, numba per record, ... then again) so that load from other jobs on a shared machine hits
every method alike; the best round of each is reported, with the ratio to the baseline and the max-abs difference of
the outputs (after z-score) to the baseline. The numba rows run on `ANYECG_NUM_THREADS` worker threads (default:
all cores) and once more on 1 thread. The first call of each numba
configuration (JIT compilation, or loading numba's on-disk cache) is timed separately and excluded.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from _speed_common import best_of_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="records per batched call")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds; the best is reported")
    parser.add_argument("--no-scipy-backend", action="store_true", help="skip the (slow) scipy-backend rows")
    parser.add_argument("--device", default="cpu", help="device of the torch-operations rows (default cpu)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-operations rows")
    args = parser.parse_args()

    import wfdb

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.processing import filters
    from anyecg_hf.testing import assets_dir

    folder = assets_dir() / "data" / "cinc2021"
    records = sorted(p.stem for p in folder.glob("*.hea"))
    signals = [wfdb.rdsamp(str(folder / r))[0].T for r in records]
    # drop the two records with a zeroed lead: the extractor masks it (by design) while the reference does not
    signals = [s for s in signals if np.ptp(s, axis=1).min() > 0]
    batch = np.stack([signals[i % len(signals)] for i in range(args.batch)])
    n = len(batch)
    warnings.simplefilter("ignore")

    methods = {"baseline: per-record per-lead scipy (filtfilt + medfilt)":
               lambda: np.stack([filters.reference_preprocess(x, 500) for x in batch])}
    warmup = {}
    configs = [("numba", None), ("numba", 1)] if filters.HAVE_NUMBA else []
    if not args.no_scipy_backend or not filters.HAVE_NUMBA:
        configs.append(("scipy", None))
    for backend, threads in configs:
        fe = AnyECGFeatureExtractor(backend=backend)
        t0 = time.perf_counter()
        fe(batch[:1], sampling_rate=500)
        warmup.setdefault(backend, time.perf_counter() - t0)

        def call(x, fe=fe, threads=threads):
            saved = os.environ.get("ANYECG_NUM_THREADS")
            if threads:
                os.environ["ANYECG_NUM_THREADS"] = str(threads)
            try:
                return fe(x, sampling_rate=500)["input_values"]
            finally:
                if threads:
                    os.environ.pop("ANYECG_NUM_THREADS") if saved is None else os.environ.update(ANYECG_NUM_THREADS=saved)

        label = f"{backend}" + (f", {threads} thread" if threads else "")
        methods[f"exact, {label}, batched"] = lambda call=call: call(batch)
        methods[f"exact, {label}, per record"] = lambda call=call: np.concatenate([call(x) for x in batch])

    if not args.no_torch:
        add_torch_methods(methods, batch, args.device)
    times, outputs = best_of_interleaved(methods, args.rounds)
    names = list(methods)
    ref = outputs[names[0]]
    t_ref = times[names[0]]
    threads = filters.num_threads() if filters.HAVE_NUMBA else 1
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{n} ECGs (12 x 5000 at 500 Hz), {os.cpu_count()} CPU cores, {threads} worker threads, "
          f"load average {load}, best of {args.rounds} interleaved rounds")
    print("first call per backend (numba compile or cache load), excluded: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in warmup.items()))
    print(f"{'method':58s} {'ECGs/s':>8s} {'ratio':>7s} {'max|diff|':>10s}")
    for name in names:
        t = times[name]
        out = outputs[name]
        print(f"{name:58s} {n / t:8.1f} {t_ref / t:6.1f}x {np.abs(out - ref).max():10.2e}")

    quality_table(batch, args.rounds)


def add_torch_methods(methods: dict, batch: np.ndarray, device: str) -> None:
    """Rows of the torch-operations recipe on `device`, float64 and float32 (output copied back for the diff)."""
    import torch

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.processing.torch_preprocessing import TorchPreprocessor

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for dtype in (torch.float64, torch.float32):
        tp = TorchPreprocessor(AnyECGFeatureExtractor(), device, dtype)
        tp(batch[:2], 500)  # filter spectra and plans, cached per length and device

        def call(tp=tp):
            values = tp(torch.from_numpy(batch), 500)["input_values"]
            sync()
            return values.cpu().numpy()

        methods[f"torch ops, {str(dtype)[6:]}, {device} ({torch.get_num_threads()} threads)"] = call


def quality_table(batch: np.ndarray, rounds: int) -> None:
    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.leads import STANDARD_12_LEADS
    from anyecg_hf.testing import reference_quality_flags

    fe = AnyECGFeatureExtractor()
    names = list(STANDARD_12_LEADS)
    fe.check_quality(batch[:2], sampling_rate=500)  # numba cache load

    def ours(threads):
        saved = os.environ.get("ANYECG_NUM_THREADS")
        os.environ["ANYECG_NUM_THREADS"] = str(threads)
        try:
            return fe.check_quality(batch, sampling_rate=500)
        finally:
            os.environ.pop("ANYECG_NUM_THREADS") if saved is None else os.environ.update(ANYECG_NUM_THREADS=saved)

    from anyecg_hf.processing import filters

    methods = {"baseline: per-lead scipy (sosfiltfilt)": lambda: [reference_quality_flags(x, 500, names) for x in batch],
               f"check_quality, {filters.num_threads()} threads": lambda: ours(filters.num_threads()),
               "check_quality, 1 thread": lambda: ours(1)}
    times, flags = best_of_interleaved(methods, rounds)
    def kinds(record_flags):  # (kind, lead) of each flag; the reference has no electrode-reversal check
        pairs = [f[:2] if isinstance(f, tuple) else (f.kind, f.lead) for f in record_flags]
        return [p for p in pairs if p[0] != "limb_lead_reversal"]

    names_ = list(methods)
    ref = [kinds(r) for r in flags[names_[0]]]
    t_ref = times[names_[0]]
    print(f"\nsignal-quality flags of the same {len(batch)} ECGs, best of {rounds} interleaved rounds")
    print(f"{'method':58s} {'ms/ECG':>8s} {'ratio':>7s} {'same flags':>10s}")
    for name in names_:
        t = times[name]
        same = ref == [kinds(r) for r in flags[name]]
        print(f"{name:58s} {t / len(batch) * 1e3:8.3f} {t_ref / t:6.1f}x {str(same):>10s}")


if __name__ == "__main__":
    main()
