"""SCP-ECG (EN 1064 / ISO 11073-91064) reader via ecgdatakit, and a small writer for tests and conversions.

A record is a 6-byte preamble (CRC-CCITT of the rest, record length) followed by sections, each with a 16-byte
header (CRC, id, length, version, protocol, `SCPECG`). Section 0 points to the others; Section 3 defines the leads,
Section 6 holds the rhythm data (raw int16, or Huffman-coded differences with Section 2's table). ecgdatakit decodes
Huffman coding, first/second differences and reference-beat subtraction; this module checks the CRCs (a mismatch is
an error unless `check_crc=False`) and bounds the declared sample counts before decoding.
"""

from __future__ import annotations

import binascii
import struct
from datetime import datetime
from pathlib import Path

import numpy as np

from . import _ecgdatakit
from .record import DEFAULT_MAX_BYTES, DEFAULT_MAX_SAMPLES, ECGReadError, ECGRecord, check_samples, check_size

FORMAT = "scp"

# Section 3 lead codes of the 12 standard leads (EN 1064 table 12)
LEAD_CODES = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
              "III": 61, "aVR": 62, "aVL": 63, "aVF": 64, "V7": 9, "V3R": 11, "V4R": 12, "V5R": 13,
              "X": 16, "Y": 17, "Z": 18, "V8": 66, "V9": 67}
_DEFAULT_HUFFMAN = 19999


def crc_ccitt(data: bytes) -> int:
    """CRC-CCITT (polynomial 0x1021, initial value 0xFFFF) as SCP-ECG uses it."""
    return binascii.crc_hqx(data, 0xFFFF)


def _sections(data: bytes) -> dict[int, tuple[int, int]]:
    """Section id -> (offset, length) from the Section 0 pointer table (no validation beyond bounds)."""
    out = {}
    if len(data) < 22:
        return out
    length0 = struct.unpack_from("<I", data, 10)[0]
    pos, end = 22, min(6 + length0, len(data))
    while pos + 10 <= end:
        sid, length, index = struct.unpack_from("<HII", data, pos)
        pos += 10
        if length and index and index - 1 + length <= len(data):
            out[sid] = (index - 1, length)
    return out


def _precheck(path: Path, max_samples: int) -> None:
    """Bound the sample counts Sections 3/4/6 declare by what the file can hold, before any decoding allocates."""
    data = path.read_bytes()
    sec = _sections(data)
    if 3 not in sec or 6 not in sec:
        return  # ecgdatakit reports the missing section
    off3, len3 = sec[3]
    body3 = data[off3 + 16: off3 + len3]
    if len(body3) < 2:
        return
    n = body3[0]
    counts = []
    for i in range(n):
        p = 2 + 9 * i
        if p + 9 > len(body3):
            break
        start, end = struct.unpack_from("<II", body3, p)
        counts.append(max(0, end - start + 1))
    check_samples(path, sum(counts), max_samples, FORMAT, "Section 3")
    # Huffman codes take at least one bit per sample; raw samples two bytes
    bits_per_sample = 1 if 2 in sec else 16
    capacity = sec[6][1] * 8 // bits_per_sample
    if counts and max(counts) > capacity:
        raise ECGReadError(
            path, f"Section 3 declares {max(counts)} samples per lead but Section 6 can hold at most {capacity}",
            FORMAT,
        )
    if 4 in sec and 5 in sec:
        off4, len4 = sec[4]
        off5, len5 = sec[5]
        if len4 >= 18 and len5 >= 20:
            ref_ms = struct.unpack_from("<H", data, off4 + 16)[0]
            interval = struct.unpack_from("<H", data, off5 + 18)[0] or 1
            beat = round(ref_ms * 1000 / interval)
            if beat > len5 * 8:
                raise ECGReadError(path, f"Section 4 declares a {beat}-sample reference beat that Section 5 "
                                         "cannot hold", FORMAT)


