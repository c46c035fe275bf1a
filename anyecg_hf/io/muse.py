"""GE MUSE XML (`<RestingECG>`): reader and a writer (used to build MUSE test files from other records).

Layout (DESIGN_NOTES "Clinical formats"): `<Waveform>` blocks with a `<WaveformType>` (`Rhythm` = the full record,
`Median` = the median beat), `<SampleBase>`/`<SampleExponent>` (rate = base x 10^exponent), and `<LeadData>` items
with `LeadID`, `LeadAmplitudeUnitsPerBit`, `LeadAmplitudeUnits`, `LeadSampleSize` and `WaveFormData` (base64 of
little-endian signed integers). MUSE usually stores I, II, V1-V6 only; the reader derives the other limb leads by
Einthoven's and Goldberger's laws:

    III = II - I,   aVR = -(I + II) / 2,   aVL = I - II / 2,   aVF = II - I / 2
"""

from __future__ import annotations

import base64
import zlib
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ._xml import b64decode_strict, child_text, parse_xml
from .measurements import measurements_from, plain
from .record import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_MAX_XML_BYTES,
    ECGReadError,
    ECGRecord,
    age_between,
    canonicalize_leads,
    check_samples,
    normalize_age,
    normalize_sex,
)

FORMAT = "muse"

_UNITS_TO_MV = {"MICROVOLTS": 1e-3, "MICROVOLT": 1e-3, "UV": 1e-3, "MILLIVOLTS": 1.0, "MILLIVOLT": 1.0, "MV": 1.0,
                "VOLTS": 1e3, "VOLT": 1e3, "V": 1e3, "NANOVOLTS": 1e-6, "NANOVOLT": 1e-6, "NV": 1e-6}
_AGE_UNITS = {"YEARS": 1.0, "MONTHS": 1 / 12, "WEEKS": 7 / 365.25, "DAYS": 1 / 365.25, "HOURS": 1 / 8766}
# our measurement key -> MUSE's RestingECGMeasurements tag (ms, bpm, degrees); P duration comes from the
# POnset/POffset fiducials (samples at ECGSampleBase)
MEASUREMENT_TAGS = {"heart_rate": "VentricularRate", "pr_ms": "PRInterval", "qrs_ms": "QRSDuration",
                    "qt_ms": "QTInterval", "qtc_ms": "QTCorrected", "p_axis": "PAxis", "qrs_axis": "RAxis",
                    "t_axis": "TAxis"}

# derived limb leads as (name, coefficient of I, coefficient of II)
DERIVED_LIMB_LEADS = (("III", -1.0, 1.0), ("aVR", -0.5, -0.5), ("aVL", 1.0, -0.5), ("aVF", -0.5, 1.0))


