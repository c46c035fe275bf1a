"""WFDB records (`.hea` + `.dat`/`.mat`), read with the `wfdb` package.

The PhysioNet/CinC Challenge headers carry the labels as comment lines (`# Age: 78`, `# Sex: Male`,
`# Dx: 164889003,59118001`); they become `metadata["age"]`, `metadata["sex"]` and `metadata["dx_codes"]`.
"""

from __future__ import annotations

import functools
import os
from datetime import datetime
from pathlib import Path

import numpy as np

from .detect import wfdb_header_for
from .record import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    ECGReadError,
    ECGRecord,
    canonicalize_leads,
    check_samples,
    check_size,
    normalize_age,
    normalize_sex,
    unit_to_mv,
)

FORMAT = "wfdb"

# bits per sample of the WFDB storage formats (FLAC formats 508/516/524 are compressed: no size check)
_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16, "212": 12, "310": 32 / 3, "311": 32 / 3}


def parse_header_comments(comments) -> dict:
    """Metadata from WFDB header comment lines (`Age`, `Sex`, `Dx` as in the CinC Challenge headers).

    Returns a dict with `age`, `sex`, `dx_codes` (list of code strings, file order) where present, plus
    `header_comments` (all lines) and any other `Key: value` line under its lower-cased key (e.g. `rx`, `hx`).
    """
    meta: dict = {"header_comments": [str(c) for c in comments]}
    for line in comments:
        key, sep, value = str(line).partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            meta["age"] = normalize_age(value)
        elif key == "sex":
            meta["sex"] = normalize_sex(value)
        elif key == "dx":
            meta["dx_codes"] = [c.strip() for c in value.split(",") if c.strip() and c.strip().lower() != "unknown"]
        elif key and " " not in key and value and value.lower() != "unknown":
            meta.setdefault(key, value)
    return meta


