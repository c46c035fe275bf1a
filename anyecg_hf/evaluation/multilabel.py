"""`multilabel_auroc`: per-label and macro/micro AUROC and AUPRC with bootstrap CIs, without thresholds or
calibration: the light-weight core behind the `evaluate` metric module and the `Trainer` helper
(`evaluate_diagnosis` is the full evaluation)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .bootstrap import bootstrap_auroc_auprc, percentile_interval

__all__ = ["multilabel_auroc"]


def multilabel_auroc(y_true, y_score, label_mask=None, n_bootstrap: int = 0, seed: int = 0, patient_ids=None,
                     ci_level: float = 0.95, n_jobs: int = 1) -> dict:
    """Per-label and macro/micro AUROC and AUPRC, with percentile bootstrap CIs when `n_bootstrap > 0`.

    The light-weight core of `evaluate_diagnosis` (no thresholds or calibration), used by the `evaluate` metric
    module and the `Trainer` helper. Scores may be probabilities or logits: both metrics are rank-based.

    Args:
        y_true (array `(N, K)`): 0/1 labels; `NaN` or negative (e.g. `-100`) = missing.
        y_score (array `(N, K)`): scores; `NaN` only where the label is missing.
        label_mask, n_bootstrap, seed, patient_ids, ci_level, n_jobs: as in `evaluate_diagnosis`.

    Returns:
        `dict` of numpy arrays of shape `(K,)` (`auroc`, `auroc_ci_low`, `auroc_ci_high`, `auprc`, ..., `n_pos`,
        `n_neg`, `defined`) and floats (`macro_auroc` (+ CI), `micro_auroc`, `macro_auprc` (+ CI),
        `micro_auprc`, `n_defined`); undefined labels are `NaN` and left out of the macro averages.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_score, dtype=np.float64)
    y, p = (y[:, None] if y.ndim == 1 else y), (p[:, None] if p.ndim == 1 else p)
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"Shape mismatch: references {y.shape} vs predictions {p.shape} (expected (N, K) both).")
    mask = np.isfinite(y) & (y >= 0)
    if label_mask is not None:
        mask &= np.asarray(label_mask, dtype=bool).reshape(y.shape)
    if np.any(mask & ~np.isin(y, (0.0, 1.0))):
        raise ValueError("References must be 0/1 (or NaN / negative for missing labels).")
    if np.any(mask & ~np.isfinite(p)):
        bad = int(np.sum(mask & ~np.isfinite(p)))
        raise ValueError(f"Predictions hold {bad} NaN/inf value(s) at labelled entries.")
    K = y.shape[1]
    yb = y == 1
    n_pos, n_neg = np.sum(mask & yb, axis=0), np.sum(mask & ~yb, axis=0)
    defined = (n_pos > 0) & (n_neg > 0)
    out = {key: np.full(K, np.nan) for key in ("auroc", "auroc_ci_low", "auroc_ci_high", "auprc", "auprc_ci_low",
                                               "auprc_ci_high")}
    for k in np.flatnonzero(defined):
        m = mask[:, k]
        out["auroc"][k] = roc_auc_score(yb[m, k], p[m, k])
        out["auprc"][k] = average_precision_score(yb[m, k], p[m, k])
    summary = dict(n_defined=int(defined.sum()),
                   macro_auroc=float(np.mean(out["auroc"][defined])) if defined.any() else np.nan,
                   macro_auprc=float(np.mean(out["auprc"][defined])) if defined.any() else np.nan)
    for key in ("macro_auroc", "macro_auprc"):
        summary[f"{key}_ci_low"] = summary[f"{key}_ci_high"] = np.nan
    if n_bootstrap > 0 and defined.any():
        cols = np.flatnonzero(defined)
        a, ap, _ = bootstrap_auroc_auprc(yb[:, cols], p[:, cols], label_mask=mask[:, cols], n_bootstrap=n_bootstrap,
                                         seed=seed, groups=patient_ids, n_jobs=n_jobs)
        for name, boot in (("auroc", a), ("auprc", ap)):
            lo, hi, _ = percentile_interval(boot, ci_level)
            out[f"{name}_ci_low"][cols], out[f"{name}_ci_high"][cols] = lo, hi
            with np.errstate(all="ignore"):
                macro = np.nanmean(boot, axis=1)
            lo, hi, _ = percentile_interval(macro[:, None], ci_level)
            summary[f"macro_{name}_ci_low"], summary[f"macro_{name}_ci_high"] = float(lo[0]), float(hi[0])
    yf, pf = yb[mask], p[mask]
    both = yf.size > 0 and 0 < yf.sum() < yf.size
    summary["micro_auroc"] = float(roc_auc_score(yf, pf)) if both else np.nan
    summary["micro_auprc"] = float(average_precision_score(yf, pf)) if both else np.nan
    return dict(**out, n_pos=n_pos, n_neg=n_neg, defined=defined, **summary)
