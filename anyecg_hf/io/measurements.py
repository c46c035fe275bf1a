"""The cart's own interval and axis measurements, one dict with the same keys for every format.

`ECGRecord.metadata["measurements"]` holds plain Python numbers under these keys, each present only when the file
states it (units are in the names; axes in degrees):

    heart_rate   ventricular rate, bpm     MUSE/CardioSoft VentricularRate    MDC_ECG_HEART_RATE
    rr_ms        RR interval               CardioSoft RRInterval              MDC_ECG_TIME_PD_RR
    p_ms         P-wave duration           CardioSoft PDuration               MDC_ECG_TIME_PD_P
    pr_ms        PR (PQ) interval          PRInterval / PQInterval            MDC_ECG_TIME_PD_PR, _PQ
    qrs_ms       QRS duration              QRSDuration                        MDC_ECG_TIME_PD_QRS
    qt_ms        QT interval               QTInterval                         MDC_ECG_TIME_PD_QT
    qtc_ms       corrected QT (the cart's) QTCorrected / QTCInterval          MDC_ECG_TIME_PD_QTc
    p_axis       frontal P axis            PAxis                              MDC_ECG_ANGLE_P_FRONT
    qrs_axis     frontal QRS axis          RAxis                              MDC_ECG_ANGLE_QRS_FRONT
    t_axis       frontal T axis            TAxis                              MDC_ECG_ANGLE_T_FRONT

(the MDC codes with or without `_GL` in HL7 aECG; DICOM and Philips names in docs/io.md.)

Values outside a physiological range are dropped as "not measured": carts write sentinels such as 29999,
-32768 or 999 where a measurement failed, and a sentinel passed on as a number would be silent garbage.
"""

from __future__ import annotations

import math

MEASUREMENT_KEYS = ("heart_rate", "rr_ms", "p_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "p_axis", "qrs_axis",
                    "t_axis")

# accepted [low, high] per key: anything else is a sentinel or garbage (0 ms is "not measured")
_RANGES = {
    "heart_rate": (1, 400), "rr_ms": (100, 10000), "p_ms": (1, 1000), "pr_ms": (1, 2000), "qrs_ms": (1, 1000),
    "qt_ms": (1, 2000), "qtc_ms": (1, 2000), "p_axis": (-360, 360), "qrs_axis": (-360, 360), "t_axis": (-360, 360),
}
_TIME_TO_MS = {"ms": 1.0, "msec": 1.0, "millisecond": 1.0, "milliseconds": 1.0, "s": 1000.0, "sec": 1000.0,
               "second": 1000.0, "seconds": 1000.0, "us": 1e-3, "usec": 1e-3}
_RATE_TO_BPM = {"bpm": 1.0, "/min": 1.0, "1/min": 1.0, "{beats}/min": 1.0, "{beat}/min": 1.0, "beats/min": 1.0,
                "min-1": 1.0, "/s": 60.0, "hz": 60.0}
_ANGLE_TO_DEG = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 180.0 / math.pi}


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(str(value).strip().replace(",", "."))
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def unit_factor(key: str, unit: str | None) -> float | None:
    """Factor from `unit` to the unit of `key` (ms, bpm or degrees); `None` for a unit that does not fit.

    A missing unit means the key's own unit (files that leave it out write ms / bpm / degrees)."""
    if unit is None or not str(unit).strip():
        return 1.0
    u = str(unit).strip().lower()
    if key == "heart_rate":
        return _RATE_TO_BPM.get(u)
    if key.endswith("_axis"):
        return _ANGLE_TO_DEG.get(u)
    return _TIME_TO_MS.get(u)


def plain(value: float) -> int | float:
    """An int when the value is whole (carts store integers), else a float rounded to 3 decimals."""
    return int(value) if float(value).is_integer() else round(float(value), 3)


def measurements_from(values: dict, units: dict | None = None) -> dict:
    """`{key: plain number}` for the keys of `MEASUREMENT_KEYS` in `values` whose value is a number in range.

    Args:
        values: key -> raw value (str or number); keys not in `MEASUREMENT_KEYS` are ignored.
        units: key -> the unit the file states for it (converted to ms / bpm / degrees); a value whose unit does
            not fit its key is dropped.
    """
    out = {}
    for key in MEASUREMENT_KEYS:
        number = _number(values.get(key))
        if number is None:
            continue
        factor = unit_factor(key, (units or {}).get(key))
        if factor is None:
            continue
        number *= factor
        low, high = _RANGES[key]
        if low <= number <= high:
            out[key] = plain(number)
    return out
