"""Philips Sierra ECG XML (`<restingecgdata>`, versions 1.03 to 1.04.02), read with defusedxml; XLI decoded here.

Layout: `dataacquisition/signalcharacteristics` (`samplingrate`, `resolution` or `signalresolution` in uV per
count, `acquisitiontype`), `waveforms/parsedwaveforms` (Base64; `compression`/`compressmethod="XLI"`,
`leadlabels`, `durationperchannel` in ms) and `waveforms/repbeats` (one `<repbeat leadname=...>` per lead,
uncompressed int16, own `samplespersec` and `resolution`: the median beats).

XLI (documented by sixlettervariables/sierra-ecg-tools, the project our Philips test files come from), per lead:
an 8-byte header (int32 LE compressed size, 2 bytes, int16 LE start value), then LZW with 10-bit codes read
most-significant bit first, a table of 256 single bytes grown to 1023 entries and never reset, code 1023 ending
the block. The LZW output holds the high bytes of the int16 deltas, then their low bytes. The deltas are
second-order coded: with `d` the unpacked values, `c[2] = start` and `c[i] = d[i-1] - 64` (i >= 3),

    x[0] = d[0],  x[1] = d[1],  x[i] = 2 x[i-1] - x[i-2] - c[i]

computed exactly with two cumulative sums. III, aVR, aVL and aVF are stored as residuals (floor division):

    III = II - I - r3,  aVR = -r4 - (I + II) // 2,  aVL = (I - III) // 2 - r5,  aVF = (II + III) // 2 - r6

Why written here: the maintained decoders are ecgdatakit (a 49 MB wheel with a 64 MB network weight file) and
`sierraecg` (MIT, 8 kB), whose byte-at-a-time LZW reader takes ~0.15 s per file (3x the whole read here) and whose
`xli_decode` has no bound on what a crafted block expands to. This decoder stops each block at its lead's size.
Both Philips test files decode to the same counts as ecgdatakit 2.0.3 and `sierraecg` 0.4.0, bit for bit
(tests/test_io_formats.py).

PageWriter exports end with a 1 mV calibration pulse after the recording (11 s stored per lead: the ECG, a few
zero samples, a 0.2 s pulse on every lead, zeros). By default it is cut off and described in
`metadata["calibration_pulse"]`, so models do not see a square wave that is not ECG.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np

from ._xml import b64decode_strict, child_text, parse_xml
from .measurements import measurements_from
from .muse import stack_leads
from .record import (
    DEFAULT_MAX_SAMPLES,
    ECGReadError,
    ECGRecord,
    age_between,
    check_samples,
    normalize_age,
    normalize_sex,
)

FORMAT = "philips"
MAX_BYTES = 8 << 20
_STANDARD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# our measurement key -> Philips global measurement tags, first found wins (1.04 names, then 1.03 names)
MEASUREMENT_TAGS = {"heart_rate": ("heartrate", "meanventrate"), "rr_ms": ("rrint",), "p_ms": ("pdur",),
                    "pr_ms": ("print", "meanprint"), "qrs_ms": ("qrsdur", "meanqrsdur"),
                    "qt_ms": ("qtint", "meanqtint"), "qtc_ms": ("meanqtc", "qtcb"), "p_axis": ("pfrontaxis",),
                    "qrs_axis": ("qrsfrontaxis",), "t_axis": ("tfrontaxis",)}


def find_calibration_pulse(signal: np.ndarray, sampling_rate: float):
    """Locate a trailing calibration block: all-zero columns, then the same non-zero constant on every lead for
    20 ms to 1 s, then zeros to the end.

    Returns:
        `(cut, pulse_start, pulse_stop, amplitude)` where `cut` is where the ECG ends, or `None`.
    """
    n = signal.shape[1]
    if n < 4:
        return None
    same = (signal == signal[:1]).all(axis=0)
    level = signal[0]
    i = n
    while i > 0 and same[i - 1] and level[i - 1] == 0:
        i -= 1
    stop = i
    if stop == 0:
        return None
    amplitude = level[stop - 1]
    while i > 0 and same[i - 1] and level[i - 1] == amplitude:
        i -= 1
    start = i
    width = (stop - start) / sampling_rate
    if amplitude == 0 or not 0.02 <= width <= 1.0 or start == 0:
        return None
    while i > 0 and same[i - 1] and level[i - 1] == 0:
        i -= 1
    if i == start:  # the pulse must be separated from the ECG by a zero gap
        return None
    return i, start, stop, float(amplitude)


def _float(value: str | None) -> float | None:
    try:
        out = float(value) if value is not None else None
    except ValueError:
        return None
    return out if out is not None and np.isfinite(out) else None


_MAX_CODE = 1022  # 10-bit codes; 1023 ends a block


def lzw_decode(chunk: bytes, limit: int, path: Path, lead: str) -> bytes:
    """XLI's LZW: 10-bit codes, MSB first, at most `limit` output bytes."""
    bits = np.unpackbits(np.frombuffer(chunk, dtype=np.uint8))
    n = bits.size // 10
    codes = bits[: n * 10].reshape(n, 10).astype(np.int64) @ (1 << np.arange(9, -1, -1))
    table = [bytes((i,)) for i in range(256)]
    out, prev = bytearray(), b""
    for code in codes.tolist():
        if code > _MAX_CODE:
            break
        if code < len(table):
            entry = table[code]
        elif code == len(table) and prev:
            entry = prev + prev[:1]
        else:
            raise ECGReadError(path, f"lead {lead}: invalid LZW code {code} in the XLI block", FORMAT)
        if prev and len(table) <= _MAX_CODE:
            table.append(prev + entry[:1])
        out += entry
        prev = entry
        if len(out) > limit:
            raise ECGReadError(path, f"lead {lead}: the XLI block expands beyond its {limit // 2} samples", FORMAT)
    return bytes(out)


