"""Plain arrays: CSV/TSV (one column per lead) and NumPy `.npy` / `.npz`, with writers for both.

CSV (DESIGN_NOTES): a header row of lead names, optional time column in seconds from which the rate is inferred;
otherwise `sampling_rate` is required. A unit may follow a lead name (`"V1 (uV)"`, `"II [mV]"`).
`.npy` holds one array; its lead axis is the one of length `len(lead_names)` (or 12 when `lead_names` is not given,
in the standard order). `.npz` as written by `write_npz` carries `signal`, `sampling_rate`, `lead_names`, `units`
and JSON `metadata`. Pickled objects are never loaded.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from ..leads import STANDARD_12_LEADS
from .record import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    ECGReadError,
    ECGRecord,
    canonicalize_leads,
    check_samples,
    check_size,
    unit_to_mv,
)

_TIME_COLUMNS = {"time", "t", "time_s", "times", "seconds", "second", "sec", "s", "time(s)", "time[s]", "timestamp"}
_INDEX_COLUMNS = {"sample", "samples", "index", "idx", "n", ""}
_UNIT_SUFFIX = re.compile(r"^(.*?)\s*[\(\[]\s*([a-zA-Zµμ]+)\s*[\)\]]\s*$")


def _scale(units: str | None, path, fmt: str) -> float:
    factor = unit_to_mv(units or "mV")
    if factor is None:
        raise ECGReadError(path, f"units={units!r} is not a voltage unit (mV, uV, V)", fmt)
    return factor


def _check_rate(sampling_rate, path, fmt: str) -> float:
    if sampling_rate is None:
        raise ECGReadError(path, "the file does not state its sampling rate: give it (--sampling-rate HZ on the anyecg command "
                               "line, sampling_rate=<Hz> in Python)", fmt)
    rate = float(sampling_rate)
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"sampling_rate must be a positive number, got {sampling_rate!r}")
    return rate


def _rate_from_times(times: np.ndarray, path) -> float:
    if times.size < 2 or not np.isfinite(times).all():
        raise ECGReadError(path, "the time column needs at least two finite values", "csv")
    steps = np.diff(times)
    step = float(np.median(steps))
    if step <= 0 or np.abs(steps - step).max() > 1e-3 * step + 1e-9:
        raise ECGReadError(path, "the time column is not uniformly increasing", "csv")
    rate = (times.size - 1) / float(times[-1] - times[0])
    nearest = round(rate)
    return float(nearest) if nearest and abs(rate - nearest) < 1e-4 * rate else rate


DEFAULT_MAX_COLUMNS = 1024  # 12 leads + time in practice; body-surface maps have a few hundred


def read_csv(path, *, sampling_rate=None, lead_names=None, units=None, delimiter=None,
             max_bytes=DEFAULT_MAX_BYTES, max_samples=DEFAULT_MAX_SAMPLES,
             max_columns=DEFAULT_MAX_COLUMNS) -> ECGRecord:
    """Read a CSV/TSV file with one column per lead and one row per sample.

    Args:
        path: the file.
        sampling_rate (`float`, *optional*): required unless a time column (`time`, `t`, `seconds`, ...) is present.
        lead_names (`list[str]`, *optional*): lead names of the data columns (not the time/index column);
            required when there is no header row, overrides the header's names otherwise.
        units (`str`, *optional*, defaults to mV): unit of the values unless a header gives one per column.
        delimiter (`str`, *optional*): field separator; sniffed (`,` `;` tab or space) by default.
        max_bytes, max_samples: size limits (see `read_ecg`).
        max_columns (`int`, defaults to 1024): more columns than this are refused from the first line, before
            any parsing (a 10^6-column file would otherwise take minutes in the parser).
    """
    import pandas as pd

    fmt = "csv"
    path = Path(path)
    size = check_size(path, max_bytes, fmt)
    with open(path, "rb") as f:
        head = f.read(65536)
    try:
        sample = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ECGReadError(path, "not a text file (CSV must be UTF-8/ASCII)", fmt) from None
    if size > len(head) and b"\n" not in head and b"\r" not in head:
        raise ECGReadError(path, f"the first line is longer than {len(head)} bytes: not a CSV of ECG leads", fmt)
    lines = [ln for ln in sample.splitlines() if ln.strip()]
    if not lines:
        raise ECGReadError(path, "no data rows", fmt)
    if size > len(head) and len(lines) > 1:
        lines = lines[:-1]  # the last line of the first 64 KiB may be cut
    widest = max(max(max(ln.count(d) for d in ",;\t") + 1, len(ln.split())) for ln in lines[:20])
    if widest > max_columns:
        raise ECGReadError(path, f"a line holds {widest} fields, above the {max_columns}-column limit "
                                 "(pass max_columns= to raise it)", fmt)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t ").delimiter
        except csv.Error:
            delimiter = ","
    first = [c.strip().strip('"') for c in lines[0].split(delimiter)]
    has_header = any(not _is_number(c) for c in first if c)
    check_samples(path, size // 2, max_samples, fmt, "the file")  # >= 2 bytes per value
    try:
        frame = pd.read_csv(path, sep=delimiter, header=0 if has_header else None, dtype=str, skipinitialspace=True,
                            keep_default_na=False, engine="c" if len(delimiter) == 1 and delimiter != " " else "python",
                            encoding="utf-8-sig")
    except Exception as err:
        raise ECGReadError(path, f"cannot parse as CSV ({type(err).__name__}: {err})", fmt) from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ECGReadError(path, "no data rows", fmt)
    columns = [str(c).strip() for c in frame.columns] if has_header else [f"column {i + 1}" for i in
                                                                            range(frame.shape[1])]
    values = np.empty(frame.shape[::-1], dtype=np.float64)
    for j, col in enumerate(frame.columns):
        cells = frame[col].str.strip()
        cells = cells.where(~cells.str.lower().isin(["", "na", "null"]), "nan").to_numpy(dtype=str)
        # numpy's str -> float (Python's parser), not pd.to_numeric: pandas 2.3 segfaults on "-1e3090000023"
        try:
            values[j] = cells.astype(np.float64)
        except ValueError:
            row = next(i for i, c in enumerate(cells) if not _is_number(c))
            raise ECGReadError(
                path, f"column {columns[j]!r}, row {row + 1 + has_header}: {str(cells[row])[:30]!r} is not a "
                "number", fmt,
            ) from None

    rate = None
    keep = []
    col_units = []
    for j, name in enumerate(columns):
        key = name.lower().replace(" ", "")
        if has_header and key in _TIME_COLUMNS:
            rate = _rate_from_times(values[j], path)
            continue
        if has_header and key in _INDEX_COLUMNS:
            continue
        keep.append(j)
        m = _UNIT_SUFFIX.match(name) if has_header else None
        col_units.append(m.group(2) if m else None)
    if lead_names is not None:
        if len(lead_names) != len(keep):
            raise ECGReadError(path, f"{len(lead_names)} lead_names for {len(keep)} data columns", fmt)
        names = list(lead_names)
    elif has_header:
        names = [(_UNIT_SUFFIX.match(columns[j]).group(1) if _UNIT_SUFFIX.match(columns[j]) else columns[j])
                 for j in keep]
    else:
        raise ECGReadError(path, "no header row: pass lead_names=", fmt)
    if not keep:
        raise ECGReadError(path, "no lead column", fmt)
    signal = values[keep]
    for i, unit in enumerate(col_units):
        factor = unit_to_mv(unit) if unit else _scale(units, path, fmt)
        if factor is None:
            raise ECGReadError(path, f"column {names[i]!r}: unit {unit!r} is not a voltage", fmt)
        signal[i] *= factor
    if rate is None:
        rate = _check_rate(sampling_rate, path, fmt)
    elif sampling_rate is not None and abs(float(sampling_rate) - rate) > 1e-6 * rate:
        raise ECGReadError(path, f"sampling_rate={sampling_rate} but the time column gives {rate:g} Hz", fmt)
    signal, names, _ = canonicalize_leads(signal.astype(np.float32), names, path, fmt, drop_unknown=False)
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata={}, source=str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _orient(array: np.ndarray, lead_names, path, fmt: str):
    """`(leads, samples)` view of a 1-D/2-D array and the lead names."""
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ECGReadError(path, f"array has shape {array.shape}; expected (leads, samples) or (samples, leads)", fmt)
    if lead_names is None:
        if array.shape[0] == 12 or array.shape[1] == 12:
            lead_names = list(STANDARD_12_LEADS)
        else:
            raise ECGReadError(path, f"array of shape {array.shape}: pass lead_names= (only 12-lead arrays default "
                                     "to the standard order)", fmt)
    n = len(lead_names)
    if array.shape[0] == n:
        return array, list(lead_names)
    if array.shape[1] == n:
        return array.T, list(lead_names)
    raise ECGReadError(path, f"array of shape {array.shape} has no axis of length {n} (the number of lead_names)", fmt)


def _check_array(array: np.ndarray, path, fmt: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise ECGReadError(path, f"array dtype {array.dtype} is not numeric", fmt)
    return array


def _npy_shape(fp, path, fmt: str, max_samples: int):
    """Read the header of a `.npy` stream and bound its size before the data is read."""
    try:
        version = np.lib.format.read_magic(fp)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fp, max_header_size=10000)
    except Exception as err:
        raise ECGReadError(path, f"not a valid .npy array ({type(err).__name__}: {err})", fmt) from None
    check_samples(path, int(np.prod(shape, dtype=np.float64)), max_samples, fmt, "the array header")
    return shape, dtype


def read_npy(path, *, sampling_rate=None, lead_names=None, units=None, max_bytes=DEFAULT_MAX_BYTES,
             max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a `.npy` array (`(leads, samples)` or `(samples, leads)`).

    Args:
        path: the file.
        sampling_rate (`float`): required (a `.npy` file does not store it).
        lead_names (`list[str]`, *optional*): names along the lead axis; defaults to the standard 12-lead order for
            an array with an axis of length 12.
        units (`str`, *optional*, defaults to mV): unit of the values.
        max_bytes, max_samples: size limits (see `read_ecg`).
    """
    fmt = "npy"
    path = Path(path)
    check_size(path, max_bytes, fmt)
    rate = _check_rate(sampling_rate, path, fmt)
    with open(path, "rb") as f:
        _npy_shape(f, path, fmt, max_samples)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ECGReadError(path, f"cannot load the array ({type(err).__name__}: {err})", fmt) from None
    array, names = _orient(_check_array(np.asarray(array), path, fmt), lead_names, path, fmt)
    signal = array.astype(np.float64) * _scale(units, path, fmt)
    signal, names, _ = canonicalize_leads(signal.astype(np.float32), names, path, fmt, drop_unknown=False)
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata={}, source=str(path))


