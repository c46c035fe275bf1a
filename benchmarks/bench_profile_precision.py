"""End to end, `anyecg profile --precision bf16` vs `--precision fp32` (issue 19): the job's own ECGs/s (its
`_SUCCESS` manifest: the streaming phase, start-up excluded) and the agreement of the two outputs.

N WFDB files (symlinks to the 50 bundled CinC 2021 records), the full-size seeded ECGFounder model saved as a
folder, Parquet output. The two precisions run alternately (fp32, bf16, fp32, bf16, ...) so load from other jobs
hits both alike; the ratio is taken per round. Agreement: max |Δprobability| over every (record, condition) of the
two outputs, and the fraction of `positive` decisions that differ. Target: bf16 >= 1.4x fp32 with max |Δp| <= 0.01.

    python benchmarks/bench_profile_precision.py                 # N = 300, 3 rounds
    python benchmarks/bench_profile_precision.py --n 1000 --rounds 2 --threads 2 --workers 1
    python benchmarks/bench_profile_precision.py --n 10000 --rounds 1 --device cuda --batch-size 256   # a lent GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed_common import machine_line  # noqa: E402
from bench_end_to_end import make_archive, make_model  # noqa: E402


def profile(archive: Path, model: Path, out: Path, precision: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "anyecg_hf.cli", "profile", str(archive), "--model", str(model), "--out", str(out),
           "--format", "parquet", "--no-progress", "--overwrite", "--follow-links", "--precision", precision, *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"profile --precision {precision} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((out / "_SUCCESS").read_text())


def read_probabilities(out: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """(path order, probabilities (n, conditions), precision column values) of a Parquet run."""
    import pyarrow.parquet as pq

    table = pq.read_table(out, columns=None).sort_by("input_index")
    probs = np.asarray(table.column("probabilities").to_pylist(), dtype=np.float64)
    precision = sorted(set(table.column("precision").to_pylist())) if "precision" in table.column_names else ["?"]
    return np.asarray(table.column("path").to_pylist()), probs, precision


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="WFDB files (default 300)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="--threads of the job (default: the CLI's)")
    ap.add_argument("--workers", type=int, default=None, help="--workers of the job (default: the CLI's)")
    ap.add_argument("--device", default=None, help="--device of the job, e.g. cuda (preprocessing then runs on the GPU)")
    args = ap.parse_args(argv)
    extra = ["--batch-size", str(args.batch_size)]
    extra += ["--threads", str(args.threads)] if args.threads else []
    extra += ["--workers", str(args.workers)] if args.workers is not None else []
    extra += ["--device", args.device] if args.device else []

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(tmp / "model")
        archive = make_archive(tmp / "archive", args.n)
        rates: dict = {"fp32": [], "bf16": []}
        busy: dict = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in rates:
                manifest = profile(archive, model, tmp / precision, precision, extra)
                rates[precision].append(manifest["run"]["ecgs_per_s"])
                busy[precision].append(manifest["run"].get("model_busy", float("nan")))
        paths32, p32, prec32 = read_probabilities(tmp / "fp32")
        paths16, p16, prec16 = read_probabilities(tmp / "bf16")
        assert (paths32 == paths16).all(), "the two runs list different records"
        thresholds = np.asarray(manifest.get("thresholds") or [0.5] * p32.shape[1], dtype=np.float64)

    r32, r16 = np.asarray(rates["fp32"]), np.asarray(rates["bf16"])
    ratio = r16 / r32
    flips = (p32 >= thresholds) != (p16 >= thresholds)
    print(f"machine: {machine_line()}")
    print(f"anyecg profile on {args.n} WFDB files, full-size seeded ECGFounder, batch {args.batch_size}, "
          f"{args.rounds} alternating rounds; the job's own ECGs/s (start-up excluded)\n")
    print("| precision | ECGs/s median [min-max] | model busy | precision column |")
    print("|---|---:|---:|---|")
    for name, r, prec in (("fp32", r32, prec32), ("bf16", r16, prec16)):
        print(f"| {name} | {np.median(r):.1f} [{r.min():.1f}-{r.max():.1f}] | {np.median(busy[name]):.0%} | "
              f"{', '.join(map(str, prec))} |")
    print(f"\nbf16 / fp32 per round: {np.median(ratio):.2f}x [{ratio.min():.2f}-{ratio.max():.2f}] (target >= 1.4x)")
    print(f"max |Δp| between the two outputs: {np.abs(p16 - p32).max():.4f} (target <= 0.01); decisions that differ: "
          f"{100 * flips.mean():.3f} % ({int(flips.sum())}/{flips.size})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
