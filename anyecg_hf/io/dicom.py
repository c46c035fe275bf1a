"""DICOM waveform ECGs (12-lead / general / ambulatory ECG Waveform Storage), read with `pydicom`.

`pydicom.Dataset.waveform_array(i)` decodes multiplex group `i` and applies each channel's sensitivity, correction
factor and baseline (values in the channel's sensitivity unit, usually uV); this module picks the group, names the
leads, converts to mV and maps the metadata. The first group that is not a median beat is the rhythm;
`waveform="median"` reads the median-beat group (`MultiplexGroupLabel` "MEDIAN BEAT", or a `DERIVED` group).
A channel is named by its source's meaning ("Lead I (Einthoven)"), else its SCP-ECG / MDC code value, else its
label; files storing only I, II, V1-V6 get III, aVR, aVL, aVF derived as for MUSE (`metadata["derived_leads"]`).

Statements are the `WaveformAnnotationSequence` items with `UnformattedTextValue`; measurements the items with a
`NumericValue` whose concept (SCP-ECG or MDC codes, matched by meaning: "QRS Duration", "QRS duration, global",
...) is one of `measurements.MEASUREMENT_KEYS` and that refer to all channels (`ReferencedWaveformChannels` channel
0), not to one lead.
"""

from __future__ import annotations

import mmap
import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from ..leads import canonical_lead_name
from .measurements import measurements_from
from .muse import stack_leads
from .record import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    ECGReadError,
    ECGRecord,
    age_between,
    check_samples,
    check_size,
    normalize_age,
    normalize_sex,
    unit_to_mv,
)

FORMAT = "dicom"
# lower-cased concept meaning, without ", global" -> our measurement key
_CONCEPTS = {
    "heart rate": "heart_rate", "ventricular heart rate": "heart_rate", "ventricular rate": "heart_rate",
    "rr interval": "rr_ms", "rr time period": "rr_ms", "p duration": "p_ms",
    "pr interval": "pr_ms", "pr time period": "pr_ms", "pq interval": "pr_ms", "pq time period": "pr_ms",
    "qrs duration": "qrs_ms", "qt interval": "qt_ms", "qt duration": "qt_ms",
    "qtc interval": "qtc_ms", "qtc duration": "qtc_ms", "qt corrected": "qtc_ms",
    "p axis": "p_axis", "qrs axis": "qrs_axis", "r axis": "qrs_axis", "t axis": "t_axis",
}
_AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
# (5400,0100) WaveformSequence, little- and big-endian tag bytes
_WAVEFORM_TAGS = (b"\x00\x54\x00\x01", b"\x54\x00\x01\x00")


def _check_dicom_waveform(path: Path) -> None:
    """Refuse, in milliseconds, files that cannot be DICOM waveforms: no `DICM` preamble (or a bare dataset
    starting with a group-0002/0008 element), or no WaveformSequence tag anywhere (a memory-mapped search).
    pydicom walks a 64 MiB file of zeros element by element (~0.35 s/MiB) before failing."""
    with open(path, "rb") as f:
        head = f.read(132)
        if not (head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00")):
            raise ECGReadError(path, "no DICOM preamble ('DICM' at byte 128): not a DICOM file", FORMAT)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not any(data.find(tag) >= 0 for tag in _WAVEFORM_TAGS):
                raise ECGReadError(path, "no WaveformSequence (5400,0100) in the file: not a DICOM waveform", FORMAT)


def _require_pydicom():
    try:
        import pydicom
    except ImportError as err:  # a core dependency: only a broken install gets here
        raise ImportError('Reading DICOM ECG waveforms needs pydicom: pip install -e . (or pip install '
                          '"pydicom>=2.4")') from err
    return pydicom


def _group_index(ds, wanted: str, path: Path) -> int:
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        raise ECGReadError(path, "no WaveformSequence: not a waveform DICOM", FORMAT)

    def is_median(g) -> bool:
        label = str(g.get("MultiplexGroupLabel", "")).upper()
        return "MEDIAN" in label or "REPRESENTATIVE" in label or (
            not label and str(g.get("WaveformOriginality", "")).upper() == "DERIVED")

    for i, g in enumerate(groups):
        if is_median(g) == (wanted == "median"):
            return i
    labels = [str(g.get("MultiplexGroupLabel", "")) or f"group {i}" for i, g in enumerate(groups)]
    raise ECGReadError(path, f"no {wanted} multiplex group (groups: {labels})", FORMAT)


# SCP-ECG / MDC lead numbers (code values "5.6.3-9-N" and "2:N"): 1-8 I, II, V1-V6; 61-64 III, aVR, aVL, aVF
_LEAD_NUMBERS = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6", 61: "III", 62: "aVR",
                 63: "aVL", 64: "aVF"}


def _lead_name(channel) -> str:
    """The lead of a channel: its source's meaning ("Lead I (Einthoven)" -> "I"), else its code value, else its
    `ChannelLabel`."""
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    meaning = str(source.get("CodeMeaning", "")) if source is not None else ""
    name = re.sub(r"\s*\(.*\)\s*$", "", meaning).strip()
    number = re.fullmatch(r"(?:5\.6\.3-9-|2:)(\d+)", str(source.get("CodeValue", "")).strip()) if source else None
    try:
        canonical_lead_name(name)
        return name
    except ValueError:
        pass
    if number and int(number.group(1)) in _LEAD_NUMBERS:
        return _LEAD_NUMBERS[int(number.group(1))]
    return name or str(channel.get("ChannelLabel", "")) or "?"


