"""Turning a record's (window-aggregated) named outputs into a health profile, and profiles into table rows.

Shared by the `ecg-profiling` pipeline and the CSV/JSON output of `anyecg profile`, so that one record gives the
same profile whichever path produced it.

A profile (one record)::

    {"record": "HR06000",
     "diagnoses": [{"id", "label", "code_system", "code", "score", "threshold", "positive"}, ...],   # best first
     "risks": [{"id", "label", "code", "risk_score", "horizons": {1: p, 5: p, 10: p}}, ...],         # [] without a risk head
     "traits": [{"name", "value"}, ...],                                # only for models with a regression head
     "warnings": ["lead V2 is flat", ...]}
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["horizon_key", "profile_records", "profile_rows", "PROFILE_ROW_COLUMNS"]

# Columns of `profile_rows` before the per-horizon risk columns (`risk_1y`, `risk_5y`, ...).
PROFILE_ROW_COLUMNS = (
    "record", "kind", "rank", "id", "label", "code_system", "code", "score", "threshold", "positive", "risk_score",
)


def horizon_key(h: float):
    """`1.0 -> 1`, `2.5 -> 2.5`: horizons (years) as profile keys."""
    h = float(h)
    return int(h) if h.is_integer() else h


def _as_array(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def profile_records(
    outputs: dict,
    config,
    top_k: int | None = None,
    threshold: float | None = None,
    horizons=None,
    *,
    only_positive: bool = False,
    record=None,
    warnings=None,
) -> dict:
    """Build one record's profile from its (window-aggregated) outputs and the model's label spaces.

    Args:
        outputs (`dict`): numpy arrays (or tensors) for ONE record:
            * `"probabilities"` (alias `"diagnosis_probabilities"`), shape `(n_diag,)`: sigmoid of the diagnosis
              logits; `None`/absent for a model without a diagnosis head;
            * `"risk_scores"`, shape `(n_risk,)`: higher = higher risk; `None`/absent without a risk head;
            * `"cumulative_incidence"`, shape `(n_risk, n_horizons)`: absolute risk at the times of
              `"horizons"` (default `config.risk_horizons`); `None` when no baseline hazard was fitted (then the
              horizons of each risk are `None` and a warning says so); NaN entries become `None`;
            * `"horizons"` (*optional*): the times (years) of the last axis of `cumulative_incidence`;
            * `"regression_outputs"` (*optional*), shape `(n_traits,)`: continuous traits of
              `config.regression_names`;
            * `"record"`, `"warnings"` (*optional*): used when the keyword arguments are not given.
        config (`AnyECGConfig`): gives `label_space` (names, codes, thresholds) and `risk_label_space`.
        top_k (`int`, *optional*): keep the `top_k` highest diagnoses and the `top_k` highest risks (all when
            `None`).
        threshold (`float`, *optional*): decision threshold for `positive`, replacing every condition's own
            threshold from the label space (0.5 when a condition has none).
        horizons (iterable of float, *optional*): report only these horizons (years); each must be one of the
            available horizons.
        only_positive (`bool`): keep only the diagnoses at or above their threshold.
        record (`str`, *optional*): record id written into the profile.
        warnings (`list[str]`, *optional*): signal-quality and other warnings for this record.

    Returns:
        `dict` with `record`, `diagnoses` (sorted by score, highest first), `risks` (sorted by the risk at the
        longest reported horizon, else by `risk_score`; `[]` for models without a risk head), `warnings`, and
        `traits` when the model predicts continuous traits.
    """
    if threshold is not None and not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    if top_k is not None and int(top_k) < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}.")
    record = outputs.get("record") if record is None else record
    warns = list(outputs.get("warnings") or []) if warnings is None else list(warnings)

    diagnoses = []
    probs = _as_array(outputs.get("probabilities", outputs.get("diagnosis_probabilities")))
    if probs is not None:
        space = config.label_space
        probs = probs.reshape(-1)
        if probs.shape[0] != len(space):
            raise ValueError(f"{probs.shape[0]} diagnosis probabilities for a label space of {len(space)} conditions.")
        order = sorted(range(len(space)), key=lambda i: (-(probs[i] if not np.isnan(probs[i]) else -np.inf), i))
        for i in order:
            c = space[i]
            t = float(threshold) if threshold is not None else c.decision_threshold
            score = _num(probs[i])
            positive = score is not None and score >= t
            if only_positive and not positive:
                continue
            diagnoses.append({"id": c.id, "label": c.name, "code_system": c.code_system, "code": c.code,
                              "score": score, "threshold": t, "positive": bool(positive)})
        if top_k is not None:
            diagnoses = diagnoses[: int(top_k)]

    risks = []
    scores = _as_array(outputs.get("risk_scores"))
    incidence = _as_array(outputs.get("cumulative_incidence"))
    risk_space = getattr(config, "risk_label_space", None)
    if scores is not None or incidence is not None:
        if risk_space is None:
            raise ValueError("risk outputs were given but config.risk_label_space is None.")
        n_risk = len(risk_space)
        available = [float(h) for h in (outputs.get("horizons") if outputs.get("horizons") is not None else config.risk_horizons)]
        if horizons is None:
            wanted = available
        else:
            wanted = [float(h) for h in horizons]
            missing = [h for h in wanted if not any(math.isclose(h, a, rel_tol=0, abs_tol=1e-9) for a in available)]
            if missing:
                raise ValueError(f"horizons {missing} are not available; this model reports {available} (years).")
        cols = [next(j for j, a in enumerate(available) if math.isclose(h, a, rel_tol=0, abs_tol=1e-9)) for h in wanted]
        if scores is not None:
            scores = scores.reshape(-1)
            if scores.shape[0] != n_risk:
                raise ValueError(f"{scores.shape[0]} risk scores for a risk label space of {n_risk} conditions.")
        if incidence is not None:
            if incidence.size != n_risk * len(available):
                raise ValueError(f"cumulative_incidence has shape {incidence.shape}; expected ({n_risk}, {len(available)}) "
                                 f"for {n_risk} risk conditions at horizons {available}.")
            incidence = incidence.reshape(n_risk, len(available))
            if np.isnan(incidence).all():
                incidence = None
        if incidence is None and wanted:
            warns.append("absolute risks are not available (no baseline hazard fitted): risk_score is a relative "
                         "log hazard, comparable between ECGs but not a probability")
        for c_idx, c in enumerate(risk_space):
            hz = {horizon_key(available[j]): (None if incidence is None else _num(incidence[c_idx, j])) for j in cols}
            risks.append({"id": c.id, "label": c.name, "code": c.code,
                          "risk_score": None if scores is None else _num(scores[c_idx]), "horizons": hz})

        def sort_key(item):
            vals = [v for v in item["horizons"].values()]
            last = vals[-1] if vals else None
            primary = last if last is not None else item["risk_score"]
            return -(primary if primary is not None else -np.inf)

        risks.sort(key=sort_key)
        if top_k is not None:
            risks = risks[: int(top_k)]

    profile = {"record": record, "diagnoses": diagnoses, "risks": risks}
    traits = _as_array(outputs.get("regression_outputs"))
    names = getattr(config, "regression_names", None)
    if traits is not None and names:
        traits = traits.reshape(-1)
        profile["traits"] = [{"name": n, "value": _num(v)} for n, v in zip(names, traits)]
    profile["warnings"] = warns
    if outputs.get("error"):
        profile["error"] = outputs["error"]
    return profile


def profile_rows(profile: dict) -> list[dict]:
    """Flatten one profile to table rows: one row per record and condition (diagnoses first, then risks, then
    traits), every row with the same columns so that CSV/Parquet writers need no schema juggling.

    Columns: `record, kind ("diagnosis" | "risk" | "trait" | "none"), rank (1 = highest within its kind), id, label,
    code_system, code, score, threshold, positive, risk_score, risk_<h>y` for each reported horizon (e.g. `risk_1y`,
    `risk_5y`, `risk_10y`), `value` (traits), `warnings` (joined with "; "), `error`. A record with nothing to report
    (e.g. `only_positive` and no positive finding, or an unreadable file) still gets one row of kind `"none"`.
    """
    record = profile.get("record")
    horizon_keys = []
    for r in profile.get("risks", []):
        for h in r.get("horizons", {}):
            if h not in horizon_keys:
                horizon_keys.append(h)
    h_cols = [f"risk_{h}y" for h in horizon_keys]
    warnings = "; ".join(profile.get("warnings") or [])
    error = profile.get("error")

    def blank(kind, rank):
        row = dict.fromkeys(PROFILE_ROW_COLUMNS)
        row.update(dict.fromkeys(h_cols))
        row.update(record=record, kind=kind, rank=rank, value=None, warnings=warnings, error=error)
        return row

    rows = []
    for rank, d in enumerate(profile.get("diagnoses", []), 1):
        row = blank("diagnosis", rank)
        row.update({k: d.get(k) for k in ("id", "label", "code_system", "code", "score", "threshold", "positive")})
        rows.append(row)
    for rank, r in enumerate(profile.get("risks", []), 1):
        row = blank("risk", rank)
        row.update(id=r.get("id"), label=r.get("label"), code=r.get("code"), risk_score=r.get("risk_score"))
        for h, col in zip(horizon_keys, h_cols):
            row[col] = r.get("horizons", {}).get(h)
        rows.append(row)
    for rank, t in enumerate(profile.get("traits", []), 1):
        row = blank("trait", rank)
        row.update(id=t.get("name"), label=t.get("name"), value=t.get("value"))
        rows.append(row)
    if not rows:
        rows.append(blank("none", None))
    return rows
