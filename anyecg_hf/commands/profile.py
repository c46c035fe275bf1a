"""`anyecg profile PATHS...`: health profiles of ECG files, from a handful to a whole archive.

One implementation (`anyecg_hf.archive`) serves both: `anyecg profile x.hea --out profile.csv` and
`accelerate launch -m anyecg_hf.cli profile /archive --out results/ --format parquet --resume`. `anyecg embed`
(`commands/embed.py`) shares the options defined here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

from ..runtime.precision import add_precision_argument, precision_from_args

EXIT_CODES = """\
exit codes (for scripts):
  0    every input was read; or some inputs were unreadable but at least one was processed (the unreadable
       ones are listed at the end and in the errors table: OUT/_errors/ or OUT.errors.csv)
  1    no input could be read (every one failed)
  2    usage error: bad option, no ECG files found, OUT holds an earlier run (use --resume or --overwrite),
       OUT is in use by another job (named: pid, host, start time), --resume with settings that differ
       from the first run's (model, revision, preprocessing, windowing, aggregation, thresholds, units,
       precision, inputs: each difference named)
  3    the model could not be loaded (not cached while offline; weights that miss tensors, hold NaN/inf,
       or cannot be decoded)
  4    the output cannot be written (disk full, read-only, no permission); rows written so far are kept:
       make room and rerun with --resume
  130  interrupted (Ctrl-C); rerun with --resume to continue
"""

DISTRIBUTED = """\
many processes / GPUs / nodes (each process takes a disjoint slice; rank 0 merges and prints):
  accelerate launch -m anyecg_hf.cli {task} /archive --model M --out results/ --format parquet --resume
  accelerate launch --multi_gpu --num_processes 2 -m anyecg_hf.cli {task} ...   # 2 processes (CPU: gloo)
  torchrun --nproc_per_node 2 -m anyecg_hf.cli {task} ...
  (`accelerate launch --cpu --num_processes N` starts N processes only through MPI; on CPU use the lines above.)
