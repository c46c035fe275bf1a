"""GE CardioSoft XML (`<CardiologyXML>`, GE MAC carts / CardioSoft, UK Biobank field 20205): reader and writer.

Layout (the parts read; CardioSoft 6.x exports, e.g. UK Biobank's resting ECGs):

    <CardiologyXML>
      <ObservationDateTime><Hour/><Minute/><Second/><Day/><Month/><Year/></ObservationDateTime>
      <UID><DICOMStudyUID/></UID>
      <ClinicalInfo><DeviceInfo><Desc/><SoftwareVer/><AnalysisVer/></DeviceInfo></ClinicalInfo>
      <PatientInfo><PID/><Age units="years"/><BirthDateTime><Day/><Month/><Year/></BirthDateTime><Gender/></PatientInfo>
      <FilterSetting><Filter50Hz/><Filter60Hz/><LowPass units="Hz"/><HighPass units="Hz"/></FilterSetting>
      <Interpretation><Diagnosis><DiagnosisText/>...</Diagnosis><Conclusion><ConclusionText/>...</Conclusion>
      </Interpretation>
      <RestingECGMeasurements>
        <VentricularRate units="BPM"/><PQInterval units="ms"/><PDuration/><QRSDuration/><QTInterval/>
        <QTCInterval/><RRInterval/><PAxis units="degrees"/><RAxis/><TAxis/> ...
        <MedianSamples>  (same fields as StripData: the median beats, ~1.2 s)  </MedianSamples>
      </RestingECGMeasurements>
      <StripData>
        <NumberOfLeads>12</NumberOfLeads><SampleRate units="Hz">500</SampleRate>
        <ChannelSampleCountTotal>5000</ChannelSampleCountTotal><Resolution units="uVperLsb">5</Resolution>
        <WaveformData lead="I">0,0,-2,-3,...</WaveformData> ... (12 leads, comma-separated integers)
      </StripData>
      <FullDisclosure> (the whole acquisition: <LeadOrder>, <FullDisclosureData> sample by sample, leads
        interleaved; read only when there is no <StripData>) </FullDisclosure>
    </CardiologyXML>

    value (mV) = integer x Resolution (uV per LSB) / 1000

The 10 s `StripData` is the rhythm waveform (`waveform="rhythm"`), `MedianSamples` the median beats
(`waveform="median"`), as for MUSE. Statements are the `DiagnosisText` lines (the `ConclusionText` lines when there
are none) up to the arrhythmia summary CardioSoft appends after a `---` line ("Arrhythmia results of the
full-disclosure ECG", "QRS Complexes: 14, ..."): that summary describes the full-disclosure strip, not the ECG,
and is kept apart in `metadata["arrhythmia_summary"]`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ._xml import child_text, parse_xml
from ..leads import STANDARD_12_LEADS
from .measurements import MEASUREMENT_KEYS, measurements_from
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

FORMAT = "cardiosoft"

# our measurement key -> CardioSoft's RestingECGMeasurements tag
MEASUREMENT_TAGS = {"heart_rate": "VentricularRate", "rr_ms": "RRInterval", "p_ms": "PDuration",
                    "pr_ms": "PQInterval", "qrs_ms": "QRSDuration", "qt_ms": "QTInterval", "qtc_ms": "QTCInterval",
                    "p_axis": "PAxis", "qrs_axis": "RAxis", "t_axis": "TAxis"}
_AGE_UNITS = {"years": 1.0, "year": 1.0, "months": 1 / 12, "month": 1 / 12, "weeks": 7 / 365.25,
              "days": 1 / 365.25, "day": 1 / 365.25}
_SUMMARY_START = re.compile(r"^-{3,}$|^arrhythmia results", re.I)
_INT_TOKEN = re.compile(r"-?\d+")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and _INT_TOKEN.fullmatch(value.strip()) else None


def _when(el) -> tuple[date | None, datetime | None]:
    """`(date, datetime)` from a `<...DateTime>` element with `Year`/`Month`/`Day` (and `Hour`/`Minute`/`Second`)
    children; `None`s when absent or invalid."""
    if el is None:
        return None, None
    parts = [_int(child_text(el, tag)) for tag in ("Year", "Month", "Day", "Hour", "Minute", "Second")]
    try:
        day = date(*parts[:3]) if None not in parts[:3] else None
        stamp = datetime(*parts) if day is not None and None not in parts[3:] else None
    except ValueError:
        return None, None
    return day, stamp


def _resolution_mv(block, path: Path, what: str) -> float:
    el = block.find("Resolution")
    raw = child_text(block, "Resolution")
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    if value is None or not np.isfinite(value) or value <= 0:
        raise ECGReadError(path, f"<{what}>: missing or invalid <Resolution> {raw!r}", FORMAT)
    unit = (el.get("units") or "uVperLsb").strip()
    unit = re.sub(r"(?i)\s*(per|/)\s*(lsb|bit)$", "", unit)
    factor = unit_to_mv(unit)
    if factor is None:
        raise ECGReadError(path, f"<{what}>: unknown <Resolution units={el.get('units')!r}>", FORMAT)
    return value * factor


def _sample_rate(block, path: Path, what: str) -> float:
    raw = child_text(block, "SampleRate")
    try:
        fs = float(raw) if raw is not None else None
    except ValueError:
        fs = None
    if fs is None or not np.isfinite(fs) or not 0 < fs <= 1e6:
        raise ECGReadError(path, f"<{what}>: missing or invalid <SampleRate> {raw!r}", FORMAT)
    unit = (block.find("SampleRate").get("units") or "Hz").strip().lower()
    if unit not in ("hz", "1/s", "/s"):
        raise ECGReadError(path, f"<{what}>: <SampleRate> in {unit!r}, expected Hz", FORMAT)
    return fs


def _samples(text: str | None, path: Path, lead: str, max_samples: int, total: int) -> np.ndarray:
    """Comma-separated integers (whitespace and line breaks anywhere) as int64."""
    body = re.sub(r"\s+", "", text or "").rstrip(",")
    if not body:
        raise ECGReadError(path, f"lead {lead}: <WaveformData> is empty", FORMAT)
    check_samples(path, total + body.count(",") + 1, max_samples, FORMAT)
    tokens = body.split(",")
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not _INT_TOKEN.fullmatch(t)), "?")
        raise ECGReadError(path, f"lead {lead}: <WaveformData> holds {bad[:20]!r}, not an integer", FORMAT) from None
    if np.abs(values).max() > 1 << 24:
        raise ECGReadError(path, f"lead {lead}: sample values beyond 24 bits", FORMAT)
    return values


def read_cardiosoft(path, *, waveform: str = "rhythm", derive_leads: bool = True, max_bytes=DEFAULT_MAX_XML_BYTES,
                    max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a GE CardioSoft XML export (`<CardiologyXML>`).

    Args:
        path: the `.xml` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` (the 10 s `<StripData>`; files without one, such as
            exercise exports, give their `<FullDisclosure>` recording, `metadata["waveform_source"]`) or `"median"`
            (the `<MedianSamples>` median beats).
        derive_leads (`bool`, defaults to `True`): compute III, aVR, aVL, aVF from I and II when the file stores
            only some leads (listed in `metadata["derived_leads"]`).
        max_bytes, max_samples: size limits (see `read_ecg`). UK Biobank files are ~1.5 MB (the full-disclosure
            block is most of it).
    """
    path = Path(path)
    root = parse_xml(path, FORMAT, max_bytes)
    if root.tag != "CardiologyXML":
        raise ECGReadError(path, f"root element is <{root.tag}>, expected <CardiologyXML>", FORMAT)
    wanted = waveform.strip().lower()
    where = "StripData" if wanted == "rhythm" else "RestingECGMeasurements/MedianSamples"
    block = root.find(where)
    if block is None and wanted == "rhythm" and root.find("FullDisclosure") is not None:
        block, where = root.find("FullDisclosure"), "FullDisclosure"
    if block is None:
        found = [f"<{p.rsplit('/', 1)[-1]}>" for p in ("StripData", "RestingECGMeasurements/MedianSamples")
                 if root.find(p) is not None]
        raise ECGReadError(path, f"no <{where.rsplit('/', 1)[-1]}> for the {waveform!r} waveform (found: "
                           f"{', '.join(found) or 'no waveform'})", FORMAT)
    what = where.rsplit("/", 1)[-1]
    fs = _sample_rate(block, path, what)
    per_bit_mv = _resolution_mv(block, path, what)
    if what == "FullDisclosure":
        names, counts = _interleaved(block, path, max_samples)
    else:
        names, counts = _per_lead(block, path, what, max_samples)
    rows = [(values * per_bit_mv).astype(np.float32) for values in counts]
    if not rows:
        raise ECGReadError(path, f"<{what}> has no <WaveformData>", FORMAT)
    signal, names, dropped, derived = stack_leads(rows, names, path, FORMAT, derive=derive_leads, what=f"<{what}>: ")
    meta = _metadata(root)
    meta.update(waveform=wanted, derived_leads=derived, dropped_channels=dropped,
                waveform_source=what if what == "FullDisclosure" else None)
    return ECGRecord(signal=signal, sampling_rate=fs, lead_names=names, metadata=meta, source=str(path))


