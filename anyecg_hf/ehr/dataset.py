"""EHR targets in a `datasets` dataset without a dense ECG x condition matrix on disk.

Each row stores what the rules need for its ECG, sparse: `ehr_t0` (day), `ehr_sex` (0/1/2), `ehr_censor_years`
(NaN = follow-up unknown) and its patient's onsets `ehr_onset_phecode` / `ehr_onset_day` (phecode index, day) of
the phecodes that are kept conditions or exclude one. The dataset metadata holds the label spaces and the
`ConditionIndex` (sex per condition, phecode -> condition, the exclusion map, the prevalence window). The collator
expands a batch with `expand_rows`, comparing the stored dates with each ECG's date (`cell_targets`).
"""

from __future__ import annotations

import numpy as np

from .targets import ConditionIndex, SparseTargets

EHR_COLUMNS = ("ehr_t0", "ehr_sex", "ehr_censor_years", "ehr_onset_phecode", "ehr_onset_day")
META_KEY = "ehr_targets"


def ehr_columns(targets: SparseTargets, rows) -> dict:
    """The EHR columns of the ECGs `rows` (indices into `targets`), as lists."""
    rows = np.asarray(rows, np.int64)
    pos, ph, day = targets.entries(rows)
    split = np.cumsum(np.bincount(pos, minlength=len(rows)))[:-1]
    return {
        "ehr_t0": targets.t0[rows].tolist(), "ehr_sex": targets.sex[rows].tolist(),
        "ehr_censor_years": targets.censor_years[rows].tolist(),
        "ehr_onset_phecode": [a.tolist() for a in np.split(ph, split)],
        "ehr_onset_day": [a.tolist() for a in np.split(day, split)],
    }


def attach_ehr_targets(ds, targets: SparseTargets, batch_size: int = 1000):
    """`ds` (a `Dataset` or `DatasetDict` with a `record_id` column = ecg_id) with the EHR columns and metadata."""
    from datasets import DatasetDict

    from ..data import set_dataset_metadata

    position = {rid: i for i, rid in enumerate(targets.ecg_ids)}

    def add(batch):
        missing = [r for r in batch["record_id"] if r not in position]
        if missing:
            raise ValueError(f"records {missing[:5]} are not in the targets' ecgs.parquet")
        return ehr_columns(targets, [position[r] for r in batch["record_id"]])

    mapped = ds.map(add, batched=True, batch_size=batch_size, desc="EHR targets") if not isinstance(ds, DatasetDict) \
        else DatasetDict({k: v.map(add, batched=True, batch_size=batch_size, desc=f"EHR targets ({k})") for k, v in ds.items()})
    space = targets.label_space
    return set_dataset_metadata(mapped, label_space=space.to_list(), label_space_name=space.name,
                                risk_label_space=space.to_list(), risk_label_space_name=space.name,
                                **{META_KEY: {**targets.index.to_dict(), "horizon_years": targets.horizon_years}})


def condition_index(ds) -> ConditionIndex | None:
    """The `ConditionIndex` stored in a dataset built with EHR targets (`None` otherwise)."""
    from ..data import dataset_metadata

    meta = dataset_metadata(ds).get(META_KEY)
    return None if meta is None else ConditionIndex.from_dict(meta)


def expand_rows(rows: list[dict], index: ConditionIndex) -> dict:
    """Dense `(B, C)` targets (`labels`, `label_mask`, `event_times`, `events`, `at_risk_mask`) of dataset rows."""
    lens = np.array([len(r["ehr_onset_phecode"]) for r in rows], np.int64)
    pos = np.repeat(np.arange(len(rows)), lens)
    cat = (lambda key: np.concatenate([np.asarray(r[key], np.int64) for r in rows]) if lens.sum() else
           np.zeros(0, np.int64))
    return index.dense(np.array([int(r["ehr_t0"]) for r in rows], np.int64),
                       np.array([int(r["ehr_sex"]) for r in rows], np.int8),
                       np.array([np.nan if r["ehr_censor_years"] is None else float(r["ehr_censor_years"]) for r in rows]),
                       pos, cat("ehr_onset_phecode"), cat("ehr_onset_day"))


def build_ehr_dataset(records, targets_dir, **kwargs):
    """`build_ecg_dataset` over the ECGs of a targets folder (ids and paths from its `ecgs.parquet`), with the EHR
    columns attached; `kwargs` go to `build_ecg_dataset` (`split`, `storage`, `num_proc`, `return_report`, ...)."""
    import pandas as pd

    from ..data import build_ecg_dataset

    targets = SparseTargets.load(targets_dir)
    table = pd.DataFrame({"record_id": targets.ecg_ids, "patient_id": targets.patient_ids})
    if any(p is not None and p == p for p in targets.paths):
        table["path"] = [None if p is None or p != p else p for p in targets.paths]
    out = build_ecg_dataset(records, table, **kwargs)
    ds, report = out if kwargs.get("return_report") else (out, None)
    ds = attach_ehr_targets(ds, targets)
    return (ds, report) if kwargs.get("return_report") else ds


def label_counts(ds, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Known diagnosis positives and negatives per condition over a dataset with EHR targets (chunked expansion;
    e.g. for BCE positive weights)."""
    index = condition_index(ds)
    cols = ds.select_columns(list(EHR_COLUMNS))
    pos = np.zeros(len(index.cond_sex), np.int64)
    neg = np.zeros_like(pos)
    for start in range(0, len(cols), batch_size):
        part = cols[start:start + batch_size]
        rows = [dict(zip(part, vals)) for vals in zip(*part.values())]
        t = expand_rows(rows, index)
        pos += ((t["labels"] > 0) & t["label_mask"]).sum(0)
        neg += ((t["labels"] == 0) & t["label_mask"]).sum(0)
    return pos, neg
