"""Subgroup variables of an evaluation: age bands and the per-row subgroup columns `evaluate_diagnosis` breaks its
tables down by."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["age_bands", "subgroup_columns", "is_missing"]


def age_bands(ages, edges=(40, 60, 80)) -> pd.Categorical:
    """Age bands for subgroup analysis: `"<40"`, `"40-59"`, `"60-79"`, `">=80"` for the default edges.

    Args:
        ages (array `(n,)`): ages in years; `NaN` gives a missing value (left out of the breakdown).
        edges (sequence of `int`): increasing band boundaries.

    Returns:
        An ordered `pandas.Categorical`, so that reports list the bands in age order.
    """
    ages = np.asarray(ages, dtype=np.float64).reshape(-1)
    edges = [int(e) for e in edges]
    if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError(f"Age band edges must increase, got {edges}.")
    names = [f"<{edges[0]}"] + [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
    codes = np.searchsorted(np.asarray(edges, dtype=np.float64), ages, side="right")
    codes = np.where(np.isfinite(ages), codes, -1)
    return pd.Categorical.from_codes(codes, categories=names, ordered=True)


def subgroup_columns(subgroups, n):
    """{variable: (values as an object array, ordered levels)}."""
    if subgroups is None:
        return {}
    if isinstance(subgroups, pd.DataFrame):
        subgroups = {c: subgroups[c] for c in subgroups.columns}
    out = {}
    for key, values in dict(subgroups).items():
        categories = None
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            values = values.array
        if isinstance(values, pd.Categorical):
            categories = [c for c in values.categories if (values == c).any()]
        values = np.asarray(values, dtype=object).reshape(-1)
        if values.shape != (n,):
            raise ValueError(f"Subgroup {key!r} has {values.shape[0]} values for {n} samples.")
        if categories is None:
            categories = sorted({v for v in values if not is_missing(v)}, key=lambda v: (str(type(v)), v))
        out[str(key)] = (values, categories)
    return out


def is_missing(v):
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and v.strip() == "")