def xli_decode(data: bytes, labels: list[str], n_samples: int, path: Path) -> list[np.ndarray]:
    """The XLI blocks of `data`, one per label, as int64 arrays of `n_samples` (limb leads not yet rebuilt)."""
    leads, offset = [], 0
    for label in labels:
        if offset + 8 > len(data):
            raise ECGReadError(path, f"the XLI data ends before lead {label}", FORMAT)
        size = int.from_bytes(data[offset:offset + 4], "little", signed=True)
        start = int.from_bytes(data[offset + 6:offset + 8], "little", signed=True)
        if size <= 0 or offset + 8 + size > len(data):
            raise ECGReadError(path, f"lead {label}: XLI block size {size} does not fit the data", FORMAT)
        raw = lzw_decode(data[offset + 8:offset + 8 + size], 2 * n_samples + 1, path, label)
        offset += 8 + size
        if len(raw) % 2:
            raw += b"\0"
        half = len(raw) // 2
        if half < n_samples:
            raise ECGReadError(path, f"lead {label}: {half} samples in its XLI block, {n_samples} expected", FORMAT)
        b = np.frombuffer(raw, dtype=np.uint8).astype(np.uint16)
        d = ((b[:half] << 8) | b[half:]).view(np.int16).astype(np.int64)
        if half > 2:
            c = np.concatenate(([start], d[2:half - 1] - 64))
            step = np.concatenate(([d[0], d[1] - d[0]], (d[1] - d[0]) - np.cumsum(c)))
            d = np.cumsum(step)
        leads.append(d[:n_samples])
    return leads


