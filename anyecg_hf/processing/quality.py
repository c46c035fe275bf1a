"""Signal-quality flags reported beside predictions: flat, NaN-filled, saturated and very noisy leads, limb leads
that contradict Einthoven's law, and a likely left/right-arm electrode reversal.

Flags are warnings, never errors: a flagged ECG is still processed. A lead flagged `flat` or `nan_filled` is exactly
a lead the feature extractor masks (same thresholds, same comparisons: `AnyECGFeatureExtractor.check_quality`
passes its own `flat_threshold` / `nan_lead_fraction`). Record-level doubts from the readers' plausibility gate
(`anyecg_hf.io.plausibility`: microvolts read as millivolts, amplitudes over 50 mV, every lead under 20 uV, rates
under 100 Hz, under 1 s) are flags too; rates outside 50 Hz-20 kHz are refused (`ValueError`). Thresholds were set on the 50 CinC 2021 records in `tests/assets/data/cinc2021` (see `docs/processing.md`): the
clean records get no flag, the two records with a zeroed lead get `flat`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import signal as sps

from ..io.plausibility import ImplausibleECG, assess
from ..leads import canonical_lead_names
from . import filters

FLAT_PTP_MV = 0.01  # peak-to-peak below 10 uV: no ECG is that small
NAN_FILLED_FRACTION = 0.5
SATURATED_FRACTION = 0.02  # >= 2 % of samples sitting on the lead's max or min value
NOISY_RATIO = 1.0  # rms above 40 Hz >= rms in 0.67-40 Hz
EINTHOVEN_RESIDUAL = 0.2  # ||III - (II - I)|| / ||III|| (or the aVR / aVL / aVF analogues); derived leads give ~0.01
REVERSAL_POLARITY = 0.2


@dataclass(frozen=True)
class QualityFlag:
    """One signal-quality warning.

    Args:
        kind: `"flat"`, `"nan_filled"`, `"nan_gaps"`, `"saturated"`, `"noisy"`, `"limb_leads_inconsistent"`,
            `"limb_lead_reversal"`, a plausibility code (`"units_microvolts"`, `"amplitude_high"`,
            `"amplitude_low"`, `"low_rate"`, `"short"`, `"no_finite_samples"`) or, from the feature extractor,
            `"missing_leads"` / `"shorter_than_window"`.
        lead: the lead concerned (`None` for record-level flags).
        value: the measured quantity the threshold was applied to.
        message: a human-readable sentence.
    """

    kind: str
    lead: str | None
    value: float
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_polarity(x: np.ndarray) -> float:
    """(max + min) / (max - min) of a band-passed lead: +1 all-positive deflections, -1 all-negative."""
    span = x.max() - x.min()
    return float((x.max() + x.min()) / span) if span > 0 else 0.0


def signal_quality(
    signal: np.ndarray,
    sampling_rate: float,
    lead_names,
    units_to_mv: float = 1.0,
    record_id: str | None = None,
    flat_threshold: float = FLAT_PTP_MV,
    nan_fraction: float = NAN_FILLED_FRACTION,
) -> list[QualityFlag]:
    """Check one ECG and return its quality flags (an empty list for a clean recording).

    Args:
        signal: `(leads, samples)` array in the units of `units_to_mv`.
        sampling_rate: Hz.
        lead_names: one name per row (any alias `anyecg_hf.leads.canonical_lead_name` accepts).
        units_to_mv: factor to millivolts (1 for mV, 1e-3 for uV).
        record_id: used in messages.
        flat_threshold: peak-to-peak (mV) at or below which a lead is `flat` (the extractor's `flat_threshold`).
        nan_fraction: NaN fraction above which a lead is `nan_filled` (the extractor's `nan_lead_fraction`).

    Checks, per lead: NaN fraction (`nan_filled` above 50 % or all NaN, `nan_gaps` otherwise); `flat` when the
    peak-to-peak amplitude is at most 10 uV; `saturated` when >= 2 % of samples sit exactly on the lead's maximum or minimum
    (clipping); `noisy` when the rms above 40 Hz is at least the rms in the 0.67-40 Hz ECG band. Across limb leads,
    when I, II and III (or aVR/aVL/aVF) are all usable: `limb_leads_inconsistent` when Einthoven's relations
    (III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2) leave a residual above 20 % (mislabelled or
    swapped channels), and `limb_lead_reversal` when lead I is predominantly negative and aVR predominantly positive
    (the classic sign of swapped left/right arm electrodes; dextrocardia looks the same).
    """
    x = np.asarray(signal, dtype=np.float64) * units_to_mv
    names = canonical_lead_names(lead_names)
    if x.ndim != 2 or x.shape[0] != len(names):
        raise ValueError(f"{record_id or 'record'}: signal shape {x.shape} does not match {len(names)} lead names")
    where = f"{record_id}: " if record_id else ""
    try:
        doubts = assess(x, sampling_rate)  # refuses rates outside 50 Hz-20 kHz (the filters below fail or lie)
    except ImplausibleECG as err:
        raise ValueError(f"{where}{err}") from None
    n = x.shape[1]
    # per-lead statistics for all leads at once (one pass for NaN count and finite min / max)
    n_bad, lo, hi = filters.row_stats(x)
    n_finite = n - n_bad
    nan_frac = n_bad / n if n else np.ones(len(x))
    with np.errstate(invalid="ignore", divide="ignore"):
        ptp = np.where(n_finite > 0, hi - lo, 0.0)
        sat = filters.rail_counts(x, lo, hi) / n_finite  # NaN never equals a rail
    v = np.where(np.isfinite(x), x, 0.0) if n_bad.any() else x
    nan_filled = (nan_frac > nan_fraction) | (nan_frac >= 1.0)
    flat = ~nan_filled & (ptp <= flat_threshold)
    usable = np.flatnonzero(~nan_filled & ~flat)
    band, noise = {}, {}
    sos_band, pad_band = _design(sampling_rate, "bandpass")
    if len(usable) and n > max(30, pad_band):
        rows = v[usable]
        # all usable leads in one vectorised call each; float32 filters (values within ~1e-4 of float64) are
        # ~1.6x faster, and thresholds set at 20 % or 1.0 do not need more
        filtered = filters.zero_phase_filter(rows, sos_band, pad_band, dtype=np.float32)
        band = {names[k]: filtered[i] for i, k in enumerate(usable)}
        sos_low, pad_low = _design(sampling_rate, "lowpass")
        if sampling_rate / 2 > 45 and n > pad_low:
            low = filters.zero_phase_filter(rows, sos_low, pad_low, dtype=np.float32)
            hf_sq = filters.diff_sumsq(rows, low)  # energy above 40 Hz
            band_sq = np.einsum("ij,ij->i", filtered, filtered, dtype=np.float64)
            ratio = np.sqrt(hf_sq / n) / (np.sqrt(band_sq / n) + 1e-12)
            noise = dict(zip(usable.tolist(), ratio.tolist()))
    flags: list[QualityFlag] = [QualityFlag(d["code"], None, d["value"], f"{where}{d['message']}") for d in doubts]
    for k, name in enumerate(names):
        if nan_filled[k]:
            flags.append(QualityFlag("nan_filled", name, float(nan_frac[k]), f"{where}lead {name} is {nan_frac[k]:.0%} NaN"))
            continue
        if nan_frac[k] > 0:
            flags.append(QualityFlag("nan_gaps", name, float(nan_frac[k]), f"{where}lead {name} has NaN gaps ({nan_frac[k]:.1%})"))
        if flat[k]:
            flags.append(QualityFlag("flat", name, float(ptp[k]), f"{where}lead {name} is flat (peak-to-peak {ptp[k] * 1000:.2g} uV)"))
            continue
        if sat[k] >= SATURATED_FRACTION:
            flags.append(QualityFlag("saturated", name, float(sat[k]), f"{where}lead {name} looks clipped ({sat[k]:.1%} of samples at its max/min)"))
        if noise.get(k, 0.0) >= NOISY_RATIO:
            flags.append(QualityFlag("noisy", name, noise[k], f"{where}lead {name} is very noisy (high-frequency / ECG-band rms {noise[k]:.2f})"))
    flags.extend(_limb_lead_checks(band, where))
    return flags


@lru_cache(maxsize=32)
def _design(fs: float, kind: str) -> tuple[np.ndarray, int]:
    """The quality checks' 4th-order Butterworth band-pass (0.67-40 Hz) or low-pass (40 Hz), edges kept under
    0.45 fs, and `scipy.signal.sosfiltfilt`'s default padlen for it."""
    high = min(40.0, 0.45 * fs)
    sos = sps.butter(4, [0.67, high] if kind == "bandpass" else high, kind, fs=fs, output="sos")
    ntaps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    sos.setflags(write=False)
    return sos, 3 * ntaps


def _limb_lead_checks(band: dict, where: str) -> list[QualityFlag]:
    flags = []
    if "I" in band and "II" in band:
        i, ii = band["I"], band["II"]
        derived = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
        residuals = {
            name: float(np.linalg.norm(band[name] - d) / (np.linalg.norm(band[name]) + 1e-12))
            for name, d in derived.items() if name in band
        }
        if residuals:
            worst = max(residuals, key=residuals.get)
            if residuals[worst] > EINTHOVEN_RESIDUAL:
                flags.append(QualityFlag(
                    "limb_leads_inconsistent", worst, residuals[worst],
                    f"{where}limb leads contradict Einthoven's law ({worst} differs from its value derived from I and II "
                    f"by {residuals[worst]:.0%}): channels may be mislabelled or swapped",
                ))
    if "I" in band and "aVR" in band:
        p_i, p_avr = _norm_polarity(band["I"]), _norm_polarity(band["aVR"])
        if p_i < -REVERSAL_POLARITY and p_avr > REVERSAL_POLARITY:
            flags.append(QualityFlag(
                "limb_lead_reversal", None, p_i,
                f"{where}lead I is predominantly negative and aVR positive: likely left/right arm electrode reversal "
                "(or dextrocardia)",
            ))
    return flags
