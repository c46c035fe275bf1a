"""Match a dataset's conditions to a model's labels, directly or through a crosswalk, and aggregate probabilities.

Evaluation scores the DATASET's conditions: each one gets the model label(s) that imply it. A dataset condition
matches a model label with the same id, the same (code system, code) or the same name (case-insensitive). With a
crosswalk (`crosswalk("ecgfounder", "snomed")`, a user's CSV), a dataset condition whose code (or id) is a crosswalk
target also matches every model label mapped to it with a tier in `tiers` (by default the tiers the label implies:
exact, broader, composite), in addition to its direct match. Several model labels for one condition (many-to-one) are combined
by `aggregate_probabilities`: the maximum by default (the condition is present if any label that implies it is),
or the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .crosswalk import IMPLIED_TIERS, TIERS

AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class ConditionMatch:
    """One dataset condition and the model labels evaluated for it (`model_indices` empty when unmatched)."""

    data_index: int
    id: str
    name: str
    code_system: str
    code: str
    model_indices: tuple = ()
    model_labels: tuple = ()
    tier: str = ""  # strongest tier among the rows used ("exact" for a direct match); "" without a crosswalk
    how: str = ""  # "id", "code", "name", "crosswalk", "<direct>+crosswalk" or "" (unmatched)

    def as_row(self) -> dict:
        return {"id": self.id, "name": self.name, "code_system": self.code_system, "code": self.code,
                "model_labels": " | ".join(self.model_labels), "tier": self.tier, "matched_by": self.how}


def _canonical(name: str) -> str:
    """A label name as the crosswalk knows it: 12SL variants a model may use (other case, trailing punctuation, the
    continuation "WITH " added or dropped, known wordings) resolve to the ECGFounder label."""
    from .statements import _lookup, normalize_statement

    text = normalize_statement(name)
    return (_lookup(text) or text).casefold()


def _direct(model_space, condition):
    for i, m in enumerate(model_space):
        if m.id == condition.id:
            return i, "id"
    if condition.code:
        for i, m in enumerate(model_space):
            if m.code and (m.code_system, m.code) == (condition.code_system, condition.code):
                return i, "code"
    for i, m in enumerate(model_space):
        if m.name.casefold() == condition.name.casefold():
            return i, "name"
    return None, ""


def match_conditions(model_space, data_space, label_map=None, tiers=IMPLIED_TIERS):
    """Match every dataset condition to model labels.

    Args:
        model_space, data_space (`LabelSpace`): the model's and the dataset's conditions.
        label_map (*optional*): a crosswalk table (`crosswalk(...)`, `load_crosswalk(path)`) whose `label` column
            names model labels and `code` column dataset codes.
        tiers: crosswalk tiers that count as a match.

    Returns:
        `(matched, unmatched)`: lists of `ConditionMatch` in dataset order.
    """
    bad = [t for t in tiers if t not in TIERS or t == "none"]
    if bad:
        raise ValueError(f"tiers {bad} are not crosswalk tiers ({', '.join(t for t in TIERS if t != 'none')}).")
    rank = {t: i for i, t in enumerate(TIERS)}
    by_name = {_canonical(m.name): i for i, m in enumerate(model_space)}
    by_code: dict[str, list[tuple[int, str]]] = {}
    if label_map is not None:
        for row in label_map.itertuples(index=False):
            i = by_name.get(_canonical(str(row.label)))
            if i is not None and row.tier in tiers and row.code:
                by_code.setdefault(str(row.code).strip().casefold(), []).append((i, row.tier))
    matched, unmatched = [], []
    for j, c in enumerate(data_space):
        base = dict(data_index=j, id=c.id, name=c.name, code_system=c.code_system, code=c.code or "")
        i, how = _direct(model_space, c)
        hits = by_code.get((c.code or "").strip().casefold()) or by_code.get(c.id.strip().casefold()) or []
        if i is not None:
            hits = [(i, "exact")] + hits  # a direct match is the same condition
        if not hits:
            unmatched.append(ConditionMatch(**base))
            continue
        indices = tuple(dict.fromkeys(k for k, _ in hits))
        tier = min((t for _, t in hits), key=rank.get) if label_map is not None else ""
        if i is None:
            how = "crosswalk"
        elif len(indices) > 1:
            how += "+crosswalk"
        matched.append(ConditionMatch(**base, model_indices=indices,
                                      model_labels=tuple(model_space[k].name for k in indices), tier=tier, how=how))
    return matched, unmatched


def aggregate_probabilities(probs, matches, how: str = "max") -> np.ndarray:
    """(n, len(matches)) probabilities: per dataset condition the max (or mean) over its matched model labels.

    `max` is the default because the labels mapped to one condition are alternative ways the model can say it (e.g.
    SINUS BRADYCARDIA and MARKED SINUS BRADYCARDIA for bradycardia): the condition is present if any of them is.
    """
    if how not in AGGREGATES:
        raise ValueError(f"label aggregation must be one of {AGGREGATES}, got {how!r}.")
    probs = np.asarray(probs, dtype=np.float64)
    out = np.zeros((probs.shape[0], len(matches)))
    for k, m in enumerate(matches):
        cols = probs[:, list(m.model_indices)]
        out[:, k] = cols.max(axis=1) if how == "max" else cols.mean(axis=1)
    return out