def _rhythm(root, path: Path, max_samples: int):
    """`(int64 counts per lead, labels, rate, uV per count)` of `<parsedwaveforms>`."""
    signal = root.find("dataacquisition/signalcharacteristics")
    parsed = root.find("waveforms/parsedwaveforms")
    if parsed is None:
        raise ECGReadError(path, "no <parsedwaveforms>", FORMAT)
    rate = _float(parsed.get("samplespersecond")) or _float(child_text(signal, "samplingrate"))
    duration = _float(parsed.get("durationperchannel"))
    if not rate or not 0 < rate <= 1e5 or not duration or not 0 < duration <= 1e8:
        raise ECGReadError(path, f"invalid sampling rate {rate} or durationperchannel {duration}", FORMAT)
    n = int(round(duration * rate / 1000))
    labels = (parsed.get("leadlabels") or "").split()
    count = int(_float(parsed.get("numberofleads")) or 0)
    if labels and 0 < count < len(labels):
        labels = labels[:count]
    if not labels:
        count = int(_float(child_text(signal, "numberchannelsallocated")) or 0)
        leadset = child_text(signal, "acquisitiontype") or child_text(signal, "leadset")
        if not 0 < count <= 16:
            raise ECGReadError(path, f"invalid <numberchannelsallocated> {count}", FORMAT)
        labels = [_STANDARD[k] if leadset in ("STD-12", "10-WIRE") and k < 12 else f"Channel {k + 1}"
                  for k in range(count)]
    check_samples(path, n * len(labels), max_samples, FORMAT)
    resolution = next((v for v in (_float(parsed.get("resolution")), _float(child_text(signal, "resolution")),
                                    _float(child_text(signal, "signalresolution"))) if v and v > 0), None)
    if resolution is None:
        raise ECGReadError(path, "no signal resolution (uV per count) in the file", FORMAT)
    method = parsed.get("compression") or parsed.get("compressmethod") or ""
    compressed = (parsed.get("compressflag") or "true").lower() != "false" and method.lower() not in (
        "", "uncompressed", "none")
    encoding = parsed.get("dataencoding") or "Base64"
    text = parsed.text or ""
    if compressed:
        if method.upper() != "XLI" or encoding != "Base64":
            raise ECGReadError(path, f"unsupported waveform compression {method!r} / encoding {encoding!r}", FORMAT)
        leads = xli_decode(b64decode_strict(text, path, FORMAT, "parsedwaveforms"), labels, n, path)
        if labels[:6] == list(_STANDARD[:6]):
            i, ii = leads[0], leads[1]
            leads[2] = ii - i - leads[2]
            leads[3] = -leads[3] - (i + ii) // 2
            leads[4] = (i - leads[2]) // 2 - leads[4]
            leads[5] = (ii + leads[2]) // 2 - leads[5]
    else:
        if encoding == "Base64":
            raw = b64decode_strict(text, path, FORMAT, "parsedwaveforms")
            signed = (parsed.get("signalsigned") or child_text(signal, "signalsigned") or "true").lower() != "false"
            values = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2" if signed else "<u2")
        elif encoding == "Plain":
            try:
                values = np.array(text.split(), dtype=np.int64)
            except (ValueError, OverflowError):
                raise ECGReadError(path, "<parsedwaveforms> holds a non-integer sample", FORMAT) from None
        else:
            raise ECGReadError(path, f"unsupported waveform encoding {encoding!r}", FORMAT)
        if values.size < n * len(labels):
            raise ECGReadError(path, f"<parsedwaveforms> holds {values.size} samples, {n * len(labels)} expected",
                               FORMAT)
        leads = [values[k * n:(k + 1) * n].astype(np.int64) for k in range(len(labels))]
    zero = _float(parsed.get("signaloffset")) or _float(child_text(signal, "signaloffset")) or 0.0
    return [x - zero for x in leads], labels, rate, resolution


def _median(root, path: Path, rhythm_rate: float, rhythm_resolution: float):
    beats = root.find("waveforms/repbeats")
    if beats is None or not beats.findall("repbeat"):
        raise ECGReadError(path, "the file holds no median beats (<repbeats>)", FORMAT)
    if beats.get("compression") or (beats.get("dataencoding") or "Base64") != "Base64":
        raise ECGReadError(path, "unsupported <repbeats> compression or encoding", FORMAT)
    rate = _float(beats.get("samplespersec")) or _float(beats.get("samplespersecond")) or rhythm_rate
    resolution = _float(beats.get("resolution")) or rhythm_resolution
    leads, labels = [], []
    for item in beats.findall("repbeat"):
        holder = item.find("waveform") if item.find("waveform") is not None else item
        label = item.get("leadname") or "?"
        raw = b64decode_strict(holder.text or "", path, FORMAT, f"repbeat {label}")
        values = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.int64)
        duration = _float(holder.get("duration") or item.get("duration"))
        if duration and duration > 0:
            expected = int(round(duration * rate / 1000))
            if values.size < expected:
                raise ECGReadError(path, f"repbeat {label}: {values.size} samples, {expected} expected", FORMAT)
            values = values[:expected]
        leads.append(values)
        labels.append(label)
    return leads, labels, rate, resolution


