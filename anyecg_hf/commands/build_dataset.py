"""`anyecg build-dataset --records DIR --labels labels.csv --out DATASET`: a folder of ECG files + a label table ->
a `datasets` dataset on disk (Arrow, or Parquet shards), validated before any file is read."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-dataset",
        description="Read every ECG named in a label table (CSV/TSV/Parquet: record_id; a 'codes' column or one 0/1 "
        "column per condition; optional time_<condition>/event_<condition>, patient_id, path), store the signals "
        "compactly and write a datasets folder. The table is checked first: every offending row (missing records, "
        "codes outside the label space, duplicate ids, negative event times, ...) is listed before anything is built. "
        "Unreadable files are skipped and listed in build_report.json.",
    )
    p.add_argument("--records", required=True, help="folder of ECG files (any format anyecg reads; searched recursively)")
    p.add_argument("--labels", default=None, help="label table (.csv/.tsv/.parquet); optional with --layout cinc")
    p.add_argument("--targets", default=None,
                   help="targets folder of `anyecg build-targets` (EHR phecode targets, kept sparse: batches are "
                   "expanded on the fly); instead of --labels")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--layout", choices=("table", "cinc", "ptbxl"), default="table",
                   help="'table' (default), 'cinc' (CinC 2020/2021: labels from the headers' # Dx codes) or 'ptbxl' "
                   "(ptbxl_database.csv + official folds 1-8/9/10)")
    p.add_argument("--label-space", default=None,
                   help="CSV/JSON label space (default: the codes/columns in the table); with --layout cinc also "
                   "'scored' (the 26 classes scored in the CinC 2021 Challenge, equivalent codes merged)")
    p.add_argument("--risk-label-space", default=None, help="CSV/JSON label space of the time_/event_ columns")
    p.add_argument("--regression-columns", default=None, help="comma-separated continuous targets (e.g. age)")
    p.add_argument("--unknown-codes", choices=("error", "ignore"), default=None,
                   help="a code outside the label space is an error (default for tables) or ignored (default for cinc)")
    p.add_argument("--id-column", default=None, help="record id column (default: record_id, ecg_id, id, ...)")
    p.add_argument("--codes-column", default=None, help="codes column (default: codes, dx, labels, ...)")
    p.add_argument("--patient-column", default=None, help="patient id column (default: patient_id, patient, subject_id)")
    p.add_argument("--split", default=None,
                   help="patient-level split fractions, e.g. train=0.8,validation=0.1,test=0.1; or the name of a table "
                   "column whose values name the splits")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split")
    p.add_argument("--storage", choices=("int16", "float16", "float32"), default="int16",
                   help="signal storage (int16 + per-lead gain by default)")
    p.add_argument("--format", choices=("arrow", "parquet"), default="arrow",
                   help="'arrow' (save_to_disk) or 'parquet' shards (Hub layout, streamable)")
    p.add_argument("--num-shards", type=int, default=None, help="shards per split")
    p.add_argument("--num-proc", type=int, default=None, help="processes reading records")
    p.add_argument("--sampling-rate", type=int, choices=(100, 500), default=500, help="PTB-XL: 100 or 500 Hz records")
    p.add_argument("--ptbxl-level", default="all",
                   help="PTB-XL labels: all, diagnostic, form, rhythm, subclass (subdiagnostic) or superclass "
                   "(superdiagnostic)")
    p.add_argument("--drop-unlabelled", action="store_true",
                   help="PTB-XL: drop records without a label at --ptbxl-level (the benchmark does; see "
                   "`anyecg benchmark ptbxl`)")
    p.add_argument("--labels-from", choices=("table", "statements"), default="table",
                   help="'table' (--labels or the layout's own labels, default) or 'statements': label every file "
                   "from the machine statements it stores (GE MUSE / CardioSoft, Philips, HL7 aECG, DICOM, SCP); "
                   "writes statements.csv and statement_coverage.json beside the dataset")
    p.add_argument("--statement-target", choices=("ecgfounder", "snomed", "ptbxl"), default="ecgfounder",
                   help="with --labels-from statements: ECGFounder's 150 labels (default), or the SNOMED-CT / PTB-XL "
                   "codes they imply through the crosswalk")
    p.add_argument("--include-serial", action="store_true",
                   help="with --labels-from statements: label serial-comparison statements ('... NOW EVIDENT IN') "
                   "with ECGFounder's serial labels (default: marked, no label)")
    p.add_argument("--cache-dir", default=None, help="datasets cache folder")
    p.set_defaults(func=run)


def _split_arg(text):
    if text is None:
        return None
    if "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--split: {part!r} is not name=fraction") from None
    return out


def _from_statements(args, split, common):
    """`--labels-from statements`: the label table from each file's own machine statements."""
    from ..data import build_ecg_dataset
    from ..data.statements import statement_label_table

    if args.labels or args.layout != "table" or args.label_space or getattr(args, "targets", None):
        raise ValueError("--labels-from statements takes the labels from the files; drop --labels, --targets, "
                         "--layout and --label-space (choose the labels with --statement-target).")
    table, label_space, listing, coverage = statement_label_table(
        args.records, target=args.statement_target, include_serial=args.include_serial)
    ds, report = build_ecg_dataset(args.records, table, label_space, split=split, seed=args.seed, **common)
    return ds, report, (listing, coverage)


