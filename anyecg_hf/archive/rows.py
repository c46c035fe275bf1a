"""Result rows: a batch's window-aggregated outputs -> one Arrow table of rows (one per record)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .guard import escape_text


def _dict_column(value: str, n: int) -> pa.DictionaryArray:
    """A constant string column that costs one dictionary entry (model id, revision, preprocessing, precision)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def _fixed_list(values: np.ndarray) -> pa.Array:
    """`(n, d)` or `(n, a, b)` float array -> Arrow fixed-size list column (nested for 3-D)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, int(size))
    return flat


class RowBuilder:
    """Turns a batch's aggregated outputs into an Arrow table of result rows (one per record)."""

    def __init__(self, task: str, config, model_id: str, revision: str, preprocessing: str, threshold=None,
                 precision: str = "fp32"):
        self.task = task
        self.precision = precision
        self.model_id = model_id
        self.revision = revision
        self.preprocessing = preprocessing
        space = getattr(config, "label_space", None)
        self.names = np.asarray(space.names if space is not None else [], dtype=object)
        if threshold is not None:
            self.thresholds = np.full(len(self.names), float(threshold))
        else:
            self.thresholds = np.asarray([c.decision_threshold for c in space] if space is not None else [])

    def build(self, items, outputs: dict) -> pa.Table:
        n = len(items)
        cols = {
            "input_index": pa.array([it.index for it in items], pa.int64()),
            "path": pa.array([escape_text(it.path) for it in items], pa.string()),
            "record_id": pa.array([escape_text(it.record_id) for it in items], pa.string()),
            "sampling_rate": pa.array([it.meta.get("sampling_rate") for it in items], pa.float32()),
            "duration_s": pa.array([it.meta.get("duration_s") for it in items], pa.float32()),
            "n_leads": pa.array([it.meta.get("n_leads") for it in items], pa.int16()),
            "n_windows": pa.array([it.meta.get("n_windows") for it in items], pa.int32()),
        }
        if self.task == "embed":
            cols["embedding"] = _fixed_list(outputs["embedding"])
        else:
            probs = outputs.get("probabilities")
            if probs is not None:
                cols["probabilities"] = _fixed_list(probs)
                positive = probs >= self.thresholds[None, :]
                cols["positive"] = pa.array([self.names[row].tolist() for row in positive], pa.list_(pa.string()))
            for key in ("risk_scores", "cumulative_incidence", "regression_outputs"):
                if outputs.get(key) is not None:
                    cols[key] = _fixed_list(outputs[key])
        cols["warnings"] = pa.array([it.meta.get("warnings") or [] for it in items], pa.list_(pa.string()))
        cols["measurements"] = pa.array([it.meta.get("measurements") for it in items], pa.string())
        cols["model"] = _dict_column(self.model_id, n)
        cols["model_revision"] = _dict_column(self.revision, n)
        cols["preprocessing"] = _dict_column(self.preprocessing, n)
        cols["precision"] = _dict_column(self.precision, n)
        return pa.table(cols)
