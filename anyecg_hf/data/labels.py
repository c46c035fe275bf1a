"""Label tables: read a CSV/Parquet table of per-record targets and validate ALL of it before anything trains.

A label table has one row per ECG record:

* `record_id` (or `ecg_id`, `id`, `record`, `filename`): the record's file stem (`E07500` for `E07500.hea`).
* diagnosis labels, in one of two layouts:
    - **codes**: a `codes` column (or `dx`, `labels`, `diagnoses`) holding the positive conditions, separated by
      `,` `;` `|` or spaces. Each code is matched to a condition of the label space by id, then code, then name.
      Every condition not listed is a known negative; an empty cell means "no condition".
    - **wide**: one column per condition (header = condition id, code or name) holding 1 / 0, or blank for
      "unknown" (that entry gets `label_mask = 0` and is left out of the loss and the metrics).
* optional future-risk columns per condition of the risk label space: `time_<condition>` (years from the ECG to
  onset or censoring, 0-150) and `event_<condition>` (1 = onset observed, 0 = censored; an event at time 0 is
  refused: a condition present at the ECG is a diagnosis label). A condition whose time or
  event is blank is unknown for that person (`at_risk_mask = 0`).
* optional `patient_id` (or `patient`, `subject_id`), used for patient-level splits and bootstrap resampling.
* optional `path`: the record's file, relative to the records folder (else found by record id); a path that leads
  outside the records folder (absolute, `..`, a link) is refused.
* optional continuous traits named in `regression_columns` (blank = unknown).

`read_label_table` checks every row and raises one `LabelTableError` that lists every offending row (records that
do not exist, codes not in the label space, duplicate ids, negative or non-numeric event times, values that are
not 0/1, ...), so a user fixes the table once instead of once per crash.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..modeling.label_space import Condition, LabelSpace

ID_COLUMNS = ("record_id", "ecg_id", "id", "record", "filename", "record_name")
PATIENT_COLUMNS = ("patient_id", "patient", "subject_id", "subject")
CODES_COLUMNS = ("codes", "dx", "labels", "diagnoses", "conditions")
PATH_COLUMNS = ("path", "file", "filepath")
# Columns copied to the dataset as metadata when present (never taken for condition columns).
METADATA_COLUMNS = ("age", "sex", "site", "split", "fold", "strat_fold", "acquisition_time")

_SEPARATORS = re.compile(r"[,;|\s]+")
_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f"}
MAX_LISTED_PER_KIND = 1000
MAX_EVENT_YEARS = 150.0  # no follow-up is longer than a human life: 1e9 years is a unit or parsing error


@dataclass(frozen=True)
class LabelProblem:
    """One offending row (or column) of a label table.

    Args:
        kind (`str`): short category (`"duplicate id"`, `"missing record"`, `"unknown code"`, ...).
        row (`int` or `None`): 0-based data row (`None` for a problem about a column).
        record_id (`str` or `None`): the row's record id.
        message (`str`): what is wrong.
    """

    kind: str
    row: int | None
    record_id: str | None
    message: str


class LabelTableError(ValueError):
    """The label table has problems; `problems` lists every one (the message shows them grouped by kind).

    Row numbers in the message are 1-based data rows; for CSV files the line number (header = line 1) is given too.
    """

    def __init__(self, source: str, problems: list[LabelProblem], csv_lines: bool = False):
        self.source = source
        self.problems = list(problems)
        by_kind: dict[str, list[LabelProblem]] = {}
        for p in self.problems:
            by_kind.setdefault(p.kind, []).append(p)
        lines = [f"Label table {source}: {len(self.problems)} problem(s) found; nothing was built or trained."]
        for kind, items in by_kind.items():
            lines.append(f"  {kind} ({len(items)}):")
            for p in items[:MAX_LISTED_PER_KIND]:
                if p.row is None:
                    where = ""
                else:
                    where = f"row {p.row + 1}" + (f" (line {p.row + 2})" if csv_lines else "")
                    where += f" [{p.record_id}]" if p.record_id is not None else ""
                    where += ": "
                lines.append(f"    {where}{p.message}")
            if len(items) > MAX_LISTED_PER_KIND:
                lines.append(f"    ... and {len(items) - MAX_LISTED_PER_KIND} more (see LabelTableError.problems)")
        super().__init__("\n".join(lines))

    @property
    def rows(self) -> list[int]:
        """Sorted 0-based rows with at least one problem."""
        return sorted({p.row for p in self.problems if p.row is not None})


@dataclass
class LabelTable:
    """A validated label table, as arrays aligned with `record_ids`.

    Attributes:
        record_ids (`list[str]`): one per row, unique.
        patient_ids (`list[str]`): the patient of each row (the record id when the table has none).
        paths (`list[str | None]`): file of each record when the table has a `path` column.
        label_space (`LabelSpace` or `None`): diagnosis conditions (columns of `labels`).
        labels, label_mask (`np.ndarray` `(n, n_labels)`, float32 / bool): 0/1 targets and known-entry mask.
        risk_label_space (`LabelSpace` or `None`): conditions of `event_times` / `events`.
        event_times, events, at_risk_mask (`np.ndarray` `(n, n_risk)`): years (NaN unknown), 0/1, known mask.
        regression_names (`list[str]` or `None`), regression_targets (`(n, k)`, NaN unknown), regression_mask.
        metadata (`dict[str, list]`): extra per-row columns kept (age, sex, site, ...).
        source (`str`): where the table came from.
        ignored_codes (`Counter`): codes dropped because `unknown_codes="ignore"`.
    """

    record_ids: list[str]
    patient_ids: list[str]
    paths: list[str | None]
    label_space: LabelSpace | None = None
    labels: np.ndarray | None = None
    label_mask: np.ndarray | None = None
    risk_label_space: LabelSpace | None = None
    event_times: np.ndarray | None = None
    events: np.ndarray | None = None
    at_risk_mask: np.ndarray | None = None
    regression_names: list[str] | None = None
    regression_targets: np.ndarray | None = None
    regression_mask: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    source: str = "<table>"
    ignored_codes: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.record_ids)

    def targets(self, i: int) -> dict:
        """Row `i`'s target columns as the dataset stores them (lists, JSON/Arrow-friendly)."""
        out: dict = {}
        if self.labels is not None:
            out["labels"] = self.labels[i].tolist()
            out["label_mask"] = self.label_mask[i].tolist()
        if self.event_times is not None:
            out["event_times"] = self.event_times[i].tolist()
            out["events"] = self.events[i].tolist()
            out["at_risk_mask"] = self.at_risk_mask[i].tolist()
        if self.regression_targets is not None:
            out["regression_targets"] = self.regression_targets[i].tolist()
            out["regression_mask"] = self.regression_mask[i].tolist()
        return out

    def select(self, rows) -> "LabelTable":
        """A table restricted to `rows` (indices)."""
        rows = list(rows)
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return LabelTable(
            record_ids=[self.record_ids[i] for i in rows], patient_ids=[self.patient_ids[i] for i in rows],
            paths=[self.paths[i] for i in rows], label_space=self.label_space, labels=take(self.labels),
            label_mask=take(self.label_mask), risk_label_space=self.risk_label_space, event_times=take(self.event_times),
            events=take(self.events), at_risk_mask=take(self.at_risk_mask), regression_names=self.regression_names,
            regression_targets=take(self.regression_targets), regression_mask=take(self.regression_mask),
            metadata={k: [v[i] for i in rows] for k, v in self.metadata.items()}, source=self.source,
            ignored_codes=self.ignored_codes,
        )


