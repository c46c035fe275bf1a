"""Fuzz: seeded mutations of small sample files of every format (bit flips, truncation, deleted, duplicated and
overwritten byte ranges, garbage tokens in XML/CSV/headers, garbage base64 or sample lists, DTD injection, corrupted header fields,
SCP files with their CRCs recomputed so the decoder goes deep). Each read must either return a clean record or
raise `ECGReadError`, never another exception, never hang (SIGALRM guard), and a returned record must pass the
plausibility gate or carry a warning for what it fails (checked here with independent numbers).

The default run mutates 1,200 files across all formats; `-m fuzz_large` (a separate step of `.ci/run`) mutates
1,000 files per format family (WFDB, MUSE/CardioSoft XML, HL7, Philips, DICOM, SCP, EDF/BDF, CSV/TSV, NPY/NPZ)."""

import math
import re
import shutil
import struct
import time

import numpy as np
import pytest

from anyecg_hf.io import (
    ECGReadError,
    ECGRecord,
    read_ecg,
    write_cardiosoft_xml,
    write_csv,
    write_edf,
    write_muse_xml,
    write_npz,
    write_scp,
)
from anyecg_hf.io.scp import crc_ccitt
from anyecg_hf.leads import canonical_lead_name
from anyecg_hf.testing import Hang, hang_guard

N_CASES = 1200
N_PER_FAMILY = 1000
# format family -> seed-name prefixes (a CardioSoft seed joins "xml_ge" when its reader exists)
FAMILIES = {
    "wfdb": ("wfdb",), "xml_ge": ("muse", "cardiosoft"), "hl7": ("hl7",), "philips": ("philips",),
    "dicom": ("dicom",), "scp": ("scp",), "edf_bdf": ("edf", "bdf"), "csv_tsv": ("csv", "tsv"),
    "numpy": ("npy", "npz"),
}
CASE_LIMIT_S = 5.0  # "a few seconds": real reads take 1-50 ms
HANG_LIMIT_S = 30  # SIGALRM turns a hang into a failure instead of a stuck test run


def _clean(rec) -> str | None:
    """Why `rec` is not a clean record, or None."""
    if not isinstance(rec, ECGRecord):
        return f"returned {type(rec).__name__}"
    s = rec.signal
    if s.dtype != np.float32 or s.ndim != 2 or s.shape[1] < 1 or s.shape[0] != len(rec.lead_names):
        return f"bad signal {s.dtype} {s.shape} for {len(rec.lead_names)} names"
    if np.isinf(s).any():
        return "infinite samples"
    if not (math.isfinite(rec.sampling_rate) and rec.sampling_rate > 0):
        return f"bad rate {rec.sampling_rate}"
    if len(set(rec.lead_names)) != len(rec.lead_names) or any(canonical_lead_name(n) != n for n in rec.lead_names):
        return f"bad lead names {rec.lead_names}"
    if rec.units != "mV" or "format" not in rec.metadata:
        return "missing units/format"
    return _implausible_without_warning(rec)


def _implausible_without_warning(rec) -> str | None:
    """The plausibility gate, restated with plain numpy: refused rates and amplitudes never come back; doubtful
    rates, lengths and amplitudes come back only with `metadata["plausibility_warnings"]`."""
    fs = rec.sampling_rate
    if not 50 <= fs <= 20000:
        return f"rate {fs} Hz returned"
    x = rec.signal.astype(np.float64)
    finite = np.isfinite(x)
    if finite.any() and np.abs(x[finite]).max() > 1e5:
        return f"amplitude {np.abs(x[finite]).max():.3g} mV returned"
    spans = [np.ptp(row[np.isfinite(row)]) for row in x if np.isfinite(row).any()]
    peak = np.abs(x[finite]).max() if finite.any() else 0.0
    doubtful = (fs < 100 or x.shape[1] / fs < 1 or not spans or max(spans) > 50 or np.median(spans) > 200
                or max(spans) < 0.02 or peak > 50)
    if doubtful and not rec.metadata.get("plausibility_warnings"):
        return (f"implausible record without a warning: {fs} Hz, {x.shape[1]} samples, spans "
                f"{min(spans, default=0):.3g}-{max(spans, default=0):.3g} mV")
    return None