def read_philips(path, *, waveform: str = "rhythm", keep_calibration: bool = False,
                 max_bytes=MAX_BYTES, max_samples=DEFAULT_MAX_SAMPLES) -> ECGRecord:
    """Read a Philips Sierra / PageWriter XML file.

    Args:
        path: the `.xml` file.
        waveform (`str`, defaults to `"rhythm"`): `"rhythm"` or `"median"` (the representative beats).
        keep_calibration (`bool`, defaults to `False`): keep the trailing 1 mV calibration pulse.
        max_bytes (`int`, defaults to 8 MiB): largest file accepted. Sierra files are 10 s resting ECGs
            (< 1 MB).
        max_samples: size limit (see `read_ecg`).
    """
    path = Path(path)
    root = parse_xml(path, FORMAT, max_bytes)
    if root.tag != "restingecgdata":
        raise ECGReadError(path, f"root element is <{root.tag}>, expected <restingecgdata>", FORMAT)
    counts, labels, rate, resolution = _rhythm(root, path, max_samples)
    if waveform.strip().lower() == "median":
        counts, labels, rate, resolution = _median(root, path, rate, resolution)
    rows = [(x * (resolution / 1000.0)).astype(np.float32) for x in counts]
    signal, names, dropped, _ = stack_leads(rows, labels, path, FORMAT)
    meta = _metadata(root)
    meta.update(waveform=waveform.strip().lower(), dropped_channels=dropped)
    out = ECGRecord(signal=signal, sampling_rate=rate, lead_names=names, metadata=meta, source=str(path))
    if meta["waveform"] == "rhythm" and not keep_calibration:
        found = find_calibration_pulse(out.signal, out.sampling_rate)
        if found is not None:
            cut, start, stop, amplitude = found
            out.metadata["calibration_pulse"] = {
                "amplitude_mV": round(amplitude, 6),
                "start_s": start / out.sampling_rate,
                "duration_s": (stop - start) / out.sampling_rate,
            }
            out.metadata["trimmed_samples"] = out.num_samples - cut
            out.signal = np.ascontiguousarray(out.signal[:, :cut])
    if out.num_samples == 0:
        raise ECGReadError(path, "no ECG samples before the calibration pulse", FORMAT)
    return out


def _day(text: str | None) -> date | None:
    try:
        return datetime.strptime((text or "").strip(), "%Y-%m-%d").date()
    except ValueError:
        return None


def _metadata(root) -> dict:
    acq = root.find("dataacquisition")
    day = _day(acq.get("date")) if acq is not None else None
    try:
        when = datetime.combine(day, datetime.strptime(acq.get("time", "").strip(), "%H:%M:%S").time())
    except (ValueError, TypeError):
        when = day
    patient = root.find("patient/generalpatientdata")
    meta: dict = {"patient_id": child_text(patient, "patientid"), "sex": normalize_sex(child_text(patient, "sex")),
                  "acquisition_time": when.isoformat() if when else None}
    years = normalize_age(child_text(patient, "age/years"))
    birth = _day(child_text(patient, "age/dateofbirth") or child_text(patient, "dateofbirth"))
    if years is not None:
        meta["age"] = years
    elif birth is not None and day is not None:
        meta["age"] = age_between(birth, day)
    machine = acq.find("machine") if acq is not None else None
    if machine is not None:
        maker = (machine.get("detaildescription") or "").split(":")[0].strip()
        meta["device"] = " ".join(p for p in (maker, (machine.text or "").strip()) if p) or None
    meta["site"] = child_text(acq, "acquirer/institutionname")
    signal = root.find("dataacquisition/signalcharacteristics")
    filters = {"highpass": _float(child_text(signal, "hipass")), "lowpass": _float(child_text(signal, "lowpass"))}
    band = (child_text(signal, "signalbandwidth") or "").split("-")
    if len(band) == 2 and filters["highpass"] is None:
        filters = {"highpass": _float(band[0]), "lowpass": _float(band[1])}
    if (child_text(signal, "notchfiltered") or "").lower() == "true":
        filters["notch"] = _float((child_text(signal, "notchfilterfreqs") or "").split(",")[0])
    meta["filters"] = {k: v for k, v in filters.items() if v is not None}
    interp = root.find("interpretations/interpretation")
    statements = []
    for st in interp.findall("statement") if interp is not None else []:
        left, right = child_text(st, "leftstatement"), child_text(st, "rightstatement")
        if left or right:
            statements.append(f"{left} ({right})" if left and right else left or right)
    meta["diagnosis_statements"] = statements
    sources = [interp.find("globalmeasurements") if interp is not None else None,
               interp.find("interpretationmeasurements") if interp is not None else None,
               root.find("measurements/globalmeasurements"), root.find("internalmeasurements/crossleadmeasurements")]
    meta["measurements"] = measurements_from({
        key: next((v for el in sources if el is not None for tag in tags if (v := child_text(el, tag))), None)
        for key, tags in MEASUREMENT_TAGS.items()})
    return meta