def _per_lead(block, path: Path, what: str, max_samples: int) -> tuple[list[str], list[np.ndarray]]:
    """`<WaveformData lead=...>` lists (`<StripData>`, `<MedianSamples>`), cut to `<ChannelSampleCountTotal>`."""
    count = _int(child_text(block, "ChannelSampleCountTotal"))
    names, counts, total = [], [], 0
    for i, el in enumerate(block.findall("WaveformData")):
        lead = (el.get("lead") or el.get("Lead") or "").strip()
        if not lead:
            raise ECGReadError(path, f"<{what}>: <WaveformData> #{i + 1} has no lead= attribute", FORMAT)
        values = _samples(el.text, path, lead, max_samples, total)
        if count is not None and count > 0:
            if values.size < count:
                raise ECGReadError(path, f"lead {lead}: {values.size} samples, <ChannelSampleCountTotal> says "
                                   f"{count}", FORMAT)
            values = values[:count]
        names.append(lead)
        counts.append(values)
        total += values.size
    return names, counts


def _interleaved(block, path: Path, max_samples: int) -> tuple[list[str], list[np.ndarray]]:
    """`<FullDisclosure>`: one list, sample by sample (sample 1 of each lead in `<LeadOrder>`, then sample 2, ...)."""
    names = [n.strip() for n in (child_text(block, "LeadOrder") or "").split(",") if n.strip()]
    data = block.find("FullDisclosureData")
    if not names or data is None:
        raise ECGReadError(path, "<FullDisclosure> without <LeadOrder> or <FullDisclosureData>", FORMAT)
    text = (data.text or "") + "".join(child.tail or "" for child in data)  # skip a <SampleCountTotal> child
    values = _samples(text, path, "FullDisclosure", max_samples, 0)
    if values.size % len(names):
        raise ECGReadError(path, f"<FullDisclosureData>: {values.size} values do not divide into the "
                           f"{len(names)} leads of <LeadOrder>", FORMAT)
    frames = values.reshape(-1, len(names))
    return names, [frames[:, k].copy() for k in range(len(names))]