# ----------------------------------------------------------------------------------------------------------- reading
def load_table(table) -> tuple[pd.DataFrame, str, bool]:
    """Read a CSV / TSV / Parquet file (or take a DataFrame) with every cell as text or NaN.

    Returns `(frame, source, is_csv)`.
    """
    if isinstance(table, pd.DataFrame):
        frame = table.copy()
        return frame.reset_index(drop=True), "<DataFrame>", False
    path = os.fspath(table)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Label table {path} does not exist.")
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            return pd.read_parquet(path).reset_index(drop=True), path, False
        sep = "\t" if lower.endswith((".tsv", ".tab")) else ","
        # Text everywhere: codes such as 164889003 must not become floats, ids such as 00123 must keep their zeros.
        frame = pd.read_csv(path, sep=sep, dtype=str, skipinitialspace=True, comment=None)
    except (ValueError, OSError, ImportError) as err:
        raise ValueError(f"Cannot read label table {path}: {err}") from err
    return frame, path, True


def _find_column(frame: pd.DataFrame, given: str | None, candidates, what: str, required: bool) -> str | None:
    if given is not None:
        if given not in frame.columns:
            raise ValueError(f"{what} column {given!r} is not in the label table (columns: {list(frame.columns)}).")
        return given
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    if required:
        raise ValueError(
            f"The label table has no {what} column (looked for {', '.join(candidates)}; columns: "
            f"{list(frame.columns)}). Name it with id_column=..."
        )
    return None