"""


def _csv_list(text: str | None):
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _horizons(text: str | None):
    if text is None:
        return None
    try:
        return [float(h) for h in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--horizons takes years separated by commas (e.g. 1,5,10), got {text!r}")


def add_job_arguments(p: argparse.ArgumentParser, task: str) -> None:
    """Options shared by `profile` and `embed`."""
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="ECG files and/or folders (walked recursively; a WFDB record is read once through its .hea)")
    src = p.add_argument_group("inputs")
    src.add_argument("--manifest", metavar="FILE",
                     help="CSV or Parquet listing the inputs, one per row (column 'path', else 'record_id', else the "
                     "first); relative entries are relative to --root or the manifest's folder")
    src.add_argument("--manifest-column", metavar="NAME", help="manifest column to read")
    src.add_argument("--root", metavar="DIR", help="folder that relative manifest entries are relative to")
    src.add_argument("--extensions", metavar="EXTS",
                     help="extensions kept when walking folders, e.g. '.hea,.xml' ('*' = every file; default: what "
                     "the readers recognise)")
    src.add_argument("--follow-links", action="store_true",
                     help="read links in walked folders that lead outside the folder (a folder of links to a dataset; "
                     "default: they are not read and are listed in the errors table)")
    src.add_argument("--input-format", metavar="FMT",
                     help="read every input as this format (wfdb, muse, philips, hl7, dicom, scp, edf, csv, npy, npz)")
    src.add_argument("--sampling-rate", type=float, metavar="HZ", help="rate of inputs that do not state it (CSV, .npy)")
    src.add_argument("--lead-names", metavar="LEADS", help="lead names of unlabelled inputs, e.g. I,II,III,aVR,...")
    src.add_argument("--units", metavar="UNIT", help="units of unitless inputs (mV, uV, V)")
    src.add_argument("--limit", type=int, metavar="N", help="only the first N inputs (a dry run)")

    m = p.add_argument_group("model")
    m.add_argument("--model", metavar="M",
                   help="model folder, Hub id or ECGFounder .pth (default: the public 12-lead ECGFounder, "
                   "downloaded and converted on first use)")
    m.add_argument("--revision", metavar="REV", help="Hub revision (branch, tag or commit)")
    m.add_argument("--device", metavar="DEV",
                   help="cpu, cuda, cuda:1, ... (default: one GPU per process when there are GPUs, else CPU)")
    add_precision_argument(m)
    m.add_argument("--preprocess-on", choices=("auto", "cpu", "device"), default="auto",
                   help="where filtering / resampling / z-score run: auto (default) = on the model's device when it "
                   "is a GPU (the readers then only read files), else in the CPU readers; device forces it")
    m.add_argument("--batch-size", type=int, default=64, metavar="N", help="ECGs per forward pass (default 64)")
    m.add_argument("--windowing", choices=("sliding", "first", "center"), default="sliding",
                   help="records longer than the model's input (10 s): windows over the whole record (sliding, as the "
                   "pipelines do; default), or only the first / center window")
    m.add_argument("--aggregate", choices=("mean", "max"), default="mean",
                   help="how the windows of a long record are combined: mean or max probability (default mean)")

    o = p.add_argument_group("output")
    default_out = "stdout" if task == "profile" else "stdout"
    o.add_argument("--out", metavar="OUT",
                   help=f"a .csv/.json file (one row per record{' and condition' if task == 'profile' else ''}) or "
                   f"a folder of Parquet shards (one row per record); default: CSV on {default_out}")
    o.add_argument("--format", choices=("csv", "json", "parquet", "fhir") if task == "profile" else ("csv", "json", "parquet"),
                   help="output format (default: from --out: .csv, .json, else a Parquet folder)"
                   + ("; fhir: a folder of FHIR R4 bundles, one per ECG (DiagnosticReport + one Observation per "
                      "reported condition, SNOMED-CT coded where known; --top-k defaults to 10)" if task == "profile" else ""))
    o.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: skip inputs already in OUT's completed shards")
    o.add_argument("--overwrite", action="store_true", help="delete the results of an earlier run in OUT first")
    o.add_argument("--retry-errors", action="store_true", help="with --resume, try the inputs that failed before again")
    o.add_argument("--chunk-size", type=int, default=4096, metavar="N",
                   help="rows per Parquet shard file; also the most work a kill loses per process (default 4096)")
    o.add_argument("--keep-parts", action="store_true", help="keep OUT.parts/ (the Parquet shards) after writing a CSV/JSON")

    r = p.add_argument_group("runtime")
    r.add_argument("--workers", type=int, metavar="N",
                   help="reader processes per process, overlapping reading + preprocessing with the model "
                   "(0 = read in the main process; default on CPU: 0 with 1 core per process, 2 with 2 cores (they "
                   "then pause while the model runs), else ~1 per 4 cores; on GPU the process's cores)")
    r.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per process (default on CPU: its cores minus its readers, or all of its cores "
                   "when the readers take every core)")
    r.add_argument("--processes", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine: relaunches the command under `accelerate launch "
                   "--num_processes N` (gloo on CPU). On 2 cores, --processes 2 and the default single process run "
                   "equally fast (docs/archive.md); default 1")
    r.add_argument("--no-quality", dest="quality", action="store_false",
                   help="skip the signal-quality flags (flat, NaN-filled, clipped, noisy leads, electrode reversal)")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "profile",
        description=textwrap.fill(
            "Profile ECG files: the probability of each condition of the model's label space (and future risks for "
            "models with a risk head), with signal-quality warnings. Writes CSV/JSON with one row per record and "
            "condition, or sharded Parquet with one row per record. Unreadable files are reported and skipped.", 100),
        epilog=EXIT_CODES + "\n" + DISTRIBUTED.format(task="profile") + """
