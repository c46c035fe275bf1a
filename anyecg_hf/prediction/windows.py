"""The one window aggregation: per-window outputs of long records -> one row per record (pipelines, the archive
engine and dataset evaluation all use it)."""

from __future__ import annotations

import numpy as np

__all__ = ["aggregate_windows", "window_outputs"]


def aggregate_windows(values, window_to_record, how: str = "mean", num_records: int | None = None) -> np.ndarray:
    """Combine per-window outputs into one row per record.

    Args:
        values (array-like of shape `(n_windows, ...)`): per-window outputs (probabilities, incidences, embeddings).
            Aggregate probabilities, not logits: the mean of probabilities is what a reader of the profile expects.
        window_to_record (array-like of int, shape `(n_windows,)`): record index of each window (what the feature
            extractor returns for long records).
        how (`str`): `"mean"` (average over a record's windows) or `"max"` (the most abnormal window, e.g. for a
            paroxysmal arrhythmia in a Holter recording).
        num_records (`int`, *optional*): number of records; default `max(window_to_record) + 1`. Records without
            windows get NaN.

    Returns:
        `np.ndarray` of shape `(num_records, ...)`, `float64` for `"mean"`, the input dtype for `"max"`. NaN in a
        window propagates to its record (never silently dropped).
    """
    if how not in ("mean", "max"):
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}.")
    values = np.asarray(values)
    index = np.asarray(window_to_record).astype(np.int64).reshape(-1)
    if values.shape[0] != index.shape[0]:
        raise ValueError(f"{values.shape[0]} windows of values but {index.shape[0]} entries in window_to_record.")
    if index.size and index.min() < 0:
        raise ValueError("window_to_record has negative record indices.")
    n = int(num_records if num_records is not None else (index.max() + 1 if index.size else 0))
    if index.size and index.max() >= n:
        raise ValueError(f"window_to_record refers to record {index.max()} but num_records={n}.")
    tail = values.shape[1:]
    counts = np.bincount(index, minlength=n)
    if how == "mean":
        out = np.zeros((n, *tail), dtype=np.float64)
        np.add.at(out, index, values.astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out /= counts.reshape((n,) + (1,) * len(tail))
        return out
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    out = np.full((n, *tail), -np.inf, dtype=dtype)
    np.maximum.at(out, index, values.astype(dtype))
    nan_rows = np.zeros((n, *tail), dtype=bool)
    np.logical_or.at(nan_rows, index, np.isnan(values))
    out[nan_rows] = np.nan
    out[counts == 0] = np.nan
    return out


def window_outputs(model, outputs, task: str = "profile") -> dict:
    """Per-window float32 numpy outputs of one forward pass: `task="embed"`: `embedding` (`pooler_output`, what the
    `ecg-embedding` pipeline returns); `"profile"`: the model's `named_outputs` (probabilities, risk scores,
    cumulative incidence, regression outputs) that are not `None`."""
    if task == "embed":
        return {"embedding": _np32(outputs.pooler_output)}
    return {k: _np32(v) for k, v in model.named_outputs(outputs).items() if v is not None}


def _np32(t):
    return t.detach().float().cpu().numpy()
