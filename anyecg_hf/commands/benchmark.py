"""`anyecg benchmark ptbxl --data DIR --model M --out DIR`: the six tasks of the PTB-XL benchmark (Strodthoff et al.
2020) with the benchmark's folds and label aggregation, macro AUROC per task printed beside the published rows.

Two ways to get the table:

- zero-shot: `--model M` (e.g. ECGFounder's 150 labels) is evaluated on the test fold of each task through the
  crosswalk (`--label-map ptbxl`); only the task labels the crosswalk reaches are scored, and the table says how many
  (`17/23`), so such a number is not directly the benchmark's.
- fine-tuned: `--prepare-only` writes each task's dataset (train = folds 1-8, validation = 9, test = 10) and prints
  the recipe command per task; `--model TASK=FOLDER` (repeated) then evaluates each task's fine-tuned model.

Each task's evaluation is an ordinary `anyecg evaluate` run, written to `OUT/<task>/`; the table goes to
`OUT/benchmark.csv` and `OUT/benchmark.md`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
_RECIPE = ("accelerate launch recipes/finetune_diagnosis.py --config recipes/configs/diagnosis.yaml "
           "--set data.dataset={data} --set training.output_dir={runs}")


def register(subparsers) -> None:
    p = subparsers.add_parser("benchmark", description="Reproduce a public benchmark table. Available: ptbxl.")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    q = sub.add_parser(
        "ptbxl", help="PTB-XL benchmark (Strodthoff et al. 2020): macro AUROC on fold 10 for the six tasks",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--data", required=True, help="PTB-XL folder (ptbxl_database.csv, scp_statements.csv, records500/)")
    q.add_argument("--model", action="append", default=[], metavar="[TASK=]MODEL",
                   help="model folder or Hub id for every task, or TASK=MODEL for one task (repeat); needed unless "
                   "--prepare-only")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    q.add_argument("--sampling-rate", type=int, choices=(100, 500), default=500)
    q.add_argument("--drop-unlabelled", action=argparse.BooleanOptionalAction, default=True,
                   help="drop records without a label at the task's level, as the benchmark does (default)")
    q.add_argument("--label-map", default="ptbxl",
                   help="crosswalk from the model's labels to PTB-XL statements/classes: 'ptbxl' (default), a CSV, "
                   "or 'none' (match by id/code/name only, for models fine-tuned on the task)")
    q.add_argument("--label-aggregate", choices=("max", "mean"), default="max",
                   help="several model labels mapped to one PTB-XL label: max (default) or mean of their probabilities")
    q.add_argument("--prepare-only", action="store_true",
                   help="write every task's train/validation/test dataset under OUT/datasets/ and print the "
                   "fine-tuning commands; evaluate nothing")
    q.add_argument("--n-bootstrap", type=int, default=0, help="bootstrap resamples of the per-label CIs (default 0)")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--device", default=None)
    q.add_argument("--num-proc", type=int, default=None, help="processes reading records")
    q.add_argument("--cache-dir", default=None, help="datasets cache folder")
    q.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _tasks(text: str) -> list[str]:
    from .errors import CLIError

    tasks = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise CLIError(f"--tasks: unknown task(s) {bad}; choose from {', '.join(TASKS)}.")
    return tasks


def _models(values: list[str], tasks: list[str]) -> dict[str, str]:
    from .errors import CLIError

    default, per_task = None, {}
    for v in values:
        task, sep, model = v.partition("=")
        if sep and task in TASKS:
            per_task[task] = model
        elif default is None:
            default = v
        else:
            raise CLIError(f"--model given twice without a task ({default!r}, {v!r}); use TASK=MODEL.")
    missing = [t for t in tasks if t not in per_task and default is None]
    if missing:
        raise CLIError(f"no --model for task(s) {', '.join(missing)}: give --model M or --model TASK=M.")
    return {t: per_task.get(t, default) for t in tasks}


def _task_table(args, task: str):
    from ..data.ptbxl import ptbxl_benchmark_table, ptbxl_label_table

    if args.drop_unlabelled:
        return ptbxl_benchmark_table(args.data, task, args.sampling_rate)
    table, space = ptbxl_label_table(args.data, args.sampling_rate, task)
    return table, space


def _scored(report_dir: Path) -> tuple[float, int]:
    import pandas as pd

    path = report_dir / "diagnosis" / "table.csv"
    if not path.exists():
        return float("nan"), 0
    table = pd.read_csv(path)
    auroc = table["auroc"].dropna()
    return (float(auroc.mean()) if len(auroc) else float("nan")), int(len(auroc))


def run(args) -> int:
    from datasets import DatasetDict

    from ..data import build_ecg_dataset, save_ecg_dataset, split_by_column
    from ..data.ptbxl import FOLD_SPLITS
    from ..evaluation.ptbxl_benchmark import benchmark_table, format_benchmark_table
    from .errors import CLIError

    tasks = _tasks(args.tasks)
    models = {} if args.prepare_only else _models(args.model, tasks)
    out = Path(args.out)
    build = dict(storage="int16", num_proc=args.num_proc, cache_dir=args.cache_dir, scan=False)
    ours = {}
    for task in tasks:
        try:
            table, space = _task_table(args, task)
        except (ValueError, FileNotFoundError) as err:
            raise CLIError(str(err)) from None
        data_dir = out / "datasets" / task
        if args.prepare_only:
            ds = split_by_column(build_ecg_dataset(args.data, table, space, **build), "strat_fold", FOLD_SPLITS)
            save_ecg_dataset(ds, data_dir)
            print(f"{task}: {len(space)} labels, " + ", ".join(f"{k} {len(v)}" for k, v in ds.items())
                  + f" -> {data_dir}\n  " + _RECIPE.format(data=data_dir, runs=out / "runs" / task))
            continue
        test = table[table["strat_fold"] == "10"].reset_index(drop=True)
        if test.empty:
            raise CLIError(f"{args.data}: no record in fold 10 (the test fold) for task {task!r}.")
        save_ecg_dataset(DatasetDict({"test": build_ecg_dataset(args.data, test, space, **build)}), data_dir)
        code = _evaluate(args, models[task], data_dir, out / task)
        if code:
            return code
        macro, n_scored = _scored(out / task)
        ours[task] = {"macro_auroc": macro, "n_scored": n_scored, "n_labels": len(space)}
    if args.prepare_only:
        print("then: anyecg benchmark ptbxl --data {} --out {} ".format(args.data, out)
              + " ".join(f"--model {t}={out / 'runs' / t / 'final'}" for t in tasks) + " --label-map none")
        return 0
    name = ", ".join(sorted(set(models.values())))
    result = benchmark_table(ours, model_name=name)
    result.to_csv(out / "benchmark.csv", index=False)
    text = format_benchmark_table(result)
    note = ("\n\nMacro AUROC on PTB-XL fold 10; (k/n): labels scored of the task's n labels. Reference rows: "
            "Strodthoff et al. 2020 (helme/ecg_ptbxl_benchmarking).\n")
    (out / "benchmark.md").write_text(text + note, encoding="utf-8")
    print(text + note)
    return 0


def _evaluate(args, model: str, dataset: Path, report: Path) -> int:
    """One `anyecg evaluate` run, with the options of this command."""
    from . import evaluate

    parser = argparse.ArgumentParser(prog="anyecg")
    evaluate.register(parser.add_subparsers(dest="command"))
    argv = ["evaluate", "--model", model, "--dataset", str(dataset), "--split", "test", "--out", str(report),
            "--n-bootstrap", str(args.n_bootstrap), "--batch-size", str(args.batch_size), "--subgroups", "none",
            "--label-aggregate", args.label_aggregate]
    if args.label_map != "none":
        argv += ["--label-map", args.label_map]
    if args.device:
        argv += ["--device", args.device]
    if args.num_proc:
        argv += ["--num-proc", str(args.num_proc)]
    ev = parser.parse_args(argv)
    return int(ev.func(ev) or 0)
