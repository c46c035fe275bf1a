"""PTB-XL (PhysioNet): 21,799 12-lead 10 s ECGs with SCP-ECG statements and ten stratified, patient-disjoint folds.

Layout (as downloaded): `ptbxl_database.csv` (one row per ECG: `ecg_id`, `patient_id`, `age`, `sex` (0 = male,
1 = female), `scp_codes` (a dict literal `{"NORM": 100.0, "SR": 0.0}` of statement -> likelihood), `strat_fold`,
`filename_lr` (100 Hz), `filename_hr` (500 Hz)), `scp_statements.csv` (statement -> description, `diagnostic` /
`form` / `rhythm` flags, `diagnostic_class`, `diagnostic_subclass`) and the WFDB records under `records100/` and
`records500/`.

The official split (Wagner et al., 2020) is folds 1-8 for training, 9 for validation and 10 for testing; that is what
`build_ptbxl` returns.

Benchmark mode (`ptbxl_benchmark_table`, `build_ptbxl(..., benchmark=True)`) follows the PTB-XL benchmark of
Strodthoff et al. (2020, helme/ecg_ptbxl_benchmarking) for its six tasks `BENCHMARK_TASKS`: every statement of a
record counts whatever its likelihood; a task keeps the labels that occur at least once; records without a label at
the task's level are DROPPED (21,430 of 21,837 records keep a diagnostic label, 8,978 a form label, 21,030 a rhythm
label), giving 71 / 44 / 23 / 5 / 19 / 12 labels. The ordinary builder keeps such records as all-negative rows
unless `drop_unlabelled=True`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from ..modeling.label_space import Condition, LabelSpace
from .builder import build_ecg_dataset
from .splits import split_by_column
from .label_table import LabelProblem, LabelTableError

LEVELS = ("all", "diagnostic", "form", "rhythm", "subclass", "superclass")
# The benchmark's task names; subdiagnostic / superdiagnostic are the diagnostic subclass / superclass levels.
BENCHMARK_TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
_LEVEL_ALIASES = {"subdiagnostic": "subclass", "superdiagnostic": "superclass"}
FOLD_SPLITS = {**{str(i): "train" for i in range(1, 9)}, "9": "validation", "10": "test"}


def _flag(value) -> bool:
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return False


def ptbxl_label_space(statements: pd.DataFrame, level: str = "all") -> tuple[LabelSpace, dict[str, list[str]]]:
    """Label space of a PTB-XL level and the statement -> label(s) mapping.

    Args:
        statements: `scp_statements.csv` read with the statement acronym as index.
        level (`str`): `"all"` statements, `"diagnostic"`, `"form"`, `"rhythm"`, or the diagnostic `"subclass"` /
            `"superclass"` aggregations of the PTB-XL benchmark (also by the benchmark's names `"subdiagnostic"` /
            `"superdiagnostic"`).
    """
    level = _LEVEL_ALIASES.get(level, level)
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS + tuple(_LEVEL_ALIASES)}, got {level!r}.")
    mapping: dict[str, list[str]] = {}
    conds: list[Condition] = []
    if level in ("subclass", "superclass"):
        column = "diagnostic_subclass" if level == "subclass" else "diagnostic_class"
        seen = []
        for code, row in statements.iterrows():
            value = row.get(column)
            if _flag(row.get("diagnostic")) and isinstance(value, str) and value.strip():
                mapping[str(code)] = [value.strip()]
                if value.strip() not in seen:
                    seen.append(value.strip())
        conds = [Condition(id=v, name=v, code_system="free-text", code=v, category="diagnostic") for v in seen]
    else:
        for code, row in statements.iterrows():
            if level != "all" and not _flag(row.get(level)):
                continue
            kinds = [k for k in ("diagnostic", "form", "rhythm") if _flag(row.get(k))]
            desc = str(row.get("description", code)) if isinstance(row.get("description"), str) else str(code)
            conds.append(Condition(id=str(code), name=f"{desc} ({code})", code_system="free-text", code=str(code),
                                   category="/".join(kinds) or None))
            mapping[str(code)] = [str(code)]
    return LabelSpace(conds, name=f"ptbxl-{level}"), mapping


def ptbxl_label_table(root, sampling_rate: int = 500, level: str = "all", min_likelihood: float = 0.0,
                      drop_unlabelled: bool = False):
    """The label table of a PTB-XL folder and its label space.

    Args:
        root: folder with `ptbxl_database.csv`, `scp_statements.csv`, `records100/`, `records500/`.
        sampling_rate (`int`): 500 (`filename_hr`) or 100 (`filename_lr`).
        level (`str`): see `ptbxl_label_space`.
        min_likelihood (`float`): keep statements with at least this likelihood (0 keeps all, as the benchmark does).
        drop_unlabelled (`bool`): drop records with no label at this level (the benchmark does; by default they
            stay as all-negative rows).

    Returns:
        `(table, label_space)`: `table` has `record_id` (= `ecg_id`), `patient_id`, `codes`, `age`, `sex`,
        `strat_fold`, `path` (WFDB record relative to `root`).
    """
    root = Path(root)
    if sampling_rate not in (100, 500):
        raise ValueError(f"PTB-XL has 100 Hz and 500 Hz records, not {sampling_rate} Hz.")
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} not found: is {root} a PTB-XL folder?")
    db = pd.read_csv(root / "ptbxl_database.csv")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    space, mapping = ptbxl_label_space(statements, level)
    file_col = "filename_hr" if sampling_rate == 500 else "filename_lr"
    problems, rows = [], []
    for i, r in db.reset_index(drop=True).iterrows():
        rid = str(int(r["ecg_id"]))
        try:
            scp = ast.literal_eval(r["scp_codes"]) if isinstance(r["scp_codes"], str) else {}
            if not isinstance(scp, dict):
                raise ValueError
        except (ValueError, SyntaxError):
            problems.append(LabelProblem("invalid scp_codes", i, rid, f"scp_codes {r['scp_codes']!r} is not a dict literal"))
            continue
        labels = []
        for code, likelihood in scp.items():
            if str(code) not in statements.index:
                problems.append(LabelProblem("code not in the label space", i, rid, f"statement {code!r} is not in scp_statements.csv"))
            elif float(likelihood) >= min_likelihood:
                labels.extend(mapping.get(str(code), []))
        sex = {0: "M", 1: "F"}.get(int(r["sex"]), "") if pd.notna(r.get("sex")) else ""
        rows.append({
            "record_id": rid,
            "patient_id": str(int(r["patient_id"])) if pd.notna(r.get("patient_id")) else rid,
            "codes": ",".join(dict.fromkeys(labels)),
            "age": "" if pd.isna(r.get("age")) else str(r["age"]),
            "sex": sex,
            "strat_fold": str(int(r["strat_fold"])),
            "path": str(r[file_col]),
        })
    if problems:
        raise LabelTableError(str(root / "ptbxl_database.csv"), problems, csv_lines=True)
    table = pd.DataFrame(rows)
    if drop_unlabelled:
        table = table[table["codes"] != ""].reset_index(drop=True)
    return table, space


def ptbxl_benchmark_table(root, task: str, sampling_rate: int = 500):
    """The label table and label space of one task of the PTB-XL benchmark (see the module docstring).

    Args:
        task (`str`): one of `BENCHMARK_TASKS`.

    Returns:
        `(table, label_space)` as `ptbxl_label_table`, without unlabelled records, the label space restricted to the
        labels that occur (in the file's statement order); `label_space.name` is `ptbxl-<task>`.
    """
    if task not in BENCHMARK_TASKS:
        raise ValueError(f"PTB-XL benchmark task must be one of {BENCHMARK_TASKS}, got {task!r}.")
    table, space = ptbxl_label_table(root, sampling_rate, task, min_likelihood=0.0, drop_unlabelled=True)
    present = {c for cell in table["codes"] for c in cell.split(",") if c}
    space = LabelSpace([c for c in space if c.id in present], name=f"ptbxl-{task}")
    return table, space


def build_ptbxl(root, sampling_rate: int = 500, level: str = "all", min_likelihood: float = 0.0, *,
                drop_unlabelled: bool = False, benchmark: bool = False, **kwargs):
    """Build PTB-XL as a `DatasetDict` with the official splits: train (folds 1-8), validation (9), test (10).

    Args:
        root, sampling_rate, level, min_likelihood, drop_unlabelled: see `ptbxl_label_table`.
        benchmark (`bool`): the benchmark's task (`level` one of `BENCHMARK_TASKS`): `ptbxl_benchmark_table`.
        kwargs: passed to `build_ecg_dataset` (`storage`, `num_proc`, `cache_dir`, `return_report`, ...).
    """
    if benchmark:
        table, space = ptbxl_benchmark_table(root, level, sampling_rate)
    else:
        table, space = ptbxl_label_table(root, sampling_rate, level, min_likelihood, drop_unlabelled)
    return_report = kwargs.pop("return_report", False)
    ds, report = build_ecg_dataset(root, table, space, return_report=True, scan=False, **kwargs)
    dsd = split_by_column(ds, "strat_fold", FOLD_SPLITS)
    return (dsd, report) if return_report else dsd