def read_scp(path, *, waveform: str = "rhythm", check_crc: bool = True, max_bytes=DEFAULT_MAX_BYTES,
             max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read an SCP-ECG file (needs the `formats` extra: `pip install -e ".[formats]"` in the clone).

    Args:
        path: the `.scp` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` or `"median"` (Section 5 reference beats).
        check_crc (`bool`, defaults to `True`): a CRC mismatch in the record or a section is an `ECGReadError`;
            `False` reads damaged files anyway (the mismatch is listed in `metadata["reader_warnings"]`).
        max_bytes, max_samples: size limits (see `read_ecg`).
    """
    path = Path(path)
    check_size(path, max_bytes, FORMAT)
    _precheck(path, max_samples)
    rec, messages = _ecgdatakit.parse(
        "ecgdatakit.parsing.parsers.scp_ecg", "SCPECGParser", path, FORMAT, "SCP-ECG", strict_checksum=check_crc
    )
    return _ecgdatakit.to_record(rec, path, FORMAT, waveform=waveform, messages=messages)


# --------------------------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------------------------


def _section(sid: int, body: bytes, version: int = 20) -> bytes:
    if len(body) % 2:
        body += b"\x00"
    head = struct.pack("<HIBB6s", sid, 16 + len(body), version, version, b"SCPECG")
    chunk = head + body
    return struct.pack("<H", crc_ccitt(chunk)) + chunk


def _tag(tag: int, value: bytes) -> bytes:
    return struct.pack("<BH", tag, len(value)) + value


def _huffman_default(values: np.ndarray) -> bytes:
    """Encode integers with the SCP default Huffman table (0 -> `0`; |v| <= 8 -> v ones, `0`, sign bit;
    8-bit and 16-bit escapes `1111111110` / `1111111111` + two's complement value), MSB first."""
    bits = []
    for v in values.tolist():
        if v == 0:
            bits.append("0")
        elif -8 <= v <= 8:
            bits.append("1" * abs(v) + "0" + ("1" if v < 0 else "0"))
        elif -128 <= v <= 127:
            bits.append("1111111110" + format(v & 0xFF, "08b"))
        else:
            bits.append("1111111111" + format(v & 0xFFFF, "016b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""


def _differences(x: np.ndarray, mode: int) -> np.ndarray:
    x = x.astype(np.int64)
    if mode == 0 or x.size < 2:
        return x
    if mode == 1:
        return np.concatenate(([x[0]], np.diff(x)))
    d = np.empty_like(x)
    d[:2] = x[:2]
    d[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    return d


def write_scp(record: ECGRecord, path, *, avm_nv: int = 1000, huffman: bool = False, difference: int = 0) -> Path:
    """Write `record` as an SCP-ECG file (Sections 0, 1, 3, 6, and 2/8 when used).

    Args:
        record (`ECGRecord`): the recording, in mV; leads must have SCP lead codes (the 12 standard leads, ...).
        path: output file.
        avm_nv (`int`, defaults to 1000): amplitude value multiplier, nanovolts per count. Samples are rounded to
            it, so a round trip agrees to `avm_nv / 2` nV.
        huffman (`bool`, defaults to `False`): code the samples with the SCP default Huffman table.
        difference (`int`, defaults to 0): store amplitudes (0), first (1) or second (2) differences.

    Metadata written when present: `patient_id`, `age`, `sex`, `acquisition_time`, `diagnosis_statements`.
    """
    path = Path(path)
    fs = record.sampling_rate
    interval = round(1e6 / fs)
    if not 0 < interval < 65536 or abs(1e6 / interval - fs) > 1e-6 * fs:
        raise ValueError(f"SCP-ECG stores the sample interval in whole microseconds; {fs} Hz does not fit")
    meta = record.metadata
    tags = [_tag(2, (str(meta.get("patient_id", record.record_id)) + "\x00").encode("latin-1", "replace"))]
    if meta.get("age") is not None:
        tags.append(_tag(4, struct.pack("<HB", int(meta["age"]), 1)))
    if meta.get("sex") in ("M", "F"):
        tags.append(_tag(8, bytes([1 if meta["sex"] == "M" else 2])))
    if meta.get("acquisition_time"):
        when = datetime.fromisoformat(str(meta["acquisition_time"]))
        tags.append(_tag(25, struct.pack("<HBB", when.year, when.month, when.day)))
        tags.append(_tag(26, bytes([when.hour, when.minute, when.second])))
    tags.append(_tag(255, b""))

    n = record.num_samples
    codes = []
    for name in record.lead_names:
        if name not in LEAD_CODES:
            raise ValueError(f"lead {name!r} has no SCP-ECG lead code")
        codes.append(LEAD_CODES[name])
    sec3 = struct.pack("<BB", len(codes), 0x04 | (min(len(codes), 31) << 3))
    sec3 += b"".join(struct.pack("<IIB", 1, n, c) for c in codes)

    counts = np.round(record.signal.astype(np.float64) * 1e6 / avm_nv)
    if not np.isfinite(counts).all() or np.abs(counts).max(initial=0) > 32767:
        raise ValueError(f"samples do not fit in 16 bits at {avm_nv} nV per count")
    blobs = []
    for row in counts.astype(np.int64):
        d = _differences(row, difference)
        if huffman:
            blobs.append(_huffman_default(d))
        else:
            blobs.append(d.astype("<i2").tobytes())
    if max(len(b) for b in blobs) > 65535:
        raise ValueError("SCP-ECG Section 6 holds at most 65535 bytes per lead; the record is too long")
    sec6 = struct.pack("<HHBB", avm_nv, interval, difference, 0)
    sec6 += b"".join(struct.pack("<H", len(b)) for b in blobs) + b"".join(blobs)

    bodies = {1: b"".join(tags), 3: sec3, 6: sec6}
    if huffman:
        bodies[2] = struct.pack("<H", _DEFAULT_HUFFMAN)
    statements = meta.get("diagnosis_statements") or []
    if statements:
        sec8 = struct.pack("<BHBBBBB", 0, 2000, 1, 1, 0, 0, 0) + bytes([len(statements)])
        for i, line in enumerate(statements[:255]):
            text = str(line).encode("latin-1", "replace") + b"\x00"
            sec8 += struct.pack("<BH", i + 1, len(text)) + text
        bodies[8] = sec8

    # lay out: preamble (6) + Section 0 (16 + 12 pointers x 10) + the other sections in id order
    sec0_len = 16 + 12 * 10
    offset = 6 + sec0_len
    encoded, pointers = {}, []
    for sid in range(1, 12):
        if sid in bodies:
            encoded[sid] = _section(sid, bodies[sid])
    positions = {}
    for sid in sorted(encoded):
        positions[sid] = offset
        offset += len(encoded[sid])
    for sid in range(12):
        if sid == 0:
            pointers.append(struct.pack("<HII", 0, sec0_len, 7))
        elif sid in encoded:
            pointers.append(struct.pack("<HII", sid, len(encoded[sid]), positions[sid] + 1))
        else:
            pointers.append(struct.pack("<HII", sid, 0, 0))
    sec0 = _section(0, b"".join(pointers))
    body = sec0 + b"".join(encoded[s] for s in sorted(encoded))
    total = 6 + len(body)
    rest = struct.pack("<I", total) + body
    path.write_bytes(struct.pack("<H", crc_ccitt(rest)) + rest)
    return path
