"""Start-up of `anyecg profile` (issue 19 part 4): the time from launching the command to its first output row,
and where that time goes, measured in one run (interleaved rounds, median [min-max]).

The job is `anyecg profile ONE.hea --model M --out p.csv` on one bundled CinC record with the full-size seeded
ECGFounder model saved as a folder: its wall time IS the time to the first output row (one record, one result
file, written at the end). Alongside, in the same rounds:

- `python -c pass`: the interpreter alone (the floor);
- `anyecg --help`: the CLI without torch;
- `import torch`, `import anyecg_hf`, `import anyecg_hf.pipelines`: what the imports cost;
- the job's own streaming seconds (`_SUCCESS` manifest of a Parquet run): reading + preprocessing + the forward pass
  of that one ECG; the rest of the wall time is start-up (imports, model load, planning, writing).

    python benchmarks/bench_startup.py [--rounds 5] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _speed_common import machine_line  # noqa: E402
from bench_end_to_end import make_model  # noqa: E402


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision", default="fp32", help="--precision of the profile runs (default fp32)")
    args = ap.parse_args(argv)

    from anyecg_hf.testing import assets_dir

    record = sorted((assets_dir() / "data" / "cinc2021").glob("*.hea"))[0]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_model(tmp / "model")
        job = ["-m", "anyecg_hf.cli", "profile", str(record), "--model", str(model), "--no-progress", "--overwrite"]
        job += ["--precision", args.precision] if args.precision != "fp32" else []
        steps = {
            "python -c pass": [py, "-c", "pass"],
            "anyecg --help": [py, "-m", "anyecg_hf.cli", "--help"],
            "import torch": [py, "-c", "import torch"],
            "import anyecg_hf": [py, "-c", "import anyecg_hf"],
            "import anyecg_hf.pipelines": [py, "-c", "import anyecg_hf.pipelines"],
            "profile 1 ECG -> CSV (first output row)": [py, *job, "--out", str(tmp / "p.csv")],
            "profile 1 ECG -> Parquet": [py, *job, "--out", str(tmp / "parts"), "--format", "parquet"],
        }
        timed(steps["profile 1 ECG -> CSV (first output row)"], env)  # warm the page cache and numba's cache
        times: dict = {k: [] for k in steps}
        stream = []
        for _ in range(args.rounds):
            for name, cmd in steps.items():
                times[name].append(timed(cmd, env))
            stream.append(json.loads((tmp / "parts" / "_SUCCESS").read_text())["run"]["seconds"])
    print(f"machine: {machine_line()}")
    print(f"time to first output row of `anyecg profile` (1 CinC record, full-size seeded model, --precision "
          f"{args.precision}), seconds, median [min-max] over {args.rounds} interleaved rounds\n")
    print("| step | seconds |")
    print("|---|---:|")
    for name, t in times.items():
        t = np.asarray(t)
        print(f"| {name} | {np.median(t):.2f} [{t.min():.2f}-{t.max():.2f}] |")
    s = np.asarray(stream)
    print(f"| job's own streaming phase (read + preprocess + forward of the ECG) | {np.median(s):.2f} "
          f"[{s.min():.2f}-{s.max():.2f}] |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