# ------------------------------------------------------------------------------------------------------------
# seeds: small files of every format
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    src = assets / "data"
    cinc = read_ecg(src / "cinc2021" / "E07503.hea")
    cinc.metadata.update(acquisition_time="2020-01-01T10:00:00", diagnosis_statements=["Sinus rhythm"])
    short = ECGRecord(cinc.signal[:, :1000], 500, cinc.lead_names, metadata=dict(cinc.metadata))
    tiny = ECGRecord(cinc.signal[:, :250], 500, cinc.lead_names, metadata=dict(cinc.metadata))
    out = {}
    # (bytes, file name, format passed or None for detection, text-like?)
    out["wfdb_hea"] = ((src / "cinc2021" / "E07503.hea").read_bytes(), "E07503.hea", "wfdb", True)
    out["wfdb_mat"] = ((src / "cinc2021" / "E07503.mat").read_bytes()[:24 + 12 * 2 * 5000], "E07503.mat", "wfdb",
                       False)
    out["muse"] = (write_muse_xml(short, root / "m.xml").read_bytes(), "m.xml", None, True)
    cs_median = ECGRecord(cinc.signal[:, :300], 500, cinc.lead_names)
    cs_short = ECGRecord(cinc.signal[:, :1000], 500, cinc.lead_names, metadata=dict(
        cinc.metadata, measurements={"heart_rate": 61, "qrs_ms": 92, "qtc_ms": 410, "p_axis": 50}))
    out["cardiosoft"] = (write_cardiosoft_xml(cs_short, root / "cs.xml", median=cs_median, line_width=30,
                                              arrhythmia_summary=["QRS Complexes: 9"]).read_bytes(), "cs.xml", None,
                         True)
    out["cardiosoft_fd"] = (write_cardiosoft_xml(tiny, root / "fd.xml", strip=False, full_disclosure=True)
                            .read_bytes(), "fd.xml", None, True)
    out["hl7"] = ((src / "formats" / "hl7_aecg_subject1.xml").read_bytes(), "a.xml", None, True)
    out["csv"] = (write_csv(tiny, root / "c.csv").read_bytes(), "c.csv", None, True)
    tsv = write_csv(tiny, root / "t.csv").read_text().replace(",", "\t")
    out["tsv"] = (tsv.encode(), "t.tsv", None, True)
    out["npz"] = (write_npz(tiny, root / "c.npz").read_bytes(), "c.npz", None, False)
    np.save(root / "c.npy", tiny.signal)
    out["npy"] = ((root / "c.npy").read_bytes(), "c.npy", "npy", False)
    out["philips"] = ((src / "formats" / "philips_sierra_1_03.xml").read_bytes(), "p.xml", None, True)
    out["philips16"] = ((src / "formats" / "philips_sierra_1_04_01.xml").read_bytes(), "p16.xml", None, False)
    out["dicom"] = ((src / "formats" / "dicom_waveform_ecg.dcm").read_bytes(), "d.dcm", None, False)
    out["edf"] = (write_edf(short, root / "e.edf").read_bytes(), "e.edf", None, False)
    import edfio

    bdf = edfio.Bdf([edfio.BdfSignal(row.astype(np.float64), 500, label=name, physical_dimension="mV",
                                     physical_range=(-20, 20)) for name, row in zip(short.lead_names, short.signal)],
                    data_record_duration=1)
    bdf.write(root / "b.bdf")
    out["bdf"] = ((root / "b.bdf").read_bytes(), "b.bdf", None, False)
    if _has("ecgdatakit"):
        out["scp"] = (write_scp(short, root / "s.scp").read_bytes(), "s.scp", None, False)
        out["scp_huff"] = (write_scp(short, root / "h.scp", huffman=True, difference=2).read_bytes(), "h.scp", None,
                           False)
    return out


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------------------------
# mutations
# ------------------------------------------------------------------------------------------------------------

_GARBAGE_TOKENS = [b"abc", b"-1e309", b"1e999", b"<", b"&", b"\x00", b"99999999999", b"-", b"NaN", b"</x>", b"]]>",
                   b"&amp;", b"\xff\xfe", b"0", b"-32768", b"65535", b"4294967295", b"", b" ", b"=", b'"']


