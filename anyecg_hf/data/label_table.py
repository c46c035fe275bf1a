"""Label tables: the layout, the validated table (`LabelTable`), its problems (`LabelProblem`, `LabelTableError`) and
the cell parsers. `anyecg_hf.data.labels.read_label_table` reads and checks a table into a `LabelTable`.

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

from ..modeling.label_space import LabelSpace

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


def _first_present(frame: pd.DataFrame, names) -> str | None:
    for n in names:
        if n in frame.columns:
            return n
    return None


def _wfdb_exists(path: Path) -> bool:
    """A WFDB record named without extension (`records500/00001/00001_hr`)."""
    return path.with_name(path.name + ".hea").exists()
