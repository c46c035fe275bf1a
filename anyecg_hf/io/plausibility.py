"""One plausibility gate for every record a reader returns (and every array the feature extractor is given).

A file can decode cleanly and still not be an ECG a model should see: a WFDB gain of 1e-30, an EDF record
duration of 1e-30 s, microvolts stored where millivolts were declared, volts read as millivolts. The gate:

* **refuses** (`ECGReadError` from the readers, `ECGInputError` from the feature extractor) what cannot be an ECG
  at all: a sampling rate outside [`MIN_RATE_HZ`, `MAX_RATE_HZ`] = [50 Hz, 20 kHz] (clinical ECGs are 100 Hz to
  ~10 kHz; below 50 Hz the QRS is gone, above 20 kHz the file's rate field is garbage), and samples beyond
  `ABSURD_AMPLITUDE_MV` (100 V: raw ADC counts or a corrupt gain);
* **warns** (structured, in `record.metadata["plausibility_warnings"]`: a list of `{"code", "message", "value"}`)
  about what may be an ECG but will give unreliable outputs: `low_rate` (< 100 Hz), `short` (< 1 s),
  `amplitude_high` (a lead spans more than 50 mV, or a sample lies more than 50 mV from zero: a DC offset; ECG
  waves are < 5 mV, pacing spikes < ~20 mV),
  `units_microvolts` (the median lead spans 200 mV to 100 V: microvolts read as millivolts), `amplitude_low`
  (every lead spans < 20 uV: flat, or volts read as millivolts; the quality flags call these leads `flat` and the
  feature extractor masks them) and `no_finite_samples`.

Hand-written because no maintained library states plausible ECG ranges; the numbers are physiological bounds
(standard 12-lead amplitudes are 0.1-5 mV, AHA/ACC recommend >= 500 Hz, devices sample 100 Hz-10 kHz).
"""

from __future__ import annotations

import math

import numpy as np

MIN_RATE_HZ = 50.0
MAX_RATE_HZ = 20_000.0
LOW_RATE_HZ = 100.0
MIN_DURATION_S = 1.0
MAX_AMPLITUDE_MV = 50.0
MICROVOLT_MEDIAN_MV = 200.0
LOW_AMPLITUDE_MV = 0.02
ABSURD_AMPLITUDE_MV = 1e5

WARNINGS_KEY = "plausibility_warnings"


class ImplausibleECG(ValueError):
    """What the gate refuses; readers turn it into `ECGReadError`, the feature extractor into `ECGInputError`."""


def _warning(code: str, message: str, value: float) -> dict:
    return {"code": code, "message": message, "value": float(value)}


def check_rate(sampling_rate: float) -> None:
    """Refuse a rate outside [`MIN_RATE_HZ`, `MAX_RATE_HZ`] (`ImplausibleECG`)."""
    fs = float(sampling_rate)
    if not (math.isfinite(fs) and MIN_RATE_HZ <= fs <= MAX_RATE_HZ):
        raise ImplausibleECG(
            f"sampling rate {fs:g} Hz is outside the plausible ECG range {MIN_RATE_HZ:g} Hz-{MAX_RATE_HZ / 1000:g} kHz"
        )


def assess(signal: np.ndarray, sampling_rate: float) -> list[dict]:
    """The gate on one `(leads, samples)` signal in mV: raises `ImplausibleECG` for what it refuses, returns the
    structured warnings (empty for a plausible ECG). Costs two reductions over the samples."""
    check_rate(sampling_rate)
    x = np.asarray(signal)
    fs = float(sampling_rate)
    out: list[dict] = []
    duration = x.shape[-1] / fs
    if fs < LOW_RATE_HZ:
        out.append(_warning("low_rate", f"sampled at {fs:g} Hz (< {LOW_RATE_HZ:g} Hz): QRS detail is lost and the "
                                        "model (500 Hz) sees an upsampled signal", fs))
    if duration < MIN_DURATION_S:
        out.append(_warning("short", f"only {duration:.3g} s long (< {MIN_DURATION_S:g} s: not even one beat)",
                            duration))
    with np.errstate(invalid="ignore"):
        hi = np.fmax.reduce(x, axis=-1) if x.size else np.full(x.shape[0], np.nan)  # NaN only for all-NaN leads
        lo = np.fmin.reduce(x, axis=-1) if x.size else hi
    finite = np.isfinite(hi)
    if not finite.any():
        out.append(_warning("no_finite_samples", "no lead holds a finite sample", 0.0))
        return out
    peak = float(max(np.abs(hi[finite]).max(), np.abs(lo[finite]).max()))
    if peak > ABSURD_AMPLITUDE_MV:
        raise ImplausibleECG(f"samples reach {peak:.3g} mV (> {ABSURD_AMPLITUDE_MV:g} mV = 100 V): raw ADC counts or "
                             "a corrupt gain/unit, not millivolts")
    span = (hi - lo)[finite].astype(np.float64)
    widest, median = float(span.max()), float(np.median(span))
    if median > MICROVOLT_MEDIAN_MV:
        out.append(_warning("units_microvolts", f"the median lead spans {median:.4g} mV (ECG leads span ~1-5 mV): "
                                                "microvolts read as millivolts?", median))
    elif widest > MAX_AMPLITUDE_MV:
        out.append(_warning("amplitude_high", f"a lead spans {widest:.4g} mV (> {MAX_AMPLITUDE_MV:g} mV): artefact, "
                                              "DC offset or wrong units", widest))
    elif peak > MAX_AMPLITUDE_MV:
        out.append(_warning("amplitude_high", f"samples reach {peak:.4g} mV from zero (> {MAX_AMPLITUDE_MV:g} mV): "
                                              "a DC offset or wrong units", peak))
    if widest < LOW_AMPLITUDE_MV:
        out.append(_warning("amplitude_low", f"every lead spans less than {LOW_AMPLITUDE_MV * 1000:g} uV (widest "
                                             f"{widest * 1000:.3g} uV): flat, or volts read as millivolts", widest))
    return out