def _metadata(root) -> dict:
    patient, device = root.find("PatientInfo"), root.find("ClinicalInfo/DeviceInfo")
    if device is None:
        device = root.find("DeviceInfo")
    acq_day, acq_time = _when(root.find("ObservationDateTime"))
    meta: dict = {"patient_id": child_text(patient, "PID"), "sex": normalize_sex(child_text(patient, "Gender")),
                  "study_uid": child_text(root, "UID/DICOMStudyUID")}
    if acq_time is not None or acq_day is not None:
        meta["acquisition_time"] = (acq_time or acq_day).isoformat()
    age_el = patient.find("Age") if patient is not None else None
    age = normalize_age(child_text(patient, "Age"))
    if age is not None:
        factor = _AGE_UNITS.get((age_el.get("units") or "years").strip().lower())
        meta["age"] = normalize_age(round(age * factor, 2)) if factor else None
    elif patient is not None and acq_day is not None:
        birth, _ = _when(patient.find("BirthDateTime"))
        meta["age"] = age_between(birth, acq_day) if birth else None
    meta["device"] = " ".join(p for p in (child_text(device, "Desc"), child_text(device, "SoftwareVer")) if p) or None
    meta["site"] = child_text(root, "PatientVisit/ServicingFacility/Name") or child_text(
        root, "PatientVisit/AssignedPatientLocation/Facility")
    meta["filters"] = _filters(root.find("FilterSetting"))
    meas = root.find("RestingECGMeasurements")
    if meas is not None:
        values, units = {}, {}
        for key, tag in MEASUREMENT_TAGS.items():
            el = meas.find(tag)
            if el is not None:
                values[key], units[key] = el.text, el.get("units")
        meta["measurements"] = measurements_from(values, units)
    statements, summary = _statements(root.find("Interpretation/Diagnosis"), "DiagnosisText")
    if not statements:
        statements, summary2 = _statements(root.find("Interpretation/Conclusion"), "ConclusionText")
        summary = summary or summary2
    meta["diagnosis_statements"] = statements
    meta["arrhythmia_summary"] = summary
    return meta


