"""`anyecg build-targets` at hospital scale: synthetic ECGs / patients / diagnosis rows through the full phecode 1.2
map, wall time and peak RSS of the build (a child process), printed per size with the growth between sizes.

    python benchmarks/bench_build_targets.py --ecgs 100000 1000000 [--threads 2] [--map phecode1.2] [--workdir DIR]

Data (seeded): patients = ECGs / 4, diagnosis rows = 20 x ECGs; codes drawn from the map's ICD codes with a Zipf
(s = 1.1) frequency over a random ranking (a few codes are very common, most are rare), 70 % ICD-10 rows; dates
uniform over 20 years (2004-2023), ECG dates too; follow-up ends 0-20 years after the first ECG, 10 % of patients
die before it, 1 % have no follow-up row; sex M/F half each, 2 % blank. Target (issue 20): 1 M ECGs in < 5 min and
< 8 GiB peak RSS on 2 cores. The machine's CPU model and load average are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(folder: Path, n_ecgs: int, map_spec: str, seed: int = 0) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from anyecg_hf.ehr.phecode_map import load_phecode_map

    rng = np.random.default_rng(seed)
    pmap = load_phecode_map(map_spec)
    codes = pmap.codes.drop_duplicates(["flag", "code"]).reset_index(drop=True)
    n_pat, n_dx = n_ecgs // 4, 20 * n_ecgs
    start = start_day = np.datetime64("2004-01-01")
    span = 20 * 365
    pids = np.char.add("P", np.arange(n_pat).astype(str))
    # ECGs: every patient at least one, the rest at random
    owner = np.concatenate([np.arange(n_pat), rng.integers(0, n_pat, n_ecgs - n_pat)])
    t0 = start + rng.integers(0, span, n_ecgs).astype("timedelta64[D]")
    pacsv.write_csv(pa.table({"ecg_id": np.char.add("E", np.arange(n_ecgs).astype(str)), "patient_id": pids[owner],
                              "acquisition_time": t0.astype(str)}), folder / "ecgs.csv")
    # diagnoses: Zipf-ranked codes, 70 % ICD-10; written in chunks (bounded memory)
    pools = {}
    for f in (9, 10):
        pool = codes[codes.flag == f]["code"].to_numpy()[rng.permutation(int((codes.flag == f).sum()))]
        w = 1.0 / np.arange(1, len(pool) + 1) ** 1.1
        pools[f] = (pool, w / w.sum())
    schema = pa.schema([("patient_id", pa.string()), ("code", pa.string()), ("vocabulary", pa.string()), ("date", pa.string())])
    with pacsv.CSVWriter(folder / "diagnoses.csv", schema) as writer:
        for first in range(0, n_dx, 2_000_000):
            n = min(2_000_000, n_dx - first)
            is10 = rng.random(n) < 0.7
            code = np.empty(n, object)
            for f, mask in ((10, is10), (9, ~is10)):
                pool, p = pools[f]
                code[mask] = pool[rng.choice(len(pool), int(mask.sum()), p=p)]
            writer.write_table(pa.table({
                "patient_id": pids[rng.integers(0, n_pat, n)], "code": code.astype(str),
                "vocabulary": np.where(is10, "ICD10CM", "ICD9CM"),
                "date": (start_day + rng.integers(0, span, n).astype("timedelta64[D]")).astype(str)}, schema=schema))
    # follow-up
    keep = rng.random(n_pat) >= 0.01
    end = start + rng.integers(0, span, n_pat).astype("timedelta64[D]") + rng.integers(0, span, n_pat).astype("timedelta64[D]")
    death = np.where(rng.random(n_pat) < 0.1, (end - rng.integers(0, 365, n_pat).astype("timedelta64[D]")).astype(str), "")
    sex = rng.choice(np.array(["M", "F", ""]), n_pat, p=[0.49, 0.49, 0.02])
    pacsv.write_csv(pa.table({"patient_id": pids[keep], "end_of_follow_up": end[keep].astype(str),
                              "death_date": death[keep], "sex": sex[keep]}), folder / "follow_up.csv")
    return {"ecgs": n_ecgs, "patients": n_pat, "diagnosis_rows": n_dx}


def run_build(folder: Path, map_spec: str, threads: int, memory_limit: str) -> tuple[float, float, dict]:
    """Build in a child process; returns (seconds, peak RSS GiB of the child, summary)."""
    import json

    code = (
        "import json, sys; from anyecg_hf.ehr import build_targets; "
        f"s = build_targets({str(folder / 'ecgs.csv')!r}, {str(folder / 'diagnoses.csv')!r}, "
        f"{str(folder / 'follow_up.csv')!r}, {str(folder / 'targets')!r}, phecode_map={map_spec!r}, "
        f"threads={threads}, memory_limit={memory_limit!r}, min_cases=50); print(json.dumps(s))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("  (peak RSS not above an earlier child's; it is a lower bound)")
    return seconds, peak / 2**20, json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ecgs", type=int, nargs="+", default=[100_000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--map", default="phecode1.2")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at start {os.getloadavg()}")
    results = []
    for n in sorted(args.ecgs):
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            folder = Path(tmp)
            t = time.perf_counter()
            sizes = generate(folder, n, args.map)
            gen = time.perf_counter() - t
            mb = sum(f.stat().st_size for f in folder.glob("*.csv")) / 2**20
            seconds, rss, summary = run_build(folder, args.map, args.threads, args.memory_limit)
            out_mb = sum(f.stat().st_size for f in (folder / "targets").iterdir()) / 2**20
        results.append((n, seconds, rss))
        print(f"{sizes['ecgs']:>9,} ECGs / {sizes['patients']:,} patients / {sizes['diagnosis_rows']:,} diagnosis rows "
              f"({mb:,.0f} MiB CSV, generated in {gen:.0f} s): build {seconds:.1f} s (of which build_targets "
              f"{summary['seconds']:.1f} s, the rest is Python + package import), peak RSS {rss:.2f} GiB, "
              f"{summary['conditions_kept']} conditions kept, onsets {summary['sparse_entries']['onsets_all_phecodes']:,}, "
              f"onsets with an earlier exclusion {summary['sparse_entries']['onsets_with_earlier_exclusion']:,}, targets {out_mb:,.0f} MiB; "
              f"load average now {os.getloadavg()[0]:.1f}")
    for (n0, s0, r0), (n1, s1, r1) in zip(results, results[1:]):
        print(f"{n0:,} -> {n1:,} ECGs (x{n1 / n0:g}): time x{s1 / s0:.2f}, peak RSS x{r1 / r0:.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
