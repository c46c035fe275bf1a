"""The PhysioNet/CinC Challenge 2021 metric ("challenge score"): a reward-weighted, normalised multi-label accuracy.

The official code (physionetchallenges/evaluation-2021, `evaluate_model.py`) reads header and output files and loops
over recordings in Python; no maintained library ships the metric, so it is written here, vectorised, on arrays.
Only the reward matrix is taken from the Challenge (package data `data/cinc2021_weights.csv`, see `data/SOURCES.md`).

For recordings i, true classes L (n x c, boolean) and predicted classes O (n x c, boolean):

    A[j, k]  = sum_i L[i, j] O[i, k] / max(|L_i ∪ O_i|, 1)          (modified confusion matrix)
    s(O)     = sum_jk W[j, k] A[j, k]                                  (observed reward)
    score    = (s(O) - s(N)) / (s(L) - s(N))

where N predicts only the normal class (sinus rhythm, 426783006) for every recording, so 1 is a perfect classifier
and 0 the "always normal" one; when s(L) = s(N) the score is 0, as in the official code. Codes the Challenge scored
as one class (`733534002|164909002`, ...) count as that class.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

NORMAL_CLASS = "426783006"

__all__ = ["NORMAL_CLASS", "cinc2021_weights", "cinc2021_class_matrix", "cinc2021_challenge_score",
           "challenge_score_of_columns"]


@lru_cache(maxsize=1)
def _read_weights() -> tuple[tuple[frozenset, ...], np.ndarray]:
    text = resources.files("anyecg_hf.evaluation").joinpath("data/cinc2021_weights.csv").read_text(encoding="utf-8")
    rows = [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line.strip()]
    columns = tuple(frozenset(c.split("|")) for c in rows[0][1:])
    names = tuple(frozenset(r[0].split("|")) for r in rows[1:])
    if names != columns:
        raise ValueError("cinc2021_weights.csv: row and column classes differ")
    weights = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    weights.setflags(write=False)
    return columns, weights


def cinc2021_weights() -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The Challenge's 26 scored classes (each a tuple of equivalent SNOMED-CT codes, in the file's order) and the
    26 x 26 reward matrix (row: true class, column: predicted class)."""
    classes, weights = _read_weights()
    return [tuple(sorted(c)) for c in classes], weights.copy()


def cinc2021_class_matrix(code_lists) -> np.ndarray:
    """Boolean (n, 26) matrix: recording i has class j when any of its SNOMED codes is one of class j's codes.

    Args:
        code_lists: one iterable of codes per recording, or one comma-separated string per recording (the `codes`
            column of `cinc_label_table`).
    """
    classes, _ = _read_weights()
    rows = []
    for codes in code_lists:
        if isinstance(codes, str):
            codes = [c.strip() for c in codes.split(",") if c.strip()]
        present = {str(c) for c in codes}
        rows.append([bool(c & present) for c in classes])
    return np.array(rows, dtype=bool).reshape(-1, len(classes))


def _reward(weights: np.ndarray, labels: np.ndarray, outputs: np.ndarray) -> float:
    union = np.maximum((labels | outputs).sum(axis=1), 1).astype(np.float64)
    confusion = (labels / union[:, None]).T @ outputs.astype(np.float64)
    return float(np.nansum(weights * confusion))


def cinc2021_challenge_score(y_true, y_pred, *, weights=None, normal_index: int | None = None) -> float:
    """The Challenge 2021 score of binary predictions.

    Args:
        y_true, y_pred: boolean (or 0/1) arrays of shape (n, 26) in the order of `cinc2021_weights()` (the order of
            `anyecg_hf.data.cinc.CINC2021_SCORED`); `cinc2021_class_matrix` builds `y_true` from SNOMED codes.
            Probabilities must be thresholded first.
        weights (*optional*): another reward matrix (c x c) for the same order; the Challenge's by default.
        normal_index (`int`, *optional*): column of the normal class; sinus rhythm's column by default.

    Returns:
        `float`: 1 for perfect predictions, 0 for predicting sinus rhythm only, negative when worse than that.

    Raises:
        ValueError: when the shapes disagree or the values are not 0/1.
    """
    classes, default_weights = _read_weights()
    w = default_weights if weights is None else np.asarray(weights, dtype=np.float64)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape or y_true.shape[1] != w.shape[0] or w.shape[0] != w.shape[1]:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must both be (n, {w.shape[0]}) for a "
                         f"{w.shape} reward matrix.")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold 0/1 (or booleans); threshold probabilities first.")
    labels, outputs = y_true.astype(bool), y_pred.astype(bool)
    if normal_index is None:
        normal_index = next(i for i, c in enumerate(classes) if NORMAL_CLASS in c)
    inactive = np.zeros_like(labels)
    inactive[:, normal_index] = True
    observed, correct, baseline = (_reward(w, labels, o) for o in (outputs, labels, inactive))
    if correct == baseline:
        return 0.0
    return (observed - baseline) / (correct - baseline)


def challenge_score_of_columns(labels, probabilities, codes, thresholds=0.5) -> float | None:
    """The challenge score of a dataset whose label columns are SNOMED codes (`codes[k]` for column k), e.g. a
    `build_cinc(..., "scored")` dataset evaluated through the SNOMED crosswalk.

    A class is true when any of its codes' columns is 1, and predicted when any of its columns' probability reaches
    its threshold; a class with no column is never predicted (and never true). Columns may be NaN where the model
    has no output (never predicted). Returns `None` when the columns hold none of the 26 classes.
    """
    classes, _ = _read_weights()
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probabilities, dtype=float)
    thr = np.broadcast_to(np.asarray(thresholds, dtype=float), (probs.shape[1],))
    predicted = np.nan_to_num(probs, nan=-np.inf) >= thr
    y_true = np.zeros((labels.shape[0], len(classes)), dtype=bool)
    y_pred = np.zeros_like(y_true)
    found = False
    for k, code in enumerate(codes):
        for j, cls in enumerate(classes):
            if str(code) in cls:
                found = True
                y_true[:, j] |= labels[:, k] > 0.5
                y_pred[:, j] |= predicted[:, k]
    return cinc2021_challenge_score(y_true, y_pred) if found else None
