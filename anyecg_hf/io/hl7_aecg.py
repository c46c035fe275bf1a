"""HL7 annotated ECG (aECG, `<AnnotatedECG>`, the FDA submission format), read with defusedxml.

A rhythm `<series>` holds `<sequenceSet>`s; in each, one `<sequence>` gives the time axis (`TIME_ABSOLUTE` or
`TIME_RELATIVE`, a `GLIST` whose `<increment>` is the sample interval) and the others one lead each
(`MDC_ECG_LEAD_*`, an `SLIST_PQ` of integer `<digits>` with `<origin>` and `<scale>`):

    value = origin + scale * digit        (in the unit of origin/scale, converted to mV)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ._xml import parse_xml
from .measurements import measurements_from
from .muse import stack_leads
from .record import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_MAX_XML_BYTES,
    ECGReadError,
    ECGRecord,
    age_between,
    check_samples,
    normalize_age,
    normalize_sex,
    unit_to_mv,
)

FORMAT = "hl7"

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_AGE_UNITS = {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}
# MDC annotation code (without a "_GL" suffix) -> our measurement key
MEASUREMENT_CODES = {
    "MDC_ECG_HEART_RATE": "heart_rate", "MDC_ECG_TIME_PD_RR": "rr_ms", "MDC_ECG_TIME_PD_P": "p_ms",
    "MDC_ECG_TIME_PD_PR": "pr_ms", "MDC_ECG_TIME_PD_PQ": "pr_ms", "MDC_ECG_TIME_PD_QRS": "qrs_ms",
    "MDC_ECG_TIME_PD_QT": "qt_ms", "MDC_ECG_TIME_PD_QTC": "qtc_ms", "MDC_ECG_ANGLE_P_FRONT": "p_axis",
    "MDC_ECG_ANGLE_QRS_FRONT": "qrs_axis", "MDC_ECG_ANGLE_T_FRONT": "t_axis",
}


def parse_hl7_time(value: str | None) -> datetime | None:
    """An HL7 TS (`YYYYMMDDHHMMSS[.fff][+ZZZZ]`, any precision from the year) as a naive datetime."""
    if not value:
        return None
    value = value.strip().split("+")[0].split("-")[0]
    digits, _, frac = value.partition(".")
    if not digits.isdigit() or len(digits) < 8:
        return None
    fields = [int(digits[:4])] + [int(digits[i:i + 2]) for i in range(4, min(len(digits), 14), 2)]
    try:
        when = datetime(*fields)
        if frac.isdigit():
            when = when.replace(microsecond=int(frac[:6].ljust(6, "0")))
        return when
    except (ValueError, TypeError):
        return None


def _code(el) -> str:
    code = el.find("code") if el is not None else None
    return (code.get("code") or "").strip() if code is not None else ""


def _float_attr(el, name: str, path: Path, what: str) -> float:
    raw = el.get(name) if el is not None else None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ECGReadError(path, f"{what}: invalid or missing value {raw!r}", FORMAT) from None
    if not np.isfinite(value):
        raise ECGReadError(path, f"{what}: value {raw!r} is not finite", FORMAT)
    return value


def read_hl7_aecg(path, *, series: int = 0, max_bytes=DEFAULT_MAX_XML_BYTES,
                  max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read an HL7 aECG file.

    Args:
        path: the `.xml` file.
        series (`int`, defaults to 0): which rhythm `<series>` to read when the file holds several.
        max_bytes, max_samples: size limits (see `read_ecg`).

    Files storing only I, II, V1-V6 get III, aVR, aVL, aVF derived as for MUSE (`metadata["derived_leads"]`).
    The first `<sequenceSet>` is read, plus any later set that holds other leads over the same samples (leads
    recorded in groups); sets repeating leads (later segments) are not read. `metadata["sequence_sets"]` and
    `metadata["sequence_sets_read"]` give the counts.
    """
    path = Path(path)
    root = parse_xml(path, FORMAT, max_bytes)
    if root.tag != "AnnotatedECG":
        raise ECGReadError(path, f"root element is <{root.tag}>, expected <AnnotatedECG>", FORMAT)
    all_series = [s for s in root.iter("series")]
    rhythm = [s for s in all_series if _code(s).upper() in ("RHYTHM", "")] or all_series
    if not rhythm:
        raise ECGReadError(path, "no <series> element (no waveform)", FORMAT)
    if not 0 <= series < len(rhythm):
        raise ECGReadError(path, f"series={series} but the file holds {len(rhythm)} rhythm series", FORMAT)
    chosen = rhythm[series]
    sets = chosen.findall("component/sequenceSet")
    if not sets:
        raise ECGReadError(path, "the rhythm series has no <sequenceSet>", FORMAT)

    fs, names, rows = _decode_set(sets[0], path, max_samples)
    merged = 1
    # leads recorded in groups (e.g. 3 x 4 leads) come as several sets over the same time span: merge those whose
    # leads are new and whose rate and length match; a set repeating leads is a later segment and is not read
    for other in sets[1:]:
        codes = {_code(seq) for seq in other.findall("component/sequence")}
        if codes & set(names):
            continue
        fs2, names2, rows2 = _decode_set(other, path, max_samples - sum(r.size for r in rows))
        if fs2 != fs or {r.size for r in rows2} != {rows[0].size}:
            continue
        names, rows, merged = names + names2, rows + rows2, merged + 1
    signal, names, dropped, derived = stack_leads(rows, names, path, FORMAT, derive=True)

    meta = _metadata(root, chosen)
    meta["sequence_sets"] = len(sets)
    meta["sequence_sets_read"] = merged
    meta["dropped_channels"] = dropped
    meta["derived_leads"] = derived
    return ECGRecord(signal=signal, sampling_rate=fs, lead_names=names, metadata=meta, source=str(path))


