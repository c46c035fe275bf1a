"""End-to-end `anyecg profile` throughput and memory (issue 9 part 4(c), issue 10).

Measured in ONE run, on the full-size ECGFounder network (seeded weights of the parity fixture, 30.8 M parameters):

* baseline: backbone-only ECGs/s (the model's forward on ready tensors, `torch.inference_mode`, same batch size),
  for 1 process with 1 thread and with all cores, and for P processes at once -- the ceiling an end-to-end run with
  the same number of processes can reach;
* `anyecg profile` on N WFDB files (symlinks to the 50 CinC records in a temp folder), written as Parquet, with 1
  process and with 2 processes (`accelerate launch --multi_gpu --num_processes 2`, gloo on CPU), with and without the
  signal-quality flags: ECGs/s of the streaming phase (from the job's `_SUCCESS`), its ratio to the baseline, the
  fraction of time the model was busy, and the peak RSS of every process of the job (sampled every 0.2 s; the
  job's total PSS every 2 s);
* memory flatness: peak and median RSS of the main process for N and for 5 N files (1 process).

"RSS worker" is the largest reader process (its RSS includes pages shared with the main process it was forked
from); "PSS total" sums the proportional set sizes of all processes of the job (shared pages counted once).

    python benchmarks/bench_end_to_end.py                      # N = 1000, RSS check with 1000 vs 5000
    python benchmarks/bench_end_to_end.py --n 200 --rss-sizes 200,1000 --processes 1   # quick

Numbers depend on the machine and its load; the ratios to the same-run baseline are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_model(folder: Path) -> Path:
    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.testing import write_seeded_ecgfounder_checkpoint

    if not (folder / "model.safetensors").exists():
        pth = write_seeded_ecgfounder_checkpoint(folder.parent / "12_lead_ECGFounder.pth")
        AnyECGForDiagnosis.from_ecgfounder(pth).save_pretrained(folder)
    return folder


def make_tiny_model(folder: Path) -> Path:
    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.testing import tiny_config

    if not (folder / "model.safetensors").exists():
        AnyECGForDiagnosis(tiny_config()).save_pretrained(folder)
    return folder


def make_archive(folder: Path, n: int) -> Path:
    """`n` WFDB records: symlinks to the 50 CinC records, 50 per sub-folder."""
    from anyecg_hf.testing import assets_dir

    src = sorted((assets_dir() / "data" / "cinc2021").glob("*.hea"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        hea = src[i % len(src)]
        d = folder / f"c{i // len(src):05d}"
        d.mkdir(exist_ok=True)
        for f in (hea, hea.with_suffix(".mat")):
            link = d / f.name
            if not link.exists():
                link.symlink_to(f)
    return folder


def _backbone_loop(model_dir, batch_size: int, threads: int, seconds: float, start=None, queue=None) -> float:
    from anyecg_hf import AnyECGForDiagnosis

    torch.set_num_threads(threads)
    model = AnyECGForDiagnosis.from_pretrained(model_dir).eval()
    x = torch.randn(batch_size, 12, 5000)
    with torch.inference_mode():
        model(input_values=x[:2])  # warm-up
        if start is not None:
            start.wait()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 2 * batch_size:
            model(input_values=x)
            n += batch_size
        rate = n / (time.perf_counter() - t0)
    if queue is not None:
        queue.put(rate)
    return rate


def backbone_throughput(model_dir: Path, batch_size: int, threads: int, processes: int = 1,
                        seconds: float = 20.0) -> float:
    """ECGs/s of the model alone on ready (batch, 12, 5000) tensors: `processes` processes with `threads` torch
    threads each, running at the same time (summed)."""
    if processes == 1:
        return _backbone_loop(model_dir, batch_size, threads, seconds)
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_backbone_loop, args=(model_dir, batch_size, threads, seconds, start, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(15)  # let every process load the model and warm up
    start.set()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def stage_throughput(model_dir: Path, files: list, batch_size: int) -> dict:
    """ECGs/s on ONE core of each stage of the end-to-end path (1 torch thread, 1 numba thread), to explain the
    end-to-end figure: reading, preprocessing (batched), signal-quality flags, the model."""
    import warnings

    import numba

    from anyecg_hf import AnyECGFeatureExtractor, read_ecg

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    fe = AnyECGFeatureExtractor.from_pretrained(model_dir)
    fe.windowing = "sliding"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fe([read_ecg(f) for f in files[:batch_size]])  # numba compile / cache load
        t0 = time.perf_counter()
        recs = [read_ecg(f) for f in files]
        t1 = time.perf_counter()
        for i in range(0, len(recs), batch_size):
            fe(recs[i:i + batch_size], return_window_index=True)
        t2 = time.perf_counter()
        for i in range(0, len(recs), batch_size):
            fe.check_quality(recs[i:i + batch_size])
        t3 = time.perf_counter()
    n = len(files)
    out = {"read": n / (t1 - t0), "preprocess": n / (t2 - t1), "quality": n / (t3 - t2)}
    out["model"] = _backbone_loop(model_dir, batch_size, 1, 10.0)
    return out


class RSSMonitor:
    """RSS samples of every process in the tree below `pid` (every `interval` s), and the peak total PSS of the tree
    (proportional set size: pages shared by a main process and its forked readers are counted once), sampled every
    `pss_every` RSS samples: the kernel walks a process's page tables for its PSS (~5 ms of CPU per process with
    the model loaded), which at every sample took ~5 % of a 2-core machine from the job being measured."""

    def __init__(self, pid: int, interval: float = 0.2, pss_every: int = 10):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.pss_every = pss_every
        self.samples: dict[int, list] = {}
        self.info: dict[int, tuple] = {}  # pid -> (cmdline, parent pid)
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        tick = 0
        while not self._stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            total, with_pss = 0, tick % self.pss_every == 0
            for p in procs:
                try:
                    mem = p.memory_full_info() if with_pss else p.memory_info()
                    if p.pid not in self.info:
                        self.info[p.pid] = (" ".join(p.cmdline()), p.ppid())
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += getattr(mem, "pss", mem.rss)
                self.samples.setdefault(p.pid, []).append(mem.rss)
            if with_pss:
                self.peak_total = max(self.peak_total, total)
            tick += 1
            time.sleep(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def job_processes(self) -> tuple[list, list]:
        """`(mains, readers)`: RSS sample lists of the job's main processes and of their reader processes."""
        cli = {pid for pid, (cmd, _) in self.info.items()
               if ("anyecg_hf.cli" in cmd or "multiprocessing" in cmd)
               and "accelerate.commands.launch" not in cmd and "torch.distributed.run" not in cmd}
        mains = [pid for pid in cli if "anyecg_hf.cli" in self.info[pid][0] and self.info[pid][1] not in cli]
        readers = [pid for pid in cli if pid not in mains]
        return [self.samples[p] for p in mains], [self.samples[p] for p in readers]


