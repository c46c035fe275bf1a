"""DICOM waveform ECGs (12-lead / general / ambulatory ECG Waveform Storage), via ecgdatakit on pydicom.

ecgdatakit's DICOM parser decodes the multiplex groups with pydicom and applies each channel's sensitivity,
correction factor and baseline; on the test file it equals `pydicom.Dataset.waveform_array` to float precision
(see `tests/test_io_formats.py`). The first non-median multiplex group is the rhythm; `waveform="median"` reads the
median-beat group.
"""

from __future__ import annotations

from pathlib import Path

from . import _ecgdatakit
from .record import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, ECGRecord, check_samples, check_size

FORMAT = "dicom"


def read_dicom(path, *, waveform: str = "rhythm", max_bytes=DEFAULT_MAX_BYTES,
               max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a DICOM ECG waveform file (needs `pip install anyecg_hf[formats]`).

    Args:
        path: the `.dcm` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` or `"median"` (the median-beat multiplex group).
        max_bytes, max_samples: size limits (see `read_ecg`).
    """
    path = Path(path)
    check_size(path, max_bytes, FORMAT)
    _ecgdatakit.require("pydicom", "DICOM ECG waveforms")
    rec, messages = _ecgdatakit.parse(
        "ecgdatakit.parsing.parsers.dicom_waveform", "DICOMWaveformParser", path, FORMAT, "DICOM ECG waveforms"
    )
    check_samples(path, sum(len(lead.samples) for lead in rec.leads), max_samples, FORMAT)
    out = _ecgdatakit.to_record(rec, path, FORMAT, waveform=waveform, messages=messages)
    out.metadata["sop_class"] = rec.raw_metadata.get("sop_class_name")
    return out
