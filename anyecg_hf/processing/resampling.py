"""Polyphase resampling of ECG rows to the model's rate (scipy's `resample_poly`), and of only the span a window needs."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import signal


@lru_cache(maxsize=256)
def rational_ratio(fs_in: float, fs_out: float, max_denominator: int = 10000) -> tuple[int, int]:
    """`(up, down)` with `up / down = fs_out / fs_in`, e.g. (500, 257) for 257 Hz -> 500 Hz, (1, 2) for 1000 -> 500.

    Non-integer rates are approximated with denominators up to `max_denominator` (499.7 Hz -> 5000/4997 exactly;
    otherwise a relative rate error below ~1e-8, far under any ECG clock's tolerance).
    """
    ratio = Fraction(fs_out).limit_denominator(10**6) / Fraction(fs_in).limit_denominator(10**6)
    ratio = ratio.limit_denominator(max_denominator)
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling of every row (`scipy.signal.resample_poly`, Kaiser-windowed FIR, `padtype="line"`).

    `padtype="line"` removes a straight line through the record before filtering and adds it back, so a raw ECG
    with a DC offset does not get a zero-padding transient at its ends. Output length `ceil(N * up / down)`.
    """
    up, down = rational_ratio(fs_in, fs_out)
    if up == down:
        return np.asarray(x, dtype=np.float64)
    return signal.resample_poly(np.asarray(x, dtype=np.float64), up, down, axis=-1, padtype="line")


def resample_span(x: np.ndarray, fs_in: float, fs_out: float, start: int, stop: int) -> np.ndarray:
    """Output samples `[start, stop)` of `resample(x, fs_in, fs_out)` computed from the input span they need plus a
    margin, so a 10 s window of a 24 h Holter does not resample the whole day. Identical to slicing the full
    resampling up to the FIR's edge effects, which the margin keeps out of the returned span."""
    up, down = rational_ratio(fs_in, fs_out)
    if up == down:
        return np.asarray(x[:, start:stop], dtype=np.float64)
    n_in = x.shape[1]
    margin = 20 * math.ceil(max(up, down) / up) + 2 * down  # > the FIR half-length (10 * max(up, down) / up)
    a = max(0, (math.floor(start * down / up) - margin) // down * down)  # a multiple of `down`: aligned grid
    b = min(n_in, math.ceil(stop * down / up) + margin)
    if a == 0 and b == n_in:
        return resample(x, fs_in, fs_out)[:, start:stop]
    y = resample(x[:, a:b], fs_in, fs_out)
    offset = a * up // down
    return y[:, start - offset:stop - offset]
