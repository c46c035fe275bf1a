"""The released ECGFounder preprocessing written plainly per lead with scipy: the parity definition of the feature
extractor and the speed baseline of `benchmarks/bench_preprocessing.py`."""

from __future__ import annotations

import numpy as np
from scipy import signal


def reference_preprocess(x: np.ndarray, fs: float = 500.0) -> np.ndarray:
    """The released ECGFounder recipe, written plainly per lead with scipy (the parity definition and the speed
    baseline of `benchmarks/bench_preprocessing.py`): NaN -> 0; per lead `filtfilt(iirnotch(50, 30))`; per lead
    `filtfilt(butter(4, [0.67, 40], "bandpass"))` in (b, a) form; per lead subtract `medfilt(x, int(0.4 fs) + 1)`;
    one z-score over the whole leads x time array, `(x - mean) / (std + 1e-8)`; float32."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    b, a = signal.iirnotch(50, 30, fs)
    x = np.stack([signal.filtfilt(b, a, lead) for lead in x])
    b, a = signal.butter(4, [0.67, 40], "bandpass", fs=fs)
    x = np.stack([signal.filtfilt(b, a, lead) for lead in x])
    k = int(0.4 * fs) + 1
    x = np.stack([lead - signal.medfilt(lead, k) for lead in x])
    return ((x - x.mean()) / (x.std() + 1e-8)).astype(np.float32)