def read_dicom(path, *, waveform: str = "rhythm", max_bytes=DEFAULT_MAX_BYTES,
               max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a DICOM ECG waveform file.

    Args:
        path: the `.dcm` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` or `"median"` (the median-beat multiplex group).
        max_bytes, max_samples: size limits (see `read_ecg`).
    """
    path = Path(path)
    check_size(path, max_bytes, FORMAT)
    _check_dicom_waveform(path)
    pydicom = _require_pydicom()
    with warnings.catch_warnings(record=True) as caught:  # pydicom's value warnings go to reader_warnings
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError as err:
            raise ECGReadError(path, f"not a DICOM file ({err})", FORMAT) from None
        record = _read(ds, path, waveform, max_samples)
    record.metadata["reader_warnings"] = [str(w.message) for w in caught]
    return record


def _read(ds, path: Path, waveform: str, max_samples: int) -> ECGRecord:
    wanted = waveform.strip().lower()
    index = _group_index(ds, wanted, path)
    group = ds.WaveformSequence[index]
    n_channels, n_samples = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    check_samples(path, n_channels * n_samples, max_samples, FORMAT)
    width = int(group.get("WaveformBitsAllocated", 16)) // 8
    stored = len(group.get("WaveformData", b""))
    if width not in (1, 2, 4) or stored < n_channels * n_samples * width:
        raise ECGReadError(path, f"multiplex group {index}: {stored} data bytes for {n_channels} channels x "
                           f"{n_samples} samples of {width} bytes", FORMAT)
    channels = list(group.get("ChannelDefinitionSequence") or [])
    if len(channels) != n_channels:
        raise ECGReadError(path, f"{len(channels)} channel definitions for {n_channels} channels", FORMAT)
    values = ds.waveform_array(index).astype(np.float64)  # (samples, channels), sensitivity units
    rows, labels, not_voltage = [], [], []
    for k, ch in enumerate(channels):
        unit = (ch.get("ChannelSensitivityUnitsSequence") or [None])[0]
        factor = unit_to_mv(str(unit.get("CodeValue", "uV")) if unit is not None else "uV")
        if factor is None:  # not a voltage (mmHg, %): not an ECG lead
            not_voltage.append(_lead_name(ch))
            continue
        rows.append(values[:, k] * factor)
        labels.append(_lead_name(ch))
    if not rows:
        raise ECGReadError(path, f"no voltage channel among {not_voltage}", FORMAT)
    rate = float(group.SamplingFrequency)
    rows = [r.astype(np.float32) for r in rows]
    signal, names, dropped, derived = stack_leads(rows, labels, path, FORMAT, derive=True)
    dropped = not_voltage + dropped
    first = (ds.WaveformSequence[0].get("ChannelDefinitionSequence") or [None])[0]  # filters: the rhythm's
    meta = _metadata(ds, first)
    meta.update(waveform=wanted, dropped_channels=dropped, derived_leads=derived,
                sop_class=getattr(ds.SOPClassUID, "name", None) if "SOPClassUID" in ds else None)
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata=meta, source=str(path))


def _dt(value) -> datetime | None:
    text = str(value or "").strip().split("+")[0].split("-")[0]
    digits, _, frac = text.partition(".")
    for fmt in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d"):
        try:
            when = datetime.strptime(digits, fmt)
        except ValueError:
            continue
        return when.replace(microsecond=int(frac[:6].ljust(6, "0"))) if frac.isdigit() else when
    return None


def _metadata(ds, channel) -> dict:
    when = _dt(ds.get("AcquisitionDateTime")) or _dt(f"{ds.get('AcquisitionDate', '')}{ds.get('AcquisitionTime', '')}"
                                                    ) or _dt(f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}")
    meta: dict = {"patient_id": str(ds.get("PatientID", "")).strip() or None,
                  "sex": normalize_sex(ds.get("PatientSex")),
                  "acquisition_time": when.isoformat() if when else None,
                  "device": " ".join(str(ds.get(k, "")).strip() for k in ("Manufacturer", "ManufacturerModelName")
                                     if str(ds.get(k, "")).strip()) or None,
                  "site": str(ds.get("InstitutionName", "")).strip() or None}
    age = re.fullmatch(r"(\d{1,3})([YMWD])", str(ds.get("PatientAge", "")).strip())
    if age:
        meta["age"] = normalize_age(round(int(age.group(1)) * _AGE_UNITS[age.group(2)], 2))
    elif when is not None:
        birth = _dt(ds.get("PatientBirthDate"))
        meta["age"] = age_between(birth.date(), when.date()) if birth else None
    if channel is not None:
        filters = {"highpass": channel.get("FilterLowFrequency"), "lowpass": channel.get("FilterHighFrequency"),
                   "notch": channel.get("NotchFilterFrequency")}
        meta["filters"] = {k: float(v) for k, v in filters.items() if v not in (None, "") and float(v) > 0}
    statements, values, units = [], {}, {}
    for item in ds.get("WaveformAnnotationSequence") or []:
        text = str(item.get("UnformattedTextValue", "")).strip()
        if text:
            statements.append(text)
            continue
        refs = list(item.get("ReferencedWaveformChannels") or [])
        concept = (item.get("ConceptNameCodeSequence") or [None])[0]
        if concept is None or item.get("NumericValue") in (None, "") or (len(refs) >= 2 and refs[1] != 0):
            continue
        meaning = re.sub(r",\s*global$", "", str(concept.get("CodeMeaning", "")).strip().lower())
        key = _CONCEPTS.get(meaning)
        if key is None or key in values:
            continue
        number = item.NumericValue
        if not isinstance(number, (str, bytes, int, float)):  # a multi-valued NumericValue: its first value
            number = next(iter(number), None)
        values[key] = number
        unit = (item.get("MeasurementUnitsCodeSequence") or [None])[0]
        units[key] = str(unit.get("CodeValue", "")) if unit is not None else None
    meta["diagnosis_statements"] = statements
    meta["measurements"] = measurements_from(values, units)
    return meta

