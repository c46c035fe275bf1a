"""Adapter from `ecgdatakit` (Apache-2.0, optional: `pip install -e ".[formats]"`) records to `ECGRecord`.

ecgdatakit decodes SCP-ECG (Huffman, reference-beat subtraction); this module only scales to mV, names the leads
canonically, maps the metadata and turns every ecgdatakit failure into an `ECGReadError`. Every other format reads
with the core install (Philips XLI and DICOM moved off ecgdatakit, a 49 MB wheel). See `docs/io.md`.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np

from .measurements import measurements_from
from .record import ECGReadError, ECGRecord, canonicalize_leads, normalize_age, normalize_sex, unit_to_mv

# our measurement key -> ecgdatakit's (the device's QTc: Bazett, the usual cart formula)
_MEASUREMENTS = {"heart_rate": "heart_rate", "rr_ms": "rr_interval", "pr_ms": "pr_interval", "qrs_ms": "qrs_duration",
                 "qt_ms": "qt_interval", "qtc_ms": "qtc_bazett", "p_axis": "p_axis", "qrs_axis": "qrs_axis",
                 "t_axis": "t_axis"}
EXTRA_HINT = 'pip install -e ".[formats]" (in the anyecg_hf clone)'


def require(module: str, what: str):
    """Import a parser package, failing with an `ImportError` that names the command installing it (the
    `[formats]` extra installs the core packages too)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"Reading {what} needs the package {module.split('.')[0]!r}, which is not installed: {EXTRA_HINT}"
        ) from err


def parse(parser_path: str, parser_name: str, path: Path, fmt: str, what: str, *, strict_checksum: bool = True):
    """Run one ecgdatakit parser on `path`; returns `(edk_record, warning_messages)`."""
    require("ecgdatakit", what)
    module = require(parser_path, what)
    checksum_warning = getattr(require("ecgdatakit.exceptions", what), "ChecksumWarning", ())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = getattr(module, parser_name)().parse(path)
    except ImportError:
        raise
    except ECGReadError:
        raise
    except RecursionError as err:
        raise ECGReadError(path, f"cannot decode the file (nesting too deep: {err})", fmt) from None
    except Exception as err:  # ecgdatakit, pydicom, struct, numpy: all mean "cannot decode this file"
        raise ECGReadError(path, f"cannot decode the file ({type(err).__name__}: {err})", fmt) from err
    messages = []
    for w in caught:
        if strict_checksum and checksum_warning and issubclass(w.category, checksum_warning):
            raise ECGReadError(path, f"checksum error: {w.message} (pass check_crc=False to read anyway)", fmt)
        messages.append(str(w.message))
    return rec, messages


def lead_to_mv(lead, path: Path, fmt: str) -> np.ndarray:
    """Samples of an ecgdatakit `Lead` in mV (`physical = samples * resolution + offset`, in `resolution_unit`)."""
    samples = np.asarray(lead.samples, dtype=np.float64)
    if lead.is_raw:
        factor = unit_to_mv(lead.resolution_unit) if lead.resolution_unit else None
        if factor is None or not lead.resolution:
            raise ECGReadError(path, f"lead {lead.label}: no amplitude calibration in the file", fmt)
        return ((samples * lead.resolution + lead.offset) * factor).astype(np.float32)
    factor = unit_to_mv(lead.units or "")
    if factor is None:
        raise ECGReadError(path, f"lead {lead.label}: unit {lead.units!r} is not a voltage", fmt)
    return (samples * factor).astype(np.float32)


def leads_to_signal(leads, path: Path, fmt: str):
    """Stack ecgdatakit leads into `(signal, canonical names, dropped, rate)`."""
    if not leads:
        raise ECGReadError(path, "the file holds no waveform", fmt)
    rates = {float(lead.sampling_rate) for lead in leads}
    if len(rates) != 1:
        raise ECGReadError(path, f"leads have different sampling rates {sorted(rates)}", fmt)
    lengths = {len(lead.samples) for lead in leads}
    if len(lengths) != 1:
        raise ECGReadError(path, f"leads have different lengths {sorted(lengths)}", fmt)
    rate = rates.pop()
    if not np.isfinite(rate) or rate <= 0:
        raise ECGReadError(path, f"invalid sampling rate {rate}", fmt)
    signal = np.stack([lead_to_mv(lead, path, fmt) for lead in leads])
    signal, names, dropped = canonicalize_leads(signal, [lead.label for lead in leads], path, fmt)
    return signal, names, dropped, rate


def _statement(item) -> str:
    if isinstance(item, (tuple, list)):
        left, right = (list(item) + ["", ""])[:2]
        left, right = str(left).strip(), str(right).strip()
        return f"{left} ({right})" if left and right else left or right
    return str(item).strip()


def metadata(rec) -> dict:
    """Our metadata keys from an ecgdatakit record."""
    patient, recording = rec.patient, rec.recording
    device = recording.device
    meta: dict = {
        "age": normalize_age(patient.age),
        "sex": normalize_sex(patient.sex),
        "patient_id": patient.patient_id or None,
        "acquisition_time": recording.date.isoformat() if recording.date else None,
        "device": " ".join(p for p in (device.manufacturer, device.model) if p) or None,
        "site": device.institution or recording.location or None,
        "diagnosis_statements": [s for s in (_statement(x) for x in rec.interpretation.statements) if s],
    }
    filters = {k: v for k, v in recording.acquisition.filters.to_dict().items() if v is not None}
    raw = rec.measurements.to_dict()
    meas = measurements_from({ours: raw.get(theirs) for ours, theirs in _MEASUREMENTS.items()})
    meta["filters"] = filters
    meta["measurements"] = meas
    return meta


def to_record(rec, path: Path, fmt: str, *, waveform: str = "rhythm", messages=()) -> ECGRecord:
    """An `ECGRecord` from an ecgdatakit record (`waveform="median"` takes the median beats)."""
    wanted = waveform.strip().lower()
    if wanted not in ("rhythm", "median"):
        raise ValueError(f"waveform must be 'rhythm' or 'median', got {waveform!r}")
    leads = rec.leads if wanted == "rhythm" else rec.median_beats
    if not leads and wanted == "median":
        raise ECGReadError(path, "the file holds no median beats", fmt)
    signal, names, dropped, rate = leads_to_signal(leads, path, fmt)
    meta = metadata(rec)
    meta["waveform"] = wanted
    meta["dropped_channels"] = dropped
    meta["reader_warnings"] = list(messages)
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata=meta, source=str(path))