def _decode_set(sequence_set, path: Path, max_samples: int):
    """`(rate, lead codes, rows in mV)` of one `<sequenceSet>`."""
    fs = None
    names, rows, total = [], [], 0
    for seq in sequence_set.findall("component/sequence"):
        code = _code(seq)
        value = seq.find("value")
        if code.upper().startswith("TIME_"):
            inc = value.find("increment") if value is not None else None
            if inc is None:
                raise ECGReadError(path, f"time sequence {code} has no <increment>", FORMAT)
            step = _float_attr(inc, "value", path, "time <increment>")
            unit = (inc.get("unit") or "s").strip()
            if unit not in _TIME_UNITS or step <= 0:
                raise ECGReadError(path, f"invalid time increment {inc.get('value')!r} {unit!r}", FORMAT)
            fs = 1.0 / (step * _TIME_UNITS[unit])
            continue
        if value is None:
            raise ECGReadError(path, f"sequence {code or '?'} has no <value>", FORMAT)
        digits = value.find("digits")
        if digits is None:
            raise ECGReadError(path, f"sequence {code or '?'} has no <digits> (only SLIST_PQ is supported)", FORMAT)
        text = digits.text or ""
        check_samples(path, total + len(text) // 2, max_samples, FORMAT)
        try:
            counts = np.array(text.split(), dtype=np.float64)
        except ValueError:
            bad = next((t for t in text.split() if not _is_number(t)), "?")
            raise ECGReadError(path, f"lead {code}: <digits> holds the non-number {bad[:20]!r}", FORMAT) from None
        origin_el, scale_el = value.find("origin"), value.find("scale")
        origin = _float_attr(origin_el, "value", path, f"lead {code} <origin>") if origin_el is not None else 0.0
        scale = _float_attr(scale_el, "value", path, f"lead {code} <scale>") if scale_el is not None else 1.0
        unit = (scale_el.get("unit") if scale_el is not None else None) or "uV"
        factor = unit_to_mv(unit)
        origin_factor = unit_to_mv((origin_el.get("unit") if origin_el is not None else None) or unit)
        if factor is None or origin_factor is None:
            raise ECGReadError(path, f"lead {code}: unit {unit!r} is not a voltage", FORMAT)
        rows.append((origin * origin_factor + counts * (scale * factor)).astype(np.float32))
        names.append(code)
        total += counts.size
    if fs is None:
        raise ECGReadError(path, "no TIME_ABSOLUTE/TIME_RELATIVE sequence: sampling rate unknown", FORMAT)
    if not rows:
        raise ECGReadError(path, "the sequence set holds no lead", FORMAT)
    return fs, names, rows


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _metadata(root, series) -> dict:
    meta: dict = {}
    when = None
    low = series.find("effectiveTime/low")
    if low is not None:
        when = parse_hl7_time(low.get("value"))
    if when is None:
        eff = root.find("effectiveTime")
        for child in (eff if eff is not None else []):
            when = when or parse_hl7_time(child.get("value"))
    meta["acquisition_time"] = when.isoformat() if when else None
    person = next(root.iter("subjectDemographicPerson"), None)
    if person is not None:
        gender = person.find("administrativeGenderCode")
        meta["sex"] = normalize_sex(gender.get("code")) if gender is not None else None
    subject = next(root.iter("trialSubject"), None)
    subject_id = subject.find("id") if subject is not None else None
    meta["patient_id"] = subject_id.get("extension") if subject_id is not None else None
    for obs in root.iter("relatedObservation"):
        code, value = obs.find("code"), obs.find("value")
        if code is not None and code.get("code") == "21612-7" and value is not None:  # LOINC "Reported Age"
            try:
                age = float(value.get("value")) * _AGE_UNITS.get(value.get("unit") or "a", 1.0)
            except (TypeError, ValueError):
                continue
            meta["age"] = normalize_age(round(age, 2))
    if meta.get("age") is None and person is not None and when is not None:
        birth_el = person.find("birthTime")
        birth = parse_hl7_time(birth_el.get("value")) if birth_el is not None else None
        meta["age"] = age_between(birth.date(), when.date()) if birth else None
    model = next(series.iter("manufacturerModelName"), None)
    org = next(series.iter("manufacturerOrganization"), None)
    parts = [org.findtext("name") if org is not None else None, model.text if model is not None else None]
    meta["device"] = " ".join(p.strip() for p in parts if p and p.strip()) or None
    statements, rhythm = [], None
    for ann in series.iter("annotation"):
        code, value = _code(ann), ann.find("value")
        if value is None:
            continue
        if code == "MDC_ECG_INTERPRETATION_STATEMENT" and (value.text or "").strip():
            statements.append(value.text.strip())
        elif code == "MDC_ECG_RHY" and rhythm is None:
            rhythm = value.get("displayName") or value.get("code")
    meta["diagnosis_statements"] = statements
    meta["rhythm"] = rhythm
    meta["measurements"] = _measurements(series)
    return meta


def _measurements(series) -> dict:
    """Numeric annotations of the device's `<annotationSet>` (the first whose author is a device, else the first).

    Global annotations (not inside an `MDC_ECG_BEAT` annotation) win; without them, the median over the beats of
    each per-beat value (files such as the FDA example give the numerics per beat only)."""
    sets = list(series.iter("annotationSet"))
    chosen = next((a for a in sets if a.find("author/assignedEntity/assignedAuthorType/assignedDevice") is not None),
                  sets[0] if sets else None)
    if chosen is None:
        return {}
    found: dict[str, list] = {}  # key -> [(in_beat, value, unit)]

    def walk(el, in_beat: bool):
        for child in el:
            if child.tag != "annotation":
                walk(child, in_beat)
                continue
            code = _code(child).upper().removesuffix("_GL")
            value = child.find("value")
            key = MEASUREMENT_CODES.get(code)
            if key is not None and value is not None and value.get("value") is not None:
                found.setdefault(key, []).append((in_beat, value.get("value"), value.get("unit")))
            walk(child, in_beat or code == "MDC_ECG_BEAT")

    walk(chosen, False)
    values, units = {}, {}
    for key, items in found.items():
        glob = [(v, u) for beat, v, u in items if not beat]
        if glob:
            values[key], units[key] = glob[0]
            continue
        unit = items[0][2]
        numbers = [float(v) for _, v, u in items if u == unit and _is_number(v)]
        if numbers:
            values[key], units[key] = float(np.median(numbers)), unit
    return measurements_from(values, units)