_SIGNAL_KEYS = ("signal", "ecg", "data", "x", "arr_0")
_RATE_KEYS = ("sampling_rate", "fs", "sample_rate", "sampling_frequency")


# A member may decompress to at most max(32 MiB, 100 x its compressed size) (and never above `max_bytes`): ECG
# arrays compress 1-4x, a zip bomb 1000x. The bound is checked on the declared sizes and the array header before
# anything is inflated, and the data read stops at the header's byte count.
NPZ_MAX_RATIO = 100
NPZ_RATIO_FLOOR = 32 << 20


def _member_cap(info: zipfile.ZipInfo, max_bytes: int) -> int:
    return min(int(max_bytes), max(NPZ_RATIO_FLOOR, NPZ_MAX_RATIO * int(info.compress_size)))


def _bomb_hint(cap: int, max_bytes: int) -> str:
    if cap >= max_bytes:
        return f"above the {max_bytes}-byte limit; pass max_bytes= to raise it"
    return f"more than {NPZ_MAX_RATIO}x its compressed size and {cap} bytes: a zip bomb, refused"


def read_npz(path, *, sampling_rate=None, lead_names=None, units=None, max_bytes=DEFAULT_MAX_BYTES,
             max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a `.npz` archive: the signal under `signal` (or `ecg`, `data`, `x`, or the only array), and optionally
    `sampling_rate` (or `fs`), `lead_names`, `units` and `metadata` (a JSON string), as `write_npz` stores them.
    Arguments given here override what the archive holds."""
    fmt = "npz"
    path = Path(path)
    check_size(path, max_bytes, fmt)
    try:
        archive = zipfile.ZipFile(path)
        members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ECGReadError(path, f"not a valid .npz archive ({err})", fmt) from None
    with archive:
        key = next((k for k in _SIGNAL_KEYS if k in members), None)
        if key is None:
            arrays = [k for k in members if k not in _RATE_KEYS + ("lead_names", "units", "metadata")]
            if len(arrays) != 1:
                raise ECGReadError(path, f"cannot tell which array is the signal among {sorted(members)} "
                                         f"(name it one of {', '.join(_SIGNAL_KEYS)})", fmt)
            key = arrays[0]

        def load(name, limit=max_samples):
            try:
                info = archive.getinfo(members[name])
                cap = _member_cap(info, max_bytes)
                if info.file_size > cap:
                    raise ECGReadError(path, f"member {name!r} declares {info.file_size} bytes uncompressed from "
                                             f"{info.compress_size} ({_bomb_hint(cap, max_bytes)})", fmt)
                with archive.open(members[name]) as fp:
                    shape, dtype = _npy_shape(fp, path, fmt, limit)
                nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
                if nbytes > cap:
                    raise ECGReadError(path, f"member {name!r} holds a {nbytes}-byte array in {info.compress_size} "
                                             f"compressed bytes ({_bomb_hint(cap, max_bytes)})", fmt)
                with archive.open(members[name]) as fp:  # reads exactly the header's (bounded) byte count
                    return np.lib.format.read_array(fp, allow_pickle=False, max_header_size=10000)
            except ECGReadError:
                raise
            except Exception as err:
                raise ECGReadError(path, f"cannot load {name!r} ({type(err).__name__}: {err})", fmt) from None

        array = _check_array(np.asarray(load(key)), path, fmt)
        stored_rate = next((load(k, 16) for k in _RATE_KEYS if k in members), None)
        stored_names = load("lead_names", 4096) if "lead_names" in members else None
        stored_units = load("units", 16) if "units" in members else None
        stored_meta = load("metadata", 1 << 24) if "metadata" in members else None
    if sampling_rate is None and stored_rate is not None:
        try:
            sampling_rate = float(np.asarray(stored_rate).reshape(-1)[0])
        except (ValueError, IndexError, TypeError):
            raise ECGReadError(path, "stored sampling_rate is not a number", fmt) from None
    rate = _check_rate(sampling_rate, path, fmt)
    if lead_names is None and stored_names is not None:
        if stored_names.dtype.kind not in "US":
            raise ECGReadError(path, "stored lead_names is not a string array", fmt)
        lead_names = [str(n) for n in np.asarray(stored_names).reshape(-1)]
    if units is None and stored_units is not None:
        units = str(np.asarray(stored_units).reshape(-1)[0]) if np.asarray(stored_units).size else None
    meta = {}
    if stored_meta is not None:
        try:
            meta = json.loads(str(np.asarray(stored_meta).reshape(-1)[0]))
        except (ValueError, IndexError):
            raise ECGReadError(path, "stored metadata is not valid JSON", fmt) from None
        if not isinstance(meta, dict):
            raise ECGReadError(path, "stored metadata is not a JSON object", fmt)
    array, names = _orient(array, lead_names, path, fmt)
    signal = array.astype(np.float64) * _scale(units, path, fmt)
    signal, names, _ = canonicalize_leads(signal.astype(np.float32), names, path, fmt, drop_unknown=False)
    meta.pop("format", None)
    return ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata=meta, source=str(path))


def write_npz(record: ECGRecord, path, *, compressed: bool = True) -> Path:
    """Write `record` as `.npz` (signal float32, sampling_rate, lead_names, units, metadata as JSON): lossless."""
    path = Path(path)
    save = np.savez_compressed if compressed else np.savez
    with open(path, "wb") as f:
        save(f, signal=np.asarray(record.signal, dtype=np.float32), sampling_rate=np.float64(record.sampling_rate),
             lead_names=np.array(record.lead_names, dtype=str), units=np.array(record.units),
             metadata=np.array(json.dumps(record.metadata, default=str)))
    return path


def write_csv(record: ECGRecord, path, *, time_column: bool = True, precision: int = 9) -> Path:
    """Write `record` as CSV: a header (`time,I,II,...`), one row per sample, values in mV.

    Args:
        record (`ECGRecord`): the recording.
        path: output file.
        time_column (`bool`, defaults to `True`): add a `time` column in seconds (lets readers infer the rate).
        precision (`int`, defaults to 9): significant digits; 9 round-trips float32 exactly.
    """
    path = Path(path)
    columns = [np.asarray(record.signal, dtype=np.float32).T.astype(np.float64)]
    header = list(record.lead_names)
    if time_column:
        t = np.arange(record.num_samples, dtype=np.float64) / record.sampling_rate
        columns.insert(0, t[:, None])
        header.insert(0, "time")
    np.savetxt(path, np.hstack(columns), delimiter=",", header=",".join(header), comments="",
               fmt=f"%.{precision}g")
    return path
