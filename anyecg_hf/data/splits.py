"""Splitting a built dataset: patient-level random splits, splits from a column, and the patient-disjointness check
(`PatientLeakageError`)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, DatasetDict


def patient_split(ds: Dataset, fractions: dict, seed: int = 0, patient_column: str = "patient_id") -> DatasetDict:
    """Split by patient: every record of a patient lands in the same split.

    Patients are shuffled (seeded) and assigned in turn to the split furthest below its target share of records, so
    the record fractions match `fractions` as closely as whole patients allow.

    Args:
        ds (`Dataset`): with a `patient_column`.
        fractions (`dict[str, float]`): split name -> fraction of records (normalised to sum to 1).
        seed (`int`): shuffling seed.
    """
    if not fractions or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {fractions}.")
    names = list(fractions)
    target = np.array([fractions[n] for n in names], float)
    target /= target.sum()
    patients = list(ds[patient_column])
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        groups.setdefault(p, []).append(i)
    order = list(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    counts = np.zeros(len(names))
    assigned: list[list[int]] = [[] for _ in names]
    for p in order:
        idx = groups[p]
        # the split whose share would be furthest below target after adding this patient
        deficit = target * (counts.sum() + len(idx)) - counts
        k = int(np.argmax(deficit))
        assigned[k].extend(idx)
        counts[k] += len(idx)
    return DatasetDict({n: ds.select(sorted(a)) for n, a in zip(names, assigned)})


def split_by_column(ds: Dataset, column: str, mapping: dict | None = None,
                    patient_column: str = "patient_id") -> DatasetDict:
    """Split on the values of `column` (e.g. a `split` column, or PTB-XL folds with `mapping={"9": "validation"}`).

    Args:
        mapping (`dict`, *optional*): value (as text) -> split name; values not in it keep their own name. Map a value
            to `None` to drop its rows.
        patient_column (`str`): a patient found in two splits is a `PatientLeakageError` listing every such
            patient (records of one patient in train and test inflate every metric).
    """
    if column not in ds.column_names:
        raise ValueError(f"Cannot split on {column!r}: the dataset has columns {ds.column_names}.")
    values = [None if v is None else str(v) for v in ds[column]]
    mapping = mapping or {}
    splits: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        name = mapping.get(v, v)
        if name is None:
            continue
        splits.setdefault(name, []).append(i)
    if patient_column in ds.column_names:  # a split column that puts one patient in two splits leaks
        patients = ds[patient_column]
        _raise_on_leakage({n: [patients[i] for i in idx] for n, idx in splits.items()}, f"column {column!r}")
    return DatasetDict({n: ds.select(idx) for n, idx in splits.items()})


class PatientLeakageError(ValueError):
    """The same patient is in more than one split (their ECGs would be trained on and evaluated on).

    Attributes:
        patients (`dict[str, list[str]]`): each leaking patient -> the splits holding them.
    """

    def __init__(self, patients: dict, where: str = ""):
        self.patients = patients
        shown = "; ".join(f"{p} ({', '.join(s)})" for p, s in list(patients.items())[:20])
        more = f" ... and {len(patients) - 20} more (see .patients)" if len(patients) > 20 else ""
        super().__init__(f"patient-level leakage{' from ' + where if where else ''}: {len(patients)} patient(s) "
                         f"are in more than one split: {shown}{more}. Split by patient (split={{'train': 0.8, ...}}) "
                         "or fix the split column")

    def __reduce__(self):
        return (type(self), (self.patients,))


def _raise_on_leakage(patients_by_split: dict, where: str = "") -> None:
    splits_of: dict[str, list[str]] = {}
    for name, patients in patients_by_split.items():
        for p in dict.fromkeys(patients):
            splits_of.setdefault(str(p), []).append(str(name))
    leaks = {p: s for p, s in sorted(splits_of.items()) if len(s) > 1}
    if leaks:
        raise PatientLeakageError(leaks, where)


def check_patient_disjoint(dsd: DatasetDict, patient_column: str = "patient_id") -> None:
    """Raise `PatientLeakageError` (a `ValueError`) listing the patients that appear in more than one split."""
    _raise_on_leakage({name: part[patient_column] for name, part in dsd.items()})