def _bitflip(data, rng):
    b = bytearray(data)
    for _ in range(rng.integers(1, 17)):
        i = rng.integers(len(b))
        b[i] ^= 1 << rng.integers(8)
    return bytes(b)


def _truncate(data, rng):
    return data[: rng.integers(0, len(data))]


def _delete(data, rng):
    i = rng.integers(len(data))
    return data[:i] + data[i + rng.integers(1, max(2, len(data) // 10)):]


def _duplicate(data, rng):
    i = rng.integers(len(data))
    j = min(len(data), i + rng.integers(1, 4096))
    return data[:j] + data[i:j] + data[j:]


def _overwrite(data, rng):
    i = rng.integers(len(data))
    n = int(rng.integers(1, 64))
    return data[:i] + rng.integers(0, 256, n, dtype=np.uint8).tobytes() + data[i + n:]


def _token(data, rng):
    """Replace a number or tag-ish token with garbage (XML, CSV, WFDB headers)."""
    spans = [m.span() for m in re.finditer(rb"-?\d+(\.\d+)?|<[A-Za-z]+|[A-Za-z]+>", data[:200000])]
    if not spans:
        return _overwrite(data, rng)
    out = data
    for _ in range(rng.integers(1, 4)):
        a, b = spans[rng.integers(len(spans))]
        out = out[:a] + _GARBAGE_TOKENS[rng.integers(len(_GARBAGE_TOKENS))] + out[b:]
    return out


def _base64_garbage(data, rng):
    pattern = rb"(<WaveFormData>|<WaveformData[^>]*>|<parsedwaveforms[^>]*>|<digits>)([^<]{16,})"
    m = [m.span(2) for m in re.finditer(pattern, data)]
    if not m:
        return _token(data, rng)
    a, b = m[rng.integers(len(m))]
    i = int(rng.integers(a, b - 8))
    junk = bytes(rng.choice(list(b"!@#$%^*()_+{}|:?~ \n=AZaz09/+"), 8))
    return data[:i] + junk + data[i + 8:]


def _dtd(data, rng):
    decl = b'<!DOCTYPE x [<!ENTITY e "' + b"y" * int(rng.integers(1, 9)) + b'">]>'
    k = data.find(b"?>")
    return data[: k + 2] + decl + data[k + 2:] if k >= 0 else decl + data


def _header_number(data, rng):
    """Replace one number in the first 2 kB (WFDB/EDF/SCP headers) by a huge, zero or negative value."""
    spans = [m.span() for m in re.finditer(rb"\d+", data[:2048])]
    if not spans:
        return _bitflip(data, rng)
    a, b = spans[rng.integers(len(spans))]
    new = [b"0", b"-1", b"99999999", b"4294967296", b"1" * (b - a)][rng.integers(5)][: max(1, b - a + 2)]
    return data[:a] + new + data[b:]


def _binary_field(data, rng):
    """Overwrite a 2- or 4-byte integer near the start (lengths, counts, offsets) with an extreme value."""
    i = int(rng.integers(0, min(len(data) - 4, 400)))
    value = [0, 1, 0xFFFF, 0x7FFF, 0xFFFFFFFF, 0x7FFFFFFF, 29999, 19999][rng.integers(8)]
    packed = struct.pack("<I", value & 0xFFFFFFFF) if rng.integers(2) else struct.pack("<H", value & 0xFFFF)
    return data[:i] + packed + data[i + len(packed):]


def _fix_scp_crcs(data):
    """Recompute the record and section CRCs so the mutation reaches the decoder instead of the CRC check."""
    b = bytearray(data)
    if len(b) < 22:
        return bytes(b)
    try:
        length0 = struct.unpack_from("<I", b, 10)[0]
        pos, end = 22, min(6 + length0, len(b))
        while pos + 10 <= end:
            sid, length, index = struct.unpack_from("<HII", b, pos)
            pos += 10
            off = index - 1
            if length >= 16 and index and off + length <= len(b):
                struct.pack_into("<H", b, off, crc_ccitt(bytes(b[off + 2: off + length])))
    except struct.error:
        pass
    struct.pack_into("<H", b, 0, crc_ccitt(bytes(b[2:])))
    return bytes(b)


BINARY_OPS = [_bitflip, _truncate, _delete, _duplicate, _overwrite, _binary_field]
TEXT_OPS = BINARY_OPS + [_token, _token, _base64_garbage, _dtd, _header_number]


def _variant(seed_name, data, is_text, rng):
    ops = TEXT_OPS if is_text else BINARY_OPS + ([_header_number] if seed_name in ("edf", "bdf") else [])
    out = data
    for _ in range(rng.integers(1, 3)):
        op = ops[rng.integers(len(ops))]
        out = op(out, rng) if out else out
    if seed_name.startswith("scp") and rng.integers(2):
        out = _fix_scp_crcs(out)
    return out


def _run(seeds, names, n_cases, rng_seed, tmp_path):
    """Mutate and read `n_cases` files cycling over the seeds `names`; returns (failures, slow, outcomes)."""
    rng = np.random.default_rng(rng_seed)
    failures, slow, outcomes = [], [], {"record": 0, "error": 0, "warned": 0}
    work = tmp_path / "case"
    work.mkdir()
    for case in range(n_cases):
        name = names[case % len(names)]
        data, fname, fmt, is_text = seeds[name]
        mutated = _variant(name, data, is_text, rng)
        for p in work.iterdir():
            p.unlink()
        if name.startswith("wfdb"):  # mutate one of the two files of the record, keep the other intact
            other = "wfdb_mat" if name == "wfdb_hea" else "wfdb_hea"
            (work / seeds[other][1]).write_bytes(seeds[other][0])
        target = work / fname
        target.write_bytes(mutated)
        use_fmt = fmt if (fmt == "npy" or rng.integers(2)) else None
        kwargs = {"sampling_rate": 500} if fname.endswith(".npy") else {}
        if name.startswith("scp") and rng.integers(2):
            kwargs["check_crc"] = False
            use_fmt = "scp"
        start = time.perf_counter()
        try:
            with hang_guard(HANG_LIMIT_S):
                rec = read_ecg(target, format=use_fmt, **kwargs)
            problem = _clean(rec)
            outcomes["record"] += 1
            outcomes["warned"] += bool(rec.metadata.get("plausibility_warnings"))
        except ECGReadError as err:
            problem = None if err.path and str(target.name) in str(err) else f"message lacks the file: {err}"
            outcomes["error"] += 1
        except Hang:
            problem = f"hang > {HANG_LIMIT_S}s"
        except Exception as err:  # the failure this test exists to catch
            problem = f"{type(err).__name__}: {err}"
        elapsed = time.perf_counter() - start
        if elapsed > CASE_LIMIT_S:
            slow.append((case, name, round(elapsed, 2)))
        if problem:
            failures.append((case, name, problem[:300]))
            shutil.copy(target, tmp_path / f"fail_{case}_{fname}")
    return failures, slow, outcomes


def test_fuzz_readers_raise_only_ecgreaderror(seeds, tmp_path):
    failures, slow, outcomes = _run(seeds, sorted(seeds), N_CASES, 20240917, tmp_path)
    assert not failures, f"{len(failures)} of {N_CASES} variants failed, first: {failures[:5]}"
    assert not slow, f"variants slower than {CASE_LIMIT_S}s: {slow[:5]}"
    # the mutations exercise both paths: some variants still decode, most are rejected
    assert outcomes["record"] > 50 and outcomes["error"] > 300, outcomes


@pytest.mark.fuzz_large
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fuzz_1000_per_format_family(seeds, tmp_path, family):
    names = sorted(n for n in seeds if n.startswith(FAMILIES[family]))
    if not names:
        pytest.skip(f"no seed for {family} (optional parser missing)")
    failures, slow, outcomes = _run(seeds, names, N_PER_FAMILY, 21 + sorted(FAMILIES).index(family), tmp_path)
    assert not failures, f"{family}: {len(failures)} of {N_PER_FAMILY} variants failed, first: {failures[:5]}"
    assert not slow, f"{family}: variants slower than {CASE_LIMIT_S}s: {slow[:5]}"
    assert outcomes["record"] + outcomes["error"] == N_PER_FAMILY and outcomes["error"] > 0, outcomes
