"""Sparse EHR targets and the per-ECG rules that expand them into dense batches.

`anyecg build-targets --out targets/` stores what the rules need and nothing dense:

* `ecgs.parquet`: one row per ECG in input order: `ecg_id, patient_id, patient_index, path, acquisition_date, sex`
  (`M` / `F` / null) and `censor_years` = (min(end of follow-up, death, t0 + horizon) - t0) / 365.25, null when
  follow-up is unknown (no follow-up row, a blank end, an end or a death before t0).
* `onsets.parquet`: per patient the earliest date of each phecode that is a kept condition or excludes one
  (`patient_index, phecode_index, onset_date`): the onsets and, through the exclusion map, the exclusion dates.
* `exclusion_map.csv`: kept condition -> each phecode of its `exclude_range` (ids and phecode indices). A patient
  with many codes can be excluded from hundreds of conditions: that fan-out is done per batch, never stored.
* `conditions.csv` (every map phecode in `phecode_index` order: counts, `kept`, `index` in the label spaces),
  `diagnosis_label_space.csv` and `risk_label_space.csv` (the kept conditions), `summary.json`.

`cell_targets` is the ONE implementation of the per-ECG rules; counting, the wide export, the dataset builder and the
collator all call it (through `ConditionIndex.dense` for batches).
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


@dataclass
class ConditionIndex:
    """What the expansion needs about the conditions (JSON-friendly via `to_dict`, stored in dataset metadata).

    Attributes:
        cond_sex (`(C,)` int8): 0 both, 1 male-only, 2 female-only, per kept condition.
        phecode_to_condition (`(P,)` int32): map phecode index -> kept condition index, -1 when not kept.
        excl_ptr, excl_cond: CSR over phecode index: the kept conditions whose `exclude_range` lists that phecode.
        window_days (`int`): prevalence window.
    """

    cond_sex: np.ndarray
    phecode_to_condition: np.ndarray
    excl_ptr: np.ndarray
    excl_cond: np.ndarray
    window_days: int

    @classmethod
    def from_tables(cls, conditions: pd.DataFrame, exclusion_map: pd.DataFrame, window_days: int) -> "ConditionIndex":
        kept = conditions["kept"].astype(str).str.lower().isin(("true", "1")).to_numpy()
        p = len(conditions)
        to_cond = np.full(p, -1, np.int32)
        to_cond[kept] = np.arange(int(kept.sum()), dtype=np.int32)
        excluder = exclusion_map["excluded_by_phecode_index"].to_numpy(np.int64)
        order = np.argsort(excluder, kind="stable")
        ptr = np.zeros(p + 1, np.int64)
        np.cumsum(np.bincount(excluder, minlength=p), out=ptr[1:])
        cond = to_cond[exclusion_map["condition_phecode_index"].to_numpy(np.int64)[order]]
        return cls(conditions["sex"].to_numpy(np.int8)[kept], to_cond, ptr, cond.astype(np.int32), int(window_days))

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ConditionIndex":
        return cls(np.asarray(d["cond_sex"], np.int8), np.asarray(d["phecode_to_condition"], np.int32),
                   np.asarray(d["excl_ptr"], np.int64), np.asarray(d["excl_cond"], np.int32), int(d["window_days"]))

    def dense(self, t0, ecg_sex, censor_years, pos, phecode, day) -> dict:
        """Dense `(B, C)` targets of B ECGs from their patients' onset entries `(pos = row in the batch, phecode
        index, day)`: onsets of kept conditions and, through the exclusion map, the earliest exclusion date."""
        b, c = len(t0), len(self.cond_sex)
        pos, phecode, day = (np.asarray(a, np.int64) for a in (pos, phecode, day))
        onset = np.full((b, c), NO_DAY, np.int32)
        excl = np.full((b, c), NO_DAY, np.int32)
        cond = self.phecode_to_condition[phecode]
        own = cond >= 0
        onset[pos[own], cond[own]] = day[own]  # one entry per patient and phecode: no duplicates
        k, idx = gather(self.excl_ptr, phecode)
        np.minimum.at(excl, (pos[k], self.excl_cond[idx]), day[k].astype(np.int32))
        label, mask, time, event, at_risk = cell_targets(
            np.asarray(t0)[:, None], np.asarray(ecg_sex)[:, None], np.asarray(censor_years, np.float64)[:, None],
            self.cond_sex[None, :], onset, excl, self.window_days)
        return {"labels": label, "label_mask": mask, "event_times": time, "events": event, "at_risk_mask": at_risk}


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
    index: ConditionIndex
    onset_ptr: np.ndarray
    onset_phecode: np.ndarray
    onset_day: np.ndarray
    horizon_years: float

    def __len__(self) -> int:
        return len(self.ecg_ids)

    @classmethod
    def load(cls, folder) -> "SparseTargets":
        folder = Path(folder)
        summary = json.loads((folder / "summary.json").read_text())
        ecgs = pd.read_parquet(folder / "ecgs.parquet")
        conds = pd.read_csv(folder / "conditions.csv", dtype={"phecode": str}, keep_default_na=False)
        index = ConditionIndex.from_tables(conds, pd.read_csv(folder / "exclusion_map.csv", dtype=str).astype(
            {"condition_phecode_index": np.int64, "excluded_by_phecode_index": np.int64}),
            summary["parameters"]["prevalence_window_days"])
        n_pat = int(ecgs["patient_index"].max()) + 1 if len(ecgs) else 0
        onsets = pd.read_parquet(folder / "onsets.parquet")
        ptr = np.zeros(n_pat + 1, np.int64)
        np.cumsum(np.bincount(onsets["patient_index"].to_numpy(np.int64), minlength=n_pat), out=ptr[1:])
        return cls(
            ecg_ids=ecgs["ecg_id"].to_numpy(str), patient_ids=ecgs["patient_id"].to_numpy(str),
            paths=ecgs["path"].to_numpy(object), patient_index=ecgs["patient_index"].to_numpy(np.int64),
            t0=_days(ecgs["acquisition_date"]), sex=ecgs["sex"].map(SEX_CODE).fillna(0).to_numpy(np.int8),
            censor_years=ecgs["censor_years"].to_numpy(np.float64, na_value=np.nan),
            label_space=LabelSpace.load(folder / "diagnosis_label_space.csv"), index=index, onset_ptr=ptr,
            onset_phecode=onsets["phecode_index"].to_numpy(np.int32), onset_day=_days(onsets["onset_date"]),
            horizon_years=float(summary["parameters"]["horizon_years"]),
        )

    def entries(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Onset entries `(position in rows, phecode index, day)` of the patients of the ECGs `rows`."""
        pos, idx = gather(self.onset_ptr, self.patient_index[np.asarray(rows, np.int64)])
        return pos, self.onset_phecode[idx], self.onset_day[idx]

    def expand(self, rows) -> dict:
        """Dense targets of the ECGs `rows`: labels / label_mask / event_times / events / at_risk_mask `(B, C)`."""
        rows = np.asarray(rows, np.int64)
        return self.index.dense(self.t0[rows], self.sex[rows], self.censor_years[rows], *self.entries(rows))

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
