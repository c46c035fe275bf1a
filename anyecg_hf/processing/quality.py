"""Signal-quality flags reported beside predictions: flat, NaN-filled, saturated and very noisy leads, limb leads
that contradict Einthoven's law, and a likely left/right-arm electrode reversal.

Flags are warnings, never errors: a flagged ECG is still processed (the feature extractor masks flat and NaN-filled
leads). Thresholds were set on the 50 CinC 2021 records in `shared/data/cinc2021` (see `docs/processing.md`): the
clean records get no flag, the two records with a zeroed lead get `flat`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal as sps

from ..leads import canonical_lead_names

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
        kind: `"flat"`, `"nan_filled"`, `"nan_gaps"`, `"saturated"`, `"noisy"`, `"limb_leads_inconsistent"` or
            `"limb_lead_reversal"`.
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
) -> list[QualityFlag]:
    """Check one ECG and return its quality flags (an empty list for a clean recording).

    Args:
        signal: `(leads, samples)` array in the units of `units_to_mv`.
        sampling_rate: Hz.
        lead_names: one name per row (any alias `anyecg_hf.leads.canonical_lead_name` accepts).
        units_to_mv: factor to millivolts (1 for mV, 1e-3 for uV).
        record_id: used in messages.

    Checks, per lead: NaN fraction (`nan_filled` above 50 %, `nan_gaps` otherwise); `flat` when the peak-to-peak
    amplitude is below 10 uV; `saturated` when >= 2 % of samples sit exactly on the lead's maximum or minimum
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
    flags: list[QualityFlag] = []
    usable = {}
    nyq = sampling_rate / 2
    sos_band = sps.butter(4, [0.67, min(40.0, 0.45 * sampling_rate)], "bandpass", fs=sampling_rate, output="sos")
    sos_low = sps.butter(4, min(40.0, 0.45 * sampling_rate), "lowpass", fs=sampling_rate, output="sos")
    for name, lead in zip(names, x):
        finite = np.isfinite(lead)
        nan_frac = 1.0 - finite.mean() if lead.size else 1.0
        if nan_frac >= NAN_FILLED_FRACTION:
            flags.append(QualityFlag("nan_filled", name, nan_frac, f"{where}lead {name} is {nan_frac:.0%} NaN"))
            continue
        if nan_frac > 0:
            flags.append(QualityFlag("nan_gaps", name, nan_frac, f"{where}lead {name} has NaN gaps ({nan_frac:.1%})"))
        v = np.where(finite, lead, 0.0)
        ptp = float(np.ptp(v[finite]))
        if ptp < FLAT_PTP_MV:
            flags.append(QualityFlag("flat", name, ptp, f"{where}lead {name} is flat (peak-to-peak {ptp * 1000:.2g} uV)"))
            continue
        rails = (v == v[finite].max()) | (v == v[finite].min())
        sat = float(rails[finite].mean())
        if sat >= SATURATED_FRACTION:
            flags.append(QualityFlag("saturated", name, sat, f"{where}lead {name} looks clipped ({sat:.1%} of samples at its max/min)"))
        if v.size > 30:
            band = sps.sosfiltfilt(sos_band, v)
            usable[name] = band
            if nyq > 45:
                hf = v - sps.sosfiltfilt(sos_low, v)
                ratio = float(np.sqrt(np.mean(hf**2)) / (np.sqrt(np.mean(band**2)) + 1e-12))
                if ratio >= NOISY_RATIO:
                    flags.append(QualityFlag("noisy", name, ratio, f"{where}lead {name} is very noisy (high-frequency / ECG-band rms {ratio:.2f})"))
    flags.extend(_limb_lead_checks(usable, where))
    return flags


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
