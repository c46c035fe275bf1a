"""Operating thresholds of a diagnosis evaluation: how they are specified, chosen on labelled data (Youden's J, F1,
a target sensitivity / specificity) and where they came from, and the confusion metrics at a threshold.

Thresholds chosen on the data they are reported on make sensitivity and specificity optimistic; `anyecg evaluate`
chooses them on the dataset's validation split when it has one (`thresholds_on`) and says so in the report.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

__all__ = ["THRESHOLD_METHODS", "OPTIMISTIC", "select_threshold", "thresholds_on", "threshold_spec", "confusion_metrics",
           "threshold_split_text"]

THRESHOLD_METHODS = ("youden", "balanced_accuracy", "f1", "sensitivity", "specificity", "label_space", "fixed")
OPTIMISTIC = "evaluated data (optimistic)"


def threshold_spec(method, label_space, K):
    """Normalise `threshold_method` into (name, target, fixed per-label thresholds or None)."""
    if isinstance(method, str):
        name = method.lower()
        if name == "label_space":
            return name, None, np.asarray(label_space.thresholds, dtype=np.float64)
        if name in ("youden", "balanced_accuracy", "f1"):
            return name, None, None
        raise ValueError(f"Unknown threshold_method {method!r}; expected one of {THRESHOLD_METHODS}.")
    if isinstance(method, numbers.Real):
        if not 0.0 < float(method) < 1.0:
            raise ValueError(f"A fixed threshold must lie in (0, 1), got {method}.")
        return "fixed", None, np.full(K, float(method))
    if isinstance(method, tuple) and len(method) == 2 and isinstance(method[0], str):
        name, target = method[0].lower(), float(method[1])
        if name not in ("sensitivity", "specificity"):
            raise ValueError(f"Unknown threshold target {method[0]!r}; expected 'sensitivity' or 'specificity'.")
        if not 0.0 < target <= 1.0:
            raise ValueError(f"Target {name} must lie in (0, 1], got {target}.")
        return name, target, None
    values = np.asarray(method, dtype=np.float64).reshape(-1)
    if values.shape != (K,):
        raise ValueError(
            f"threshold_method: expected a method name, a float, a tuple or {K} thresholds; got {method!r}."
        )
    if not np.all(np.isnan(values) | ((values > 0) & (values < 1))):
        raise ValueError("Per-condition thresholds must lie in (0, 1) (NaN: choose on the evaluated data).")
    return "fixed", None, values


def select_threshold(y_true, y_prob, method="youden", target: float | None = None) -> float:
    """Decision threshold (predict positive when `y_prob >= threshold`) chosen on labelled data.

    Args:
        y_true (array `(n,)`): binary labels, both classes present.
        y_prob (array `(n,)`): probabilities.
        method (`str`): `"youden"` (maximise sensitivity + specificity - 1), `"balanced_accuracy"` (maximise the
            mean of sensitivity and specificity; this is the same point as Youden's, since balanced accuracy =
            (J + 1) / 2), `"f1"` (maximise F1), `"sensitivity"` (the highest threshold whose sensitivity is at least
            `target`) or `"specificity"` (the lowest threshold whose specificity is at least `target`).
        target (`float`, *optional*): the sensitivity or specificity to reach.

    Returns:
        The threshold, taken from the scores of `sklearn.metrics.roc_curve` / `precision_recall_curve`.
    """
    if method in ("youden", "balanced_accuracy", "sensitivity", "specificity"):
        fpr, tpr, thr = roc_curve(y_true, y_prob, drop_intermediate=False)
        if method in ("youden", "balanced_accuracy"):
            idx = 1 + int(np.argmax((tpr - fpr)[1:]))  # index 0 is the "+inf" threshold (nobody positive)
        elif method == "sensitivity":
            idx = max(1, int(np.argmax(tpr >= target - 1e-12)))
        else:
            ok = np.flatnonzero(1.0 - fpr >= target - 1e-12)
            idx = int(ok[-1])
            if idx == 0:
                return float(np.nextafter(thr[1], np.inf))  # only "nobody positive" reaches the specificity
        return float(thr[idx])
    if method == "f1":
        precision, recall, thr = precision_recall_curve(y_true, y_prob)
        p, r = precision[:-1], recall[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        return float(thr[int(np.argmax(f1))])
    raise ValueError(f"Unknown threshold method {method!r}.")


def confusion_metrics(y, p, threshold):
    """Sensitivity, specificity, PPV, NPV and F1 at `p >= threshold`; NaN where a denominator is zero."""
    out = dict(sensitivity=np.nan, specificity=np.nan, ppv=np.nan, npv=np.nan, f1=np.nan)
    if not np.isfinite(threshold) or len(y) == 0:
        return out
    pred = p >= threshold
    pos = y == 1
    tp = float(np.sum(pred & pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    tn = float(np.sum(~pred & ~pos))

    def ratio(a, b):
        return a / b if b > 0 else np.nan

    out.update(
        sensitivity=ratio(tp, tp + fn),
        specificity=ratio(tn, tn + fp),
        ppv=ratio(tp, tp + fp),
        npv=ratio(tn, tn + fn),
        f1=ratio(2 * tp, 2 * tp + fp + fn) if tp + fn > 0 else np.nan,
    )
    return out


def threshold_split_text(sources, given: str) -> str:
    """Where the thresholds came from, for reports and model cards: `"validation"`, `"evaluated data (optimistic)"`,
    or both with counts."""
    counts = {k: int(v) for k, v in sources[sources != ""].value_counts().items()}
    if len(counts) <= 1:
        return next(iter(counts), given)
    return "; ".join(f"{k} ({n} conditions)" for k, n in counts.items())


def thresholds_on(y_true, y_prob, label_mask=None, method="youden", target: float | None = None) -> np.ndarray:
    """One threshold per column chosen with `select_threshold` on labelled data (e.g. a validation split); `NaN`
    where the column has no positive or no negative there."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    mask = np.isfinite(y) & (y >= 0)
    if label_mask is not None:
        mask &= np.asarray(label_mask, dtype=bool)
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        yk = y[mask[:, k], k] == 1
        if 0 < yk.sum() < yk.size:
            out[k] = select_threshold(yk.astype(np.int64), p[mask[:, k], k], method=method, target=target)
    return out
