"""DICOM waveform ECGs (12-lead / general / ambulatory ECG Waveform Storage), via ecgdatakit on pydicom.

ecgdatakit's DICOM parser decodes the multiplex groups with pydicom and applies each channel's sensitivity,
correction factor and baseline; on the test file it equals `pydicom.Dataset.waveform_array` to float precision
(see `tests/test_io_formats.py`). The first non-median multiplex group is the rhythm; `waveform="median"` reads the
median-beat group.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from . import _ecgdatakit
from .record import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, ECGReadError, ECGRecord, check_samples, check_size

FORMAT = "dicom"
# (5400,0100) WaveformSequence, little- and big-endian tag bytes
_WAVEFORM_TAGS = (b"\x00\x54\x00\x01", b"\x54\x00\x01\x00")


def _check_dicom_waveform(path: Path) -> None:
    """Refuse, in milliseconds, files that cannot be DICOM waveforms: no `DICM` preamble (or a bare dataset
    starting with a group-0008 element), or no WaveformSequence tag anywhere. pydicom walks a 64 MiB file of
    zeros element by element (~0.35 s/MiB) before failing."""
    with open(path, "rb") as f:
        head = f.read(132)
        if not (head[128:132] == b"DICM" or head[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00")):
            raise ECGReadError(path, "no DICOM preamble ('DICM' at byte 128): not a DICOM file", FORMAT)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not any(data.find(tag) >= 0 for tag in _WAVEFORM_TAGS):
                raise ECGReadError(path, "no WaveformSequence (5400,0100) in the file: not a DICOM waveform", FORMAT)


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
    _check_dicom_waveform(path)
    _ecgdatakit.require("pydicom", "DICOM ECG waveforms")
    rec, messages = _ecgdatakit.parse(
        "ecgdatakit.parsing.parsers.dicom_waveform", "DICOMWaveformParser", path, FORMAT, "DICOM ECG waveforms"
    )
    check_samples(path, sum(len(lead.samples) for lead in rec.leads), max_samples, FORMAT)
    out = _ecgdatakit.to_record(rec, path, FORMAT, waveform=waveform, messages=messages)
    out.metadata["sop_class"] = rec.raw_metadata.get("sop_class_name")
    return out