def _num(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        out = float(value.replace(",", "."))
    except ValueError:
        return None
    return out if np.isfinite(out) else None


def _parse_date(value: str | None) -> date | None:
    for fmt in ("%m-%d-%Y", "%m/%d/%Y", "%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime((value or "").strip(), fmt).date()
        except ValueError:
            continue
    return None


def _parse_time(value: str | None):
    for fmt in ("%H:%M:%S", "%H:%M"):
        try:
            return datetime.strptime((value or "").strip(), fmt).time()
        except ValueError:
            continue
    return None


def derive_limb_leads(signal: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Add III, aVR, aVL, aVF computed from I and II when they are missing.

    Returns `(signal, names, derived)`; unchanged when I or II is absent.
    """
    if "I" not in names or "II" not in names:
        return signal, names, []
    lead_i, lead_ii = signal[names.index("I")], signal[names.index("II")]
    rows, derived = [], []
    for name, a, b in DERIVED_LIMB_LEADS:
        if name not in names:
            rows.append((a * lead_i + b * lead_ii).astype(np.float32))
            derived.append(name)
    if not derived:
        return signal, names, []
    return np.concatenate([signal, np.stack(rows)]), names + derived, derived


def stack_leads(rows, names, path, fmt: str, *, derive: bool = False, what: str = ""):
    """Equal-length rows -> `(signal, canonical names, dropped channels, derived leads)`: the length check, the lead
    names (`canonicalize_leads`) and, with `derive`, III, aVR, aVL, aVF from I and II (shared by the XML readers)."""
    lengths = {r.size for r in rows}
    if len(lengths) != 1:
        raise ECGReadError(path, f"{what}leads have different lengths {sorted(lengths)}", fmt)
    signal, names, dropped = canonicalize_leads(np.stack(rows), names, path, fmt)
    derived: list[str] = []
    if derive:
        signal, names, derived = derive_limb_leads(signal, names)
    return signal, names, dropped, derived


def read_muse(path, *, waveform: str = "rhythm", derive_leads: bool = True, subtract_baseline: bool = True,
              max_bytes=DEFAULT_MAX_XML_BYTES, max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a GE MUSE XML export.

    Args:
        path: the `.xml` file.
        waveform (`str`, defaults to `"rhythm"`): which `<Waveform>` to read, `"rhythm"` (the full recording) or
            `"median"` (the median beat).
        derive_leads (`bool`, defaults to `True`): compute III, aVR, aVL, aVF from I and II when the file stores
            only 8 leads (listed in `metadata["derived_leads"]`).
        subtract_baseline (`bool`, defaults to `True`): subtract each lead's `<FirstSampleBaseline>` from its
            samples. GE's LeadData table gives it as an integer in counts, like `LeadHighLimit`/`LeadLowLimit` (the
            ADC range): the count of the lead's baseline (zero line) at the first sample, so signal = (stored
            count - baseline) x units per bit. MUSE's own exports write 0 (nothing changes); files converted from
            offset-binary acquisitions store offset samples with the offset there. Non-zero values are listed in
            `metadata["first_sample_baseline"]`; `False` keeps the stored counts as they are.
        max_bytes, max_samples: size limits (see `read_ecg`).

    """
    path = Path(path)
    root = parse_xml(path, FORMAT, max_bytes)
    if root.tag != "RestingECG":
        raise ECGReadError(path, f"root element is <{root.tag}>, expected <RestingECG>", FORMAT)
    wanted = waveform.strip().lower()
    blocks = root.findall("Waveform")
    types = [(child_text(wf, "WaveformType") or "Rhythm") for wf in blocks]
    chosen = next((wf for wf, t in zip(blocks, types) if t.lower() == wanted), None)
    if chosen is None:
        raise ECGReadError(path, f"no {waveform!r} <Waveform> (found: {types or 'none'})", FORMAT)

    base = _num(child_text(chosen, "SampleBase"))
    exponent = _num(child_text(chosen, "SampleExponent")) or 0.0
    if base is None or base <= 0 or not -3 <= exponent <= 6:
        raise ECGReadError(path, f"invalid sampling rate SampleBase={child_text(chosen, 'SampleBase')!r}", FORMAT)
    fs = base * 10.0 ** exponent

    names, rows, baselines = [], [], {}
    total = 0
    for i, lead in enumerate(chosen.findall("LeadData")):
        lead_id = child_text(lead, "LeadID")
        if not lead_id:
            raise ECGReadError(path, f"<LeadData> #{i + 1} has no <LeadID>", FORMAT)
        data = child_text(lead, "WaveFormData")
        if data is None:
            raise ECGReadError(path, f"lead {lead_id} has no <WaveFormData>", FORMAT)
        check_samples(path, total + len(data) // 2, max_samples, FORMAT)
        raw = b64decode_strict(data, path, FORMAT, f"lead {lead_id}")
        crc = child_text(lead, "LeadDataCRC32")
        if crc is not None and crc.isdigit() and int(crc) != zlib.crc32(raw):
            raise ECGReadError(path, f"lead {lead_id}: LeadDataCRC32 does not match the data", FORMAT)
        size = int(_num(child_text(lead, "LeadSampleSize")) or 2)
        if size not in (1, 2, 4):
            raise ECGReadError(path, f"lead {lead_id}: unsupported LeadSampleSize {size}", FORMAT)
        if len(raw) % size:
            raise ECGReadError(path, f"lead {lead_id}: {len(raw)} data bytes is not a multiple of {size}", FORMAT)
        values = np.frombuffer(raw, dtype={1: "i1", 2: "<i2", 4: "<i4"}[size])
        count = _num(child_text(lead, "LeadSampleCountTotal"))
        if count is not None:
            if count > values.size:
                raise ECGReadError(
                    path, f"lead {lead_id}: {values.size} samples, <LeadSampleCountTotal> says {int(count)}", FORMAT
                )
            values = values[: int(count)]
        per_bit = _num(child_text(lead, "LeadAmplitudeUnitsPerBit"))
        if per_bit is None or per_bit <= 0:
            raise ECGReadError(path, f"lead {lead_id}: missing or invalid <LeadAmplitudeUnitsPerBit>", FORMAT)
        unit = (child_text(lead, "LeadAmplitudeUnits") or "MICROVOLTS").upper()
        if unit not in _UNITS_TO_MV:
            raise ECGReadError(path, f"lead {lead_id}: unknown <LeadAmplitudeUnits> {unit!r}", FORMAT)
        counts = values.astype(np.float64)
        baseline = _num(child_text(lead, "FirstSampleBaseline")) or 0.0
        if baseline and subtract_baseline:
            counts -= baseline
        if baseline:
            baselines[lead_id] = plain(baseline)
        rows.append((counts * (per_bit * _UNITS_TO_MV[unit])).astype(np.float32))
        names.append(lead_id)
        total += values.size
    if not rows:
        raise ECGReadError(path, f"the {waveform!r} <Waveform> has no <LeadData>", FORMAT)
    signal, names, dropped, derived = stack_leads(rows, names, path, FORMAT, derive=derive_leads)
    meta = _metadata(root)
    meta["waveform"] = waveform.lower()
    meta["derived_leads"] = derived
    meta["dropped_channels"] = dropped
    meta["first_sample_baseline"] = baselines
    return ECGRecord(signal=signal, sampling_rate=fs, lead_names=names, metadata=meta, source=str(path))


def _metadata(root) -> dict:
    demo, test = root.find("PatientDemographics"), root.find("TestDemographics")
    meta: dict = {}
    meta["patient_id"] = child_text(demo, "PatientID")
    meta["sex"] = normalize_sex(child_text(demo, "Gender"))
    acq_date = _parse_date(child_text(test, "AcquisitionDate"))
    acq_time = _parse_time(child_text(test, "AcquisitionTime"))
    if acq_date is not None:
        meta["acquisition_time"] = (
            datetime.combine(acq_date, acq_time).isoformat() if acq_time else acq_date.isoformat()
        )
    age = _num(child_text(demo, "PatientAge"))
    if age is not None:
        age *= _AGE_UNITS.get((child_text(demo, "AgeUnits") or "YEARS").upper(), 1.0)
        meta["age"] = normalize_age(round(age, 2))
    else:
        birth = _parse_date(child_text(demo, "DateofBirth"))
        if birth is not None and acq_date is not None:
            meta["age"] = age_between(birth, acq_date)
    device = " ".join(p for p in (child_text(test, "AcquisitionDevice"), child_text(test, "CartNumber")) if p)
    meta["device"] = device or None
    meta["site"] = child_text(test, "SiteName") or child_text(test, "Site")
    meas = root.find("RestingECGMeasurements")
    if meas is not None:
        values = {key: child_text(meas, tag) for key, tag in MEASUREMENT_TAGS.items()}
        onset, offset = _num(child_text(meas, "POnset")), _num(child_text(meas, "POffset"))
        base = _num(child_text(meas, "ECGSampleBase"))
        if onset is not None and offset is not None and base:
            exponent = _num(child_text(meas, "ECGSampleExponent")) or 0.0
            values["p_ms"] = (offset - onset) * 1000.0 / (base * 10.0 ** exponent) if -3 <= exponent <= 6 else None
        meta["measurements"] = measurements_from(values)
    meta["diagnosis_statements"] = _statements(root.find("Diagnosis")) or _statements(root.find("OriginalDiagnosis"))
    return meta


def _statements(diag) -> list[str]:
    """Diagnosis lines; MUSE splits a line over several `<DiagnosisStatement>`s until one flagged `ENDSLINE`."""
    if diag is None:
        return []
    lines, current = [], []
    for stmt in diag.findall("DiagnosisStatement"):
        piece = child_text(stmt, "StmtText")
        if piece:
            current.append(piece)
        flags = {(f.text or "").strip().upper() for f in stmt.findall("StmtFlag")}
        if "ENDSLINE" in flags and current:
            lines.append(" ".join(current))
            current = []
    if current:
        lines.append(" ".join(current))
    return lines


def write_muse_xml(record: ECGRecord, path, *, stored_leads=("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
                   units_per_bit: float = 4.88, median: ECGRecord | None = None, baseline_counts: int = 0) -> Path:
    """Write `record` as a GE MUSE XML file (ISO-8859-1, `restecg.dtd` DOCTYPE like real exports).

    Args:
        record (`ECGRecord`): the recording, in mV.
        path: output file.
        stored_leads (`tuple[str]`): leads to store (MUSE stores I, II, V1-V6 and derives the rest).
        units_per_bit (`float`, defaults to `4.88`): amplitude resolution in microvolts per bit; samples are
            rounded to the nearest step, so a round trip agrees to `units_per_bit / 2` microvolts.
        median (`ECGRecord`, *optional*): a median beat to store as a second `<Waveform>`.
        baseline_counts (`int`, defaults to 0): store every sample offset by this many counts and write it as
            `<FirstSampleBaseline>` (files of that kind exist; MUSE itself writes 0).

    Metadata written when present: `age`, `sex`, `patient_id`, `acquisition_time`, `diagnosis_statements`,
    `measurements` (all but `rr_ms` and `p_ms`, which MUSE does not store as such).

    Raises:
        ValueError: when a stored lead is missing or a sample does not fit in 16 bits at this resolution.
    """
    path = Path(path)
    meta = record.metadata
    parts = ['<?xml version="1.0" encoding="ISO-8859-1"?>', '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">',
             "<RestingECG>", "<MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>",
             "<PatientDemographics>"]
    if meta.get("patient_id"):
        parts.append(f"<PatientID>{escape(str(meta['patient_id']))}</PatientID>")
    if meta.get("age") is not None:
        parts.append(f"<PatientAge>{meta['age']}</PatientAge><AgeUnits>YEARS</AgeUnits>")
    if meta.get("sex") in ("M", "F"):
        parts.append(f"<Gender>{'MALE' if meta['sex'] == 'M' else 'FEMALE'}</Gender>")
    parts.append("</PatientDemographics><TestDemographics><DataType>RESTING</DataType>"
                 "<AcquisitionDevice>MAC55</AcquisitionDevice>")
    when = meta.get("acquisition_time")
    if when:
        stamp = datetime.fromisoformat(str(when))
        parts.append(f"<AcquisitionTime>{stamp:%H:%M:%S}</AcquisitionTime>"
                     f"<AcquisitionDate>{stamp:%m-%d-%Y}</AcquisitionDate>")
    parts.append("</TestDemographics>")
    measured = {k: v for k, v in (meta.get("measurements") or {}).items() if k in MEASUREMENT_TAGS}
    if measured:
        parts.append("<RestingECGMeasurements>" + "".join(
            f"<{MEASUREMENT_TAGS[k]}>{v}</{MEASUREMENT_TAGS[k]}>" for k, v in measured.items()
        ) + "</RestingECGMeasurements>")
    statements = meta.get("diagnosis_statements") or []
    if statements:
        parts.append("<Diagnosis><Modality>RESTING</Modality>")
        for line in statements:
            parts.append(f"<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>{escape(str(line))}</StmtText>"
                         "</DiagnosisStatement>")
        parts.append("</Diagnosis>")
    for kind, rec in (("Rhythm", record), ("Median", median)):
        if rec is not None:
            parts.append(_waveform_xml(kind, rec, stored_leads, units_per_bit, baseline_counts))
    parts.append("</RestingECG>")
    path.write_bytes("\n".join(parts).encode("iso-8859-1", errors="replace"))
    return path


def _waveform_xml(kind: str, rec: ECGRecord, stored_leads, units_per_bit: float, baseline: int = 0) -> str:
    fs = rec.sampling_rate
    if not float(fs).is_integer():
        raise ValueError(f"MUSE stores integer sampling rates, got {fs}")
    out = [f"<Waveform><WaveformType>{kind}</WaveformType><WaveformStartTime>0</WaveformStartTime>"
           f"<NumberofLeads>{len(stored_leads)}</NumberofLeads><SampleType>CONTINUOUS_SAMPLES</SampleType>"
           f"<SampleBase>{int(fs)}</SampleBase><SampleExponent>0</SampleExponent>"
           "<HighPassFilter>16</HighPassFilter><LowPassFilter>150</LowPassFilter><ACFilter>60</ACFilter>"]
    for name in stored_leads:
        if name not in rec.lead_names:
            raise ValueError(f"lead {name!r} is not in the record (leads: {rec.lead_names}); set stored_leads=")
        x = rec.lead(name).astype(np.float64)
        counts = np.round(x * 1000.0 / units_per_bit) + int(baseline)
        if np.abs(counts).max(initial=0) > 32767 or not np.isfinite(counts).all():
            raise ValueError(f"lead {name} does not fit in 16 bits at {units_per_bit} uV/bit")
        raw = counts.astype("<i2").tobytes()
        out.append(
            f"<LeadData><LeadByteCountTotal>{len(raw)}</LeadByteCountTotal><LeadTimeOffset>0</LeadTimeOffset>"
            f"<LeadSampleCountTotal>{x.size}</LeadSampleCountTotal>"
            f"<LeadAmplitudeUnitsPerBit>{units_per_bit}</LeadAmplitudeUnitsPerBit>"
            f"<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits><LeadHighLimit>32767</LeadHighLimit>"
            f"<LeadLowLimit>-32768</LeadLowLimit><LeadID>{name}</LeadID><LeadOffsetFirstSample>0"
            f"</LeadOffsetFirstSample><FirstSampleBaseline>{int(baseline)}</FirstSampleBaseline><LeadSampleSize>2</LeadSampleSize>"
            f"<LeadOff>FALSE</LeadOff><BaselineSway>FALSE</BaselineSway><LeadDataCRC32>{zlib.crc32(raw)}"
            f"</LeadDataCRC32><WaveFormData>{base64.b64encode(raw).decode('ascii')}</WaveFormData></LeadData>"
        )
    out.append("</Waveform>")
    return "".join(out)