def _filters(el) -> dict:
    if el is None:
        return {}
    out = {}
    for key, tag in (("highpass", "HighPass"), ("lowpass", "LowPass")):
        try:
            value = float(child_text(el, tag) or "nan")
        except ValueError:
            continue
        if np.isfinite(value):
            out[key] = value
    for hz in (50, 60):
        if (child_text(el, f"Filter{hz}Hz") or "").strip().lower() in ("yes", "true", "on"):
            out["notch"] = float(hz)
    return out


def _statements(parent, tag: str) -> tuple[list[str], list[str]]:
    """`(statements, arrhythmia summary)`: lines before the first `---` / "Arrhythmia results ..." line, and the
    lines from there on (separators dropped)."""
    if parent is None:
        return [], []
    lines = [" ".join(el.text.split()) for el in parent.findall(tag) if el.text and el.text.strip()]
    cut = next((i for i, line in enumerate(lines) if _SUMMARY_START.search(line)), len(lines))
    summary = [line for line in lines[cut:] if not re.fullmatch(r"-+", line)]
    return lines[:cut], summary


# --------------------------------------------------------------------------------------------------------------
# writer (test files and conversions)
# --------------------------------------------------------------------------------------------------------------

def write_cardiosoft_xml(record: ECGRecord, path, *, units_per_bit: float = 5.0, median: ECGRecord | None = None,
                         arrhythmia_summary: list[str] | None = None, line_width: int = 0, strip: bool = True,
                         full_disclosure: bool = False) -> Path:
    """Write `record` as a GE CardioSoft XML file laid out like a UK Biobank export (ISO-8859-1).

    Args:
        record (`ECGRecord`): the recording, in mV, with the 12 standard leads (written in that order).
        path: output file.
        units_per_bit (`float`, defaults to `5.0`): resolution in microvolts per LSB (UK Biobank: 5); samples are
            rounded to the nearest step, so a round trip agrees to `units_per_bit / 2` microvolts.
        median (`ECGRecord`, *optional*): median beats, written as `<MedianSamples>`.
        arrhythmia_summary (`list[str]`, *optional*): lines written after the statements, behind a `---` line,
            as CardioSoft appends its full-disclosure arrhythmia summary.
        line_width (`int`, defaults to 0): break the sample lists every this many values with a newline and a
            tab, as real exports do (0: one line).
        strip (`bool`, defaults to `True`): write the `<StripData>` block.
        full_disclosure (`bool`, defaults to `False`): also write the record as a `<FullDisclosure>` block (leads
            interleaved sample by sample).

    Metadata written when present: `age`, `sex`, `patient_id`, `acquisition_time`, `diagnosis_statements`,
    `measurements` (`MEASUREMENT_KEYS`, as `RestingECGMeasurements`).

    Raises:
        ValueError: when the record lacks a standard lead or the rate is not an integer.
    """
    path = Path(path)
    meta = record.metadata
    out = ['<?xml version="1.0" encoding="ISO8859-1"?>', '<!DOCTYPE CardiologyXML SYSTEM "CardiologyXML.dtd">',
           "<CardiologyXML>", "<ObservationType>RestECG</ObservationType>"]
    when = meta.get("acquisition_time")
    if when:
        t = datetime.fromisoformat(str(when))
        out.append(f"<ObservationDateTime><Hour>{t.hour}</Hour><Minute>{t.minute}</Minute><Second>{t.second}"
                   f"</Second><Day>{t.day}</Day><Month>{t.month}</Month><Year>{t.year}</Year></ObservationDateTime>")
    out.append("<ClinicalInfo><ReasonForStudy></ReasonForStudy><DeviceInfo><Desc>CardioSoft</Desc>"
               "<SoftwareVer>V6.73</SoftwareVer><AnalysisVer>12SL V21</AnalysisVer></DeviceInfo></ClinicalInfo>")
    out.append("<PatientInfo>")
    if meta.get("patient_id"):
        out.append(f"<PID>{escape(str(meta['patient_id']))}</PID>")
    if meta.get("age") is not None:
        out.append(f'<Age units="years">{meta["age"]}</Age>')
    if meta.get("sex") in ("M", "F"):
        out.append(f"<Gender>{'MALE' if meta['sex'] == 'M' else 'FEMALE'}</Gender>")
    out.append("<PaceMaker>no</PaceMaker></PatientInfo>")
    out.append('<FilterSetting><CubicSpline>No</CubicSpline><Filter50Hz>Yes</Filter50Hz><Filter60Hz>No</Filter60Hz>'
               '<LowPass units="Hz">150</LowPass><HighPass units="Hz">0.04</HighPass></FilterSetting>')
    lines = list(meta.get("diagnosis_statements") or [])
    if arrhythmia_summary:
        lines += ["---"] + list(arrhythmia_summary)
    texts = "".join(f"<DiagnosisText>{escape(str(x))}</DiagnosisText>" for x in lines)
    conclusions = "".join(f"<ConclusionText>{escape(str(x))}</ConclusionText>" for x in lines)
    out.append(f"<Interpretation><Diagnosis>{texts}</Diagnosis><Conclusion>{conclusions}</Conclusion>"
               "</Interpretation>")
    out.append("<RestingECGMeasurements><DiagnosisVersion>12SL V21</DiagnosisVersion>")
    units = {"heart_rate": "BPM"}
    for key in MEASUREMENT_KEYS:
        value = (meta.get("measurements") or {}).get(key)
        if value is not None:
            unit = units.get(key, "degrees" if key.endswith("_axis") else "ms")
            out.append(f'<{MEASUREMENT_TAGS[key]} units="{unit}">{value}</{MEASUREMENT_TAGS[key]}>')
    if median is not None:
        out.append(_strip_xml("MedianSamples", median, units_per_bit, line_width))
    out.append("</RestingECGMeasurements>")
    if strip:
        out.append(_strip_xml("StripData", record, units_per_bit, line_width))
    if full_disclosure:
        counts = np.stack([_counts(record, name, units_per_bit) for name in STANDARD_12_LEADS]).T.ravel()
        out.append(f'<FullDisclosure><NumberOfChannels>12</NumberOfChannels><SampleRate units="Hz">'
                   f'{int(record.sampling_rate)}</SampleRate><Resolution units="uVperLsb">{units_per_bit:g}'
                   f'</Resolution><LeadOrder>{",".join(STANDARD_12_LEADS)}</LeadOrder><FullDisclosureData>'
                   f'{",".join(map(str, counts.tolist()))}</FullDisclosureData></FullDisclosure>')
    out.append("</CardiologyXML>")
    path.write_bytes("\n".join(out).encode("iso-8859-1", errors="replace"))
    return path


