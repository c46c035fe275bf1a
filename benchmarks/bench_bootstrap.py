"""Benchmark: bootstrap CIs of per-label AUROC and AUPRC for 1,172 labels x 10,000 ECGs x 1,000 resamples.

Prints the wall time of `anyecg_hf.evaluation.bootstrap.bootstrap_auroc_auprc` and of the naive baseline (a Python
loop calling `sklearn.metrics.roc_auc_score` and `average_precision_score` on every resampled label), measured in
the same run on a subset of labels and resamples and extrapolated to the full size, and their ratio. It also checks
that the vectorised replicates equal scikit-learn's on the subset.

Label prevalences default to a log-uniform spread between 0.1 % and 50 % (most phecode-style conditions are rare);
`--prevalence 0.5` gives the worst case (every label half positive).

    python benchmarks/bench_bootstrap.py                      # full size, 2 threads
    python benchmarks/bench_bootstrap.py --labels 100 --resamples 200   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from anyecg_hf.evaluation.bootstrap import bootstrap_auroc_auprc


def make_data(n, k, prevalence, seed=0):
    rng = np.random.default_rng(seed)
    if prevalence is None:
        prev = np.exp(rng.uniform(np.log(0.001), np.log(0.5), size=k))
    else:
        prev = np.full(k, prevalence)
    y = rng.random((n, k)) < prev
    y[0, :] = True  # every label defined
    y[1, :] = False
    logits = rng.normal(size=(n, k)) + 1.5 * y - 3.0
    prob = np.round(1.0 / (1.0 + np.exp(-logits)), 4)  # 4 decimals: realistic ties
    return y, prob


def bench_risk(n, resamples, baseline_resamples=2):
    """Risk intervals for one condition: vectorised replicates vs torchsurv recomputed on each resample."""
    from anyecg_hf.evaluation.survival import _bootstrap_recompute, _bootstrap_vectorised, _Cohort, _point

    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    t_event = rng.exponential(10.0 * np.exp(-x))
    t_cens = rng.uniform(1.0, 12.0, n)
    events = t_event <= t_cens
    times = np.minimum(t_event, t_cens)
    risk = x + rng.normal(size=n)
    horizons = np.array([1.0, 5.0, 10.0])
    inc = 1 - np.exp(-np.outer(np.exp(risk) / 10.0, horizons))
    t0 = time.perf_counter()
    cohort = _Cohort(times, events, horizons, tau=10.0)
    point = _point(cohort, risk, inc)
    t_point = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    boot = _bootstrap_vectorised(cohort, risk, inc, resamples, 0, None)
    fast, cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    _bootstrap_recompute((times, events, horizons, 10.0, None, None), risk, inc, baseline_resamples, 0, None)
    slow = (time.perf_counter() - t0) / baseline_resamples * resamples
    lo, hi = np.nanquantile(boot["harrell_c"], [0.025, 0.975])
    print(f"risk, {n} people, {int(events.sum())} events: torchsurv point estimates {t_point:.1f} s; {resamples} "
          f"vectorised resamples (Harrell, Uno, AUROC and Brier at 3 horizons, IBS) {fast:.1f} s wall ({cpu:.1f} s "
          f"CPU); torchsurv recomputed per resample {slow:.0f} s extrapolated from {baseline_resamples}: "
          f"{slow / fast:.0f}x. Harrell C {point['harrell_c']:.3f} [{lo:.3f}, {hi:.3f}]")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=1_172)
    parser.add_argument("--resamples", type=int, default=1_000)
    parser.add_argument("--prevalence", type=float, default=None, help="same prevalence for every label")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-labels", type=int, default=4)
    parser.add_argument("--baseline-resamples", type=int, default=25)
    parser.add_argument("--risk", action="store_true",
                        help="also time evaluate_risk's bootstrap (Harrell, Uno, time-dependent AUROC, Brier) for one "
                             "condition over --samples people against torchsurv recomputed per resample")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also time evaluate_diagnosis (points, thresholds, calibration and bootstrap)")
    args = parser.parse_args()

    y, prob = make_data(args.samples, args.labels, args.prevalence)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"{args.threads} threads used, load average {os.getloadavg()[0]:.1f} (other jobs share these cores)")
    print(f"data: {args.samples} samples x {args.labels} labels, {args.resamples} resamples, median prevalence "
          f"{np.median(y.mean(axis=0)):.4f}")

    t0, c0 = time.perf_counter(), time.process_time()
    auroc, auprc, sampler = bootstrap_auroc_auprc(y, prob, n_bootstrap=args.resamples, seed=0, n_jobs=args.threads)
    fast, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"vectorised bootstrap (AUROC + AUPRC): {fast:.1f} s wall, {cpu:.1f} s CPU")

    # naive baseline on a subset, same resamples; extrapolated to the full size
    rng = np.random.default_rng(1)
    labels = rng.choice(args.labels, size=min(args.baseline_labels, args.labels), replace=False)
    nb = min(args.baseline_resamples, args.resamples)
    t0, c0 = time.perf_counter(), time.process_time()
    max_err = 0.0
    for b in range(nb):
        idx = sampler.indices(b)
        for k in labels:
            yy, pp = y[idx, k], prob[idx, k]
            if yy.all() or not yy.any():
                continue
            a = roc_auc_score(yy, pp)
            p = average_precision_score(yy, pp)
            max_err = max(max_err, abs(a - auroc[b, k]), abs(p - auprc[b, k]))
    naive_subset, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
    scale = (args.labels / len(labels)) * (args.resamples / nb)
    naive = naive_subset * scale
    print(f"naive sklearn loop: {naive_subset:.2f} s for {len(labels)} labels x {nb} resamples "
          f"-> {naive:.0f} s wall ({naive_cpu * scale:.0f} s CPU) extrapolated to the full size (1 thread)")
    print(f"speed-up: {naive / fast:.0f}x wall, {naive_cpu * scale / cpu:.0f}x CPU; "
          f"max |vectorised - sklearn| on the subset: {max_err:.1e}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")

    if args.risk:
        bench_risk(args.samples, args.resamples)

    if args.end_to_end:
        from anyecg_hf.evaluation import evaluate_diagnosis

        t0 = time.perf_counter()
        rep = evaluate_diagnosis(y, prob, n_bootstrap=args.resamples, seed=0, n_jobs=args.threads)
        print(f"evaluate_diagnosis end to end: {time.perf_counter() - t0:.1f} s "
              f"(macro AUROC {rep.summary['macro_auroc']:.3f})")


if __name__ == "__main__":
    main()
