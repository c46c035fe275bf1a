"""`ECGRecord`, the one record type every reader returns, and `ECGReadError`.

The helpers here (unit conversion, lead canonicalisation, metadata normalisation, size limits) are shared by the
format readers so that every reader applies the same rules.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..leads import STANDARD_12_LEADS, canonical_lead_name
from .plausibility import WARNINGS_KEY, ImplausibleECG, assess

# Default limits: a 10 s 12-lead ECG is ~100 kB; a 24 h 12-lead Holter at 1 kHz is ~1 G samples.
DEFAULT_MAX_BYTES = 1 << 30  # binary files (WFDB, DICOM, SCP, EDF, NumPy, CSV)
DEFAULT_MAX_XML_BYTES = 100 << 20  # XML is parsed into a tree, ~10x its size in memory
DEFAULT_MAX_SAMPLES = 1 << 28  # leads x samples (1 GiB as float32)


class ECGReadError(ValueError):
    """A file could not be read as an ECG.

    The message names the file and what is wrong.

    Attributes:
        path (`str`): the file that failed.
        reason (`str`): what is wrong, without the path.
        format (`str`, *optional*): the format the file was read as, when known.
    """

    def __init__(self, path, reason: str, format: str | None = None):
        self.path = str(path)
        self.reason = str(reason)
        self.format = format
        where = f"{self.path} ({format})" if format else self.path
        super().__init__(f"{where}: {self.reason}")

    def __reduce__(self):  # keep picklable for multiprocessing
        return (type(self), (self.path, self.reason, self.format))


@dataclass
class ECGRecord:
    """One ECG recording, whatever file it came from.

    Args:
        signal (`np.ndarray` of shape `(leads, samples)`): the samples, converted to `float32` on construction.
            Readers return millivolts; `NaN` marks samples the file flags as missing.
        sampling_rate (`float`): samples per second (Hz).
        lead_names (`list[str]`): one name per row of `signal`. Readers return canonical names
            (`anyecg_hf.leads.canonical_lead_names`: `"I"`, `"II"`, ..., `"aVR"`, ..., `"V6"`).
        units (`str`, defaults to `"mV"`): unit of `signal`. Readers always return `"mV"`.
        metadata (`dict`): what the file says about the recording, JSON-serialisable. Keys used by the readers
            (each present only when the file has it): `format`, `age` (years), `sex` (`"M"`/`"F"`),
            `acquisition_time` (ISO 8601), `device`, `patient_id`, `diagnosis_statements` (list of str),
            `dx_codes` (list of SNOMED-CT code strings, WFDB `# Dx:` lines), `filters`, `measurements`,
            `derived_leads`, `dropped_channels`.
        source (`str`, *optional*): path of the file read.
    """

    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    units: str = "mV"
    metadata: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, rejected by the readers
            self.signal = np.asarray(self.signal, dtype=np.float32)
        if self.signal.ndim == 1:
            self.signal = self.signal[None, :]
        if self.signal.ndim != 2:
            raise ValueError(f"ECGRecord.signal must be (leads, samples), got shape {self.signal.shape}")
        self.lead_names = [str(n) for n in self.lead_names]
        if len(self.lead_names) != self.signal.shape[0]:
            raise ValueError(
                f"ECGRecord has {self.signal.shape[0]} signal rows but {len(self.lead_names)} lead names "
                f"({self.lead_names})"
            )
        self.sampling_rate = float(self.sampling_rate)
        if not (math.isfinite(self.sampling_rate) and self.sampling_rate > 0):
            raise ValueError(f"ECGRecord.sampling_rate must be a positive number, got {self.sampling_rate}")
        if self.source is not None:
            self.source = os.fspath(self.source)

    @property
    def record_id(self) -> str:
        """Row key used by the pipelines and dataset builders: the file stem (`E07500` for `E07500.hea`), else
        `metadata["record_id"]`, else `"record"`."""
        if self.source:
            return Path(self.source).stem
        return str(self.metadata.get("record_id", "record"))

    @property
    def num_leads(self) -> int:
        return int(self.signal.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sampling_rate

    def lead(self, name: str) -> np.ndarray:
        """The samples of one lead, by any accepted alias (`"avr"`, `"MDC_ECG_LEAD_AVR"`, ...)."""
        key = canonical_lead_name(name)
        try:
            return self.signal[self.lead_names.index(key)]
        except ValueError:
            raise KeyError(f"lead {key!r} is not in this record (leads: {', '.join(self.lead_names)})") from None

    def __repr__(self) -> str:
        return (
            f"ECGRecord(id={self.record_id!r}, leads={self.lead_names}, sampling_rate={self.sampling_rate:g}, "
            f"samples={self.num_samples}, duration={self.duration:.2f}s, units={self.units!r}, "
            f"metadata_keys={sorted(self.metadata)})"
        )


# --------------------------------------------------------------------------------------------------------------
# shared helpers for the readers
# --------------------------------------------------------------------------------------------------------------

_UNIT_TO_MV = {
    "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "nv": 1e-6, "nanovolt": 1e-6, "nanovolts": 1e-6,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
}


def unit_to_mv(unit: str | None) -> float | None:
    """Factor that converts values in `unit` to millivolts (`"uV"` -> 1e-3), or `None` for a non-voltage unit."""
    if unit is None:
        return None
    key = str(unit).strip().lower().replace(" ", "")
    return _UNIT_TO_MV.get(key)


def check_regular(path, fmt: str | None = None) -> os.stat_result:
    """`os.stat` of `path`, refusing anything but a regular file (after symlinks) BEFORE it is opened: opening a
    FIFO blocks until a writer appears, and a device or socket never ends."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a directory" if stat.S_ISDIR(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ECGReadError(path, f"is {kind}, not a regular file: not opened", fmt)
    return st


def check_size(path: Path, limit: int, fmt: str) -> int:
    """Refuse non-regular files and files larger than `limit` bytes before reading them; returns the size."""
    size = check_regular(path, fmt).st_size
    if size > limit:
        raise ECGReadError(
            path, f"file is {size} bytes, above the {limit}-byte limit (pass max_bytes= to raise it)", fmt
        )
    if size == 0:
        raise ECGReadError(path, "file is empty", fmt)
    return size


def check_samples(path, n: int, limit: int, fmt: str, what: str = "the file") -> None:
    if n > limit:
        raise ECGReadError(
            path, f"{what} declares {n} samples, above the {limit}-sample limit (pass max_samples= to raise it)", fmt
        )


def canonicalize_leads(signal: np.ndarray, names, path, fmt: str, *, drop_unknown: bool = True):
    """Canonical lead names for the rows of `signal`.

    Inverted leads (`"-aVR"`, Cabrera display) are negated and renamed. Rows whose name is not an ECG lead are
    dropped (and listed) when `drop_unknown`, else they raise. Duplicates raise.

    Returns:
        `(signal, names, dropped)`.
    """
    keep, out_names, dropped, seen = [], [], [], {}
    signal = np.asarray(signal)
    negate = []
    for i, raw in enumerate(names):
        text = str(raw).strip()
        inverted = text.startswith("-")
        try:
            name = canonical_lead_name(text[1:] if inverted else text)
        except ValueError:
            if drop_unknown:
                dropped.append(text)
                continue
            raise ECGReadError(path, f"channel {text!r} is not an ECG lead name (pass lead_names=)", fmt) from None
        if name in seen:
            raise ECGReadError(path, f"lead {name!r} appears twice (as {seen[name]!r} and {text!r})", fmt)
        seen[name] = text
        keep.append(i)
        out_names.append(name)
        negate.append(inverted)
    if not keep:
        raise ECGReadError(
            path, f"no ECG lead among the channels {[str(n) for n in names]} (pass lead_names= to name them)", fmt
        )
    if len(keep) != signal.shape[0]:
        signal = signal[keep]
    if any(negate):
        signal = np.array(signal, dtype=np.float32)
        signal[np.asarray(negate)] *= -1
    return signal, out_names, dropped


def normalize_sex(value) -> str | None:
    """`"M"` / `"F"` from the many spellings files use, `None` when unknown."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key in {"m", "male", "man", "1"}:
        return "M"
    if key in {"f", "female", "woman", "2"}:
        return "F"
    return None


def normalize_age(value) -> float | int | None:
    """Age in years as a number, `None` for missing/unknown/implausible values."""
    if value is None:
        return None
    try:
        age = float(str(value).strip())
    except ValueError:
        return None
    if not math.isfinite(age) or age < 0 or age > 150:
        return None
    return int(age) if age.is_integer() else age


def age_between(birth: date, when: date) -> int | None:
    years = when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))
    return years if 0 <= years <= 150 else None


def clean_metadata(meta: dict) -> dict:
    """Drop `None`/empty values so `"age" in metadata` means the file states it."""
    return {k: v for k, v in meta.items() if v is not None and v != "" and v != [] and v != {}}


def standard_order(signal: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Rows reordered to I, II, III, aVR, aVL, aVF, V1-V6, then any other leads in file order."""
    order = [names.index(n) for n in STANDARD_12_LEADS if n in names]
    order += [i for i, n in enumerate(names) if n not in STANDARD_12_LEADS]
    if order == list(range(len(names))):
        return signal, names
    return signal[order], [names[i] for i in order]


def finalize(record: ECGRecord, path, fmt: str) -> ECGRecord:
    """Last steps shared by all readers: a non-empty float32 signal without infinities, leads in the standard
    order, `source` and `metadata["format"]` set, empty metadata values dropped, and the plausibility gate
    (`anyecg_hf.io.plausibility`: implausible rates/amplitudes refused, doubtful ones listed in
    `metadata["plausibility_warnings"]`)."""
    sig = record.signal
    if sig.shape[1] == 0:
        raise ECGReadError(path, "the file holds no samples", fmt)
    if np.isinf(sig).any():
        raise ECGReadError(path, "the signal holds infinite values (overflow)", fmt)
    if not np.isfinite(record.sampling_rate) or record.sampling_rate <= 0:
        raise ECGReadError(path, f"invalid sampling rate {record.sampling_rate}", fmt)
    # drop float noise from rates computed as samples / duration (500.00000000000006 -> 500.0)
    record.sampling_rate = float(f"{record.sampling_rate:.12g}")
    try:
        concerns = assess(sig, record.sampling_rate)
    except ImplausibleECG as err:
        raise ECGReadError(path, str(err), fmt) from None
    sig, names = standard_order(sig, record.lead_names)
    record.signal = np.ascontiguousarray(sig, dtype=np.float32)
    record.lead_names = list(names)
    record.source = record.source or os.fspath(path)
    record.metadata = {"format": fmt, **clean_metadata(record.metadata)}
    if concerns:
        record.metadata[WARNINGS_KEY] = concerns
    else:
        record.metadata.pop(WARNINGS_KEY, None)  # a stale list from an .npz written by write_npz
    return record