def _counts(rec: ECGRecord, name: str, units_per_bit: float) -> np.ndarray:
    if name not in rec.lead_names:
        raise ValueError(f"lead {name!r} is not in the record (leads: {rec.lead_names})")
    return np.round(rec.lead(name).astype(np.float64) * 1000.0 / units_per_bit).astype(np.int64)


def _strip_xml(tag: str, rec: ECGRecord, units_per_bit: float, line_width: int) -> str:
    if not float(rec.sampling_rate).is_integer():
        raise ValueError(f"CardioSoft stores integer sampling rates, got {rec.sampling_rate}")
    parts = [f"<{tag}><NumberOfLeads>12</NumberOfLeads><SampleRate units=\"Hz\">{int(rec.sampling_rate)}"
             f"</SampleRate><ChannelSampleCountTotal>{rec.num_samples}</ChannelSampleCountTotal>"
             f"<Resolution units=\"uVperLsb\">{units_per_bit:g}</Resolution>"]
    for name in STANDARD_12_LEADS:
        tokens = [str(v) for v in _counts(rec, name, units_per_bit).tolist()]
        if line_width > 0:
            body = ",\n\t".join(",".join(tokens[i:i + line_width]) for i in range(0, len(tokens), line_width))
        else:
            body = ",".join(tokens)
        parts.append(f'<WaveformData lead="{name}">{body}</WaveformData>')
    parts.append(f"</{tag}>")
    return "".join(parts)
