"""EDF / EDF+ (and 24-bit BDF) via `edfio` (Apache-2.0, a core dependency).

Polysomnography and Holter EDFs mix ECG with other channels: channels are kept when their label names an ECG
lead (after dropping an `ECG`/`EKG` prefix: `"ECG V1"`, `"EKG-II"`) and their physical dimension is a voltage;
the others are listed in `metadata["dropped_channels"]`. A single channel labelled just `ECG`/`EKG` is read as
lead II only when `lead_names` says so.
"""

from __future__ import annotations

import re
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from ..leads import canonical_lead_name
from . import _ecgdatakit
from .record import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    ECGReadError,
    ECGRecord,
    canonicalize_leads,
    check_samples,
    check_size,
    normalize_sex,
    unit_to_mv,
)

FORMAT = "edf"
_PREFIX = re.compile(r"^\s*(ECG|EKG)[\s_\-:.]*", re.I)


def _header_field(head: bytes, start: int, stop: int, path: Path, what: str) -> int:
    try:
        return int(head[start:stop].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ECGReadError(path, f"EDF header field {what} is not an integer", FORMAT) from None


def _check_header(path: Path, size: int, max_samples: int, allow_truncated: bool) -> None:
    """Validate the header counts against the file size before edfio maps the data."""
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise ECGReadError(path, "file is shorter than the 256-byte EDF header", FORMAT)
        bdf = head.startswith(b"\xffBIOSEMI")
        header_bytes = _header_field(head, 184, 192, path, "'number of bytes in header'")
        n_records = _header_field(head, 236, 244, path, "'number of data records'")
        try:
            duration = float(head[244:252].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise ECGReadError(path, "EDF header field 'duration of a data record' is not a number", FORMAT) from None
        if not (np.isfinite(duration) and duration >= 1e-6):  # 0 s made edfio fail with an UnboundLocalError
            raise ECGReadError(path, f"EDF data-record duration {duration:g} s is not a positive duration", FORMAT)
        n_signals = _header_field(head, 252, 256, path, "'number of signals'")
        if not 0 < n_signals <= 4096 or header_bytes != 256 * (n_signals + 1):
            raise ECGReadError(path, f"inconsistent EDF header ({n_signals} signals, {header_bytes} header bytes)",
                               FORMAT)
        if size < header_bytes:
            raise ECGReadError(path, f"file ends inside the header ({size} of {header_bytes} bytes)", FORMAT)
        f.seek(256 + 216 * n_signals)
        raw = f.read(8 * n_signals)
    per_record = 0
    for i in range(n_signals):
        per_record += _header_field(raw, 8 * i, 8 * i + 8, path, f"'samples per record' of signal {i + 1}")
    if per_record <= 0:
        raise ECGReadError(path, "EDF header declares no samples per data record", FORMAT)
    record_bytes = per_record * (3 if bdf else 2)
    available = (size - header_bytes) // record_bytes
    if n_records == -1:
        n_records = available
    check_samples(path, n_records * per_record, max_samples, FORMAT, "the header")
    if available < n_records and not allow_truncated:
        raise ECGReadError(
            path, f"file is truncated: the header declares {n_records} data records, the file holds {available} "
            "(pass allow_truncated=True to read what is there)", FORMAT,
        )
    if n_records <= 0 or available <= 0:
        raise ECGReadError(path, "the file holds no data record", FORMAT)


def read_edf(path, *, lead_names=None, units=None, allow_truncated: bool = False, max_bytes=DEFAULT_MAX_BYTES,
             max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read an EDF, EDF+ (continuous) or BDF file.

    Args:
        path: the `.edf`/`.bdf` file.
        lead_names (`list[str]`, *optional*): names for the ordinary (non-annotation) signals, in file order,
            replacing the labels (use it when labels are not lead names, e.g. `["II"]` for a Holter `"ECG"`).
        units (`str`, *optional*): unit for signals whose physical dimension is empty.
        allow_truncated (`bool`, defaults to `False`): read a file with fewer data records than its header says.
        max_bytes, max_samples: size limits (see `read_ecg`).
    """
    edfio = _ecgdatakit.require("edfio", "EDF files")
    path = Path(path)
    size = check_size(path, max_bytes, FORMAT)
    _check_header(path, size, max_samples, allow_truncated)
    with open(path, "rb") as f:
        bdf = f.read(8).startswith(b"\xffBIOSEMI")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            edf = edfio.read_bdf(path) if bdf else edfio.read_edf(path, lazy_load_data=False)
            signals = list(edf.signals)
            is_continuous = getattr(edf, "is_continuous", True)
            data = [np.asarray(s.data, dtype=np.float64) for s in signals]
    except ECGReadError:
        raise
    except Exception as err:
        raise ECGReadError(path, f"cannot decode the file ({type(err).__name__}: {err})", FORMAT) from err
    if not is_continuous:
        raise ECGReadError(path, "EDF+D (discontinuous) recordings are not supported", FORMAT)
    if not signals:
        raise ECGReadError(path, "the file holds no signal (only annotations)", FORMAT)

    labels = [s.label for s in signals]
    if lead_names is not None:
        if len(lead_names) != len(signals):
            raise ECGReadError(path, f"{len(lead_names)} lead_names for {len(signals)} signals {labels}", FORMAT)
        labels = list(lead_names)
    keep, dropped = [], []
    for i, (sig, label) in enumerate(zip(signals, labels)):
        factor = unit_to_mv(sig.physical_dimension) if sig.physical_dimension.strip() else unit_to_mv(units or "mV")
        if factor is None:
            dropped.append(f"{sig.label} ({sig.physical_dimension})")
            continue
        keep.append((i, _PREFIX.sub("", label) or label, factor))
    if not keep:
        raise ECGReadError(path, f"no signal in a voltage unit among {labels}", FORMAT)
    # keep the leads sampled at the rate of the first ECG lead
    rows, names, rate = [], [], None
    for i, label, factor in keep:
        fs = float(signals[i].sampling_frequency)
        try:
            canonical_lead_name(label.lstrip("-"))
        except ValueError:
            dropped.append(signals[i].label)
            continue
        if rate is None:
            rate = fs
        if fs != rate:
            dropped.append(f"{signals[i].label} ({fs:g} Hz)")
            continue
        rows.append((data[i] * factor).astype(np.float32))
        names.append(label)
    if not rows:
        raise ECGReadError(path, f"no ECG lead among the signals {labels} (pass lead_names=)", FORMAT)
    lengths = {r.size for r in rows}
    if len(lengths) != 1:
        raise ECGReadError(path, f"leads have different lengths {sorted(lengths)}", FORMAT)
    signal, names, _ = canonicalize_leads(np.stack(rows), names, path, FORMAT, drop_unknown=False)

    meta: dict = {"dropped_channels": dropped, "reader_warnings": [str(w.message) for w in caught]}
    try:
        meta["acquisition_time"] = datetime.combine(edf.startdate, edf.starttime).isoformat()
    except Exception:  # anonymised / malformed EDF+ dates
        pass
    try:
        patient = edf.patient
        meta["patient_id"] = None if patient.code in ("X", "") else patient.code
        meta["sex"] = normalize_sex(patient.sex)
    except Exception:  # plain EDF: free-text patient field
        meta["patient_id"] = edf.local_patient_identification.strip() or None
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata=meta, source=str(path))


def _record_duration(fs: float, n: int) -> float:
    """A data-record duration that holds a whole number `m` of samples, divides the `n` samples, and fits the
    8-character header field (1 s for the usual integer rates)."""
    if float(fs).is_integer() and n % round(fs) == 0:
        return 1.0
    divisors = sorted({d for i in range(1, int(n ** 0.5) + 1) if n % i == 0 for d in (i, n // i)}, reverse=True)
    for m in divisors:
        text = f"{m / fs:.8g}"
        if len(text) <= 8 and abs(float(text) * fs - m) < 1e-9 * m:
            return float(text)
    raise ValueError(f"EDF cannot store {n} samples at {fs} Hz in whole data records of a representable duration")


def write_edf(record: ECGRecord, path) -> Path:
    """Write `record` as EDF+ with one 16-bit signal per lead (labels `"ECG <lead>"`, dimension `mV`).

    Each lead's physical range is its min/max, so a round trip agrees to half a quantisation step,
    `(max - min) / 65535 / 2` mV per lead.
    """
    edfio = _ecgdatakit.require("edfio", "EDF files")
    path = Path(path)
    fs = record.sampling_rate
    duration = _record_duration(fs, record.num_samples)
    signals = []
    for name, row in zip(record.lead_names, record.signal.astype(np.float64)):
        lo, hi = float(np.nanmin(row)), float(np.nanmax(row))
        if hi - lo < 1e-3:
            lo, hi = lo - 1.0, hi + 1.0
        signals.append(edfio.EdfSignal(np.nan_to_num(row), fs, label=f"ECG {name}", physical_dimension="mV",
                                       physical_range=(lo, hi)))
    meta = record.metadata
    sex = {"M": "M", "F": "F"}.get(meta.get("sex"), "X")
    patient = edfio.Patient(code=str(meta.get("patient_id", "X")).replace(" ", "_") or "X", sex=sex)
    kwargs = {}
    if meta.get("acquisition_time"):
        when = datetime.fromisoformat(str(meta["acquisition_time"]))
        kwargs["recording"] = edfio.Recording(startdate=when.date())
        kwargs["starttime"] = when.time().replace(microsecond=0)
    edf = edfio.Edf(signals, patient=patient, data_record_duration=duration, **kwargs)
    edf.write(path)
    return path