examples:
  anyecg profile examples/ecg/*.hea --model ./my-model --top-k 10 --out profile.csv
  anyecg profile /archive/ecgs --out results/ --format parquet --workers 2 --resume
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p, "profile")
    g = p.add_argument_group("profile")
    g.add_argument("--top-k", type=int, metavar="K", help="CSV/JSON: only the K highest diagnoses (and risks) per record")
    g.add_argument("--threshold", type=float, metavar="P",
                   help="decision threshold for 'positive' (default: each condition's own, else 0.5)")
    g.add_argument("--horizons", type=_horizons, metavar="YEARS", help="CSV/JSON: risk horizons to report, e.g. 1,5,10")
    p.set_defaults(func=lambda args: run(args, "profile"))


def _out_format(args) -> str:
    if args.format:
        return args.format
    if args.out in (None, "-"):
        return "csv"
    ext = os.path.splitext(args.out)[1].lower()
    return {".csv": "csv", ".json": "json"}.get(ext, "parquet")


def _relaunch(args) -> int:
    """Run this same command in `args.processes` processes under `accelerate launch` (multi-process, gloo on CPU)
    and return its exit code; `--processes` is dropped from the children's arguments."""
    import socket

    argv = list(args.raw_argv)
    for i, a in enumerate(argv):
        if a == "--processes":
            del argv[i:i + 2]
            break
        if a.startswith("--processes="):
            del argv[i]
            break
    with socket.socket() as s:  # a free port for the rendezvous, so two jobs on one machine do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(args.processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           "-m", "anyecg_hf.cli", *argv]
    return subprocess.call(cmd)


def run(args, task: str) -> int:
    """Build the job from the parsed arguments, run it, map failures to the documented exit codes."""
    from .errors import CLIError, check_model_argument

    if not args.paths and not args.manifest:
        raise CLIError("give ECG files or folders, or --manifest FILE")
    missing = [p for p in args.paths if not os.path.exists(p) and not os.path.exists(p + ".hea")]
    if args.paths and len(missing) == len(args.paths) and not args.manifest:
        raise CLIError(f"no such file or folder: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if args.manifest and not os.path.isfile(args.manifest):
        raise CLIError(f"no such manifest: {args.manifest}")
    for name in ("batch_size", "chunk_size"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be >= 1")
    fmt = _out_format(args)
    to_stdout = args.out in (None, "-")
    if args.processes < 1:
        raise CLIError("--processes must be >= 1")
    if to_stdout and (fmt in ("parquet", "fhir") or args.resume):
        raise CLIError("Parquet and FHIR output and --resume need --out")
    if fmt == "fhir" and getattr(args, "top_k", None) is None:
        args.top_k = 10  # one Observation per reported condition: the 10 most probable, not all of them
    check_model_argument(args.model, args.revision)  # a missing folder fails now, not after the imports and the scan

    from ..archive import JobError, JobSettings, run_job
    from ..archive.distributed import launched_world_size

    if to_stdout and max(launched_world_size(), args.processes) > 1:
        raise CLIError("several processes need --out (a shared file or folder)")
    if args.processes > 1 and launched_world_size() <= 1:
        return _relaunch(args)
    read_kwargs = {k: v for k, v in (("format", args.input_format), ("sampling_rate", args.sampling_rate),
                                     ("lead_names", _csv_list(args.lead_names)), ("units", args.units)) if v is not None}
    tmp = tempfile.mkdtemp(prefix="anyecg-") if to_stdout else None
    out = os.path.join(tmp, f"{task}.{fmt}") if to_stdout else args.out
    settings = JobSettings(
        task=task, inputs=list(args.paths), out=out, format=fmt, manifest=args.manifest, manifest_root=args.root,
        manifest_column=args.manifest_column, extensions=args.extensions, model=args.model, revision=args.revision,
        device=args.device, batch_size=args.batch_size, workers=args.workers, chunk_size=args.chunk_size,
        resume=args.resume, overwrite=args.overwrite, retry_errors=args.retry_errors, limit=args.limit,
        aggregate=args.aggregate, windowing=args.windowing, top_k=getattr(args, "top_k", None), threshold=getattr(args, "threshold", None),
        horizons=getattr(args, "horizons", None), read_kwargs=read_kwargs, quality=args.quality,
        precision=precision_from_args(args), preprocess_on=args.preprocess_on, threads=args.threads, progress=args.progress, keep_parts=args.keep_parts,
        follow_links=args.follow_links,
    )
    try:
        result = run_job(settings)
        if to_stdout:
            with open(out, encoding="utf-8") as f:
                shutil.copyfileobj(f, sys.stdout)
    except JobError as err:
        if err.quiet:
            return err.code
        raise CLIError(str(err), code=err.code) from None
    except ValueError as err:  # e.g. --horizons not offered by the model
        raise CLIError(str(err), code=2) from None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if result.rows_total == 0 and result.errors_total > 0:
        return 1
    return 0