def run(args) -> int:
    from .errors import CLIError
    from ..data import LabelTableError, build_cinc, build_ecg_dataset, build_ptbxl, save_ecg_dataset
    from ..modeling import LabelSpace

    statements = None
    try:
        split = _split_arg(args.split)
        common = dict(storage=args.storage, num_proc=args.num_proc, cache_dir=args.cache_dir, return_report=True)
        if args.label_space == "scored" and args.layout == "cinc":
            label_space = "scored"
        else:
            label_space = LabelSpace.load(args.label_space) if args.label_space else None
        if args.labels_from == "statements":
            ds, report, statements = _from_statements(args, split, common)
        elif args.targets:
            if args.labels or args.layout != "table":
                raise ValueError("--targets replaces --labels (and needs --layout table).")
            from ..ehr.dataset import build_ehr_dataset

            ds, report = build_ehr_dataset(args.records, args.targets, split=split, seed=args.seed, **common)
        elif args.layout == "cinc":
            if args.labels:
                raise ValueError("--layout cinc takes its labels from the headers; drop --labels or use --layout table.")
            ds, report = build_cinc(args.records, label_space, unknown_codes=args.unknown_codes or "ignore",
                                    split=split, seed=args.seed, **common)
        elif args.layout == "ptbxl":
            ds, report = build_ptbxl(args.records, sampling_rate=args.sampling_rate, level=args.ptbxl_level,
                                     drop_unlabelled=args.drop_unlabelled, **common)
        else:
            if not args.labels:
                raise ValueError("--labels is required (or use --layout cinc / ptbxl, or --labels-from statements).")
            regression = [c.strip() for c in args.regression_columns.split(",")] if args.regression_columns else None
            ds, report = build_ecg_dataset(
                args.records, args.labels, label_space, args.risk_label_space, split=split, seed=args.seed,
                regression_columns=regression, unknown_codes=args.unknown_codes or "error", id_column=args.id_column,
                codes_column=args.codes_column, patient_column=args.patient_column, **common,
            )
    except LabelTableError as err:
        raise CLIError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    out = save_ecg_dataset(ds, args.out, format=args.format, num_shards=args.num_shards)
    report.save(out / "build_report.json")
    if statements is not None:
        from ..data.statements import write_statement_report

        write_statement_report(out, *statements)
        cov = statements[1]
        print(f"statements: {cov['records_labelled']} of {cov['records']} files labelled; "
              + ", ".join(f"{n} {k}" for k, n in cov["statements"].items())
              + f"; {cov['mapped_fraction']:.1%} of clinical statements mapped (statements.csv, "
              "statement_coverage.json)")
    sizes = {k: len(v) for k, v in ds.items()} if hasattr(ds, "items") else {"train": len(ds)}
    print(f"wrote {out} ({args.format}): {json.dumps(sizes)}; {report.summary()}")
    for s in report.skipped[:20]:
        print(f"  skipped {s['record_id']} ({s['path']}): {s['reason']}")
    if len(report.skipped) > 20:
        print(f"  ... and {len(report.skipped) - 20} more in {out / 'build_report.json'}")
    return 0