def _is_blank(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _text(value) -> str:
    """Cell -> text without a spurious '.0' for integral floats (Parquet ints read as floats with NaNs)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_binary(value) -> float | None:
    """1/0/true/false/yes/no -> 1.0/0.0; blank -> NaN; anything else -> None (invalid)."""
    if _is_blank(value):
        return float("nan")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if float(value) in (0.0, 1.0) else None
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return None


def _parse_float(value) -> float | None:
    """Number -> float; blank -> NaN; text that is not a number -> None."""
    if _is_blank(value):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _condition_keys(space: LabelSpace) -> dict[str, int]:
    """Lookup of every spelling of a condition (id > code > name, exact then case-insensitive) -> index."""
    keys: dict[str, int] = {}
    for getter in (lambda c: c.name, lambda c: c.code, lambda c: c.id):  # later wins: id has priority
        for i, c in enumerate(space):
            k = getter(c)
            if k:
                keys[str(k).strip().lower()] = i
    for getter in (lambda c: c.name, lambda c: c.code, lambda c: c.id):
        for i, c in enumerate(space):
            k = getter(c)
            if k:
                keys[str(k).strip()] = i
    return keys


def _lookup(keys: dict[str, int], code: str) -> int | None:
    return keys.get(code, keys.get(code.lower()))


def split_codes(cell) -> list[str]:
    """Codes of one `codes` cell (separators: `,` `;` `|` whitespace); blank -> []."""
    if _is_blank(cell):
        return []
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [_text(c) for c in cell if not _is_blank(c)]
    return [c for c in _SEPARATORS.split(_text(cell)) if c]


def read_label_table(
    table,
    label_space: LabelSpace | None = None,
    risk_label_space: LabelSpace | None = None,
    *,
    available_records=None,
    id_column: str | None = None,
    patient_column: str | None = None,
    path_column: str | None = None,
    codes_column: str | None = None,
    label_columns=None,
    regression_columns=None,
    time_prefix: str = "time_",
    event_prefix: str = "event_",
    unknown_codes: str = "error",
    code_aliases: dict | None = None,
    code_system: str = "free-text",
    records_dir: str | os.PathLike | None = None,
) -> LabelTable:
    """Read and validate a label table (see the module docstring for the layout).

    Args:
        table: path of a `.csv` / `.tsv` / `.parquet` file, or a `pandas.DataFrame`.
        label_space (`LabelSpace`, *optional*): diagnosis conditions. `None`: built from the table (every distinct
            code, most frequent first, or every 0/1 column), with `code_system` as code system.
        risk_label_space (`LabelSpace`, *optional*): conditions with `time_*` / `event_*` columns. `None`: built from
            the `time_<name>` columns found (none -> no risk targets).
        available_records (*optional*): record ids that exist (e.g. the stems found in the records folder); a row
            naming another record is an error. `None` skips that check.
        id_column, patient_column, path_column, codes_column: column names when they are not the usual ones.
        label_columns (`list[str]`, *optional*): wide layout: the condition columns (default: every column that
            matches a condition of the label space).
        regression_columns (`list[str]`, *optional*): continuous traits to keep as regression targets.
        time_prefix, event_prefix (`str`): prefixes of the risk columns.
        unknown_codes (`str`): `"error"` (default: a code outside the label space is a problem) or `"ignore"` (drop
            it and count it in `LabelTable.ignored_codes`).
        code_aliases (`dict`, *optional*): code -> code replacements applied before matching (equivalent codes).
        code_system (`str`): code system of a label space built from the table.
        records_dir (*optional*): folder the `path` column is relative to; rows whose file is missing are problems.

    Raises:
        LabelTableError: listing every offending row.
        ValueError: when the table cannot be read or a required column is missing.
    """
    if unknown_codes not in ("error", "ignore"):
        raise ValueError(f"unknown_codes must be 'error' or 'ignore', got {unknown_codes!r}.")
    frame, source, is_csv = load_table(table)
    problems: list[LabelProblem] = []
    if len(frame) == 0:
        raise LabelTableError(source, [LabelProblem("empty table", None, None, "the table has no rows")], is_csv)

    id_col = _find_column(frame, id_column, ID_COLUMNS, "record id", required=True)
    patient_col = _find_column(frame, patient_column, PATIENT_COLUMNS, "patient id", required=False)
    path_col = _find_column(frame, path_column, PATH_COLUMNS, "path", required=False)
    codes_col = None if label_columns is not None else _find_column(frame, codes_column, CODES_COLUMNS, "codes", required=False)

    # ---- ids
    record_ids: list[str] = []
    for i, v in enumerate(frame[id_col].tolist()):
        if _is_blank(v):
            problems.append(LabelProblem("empty record id", i, None, f"column {id_col!r} is empty"))
            record_ids.append("")
        else:
            record_ids.append(_text(v))
    first: dict[str, int] = {}
    for i, rid in enumerate(record_ids):
        if not rid:
            continue
        if rid in first:
            problems.append(LabelProblem("duplicate record id", i, rid, f"record id {rid!r} already on row {first[rid] + 1}"))
        else:
            first[rid] = i
    patient_ids = [
        record_ids[i] if patient_col is None or _is_blank(v) else _text(v)
        for i, v in enumerate(frame[patient_col].tolist() if patient_col else [None] * len(frame))
    ]
    paths = [None if path_col is None or _is_blank(v) else _text(v)
             for v in (frame[path_col].tolist() if path_col else [None] * len(frame))]

    # ---- records that do not exist
    if available_records is not None:
        available = set(available_records)
        for i, rid in enumerate(record_ids):
            if rid and paths[i] is None and rid not in available:
                problems.append(LabelProblem("missing record", i, rid, f"no ECG file for record {rid!r} in the records folder"))
    if records_dir is not None and path_col is not None:
        base = os.path.realpath(records_dir)
        for i, p in enumerate(paths):
            if p is None:
                continue
            real = os.path.realpath(os.path.join(base, p))
            if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
                # an absolute path, `..` or a link leaving the records folder: a typo or a table from elsewhere
                problems.append(LabelProblem("path outside the records folder", i, record_ids[i],
                                             f"file {p!r} is not inside {records_dir}"))
            elif not (Path(records_dir) / p).exists() and not _wfdb_exists(Path(records_dir) / p):
                problems.append(LabelProblem("missing record", i, record_ids[i], f"file {p!r} does not exist under {records_dir}"))

    aliases = {str(k): str(v) for k, v in (code_aliases or {}).items()}
    reserved = {c for c in (id_col, patient_col, path_col, codes_col) if c is not None}
    reserved |= {c for c in frame.columns if str(c).lower() in METADATA_COLUMNS}
    reserved |= set(regression_columns or ())
    risk_cols = {c for c in frame.columns if str(c).startswith((time_prefix, event_prefix))}

    # ---- diagnosis labels
    labels = label_mask = None
    ignored: Counter = Counter()
    if codes_col is not None:
        cells = [[aliases.get(c, c) for c in split_codes(v)] for v in frame[codes_col].tolist()]
        if label_space is None:
            counts = Counter(c for row in cells for c in dict.fromkeys(row))
            ordered = sorted(counts, key=lambda c: (-counts[c], c))
            label_space = LabelSpace([Condition(id=c, name=c, code_system=code_system, code=None if code_system == "free-text" else c)
                                      for c in ordered]) if ordered else None
        if label_space is None:
            problems.append(LabelProblem("no labels", None, None, f"column {codes_col!r} holds no code in any row"))
        else:
            keys = _condition_keys(label_space)
            labels = np.zeros((len(frame), len(label_space)), np.float32)
            label_mask = np.ones((len(frame), len(label_space)), bool)
            for i, row in enumerate(cells):
                bad = []
                for code in row:
                    j = _lookup(keys, code)
                    if j is None:
                        bad.append(code)
                    else:
                        labels[i, j] = 1.0
                if bad and unknown_codes == "error":
                    problems.append(LabelProblem("code not in the label space", i, record_ids[i] or None,
                                                 f"code(s) {', '.join(map(repr, bad))} not in the label space"))
                ignored.update(bad)
    else:
        candidates = list(label_columns) if label_columns is not None else [
            c for c in frame.columns if c not in reserved and c not in risk_cols
        ]
        if label_columns is not None:
            for c in label_columns:
                if c not in frame.columns:
                    problems.append(LabelProblem("missing column", None, None, f"label column {c!r} is not in the table"))
            candidates = [c for c in candidates if c in frame.columns]
        if label_space is None:
            binary = [c for c in candidates if all(_parse_binary(v) is not None for v in frame[c].tolist())]
            label_space = LabelSpace([Condition(id=str(c), name=str(c), code_system=code_system,
                                                code=None if code_system == "free-text" else str(c)) for c in binary]) if binary else None
            candidates = binary
        if label_space is not None:
            keys = _condition_keys(label_space)
            column_of: dict[int, str] = {}
            for c in candidates:
                j = _lookup(keys, aliases.get(_text(c), _text(c)))
                if j is None:
                    values = frame[c].tolist()
                    if label_columns is not None or all(_parse_binary(v) is not None for v in values):
                        problems.append(LabelProblem("code not in the label space", None, None,
                                                     f"column {c!r} looks like a condition but is not in the label space"))
                    continue
                if j in column_of:
                    problems.append(LabelProblem("duplicate column", None, None,
                                                 f"columns {column_of[j]!r} and {c!r} both name condition {label_space[j].id!r}"))
                    continue
                column_of[j] = c
            labels = np.zeros((len(frame), len(label_space)), np.float32)
            label_mask = np.zeros((len(frame), len(label_space)), bool)
            for j, c in column_of.items():
                for i, v in enumerate(frame[c].tolist()):
                    b = _parse_binary(v)
                    if b is None:
                        problems.append(LabelProblem("label not 0/1", i, record_ids[i] or None,
                                                     f"column {c!r} holds {v!r} (expected 1, 0 or blank)"))
                    elif not math.isnan(b):
                        labels[i, j] = b
                        label_mask[i, j] = True

    # ---- risk targets
    event_times = events = at_risk_mask = None
    time_cols = [c for c in frame.columns if str(c).startswith(time_prefix)]
    if risk_label_space is None and time_cols:
        names = [str(c)[len(time_prefix):] for c in time_cols]
        risk_label_space = LabelSpace([Condition(id=n, name=n, code_system=code_system,
                                                 code=None if code_system == "free-text" else n) for n in names])
    if risk_label_space is not None:
        n, r = len(frame), len(risk_label_space)
        event_times = np.full((n, r), np.nan, np.float32)
        events = np.zeros((n, r), np.float32)
        at_risk_mask = np.zeros((n, r), bool)
        for j, cond in enumerate(risk_label_space):
            tcol = _first_present(frame, [f"{time_prefix}{k}" for k in (cond.id, cond.code, cond.name) if k])
            ecol = _first_present(frame, [f"{event_prefix}{k}" for k in (cond.id, cond.code, cond.name) if k])
            if tcol is None or ecol is None:
                problems.append(LabelProblem("missing column", None, None,
                                             f"risk condition {cond.id!r} needs columns {time_prefix}{cond.id} and {event_prefix}{cond.id}"))
                continue
            for i, (tv, ev) in enumerate(zip(frame[tcol].tolist(), frame[ecol].tolist())):
                t, e = _parse_float(tv), _parse_binary(ev)
                rid = record_ids[i] or None
                if t is None:
                    problems.append(LabelProblem("event time not a number", i, rid, f"column {tcol!r} holds {tv!r}"))
                    continue
                if e is None:
                    problems.append(LabelProblem("event not 0/1", i, rid, f"column {ecol!r} holds {ev!r} (expected 1, 0 or blank)"))
                    continue
                if math.isnan(t) and math.isnan(e):
                    continue  # unknown follow-up for this condition
                if math.isnan(t) or math.isnan(e):
                    problems.append(LabelProblem("incomplete event", i, rid,
                                                 f"{tcol!r} = {tv!r} but {ecol!r} = {ev!r}: give both or neither"))
                    continue
                if not math.isfinite(t):
                    problems.append(LabelProblem("event time not finite", i, rid, f"column {tcol!r} holds {tv!r}"))
                    continue
                if t < 0:
                    problems.append(LabelProblem("negative event time", i, rid, f"column {tcol!r} holds {t:g} years (must be >= 0)"))
                    continue
                if t > MAX_EVENT_YEARS:
                    problems.append(LabelProblem("implausible event time", i, rid,
                                                 f"column {tcol!r} holds {t:g} years (more than {MAX_EVENT_YEARS:g}: "
                                                 "days or a parsing error?)"))
                    continue
                if t == 0 and e == 1:
                    problems.append(LabelProblem("event at time 0", i, rid,
                                                 f"{ecol!r} = 1 at {tcol!r} = 0: a condition present at the ECG is a "
                                                 "diagnosis label, not a future event (or give the onset time)"))
                    continue
                event_times[i, j], events[i, j], at_risk_mask[i, j] = t, e, True

    # ---- regression targets
    reg_targets = reg_mask = None
    if regression_columns:
        reg_targets = np.full((len(frame), len(regression_columns)), np.nan, np.float32)
        for k, c in enumerate(regression_columns):
            if c not in frame.columns:
                problems.append(LabelProblem("missing column", None, None, f"regression column {c!r} is not in the table"))
                continue
            for i, v in enumerate(frame[c].tolist()):
                x = _parse_float(v)
                if x is None or (not math.isnan(x) and not math.isfinite(x)):
                    problems.append(LabelProblem("regression target not a number", i, record_ids[i] or None,
                                                 f"column {c!r} holds {v!r}"))
                else:
                    reg_targets[i, k] = x
        reg_mask = np.isfinite(reg_targets)

    if problems:
        raise LabelTableError(source, problems, csv_lines=is_csv)

    metadata = {str(c): [None if _is_blank(v) else _text(v) for v in frame[c].tolist()]
                for c in frame.columns if str(c).lower() in METADATA_COLUMNS and c not in (id_col, patient_col)}
    return LabelTable(
        record_ids=record_ids, patient_ids=patient_ids, paths=paths, label_space=label_space, labels=labels,
        label_mask=label_mask, risk_label_space=risk_label_space, event_times=event_times, events=events,
        at_risk_mask=at_risk_mask, regression_names=list(regression_columns) if regression_columns else None,
        regression_targets=reg_targets, regression_mask=reg_mask, metadata=metadata, source=source, ignored_codes=ignored,
    )


def _first_present(frame: pd.DataFrame, names) -> str | None:
    for n in names:
        if n in frame.columns:
            return n
    return None


def _wfdb_exists(path: Path) -> bool:
    """A WFDB record named without extension (`records500/00001/00001_hr`)."""
    return path.with_name(path.name + ".hea").exists()
