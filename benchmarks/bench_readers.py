"""Reading WFDB records: `anyecg_hf.io.read_ecg` vs `wfdb.rdrecord` (the baseline: what a plain loop over an archive
does), measured in the same run on the 50 CinC 2021 records of `assets/data`.

    python benchmarks/bench_readers.py [--rounds 5]

Rounds are interleaved (baseline, ours, baseline, ...); the best round of each is reported with the ratio, and the
signals are checked equal (ours is in the standard lead order and float32, as `rdrecord(return_res=32)`).
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import wfdb

    from anyecg_hf.io import read_ecg
    from anyecg_hf.testing import assets_dir
    from _speed_common import best_of_interleaved

    warnings.simplefilter("ignore")
    headers = sorted((assets_dir() / "data" / "cinc2021").glob("*.hea"))
    methods = {
        "baseline: wfdb.rdrecord(physical, float32)":
            lambda: [wfdb.rdrecord(str(h.with_suffix("")), return_res=32).p_signal.T for h in headers],
        "read_ecg (checks, metadata, standard lead order)": lambda: [read_ecg(h).signal for h in headers],
    }
    for fn in methods.values():
        fn()  # imports, file cache
    times, out = best_of_interleaved(methods, args.rounds)
    names = list(methods)
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(out[names[0]], out[names[1]]))
    print(f"{len(headers)} CinC 2021 records (12 x 5000, format 16), load average {os.getloadavg()[0]:.1f}, "
          f"best of {args.rounds} interleaved rounds; same signals: {same}")
    t_ref = times[names[0]]
    print(f"{'method':52s} {'us/record':>10s} {'ratio':>7s}")
    for name in names:
        t = times[name]
        print(f"{name:52s} {t / len(headers) * 1e6:10.0f} {t_ref / t:6.1f}x")


if __name__ == "__main__":
    main()
