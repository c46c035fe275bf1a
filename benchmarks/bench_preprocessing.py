"""Preprocessing throughput: `AnyECGFeatureExtractor` vs a plain per-record, per-lead scipy implementation of the
same ECGFounder recipe (`anyecg_hf.processing.filters.reference_preprocess`: filtfilt (b, a) + medfilt per lead),
measured in the same run on the same records (the 50 CinC 2021 records of `shared/data`, repeated).

    python benchmarks/bench_preprocessing.py [--repeat 4] [--rounds 3]

Prints ECGs/s of each, the ratio, and the max-abs difference of the outputs (after z-score). Timings on a shared
2-core machine are noisy: the best of `--rounds` is reported for each.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=4, help="copies of the 50 records in one batch")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is reported")
    args = parser.parse_args()

    import wfdb

    from anyecg_hf import AnyECGFeatureExtractor
    from anyecg_hf.processing import filters
    from anyecg_hf.testing import shared_dir

    folder = shared_dir() / "data" / "cinc2021"
    records = sorted(p.stem for p in folder.glob("*.hea"))
    signals = [wfdb.rdsamp(str(folder / r))[0].T for r in records]
    # drop the two records with a zeroed lead: the extractor masks it (by design) while the reference does not
    signals = [s for s in signals if np.ptp(s, axis=1).min() > 0]
    batch = np.stack(signals * args.repeat)
    n = len(batch)

    def best(fn):
        times = []
        out = fn()
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    warnings.simplefilter("ignore")
    t_ref, ref = best(lambda: np.stack([filters.reference_preprocess(x, 500) for x in batch]))
    rows = [("baseline: per-record per-lead scipy (filtfilt + medfilt)", t_ref, 0.0)]
    backends = ["numba", "scipy"] if filters.HAVE_NUMBA else ["scipy"]
    for backend in backends:
        fe = AnyECGFeatureExtractor(backend=backend)
        fe(batch[:2], sampling_rate=500)  # JIT warm-up (numba caches compiled kernels on disk)
        t, out = best(lambda: fe(batch, sampling_rate=500)["input_values"])
        rows.append((f"AnyECGFeatureExtractor exact, backend={backend}", t, float(np.abs(out - ref).max())))

    threads = os.environ.get("NUMBA_NUM_THREADS", str(os.cpu_count()))
    print(f"{n} ECGs (12 x 5000), {os.cpu_count()} CPU cores, numba threads {threads}")
    print(f"{'method':60s} {'ECGs/s':>9s} {'ratio':>7s} {'max|diff|':>10s}")
    for name, t, err in rows:
        print(f"{name:60s} {n / t:9.1f} {t_ref / t:6.1f}x {err:10.2e}")


if __name__ == "__main__":
    main()