def read_wfdb(path, *, units=None, lead_names=None, max_bytes=DEFAULT_MAX_BYTES,
              max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a WFDB record.

    Args:
        path: the `.hea` file, the `.dat`/`.mat` data file, or the record path without extension.
        units (`str`, *optional*): unit of channels whose header gives none (WFDB's default is mV).
        lead_names (`list[str]`, *optional*): names for the channels, in header order (overrides the header).
        max_bytes (`int`): largest data file accepted.
        max_samples (`int`): largest `channels x samples` accepted.

    Channels in a non-voltage unit (`mmHg`, `NU`, ...) or with a name that is no ECG lead are dropped and listed in
    `metadata["dropped_channels"]`. Samples flagged invalid in the file are `NaN`.
    """
    import wfdb

    path = Path(path)
    hea = wfdb_header_for(path)
    if hea is None:
        raise ECGReadError(path, "no WFDB header (.hea) found for this record", FORMAT)
    check_size(hea, 1 << 20, FORMAT)
    record_name = str(hea.with_suffix(""))
    header = _fast_rdheader(hea)  # parsed once: for the checks below and for reading the signal
    if header is None:
        try:
            header = wfdb.rdheader(record_name)
        except Exception as err:  # wfdb raises many types on malformed headers
            raise ECGReadError(hea, f"malformed WFDB header ({type(err).__name__}: {err})", FORMAT) from err
    if getattr(header, "seg_name", None):
        raise ECGReadError(hea, "multi-segment WFDB records are not supported; read the segments", FORMAT)
    n_sig, sig_len, fs = header.n_sig, header.sig_len, header.fs
    if not n_sig or not sig_len:
        raise ECGReadError(hea, f"header declares {n_sig} signals of {sig_len} samples", FORMAT)
    if not fs or not np.isfinite(fs) or fs <= 0:
        raise ECGReadError(hea, f"invalid sampling frequency {fs!r}", FORMAT)
    check_samples(hea, int(n_sig) * int(sig_len), max_samples, FORMAT, "the header")
    _check_data_files(hea, header, max_bytes)

    try:
        rec = _read_signal(header, hea, record_name)
    except Exception as err:
        raise ECGReadError(hea, f"cannot read the signal data ({type(err).__name__}: {err})", FORMAT) from err
    signal = np.asarray(rec.p_signal, dtype=np.float32).T
    if signal.shape != (n_sig, sig_len):
        raise ECGReadError(hea, f"signal data has shape {signal.shape}, header says ({n_sig}, {sig_len})", FORMAT)

    names = list(lead_names) if lead_names is not None else list(rec.sig_name or [])
    if len(names) != n_sig:
        raise ECGReadError(hea, f"{len(names)} lead names for {n_sig} channels", FORMAT)
    keep, dropped = [], []
    for i, unit in enumerate(rec.units or [""] * n_sig):
        factor = unit_to_mv(unit) if unit else unit_to_mv(units or "mV")
        if factor is None:
            dropped.append(f"{names[i]} ({unit})")
            continue
        if factor != 1.0:
            signal[i] *= np.float32(factor)
        keep.append(i)
    if not keep:
        raise ECGReadError(hea, f"no channel in a voltage unit (units: {rec.units})", FORMAT)
    if len(keep) < n_sig:
        signal, names = signal[keep], [names[i] for i in keep]
    signal, names, dropped_names = canonicalize_leads(np.ascontiguousarray(signal), names, hea, FORMAT)

    meta = parse_header_comments(rec.comments or [])
    meta["record_id"] = rec.record_name
    if rec.base_date is not None:
        when = datetime.combine(rec.base_date, rec.base_time or datetime.min.time())
        meta["acquisition_time"] = when.isoformat()
    meta["dropped_channels"] = dropped + dropped_names
    return ECGRecord(signal=signal, sampling_rate=float(fs), lead_names=names, metadata=meta, source=str(hea))


@functools.lru_cache(maxsize=None)
def _field_table(name: str) -> dict:
    """wfdb's field table `wfdb.io._header.<name>` (`RECORD_SPECS`, `SIGNAL_SPECS`) read once into a dict
    `{field: (read default, allowed types)}`: wfdb looks its pandas table up for every field it parses."""
    from wfdb.io import _header

    table = getattr(_header, name)
    return {f: (table.loc[f, "read_default"], table.loc[f, "allowed_types"]) for f in table.index}


def _record_fields(line: str) -> dict:
    """`wfdb.io._header._parse_record_line` with dict lookups (`_field_table`; pandas lookups were ~40 us a
    header)."""
    import datetime

    from wfdb.io import _header

    match = _header.rx_record.match(line)
    if match is None:
        raise _header.HeaderSyntaxError("invalid syntax in record line")
    fields = dict(zip(("record_name", "n_seg", "n_sig", "fs", "counter_freq", "base_counter", "sig_len", "base_time",
                       "base_date"), match.groups()))
    for f, (default, types) in _field_table("RECORD_SPECS").items():
        v = fields[f]
        if v == "":
            fields[f] = default
        elif types == _header.int_types:
            fields[f] = int(v)
        elif types == _header.float_types:
            v = float(v)
            if f == "fs" and round(v, 8) == float(int(v)):
                v = int(v)
            fields[f] = v
        elif f == "base_time":
            fields[f] = _header.wfdb_strptime(v)
        elif f == "base_date":
            fields[f] = datetime.datetime.strptime(v, "%d/%m/%Y").date()
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def _fast_rdheader(hea: Path):
    """`wfdb.rdheader` of a plain single-segment header, or `None` for anything else (multi-segment, no signal
    length, a line wfdb's grammar rejects): `wfdb.rdheader` then parses it and gives the error messages.

    Same grammar (`wfdb.io.header.rx_signal`, `_parse_record_line`) and field table as wfdb, but the table is read
    once into a dict: wfdb looks a pandas table up for every field of every channel, which made parsing ~60 % of the
    time to read a 10 s 12-lead record. Tested equal to `wfdb.rdheader` on every CinC header."""
    import wfdb
    from wfdb.io import _header
    from wfdb.io import header as wfdb_header

    specs = _field_table("SIGNAL_SPECS")
    try:
        lines, comments = wfdb_header.parse_header_content(hea.read_text(encoding="ascii", errors="ignore"))
        fields = _record_fields(lines[0])
    except Exception:  # noqa: BLE001 -- wfdb.rdheader decides (and explains) what is wrong
        return None
    n_sig = fields.get("n_sig") or 0
    if fields.get("n_seg") is not None or not n_sig or fields.get("sig_len") is None or len(lines) != n_sig + 1:
        return None
    signals = {f: [None] * n_sig for f in specs}
    for ch, line in enumerate(lines[1:]):  # `_header._parse_signal_lines`, with dict lookups
        match = wfdb_header.rx_signal.match(line)
        if match is None:
            return None
        raw = match.groupdict()
        for f, (default, types) in specs.items():
            v = raw[f]
            if v == "":
                v = int(raw["adc_zero"]) if f == "baseline" and raw["adc_zero"] != "" else default
            elif types is _header.int_types:
                v = int(v)
            elif types is _header.float_types:
                v = float(v)
                if f == "adc_gain" and v == 0:
                    v = 200.0
            signals[f][ch] = v
    record = wfdb.Record()
    for f, v in signals.items():
        setattr(record, f, v)
    for f, v in fields.items():
        if f != "n_seg":
            setattr(record, f, v)
    record.comments = [line.strip(" \t#") for line in comments]
    return record


def _read_signal(header, hea: Path, record_name: str):
    """`wfdb.rdrecord(record_name, physical=True, return_res=32)` from an already parsed single-segment `header`
    (filled in place): rdrecord's own steps after its `rdheader` (wfdb's segment reader, `_arrange_fields`,
    `dac`). If those private steps fail for any reason, `wfdb.rdrecord` reads the record again and gives the error
    message. Tested equal to `wfdb.rdrecord` on every CinC record."""
    import wfdb
    from wfdb.io import _signal

    try:
        channels = list(range(header.n_sig))
        header.check_read_inputs(0, header.sig_len, channels, True, True, 32)
        signal = _read_format16(header, hea)
        if signal is not None:  # what `_arrange_fields` + `dac` leave for a whole-record read
            header.d_signal = header.e_d_signal = None
            header.p_signal = signal.T
            return header
        header.e_d_signal = _signal._rd_segment(
            file_name=header.file_name, dir_name=os.path.abspath(str(hea.parent)), pn_dir=None, fmt=header.fmt,
            n_sig=header.n_sig, sig_len=header.sig_len, byte_offset=header.byte_offset,
            samps_per_frame=header.samps_per_frame, skew=header.skew, init_value=header.init_value, sampfrom=0,
            sampto=header.sig_len, channels=channels, ignore_skew=False, no_file=False, sig_data=None, return_res=32,
        )
        header._arrange_fields(channels=channels, sampfrom=0, smooth_frames=True)
        header.dac(expanded=False, return_res=32, inplace=True)
        return header
    except Exception:  # noqa: BLE001 -- wfdb's own reader decides (and explains) what is wrong
        return wfdb.rdrecord(record_name, physical=True, return_res=32)


def _read_format16(header, hea: Path):
    """The `(n_sig, sig_len)` float32 physical signal of the commonest layout -- every channel in format 16 in one
    file, one sample per frame, no skew (CinC, PTB-XL) -- with one `np.fromfile`, or `None` for any other layout.

    Same numbers as wfdb's `dac(return_res=32)`, which computes `float32(d - baseline)` and then
    `float32(float64(that) / adc_gain)`: `d - baseline` is exact in float32 for 16-bit samples and a baseline
    below 2**23, so one float64 pass rounded once gives the same bits; -32768 (format 16's invalid sample) is NaN.
    """
    n_sig, n = header.n_sig, header.sig_len
    names = set(header.file_name or [])
    if {str(f) for f in header.fmt or []} != {"16"} or len(names) != 1:
        return None
    if any(v not in (None, 1) for v in header.samps_per_frame or []) or any(v not in (None, 0) for v in header.skew or []):
        return None
    offsets = {int(v or 0) for v in header.byte_offset or [0]}
    baseline = np.asarray(header.baseline, dtype=np.float64)[:, None]
    if len(offsets) != 1 or np.abs(baseline).max() >= 2**23:
        return None
    digital = np.fromfile(hea.parent / names.pop(), dtype="<i2", count=n_sig * n, offset=offsets.pop())
    if digital.size != n_sig * n:
        return None
    digital = digital.reshape(n, n_sig)
    # channel-major first: broadcasting over a 12-long inner axis is ~3x slower than over 5000-long rows
    physical = np.array(digital.T, dtype=np.float64, order="C")
    physical -= baseline
    physical /= np.asarray(header.adc_gain, dtype=np.float64)[:, None]
    out = physical.astype(np.float32)
    invalid = digital == -32768
    if invalid.any():
        out[invalid.T] = np.nan
    return out


def _check_data_files(hea: Path, header, max_bytes: int) -> None:
    """Every data file exists and is long enough for the samples the header declares (so a truncated file
    fails here with a clear message instead of deep in `wfdb`)."""
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        per_file.setdefault(name, []).append(i)
    for name, channels in per_file.items():
        if name in ("~", "-"):
            raise ECGReadError(hea, f"data file {name!r} (stdin/null) is not supported", FORMAT)
        if Path(name).name != name:
            raise ECGReadError(hea, f"data file {name!r} must sit beside the header", FORMAT)
        data = hea.parent / name
        if not data.is_file():
            raise ECGReadError(hea, f"data file {name} is missing", FORMAT)
        size = check_size(data, max_bytes, FORMAT)
        fmt = str(header.fmt[channels[0]])
        bits = _BITS.get(fmt)
        if bits is None:
            continue
        frames = sum(int((header.samps_per_frame or [1] * header.n_sig)[c] or 1) for c in channels)
        offset = int((header.byte_offset or [0] * header.n_sig)[channels[0]] or 0)
        need = offset + int(np.ceil(header.sig_len * frames * bits / 8))
        if size < need:
            raise ECGReadError(
                hea, f"data file {name} is truncated: {size} bytes, the header needs {need}", FORMAT
            )
