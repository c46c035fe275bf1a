"""Sparse EHR targets and the per-ECG rules that expand them into dense batches.

`anyecg build-targets --out targets/` stores what the rules need and nothing dense:

* `ecgs.parquet`: one row per ECG in input order: `ecg_id, patient_id, patient_index, path, acquisition_date, sex`
  (`M` / `F` / null) and `censor_years` = (min(end of follow-up, death, t0 + horizon) - t0) / 365.25, null when
  follow-up is unknown (no follow-up row, a blank end, an end or a death before t0).
* `onsets.parquet`: per patient the earliest date of each kept condition (`patient_index, condition, onset_date`).
* `exclusions.parquet`: per patient and kept condition the earliest date of a code that counts for a phecode in the
  condition's `exclude_range`, only where it is earlier than the onset (a later one can never mask).
* `conditions.csv` (every map phecode, counts, `kept`, `index`), `diagnosis_label_space.csv` and
  `risk_label_space.csv` (the kept conditions), `summary.json`.

`cell_targets` is the ONE implementation of the per-ECG rules; counting, the wide export, the dataset builder and the
collator all call it (through `expand_dense` for batches).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..modeling.label_space import Condition, LabelSpace

DAYS_PER_YEAR = 365.25
NO_DAY = np.int32(2**30)  # "no such date": later than any real day, safe from int32 overflow in t0 + window
SEX_CODE = {"M": 1, "F": 2}


def cell_targets(t0, ecg_sex, censor_years, cond_sex, onset, exclusion, window_days: int):
    """Targets of (ECG, condition) cells; every argument broadcasts (flat entries or a `(B, C)` batch).

    Args:
        t0: ECG day (days since 1970-01-01). ecg_sex: 0 unknown, 1 male, 2 female. censor_years: NaN = follow-up
            unknown. cond_sex: 0 both, 1 male-only, 2 female-only. onset / exclusion: days, `NO_DAY` when none.
        window_days: prevalence window.

    Returns `(label, label_mask, event_time, event, at_risk)`: the rules of docs/ehr.md, i.e. with
    `limit = t0 + window`: masked when sex-specific and the sex differs or is unknown; 1 when onset <= limit; masked
    when not 1 but an exclusion code is dated <= limit; else 0. Risk masked when prevalent, masked by sex or
    exclusion, or follow-up unknown; else an event at (onset - t0) / 365.25 when that is <= the censoring time,
    otherwise censored at it.
    """
    t0 = np.asarray(t0, np.int64)
    limit = t0 + int(window_days)
    cond_sex = np.asarray(cond_sex)
    ecg_sex = np.asarray(ecg_sex)
    sex_ok = (cond_sex == 0) | (cond_sex == ecg_sex)
    has = np.asarray(onset) <= limit
    excluded = ~has & (np.asarray(exclusion) <= limit)
    label_mask = sex_ok & ~excluded
    label = (has & label_mask).astype(np.float32)
    censor = np.asarray(censor_years, np.float64)
    at_risk = sex_ok & ~has & ~excluded & np.isfinite(censor)
    rel = (np.asarray(onset, np.int64) - t0) / DAYS_PER_YEAR
    event = at_risk & (rel <= censor)
    time = np.where(event, rel, censor)
    time = np.where(at_risk, time, np.nan)
    return label, label_mask, time, event.astype(np.float32), at_risk


def gather(ptr: np.ndarray, owners: np.ndarray):
    """CSR rows `owners` -> (position of the owner in `owners`, entry index), all entries of each owner."""
    starts = ptr[owners]
    lens = ptr[owners + 1] - starts
    pos = np.repeat(np.arange(len(owners)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return pos, np.repeat(starts, lens) + (np.arange(int(lens.sum())) - first)


def expand_dense(t0, ecg_sex, censor_years, cond_sex, window_days, onset_coo, exclusion_coo) -> dict:
    """Dense `(B, C)` targets of one batch from COO entries `(row, condition, day)` of onsets and exclusions."""
    b, c = len(t0), len(cond_sex)
    onset = np.full((b, c), NO_DAY, np.int32)
    excl = np.full((b, c), NO_DAY, np.int32)
    onset[onset_coo[0], onset_coo[1]] = onset_coo[2]
    excl[exclusion_coo[0], exclusion_coo[1]] = exclusion_coo[2]
    label, mask, time, event, at_risk = cell_targets(
        np.asarray(t0)[:, None], np.asarray(ecg_sex)[:, None], np.asarray(censor_years, np.float64)[:, None],
        np.asarray(cond_sex)[None, :], onset, excl, window_days)
    return {"labels": label, "label_mask": mask, "event_times": time, "events": event,
            "at_risk_mask": at_risk}


def _days(column) -> np.ndarray:
    """Arrow/pandas date column -> int32 days since 1970-01-01 (NaT -> NO_DAY)."""
    values = pd.to_datetime(pd.Series(column)).to_numpy("datetime64[D]")
    out = values.astype(np.int64)
    out[np.isnat(values)] = NO_DAY
    return out.astype(np.int32)


@dataclass
class SparseTargets:
    """Targets of `anyecg build-targets` in their compact form (see the module docstring); `expand` gives dense batches."""

    ecg_ids: np.ndarray
    patient_ids: np.ndarray
    paths: np.ndarray
    patient_index: np.ndarray
    t0: np.ndarray
    sex: np.ndarray
    censor_years: np.ndarray
    label_space: LabelSpace
    cond_sex: np.ndarray
    onset_ptr: np.ndarray
    onset_cond: np.ndarray
    onset_day: np.ndarray
    excl_ptr: np.ndarray
    excl_cond: np.ndarray
    excl_day: np.ndarray
    window_days: int
    horizon_years: float

    def __len__(self) -> int:
        return len(self.ecg_ids)

    @classmethod
    def load(cls, folder) -> "SparseTargets":
        folder = Path(folder)
        summary = json.loads((folder / "summary.json").read_text())
        ecgs = pd.read_parquet(folder / "ecgs.parquet")
        conds = pd.read_csv(folder / "conditions.csv", dtype={"phecode": str}, keep_default_na=False)
        kept = conds[conds["kept"].astype(str).str.lower().isin(("true", "1"))].sort_values("index")
        n_pat = int(ecgs["patient_index"].max()) + 1 if len(ecgs) else 0
        csr = []
        for name, col in (("onsets", "onset_date"), ("exclusions", "exclusion_date")):
            table = pd.read_parquet(folder / f"{name}.parquet")
            pidx = table["patient_index"].to_numpy(np.int64)
            ptr = np.zeros(n_pat + 1, np.int64)
            np.cumsum(np.bincount(pidx, minlength=n_pat), out=ptr[1:])
            csr += [ptr, table["condition"].to_numpy(np.int32), _days(table[col])]
        return cls(
            ecg_ids=ecgs["ecg_id"].to_numpy(str), patient_ids=ecgs["patient_id"].to_numpy(str),
            paths=ecgs["path"].to_numpy(object), patient_index=ecgs["patient_index"].to_numpy(np.int64),
            t0=_days(ecgs["acquisition_date"]), sex=ecgs["sex"].map(SEX_CODE).fillna(0).to_numpy(np.int8),
            censor_years=ecgs["censor_years"].to_numpy(np.float64, na_value=np.nan),
            label_space=LabelSpace.load(folder / "diagnosis_label_space.csv"),
            cond_sex=kept["sex"].to_numpy(np.int8), onset_ptr=csr[0], onset_cond=csr[1], onset_day=csr[2],
            excl_ptr=csr[3], excl_cond=csr[4], excl_day=csr[5],
            window_days=int(summary["parameters"]["prevalence_window_days"]),
            horizon_years=float(summary["parameters"]["horizon_years"]),
        )

    def entries(self, rows) -> tuple[tuple, tuple]:
        """COO onset and exclusion entries `(position in rows, condition, day)` of the ECGs `rows`."""
        owners = self.patient_index[np.asarray(rows, np.int64)]
        out = []
        for ptr, cond, day in ((self.onset_ptr, self.onset_cond, self.onset_day),
                               (self.excl_ptr, self.excl_cond, self.excl_day)):
            pos, idx = gather(ptr, owners)
            out.append((pos, cond[idx], day[idx]))
        return out[0], out[1]

    def expand(self, rows) -> dict:
        """Dense targets of the ECGs `rows`: labels / label_mask / event_times / events / at_risk_mask `(B, C)`."""
        rows = np.asarray(rows, np.int64)
        onset, excl = self.entries(rows)
        return expand_dense(self.t0[rows], self.sex[rows], self.censor_years[rows], self.cond_sex, self.window_days,
                            onset, excl)

    def to_frame(self, chunk: int = 20000) -> pd.DataFrame:
        """The wide label table (`record_id`, one 1/0/blank column per condition, `time_<id>`, `event_<id>`)."""
        ids = self.label_space.ids
        parts = []
        for start in range(0, len(self), chunk):
            rows = np.arange(start, min(start + chunk, len(self)))
            t = self.expand(rows)
            lab = pd.DataFrame(np.where(t["label_mask"], t["labels"], np.nan), columns=ids).astype("Int8")
            tim = pd.DataFrame(t["event_times"].astype(np.float64), columns=[f"time_{c}" for c in ids])
            ev = pd.DataFrame(np.where(t["at_risk_mask"], t["events"], np.nan), columns=[f"event_{c}" for c in ids]).astype("Int8")
            parts.append(pd.concat([lab, tim, ev], axis=1))
        body = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[
            *ids, *[f"time_{c}" for c in ids], *[f"event_{c}" for c in ids]])
        body.insert(0, "record_id", self.ecg_ids)
        return body


def phecode_label_space(conditions: pd.DataFrame, name: str) -> LabelSpace:
    """Label space of the kept conditions: id = code = phecode, name, category, code system "phecode"."""
    return LabelSpace([Condition(id=str(r.phecode), name=str(r.name), code_system="phecode", code=str(r.phecode),
                                 category=str(r.category) or None) for r in conditions.itertuples()], name=name)


def write_wide(frame: pd.DataFrame, path) -> None:
    """CSV (blank = masked, 1/0 labels) or Parquet (float columns, NaN = masked, what `read_label_table` reads)."""
    path = os.fspath(path)
    if path.lower().endswith((".parquet", ".pq")):
        frame = frame.copy()
        for c in frame.columns[1:]:
            frame[c] = frame[c].astype("float64")
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, na_rep="", float_format=None)
