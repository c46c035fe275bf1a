"""Reading a label table: `read_label_table` checks every row and raises one `LabelTableError` that lists every
offending row (records that do not exist, codes not in the label space, duplicate ids, negative or non-numeric event
times, values that are not 0/1, ...), so a user fixes the table once instead of once per crash. The layout is in
`anyecg_hf.data.label_table`.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..modeling.label_space import Condition, LabelSpace
from .label_table import (
    CODES_COLUMNS,
    ID_COLUMNS,
    MAX_EVENT_YEARS,
    METADATA_COLUMNS,
    PATH_COLUMNS,
    PATIENT_COLUMNS,
    LabelProblem,
    LabelTable,
    LabelTableError,
    _condition_keys,
    _find_column,
    _first_present,
    _is_blank,
    _lookup,
    _parse_binary,
    _parse_float,
    _text,
    _wfdb_exists,
    load_table,
    split_codes,
)

__all__ = ["LabelProblem", "LabelTable", "LabelTableError", "load_table", "read_label_table", "split_codes"]


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
    record_ids, patient_ids, paths = _records(frame, id_col, patient_col, path_col, available_records, records_dir, problems)

    aliases = {str(k): str(v) for k, v in (code_aliases or {}).items()}
    reserved = {c for c in (id_col, patient_col, path_col, codes_col) if c is not None}
    reserved |= {c for c in frame.columns if str(c).lower() in METADATA_COLUMNS}
    reserved |= set(regression_columns or ())
    risk_cols = {c for c in frame.columns if str(c).startswith((time_prefix, event_prefix))}
    ignored: Counter = Counter()
    if codes_col is not None:
        label_space, labels, label_mask = _labels_from_codes(frame, codes_col, label_space, aliases, code_system,
                                                             unknown_codes, record_ids, ignored, problems)
    else:
        candidates = list(label_columns) if label_columns is not None else [
            c for c in frame.columns if c not in reserved and c not in risk_cols
        ]
        label_space, labels, label_mask = _labels_from_columns(frame, candidates, label_columns is not None, label_space,
                                                               aliases, code_system, record_ids, problems)
    risk_label_space, event_times, events, at_risk_mask = _risk_targets(frame, risk_label_space, time_prefix, event_prefix,
                                                                        code_system, record_ids, problems)
    reg_targets, reg_mask = _regression_targets(frame, regression_columns, record_ids, problems)
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


def _records(frame, id_col, patient_col, path_col, available_records, records_dir, problems):
    """Record ids (non-empty, unique), patient ids (the record id when none), paths; rows naming a record that does
    not exist are problems."""
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
    return record_ids, patient_ids, paths


def _labels_from_codes(frame, codes_col, label_space, aliases, code_system, unknown_codes, record_ids, ignored, problems):
    """Codes layout: each cell lists the positive conditions; every other condition is a known negative."""
    labels = label_mask = None
    cells = [[aliases.get(c, c) for c in split_codes(v)] for v in frame[codes_col].tolist()]
    if label_space is None:
        counts = Counter(c for row in cells for c in dict.fromkeys(row))
        ordered = sorted(counts, key=lambda c: (-counts[c], c))
        label_space = LabelSpace([Condition(id=c, name=c, code_system=code_system, code=None if code_system == "free-text" else c)
                                  for c in ordered]) if ordered else None
    if label_space is None:
        problems.append(LabelProblem("no labels", None, None, f"column {codes_col!r} holds no code in any row"))
        return label_space, labels, label_mask
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
    return label_space, labels, label_mask


def _labels_from_columns(frame, candidates, explicit, label_space, aliases, code_system, record_ids, problems):
    """Wide layout: one 0/1/blank column per condition (`explicit`: the user named the columns)."""
    labels = label_mask = None
    if explicit:
        for c in candidates:
            if c not in frame.columns:
                problems.append(LabelProblem("missing column", None, None, f"label column {c!r} is not in the table"))
        candidates = [c for c in candidates if c in frame.columns]
    if label_space is None:
        binary = [c for c in candidates if all(_parse_binary(v) is not None for v in frame[c].tolist())]
        label_space = LabelSpace([Condition(id=str(c), name=str(c), code_system=code_system,
                                            code=None if code_system == "free-text" else str(c)) for c in binary]) if binary else None
        candidates = binary
    if label_space is None:
        return label_space, labels, label_mask
    keys = _condition_keys(label_space)
    column_of: dict[int, str] = {}
    for c in candidates:
        j = _lookup(keys, aliases.get(_text(c), _text(c)))
        if j is None:
            values = frame[c].tolist()
            if explicit or all(_parse_binary(v) is not None for v in values):
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
    return label_space, labels, label_mask


def _risk_targets(frame, risk_label_space, time_prefix, event_prefix, code_system, record_ids, problems):
    """`time_<condition>` (years, 0-150; an event at time 0 is refused) and `event_<condition>` (0/1) per risk condition; both blank = unknown."""
    event_times = events = at_risk_mask = None
    time_cols = [c for c in frame.columns if str(c).startswith(time_prefix)]
    if risk_label_space is None and time_cols:
        names = [str(c)[len(time_prefix):] for c in time_cols]
        risk_label_space = LabelSpace([Condition(id=n, name=n, code_system=code_system,
                                                 code=None if code_system == "free-text" else n) for n in names])
    if risk_label_space is None:
        return risk_label_space, event_times, events, at_risk_mask
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
    return risk_label_space, event_times, events, at_risk_mask


def _regression_targets(frame, regression_columns, record_ids, problems):
    """Continuous traits (blank = unknown)."""
    if not regression_columns:
        return None, None
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
    return reg_targets, np.isfinite(reg_targets)
