r"""Calibration of predicted probabilities: reliability bins and expected calibration error (ECE).

Bins follow `sklearn.calibration.calibration_curve(strategy="uniform")`: `n_bins` equal-width bins on [0, 1], a
probability `p` falls in bin `searchsorted(edges[1:-1], p)` (so a value on an inner edge belongs to the lower bin).
With :math:`B_b` the rows of bin :math:`b`,

.. math::

    \mathrm{ECE} = \sum_b \frac{|B_b|}{n} \left| \bar y_{B_b} - \bar p_{B_b} \right|.

Survival calibration (predicted cumulative incidence against the Kaplan-Meier estimate per risk decile) lives in
`anyecg_hf.evaluation.survival`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["reliability_bins", "expected_calibration_error"]


def reliability_bins(y_true, y_prob, n_bins: int = 10) -> pd.DataFrame:
    """Per-bin counts, mean predicted probability and observed fraction of positives.

    Args:
        y_true (array `(n,)`): binary labels.
        y_prob (array `(n,)`): probabilities in [0, 1].
        n_bins (`int`, *optional*, defaults to 10): number of equal-width bins.

    Returns:
        `pandas.DataFrame` with one row per bin (empty bins included, with `count == 0` and `NaN` means) and
        columns `bin`, `bin_low`, `bin_high`, `count`, `mean_predicted`, `fraction_positive`.
    """
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_prob = np.asarray(y_prob, dtype=np.float64).reshape(-1)
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true {y_true.shape} and y_prob {y_prob.shape} differ in shape.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], y_prob)
    count = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=y_prob, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y_true, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / np.maximum(count, 1), np.nan)
        frac = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins),
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "count": count,
            "mean_predicted": mean_p,
            "fraction_positive": frac,
        }
    )


def expected_calibration_error(y_true, y_prob, n_bins: int = 10) -> float:
    """ECE with equal-width bins (see the module docstring); `NaN` for an empty input."""
    bins = reliability_bins(y_true, y_prob, n_bins)
    n = bins["count"].sum()
    if n == 0:
        return float("nan")
    used = bins["count"] > 0
    gap = np.abs(bins.loc[used, "fraction_positive"] - bins.loc[used, "mean_predicted"])
    return float(np.sum(bins.loc[used, "count"] / n * gap))
