"""Compact signal storage in Arrow: int16 counts + a per-lead gain, or float16, or float32.

A 10 s 12-lead ECG at 500 Hz is 60,000 samples: 240 kB as float32, 120 kB as int16 or float16. Signals are stored
flattened (`leads * samples` values, lead-major) in one Arrow list per row, with `num_samples` and `lead_names` to
restore the `(leads, samples)` shape; a flat list is the cheapest layout for Arrow to slice and for NumPy to view.

* `"int16"`: `x = counts * gain[lead]` (mV). With `gain="auto"` each lead gets `gain = 0.001` mV (1 uV per count, exact
  for the usual WFDB `1000/mV` recordings) when that represents the lead exactly and fits (|x| <= 32.767 mV),
  else `max|x| / 32767` (error <= gain / 2). NaN (missing samples) is stored as -32768 and comes back as NaN.
* `"float16"`: relative error <= 2**-11 (0.5 uV at 1 mV), NaN kept.
* `"float32"`: lossless.
"""

from __future__ import annotations

import numpy as np
from datasets import Features, List, Value

STORAGES = ("int16", "float16", "float32")
_NAN_COUNT = np.int16(-32768)
_EXACT_GAIN = np.float32(0.001)


def encode_signal(signal: np.ndarray, storage: str = "int16", gain="auto") -> tuple[np.ndarray, np.ndarray]:
    """Encode a `(leads, samples)` float signal (mV) for storage.

    Args:
        signal (`np.ndarray`): `(leads, samples)`, float, NaN allowed.
        storage (`str`): `"int16"`, `"float16"` or `"float32"`.
        gain (`"auto"` or `float`): int16 only: mV per count, one value for every lead, or `"auto"` (see module doc).

    Returns:
        `(flat, gain)`: the flattened stored values and the per-lead gain (float32, ones for float storages).
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}.")
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"signal must be (leads, samples), got shape {x.shape}.")
    leads = x.shape[0]
    if storage != "int16":
        return x.astype(storage).reshape(-1), np.ones(leads, np.float32)
    finite = np.isfinite(x)
    absmax = np.where(finite, np.abs(x), 0).max(axis=1) if x.size else np.zeros(leads, np.float32)
    if gain == "auto":
        g = (absmax / 32767.0).astype(np.float32)
        scaled = x / _EXACT_GAIN
        with np.errstate(invalid="ignore"):
            exact = (np.where(finite, np.abs(scaled - np.round(scaled)), 0).max(axis=1) < 1e-3) & (absmax <= 32.767)
        g = np.where(exact, _EXACT_GAIN, g)
        g = np.where(g > 0, g, _EXACT_GAIN).astype(np.float32)  # flat lead: any gain works
    else:
        g = np.full(leads, float(gain), np.float32)
        if not g[0] > 0:
            raise ValueError(f"gain must be positive, got {gain}.")
        if (absmax / g > 32767).any():
            lead = int(np.argmax(absmax / g))
            raise ValueError(f"signal amplitude {absmax[lead]:.4g} mV on lead {lead} does not fit int16 at gain {g[0]:g} mV.")
    counts = np.round(np.where(finite, x, 0) / g[:, None])
    counts = np.clip(counts, -32767, 32767).astype(np.int16)
    counts[~finite] = _NAN_COUNT
    return counts.reshape(-1), g


def decode_signal(flat, gain, num_leads: int | None = None) -> np.ndarray:
    """Inverse of `encode_signal`: `(leads, samples)` float32 mV (NaN restored)."""
    flat = np.asarray(flat)
    g = np.asarray(gain, dtype=np.float32)
    leads = len(g) if num_leads is None else int(num_leads)
    if leads == 0 or flat.size % leads:
        raise ValueError(f"stored signal of {flat.size} values cannot be split into {leads} leads.")
    x = flat.reshape(leads, -1)
    if x.dtype.kind in "iu":  # int16 counts (lists read back from Arrow may come as int64)
        out = x.astype(np.float32) * g[:, None]
        out[x == _NAN_COUNT] = np.nan
        return out
    return x.astype(np.float32, copy=False)


def signal_features(storage: str = "int16") -> dict:
    """Arrow features of the stored signal columns."""
    return {
        "signal": List(Value(storage)),
        "gain": List(Value("float32")),
        "lead_names": List(Value("string")),
        "sampling_rate": Value("float32"),
        "num_samples": Value("int32"),
    }


def target_features(n_labels: int | None, n_risk: int | None, n_regression: int | None) -> dict:
    """Arrow features of the target columns (named as the model `forward` arguments)."""
    out: dict = {}
    if n_labels:
        out["labels"] = List(Value("float32"))
        out["label_mask"] = List(Value("bool"))
    if n_risk:
        out["event_times"] = List(Value("float32"))
        out["events"] = List(Value("float32"))
        out["at_risk_mask"] = List(Value("bool"))
    if n_regression:
        out["regression_targets"] = List(Value("float32"))
        out["regression_mask"] = List(Value("bool"))
    return out


def record_features(storage: str, n_labels, n_risk, n_regression, metadata_columns=()) -> Features:
    """Features of a built (raw) ECG dataset."""
    feats = {"record_id": Value("string"), "patient_id": Value("string"), "source": Value("string")}
    feats.update(signal_features(storage))
    feats["age"] = Value("float32")
    feats["sex"] = Value("string")
    for c in metadata_columns:
        if c not in feats:
            feats[c] = Value("string")
    feats.update(target_features(n_labels, n_risk, n_regression))
    return Features(feats)