def run_profile(archive: Path, model_dir: Path, out: Path, processes: int, batch_size: int, workers, threads,
                quality: bool = True) -> dict:
    args = ["profile", str(archive), "--model", str(model_dir), "--out", str(out), "--format", "parquet",
            "--batch-size", str(batch_size), "--no-progress", "--overwrite", "--follow-links"]
    if not quality:
        args.append("--no-quality")
    if workers is not None:
        args += ["--workers", str(workers)]
    if threads is not None:
        args += ["--threads", str(threads)]
    if processes == 1:
        cmd = [sys.executable, "-m", "anyecg_hf.cli", *args]
    else:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), "-m", "anyecg_hf.cli", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mon = RSSMonitor(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    mon.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"profile failed ({proc.returncode}):\n{err[-3000:]}")
    manifest = json.loads((out / "_SUCCESS").read_text())
    mains, readers = mon.job_processes()
    return {
        "processes": processes,
        "rows": manifest["rows"],
        "ecgs_per_s": manifest["run"]["ecgs_per_s"],
        "stream_s": manifest["run"]["seconds"],
        "wall_s": wall,
        "peak_rss_main_mib": max(max(m) for m in mains) / 2**20 if mains else float("nan"),
        # typical RSS of a main process while streaming (median of its samples): robust to a momentary spike
        "median_rss_main_mib": max(float(np.median(m)) for m in mains) / 2**20 if mains else float("nan"),
        "peak_rss_worker_mib": max(max(r) for r in readers) / 2**20 if readers else 0.0,
        "peak_rss_total_mib": mon.peak_total / 2**20,
        "model_busy": manifest["run"].get("model_busy", float("nan")),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="files for the throughput runs (default 1000)")
    ap.add_argument("--rss-sizes", default="1000,5000", help="file counts for the memory-flatness check")
    ap.add_argument("--processes", default="1,2", help="process counts to run (default 1,2)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="reader workers per process (default: the CLI's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: the CLI's)")
    ap.add_argument("--rss-model", choices=("full", "tiny"), default="full",
                    help="model of the memory-flatness runs: the full network, or a tiny one (the engine's memory "
                    "growth with N is the same; the runs are preprocessing-bound and much shorter)")
    ap.add_argument("--baseline-seconds", type=float, default=20.0)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: seeded full-size ECGFounder)")
    ap.add_argument("--tmp", type=Path, default=None)
    args = ap.parse_args()

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="anyecg-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    model_dir = args.model or make_model(tmp / "model")
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")

    layouts = [int(x) for x in args.processes.split(",")]
    archive = make_archive(tmp / f"wfdb{args.n}", args.n)
    files = sorted(str(p) for p in archive.rglob("*.hea"))[:200]
    st = stage_throughput(model_dir, files, args.batch_size)
    print("\nper stage, ONE core each (ECGs/s): " + ", ".join(f"{k} {v:.0f}" for k, v in st.items()))
    for q in (True, False):
        stages = ["read", "preprocess", "model"] + (["quality"] if q else [])
        ceiling = cores / sum(1 / st[k] for k in stages)
        print(f"  ceiling of a {cores}-core end-to-end run, quality flags {'on' if q else 'off'}: {ceiling:.0f} ECGs/s "
              f"(every core busy, no overhead) = {ceiling / (cores * st['model']):.0%} of {cores} cores running the "
              "model alone")

    # Each layout's backbone-only baseline is measured right before its end-to-end runs: the load of a assets
    # machine drifts, and the ratio should compare like with like.
    print(f"\nanyecg profile on {args.n} WFDB files -> Parquet; backbone only = the model alone on ready tensors "
          f"(batch {args.batch_size}, float32), same number of processes, best thread setting, measured just before")
    print(f"{'processes':>9} {'backbone':>8} {'quality':>7} {'ECGs/s':>8} {'vs backbone':>11} {'stream s':>8} "
          f"{'wall s':>7} {'RSS main MiB':>12} {'RSS worker MiB':>14} {'PSS total MiB':>13} {'model busy':>10}")
    for p in layouts:
        if p == 1:
            b11 = backbone_throughput(model_dir, args.batch_size, 1, 1, args.baseline_seconds)
            b1c = backbone_throughput(model_dir, args.batch_size, cores, 1, args.baseline_seconds) if cores > 1 else b11
            base, how = max(b11, b1c), f"(1 thread {b11:.1f}, {cores} threads {b1c:.1f})"
        else:
            base = backbone_throughput(model_dir, args.batch_size, max(1, cores // p), p, args.baseline_seconds)
            how = f"({p} x {max(1, cores // p)} thread)"
        for quality in (True, False):
            r = run_profile(archive, model_dir, tmp / f"out-p{p}", p, args.batch_size, args.workers, args.threads,
                            quality)
            print(f"{p:>9} {base:>8.1f} {'on' if quality else 'off':>7} {r['ecgs_per_s']:>8.1f} "
                  f"{r['ecgs_per_s'] / base:>10.0%} {r['stream_s']:>8.1f} {r['wall_s']:>7.1f} "
                  f"{r['peak_rss_main_mib']:>12.0f} {r['peak_rss_worker_mib']:>14.0f} {r['peak_rss_total_mib']:>13.0f} "
                  f"{r['model_busy']:>10.0%}", flush=True)
        print(f"{'':>9} backbone-only {how}")

    sizes = [int(x) for x in args.rss_sizes.split(",") if x]
    if sizes:
        rss_model = model_dir if args.rss_model == "full" else make_tiny_model(tmp / "tiny")
        print(f"\nmemory flatness (1 process, {args.rss_model} model)")
        print(f"{'files':>7} {'ECGs/s':>8} {'RSS main MiB':>12} {'median':>7} {'RSS worker MiB':>14} {'PSS total MiB':>13}")
        rss, med = [], []
        for n in sizes:
            arch = archive if n == args.n else make_archive(tmp / f"wfdb{n}", n)
            r = run_profile(arch, rss_model, tmp / f"out-n{n}", 1, args.batch_size, args.workers, args.threads)
            rss.append(r["peak_rss_main_mib"])
            med.append(r["median_rss_main_mib"])
            print(f"{n:>7} {r['ecgs_per_s']:>8.1f} {r['peak_rss_main_mib']:>12.0f} {r['median_rss_main_mib']:>7.0f} "
                  f"{r['peak_rss_worker_mib']:>14.0f} "
                  f"{r['peak_rss_total_mib']:>13.0f}")
        if len(rss) > 1:
            print(f"main process, {sizes[-1]} vs {sizes[0]} files: peak RSS x{rss[-1] / rss[0]:.2f}, "
                  f"median RSS x{med[-1] / med[0]:.2f}")
    print(f"\n(files in {tmp})")


if __name__ == "__main__":
    main()
