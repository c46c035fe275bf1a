"""Hostile and careless inputs to the readers (issue 21): zip bombs, 10^6-column CSVs, FIFOs, links leaving the
input folder, zero/absurd durations, gains and rates, a DICOM-looking file of zeros, and the plausibility gate.

Bounded work is checked by a generous hang guard (SIGALRM) and by peak memory measured in a subprocess, never by a
timed assertion."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from anyecg_hf.io import ECGReadError, ECGRecord, read_ecg, read_ecg_dir, write_csv, write_npz
from anyecg_hf.io.plausibility import assess
from anyecg_hf.testing import hang_guard

HANG_S = 60


def _ecg(seconds=10, fs=500, leads=12, scale=1.0):
    t = np.arange(int(seconds * fs)) / fs
    beat = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 7 * t)
    sig = np.stack([beat * (0.5 + 0.1 * k) for k in range(leads)]) * scale
    from anyecg_hf.leads import STANDARD_12_LEADS

    return ECGRecord(sig, fs, list(STANDARD_12_LEADS[:leads]))


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter after importing the readers; how much its peak RSS (MB) grew over the
    peak after the imports (importing the package costs ~0.5 GB with torch), and its output."""
    wrapper = ("import resource\nimport anyecg_hf.io\n"
               "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n" + code +
               "\nprint('PEAK', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    return float(lines[-1].split()[1]), "\n".join(lines[:-1])


def _write_bomb(path, n_bytes):
    """An .npz whose one member is a float64 array of `n_bytes` zero bytes, streamed (never held in memory)."""
    n = n_bytes // 8 // 12
    header = {"descr": "<f8", "fortran_order": False, "shape": (12, n)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("signal.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(1 << 22)
            left = 12 * n * 8
            while left:
                step = min(left, len(chunk))
                member.write(chunk[:step])
                left -= step
        zf.writestr("sampling_rate.npy", _npy_bytes(np.float64(500)))


def _npy_bytes(value):
    import io

    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def test_npz_bomb_refused_with_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.npz"
    _write_bomb(bomb, 384 << 20)  # 384 MiB of zeros in ~0.4 MB
    assert bomb.stat().st_size < 2 << 20
    with hang_guard(HANG_S):
        with pytest.raises(ECGReadError, match="zip bomb") as err:
            read_ecg(bomb)
    assert "bomb.npz" in str(err.value)
    code = (f"from anyecg_hf.io import read_ecg, ECGReadError\n"
            f"try:\n    read_ecg({str(bomb)!r})\nexcept ECGReadError as e:\n    print('refused', e)\n")
    peak, out = _peak_rss_mb(code)
    assert out.startswith("refused")
    assert peak < 64, f"peak memory grew by {peak:.0f} MB while refusing a 384 MiB bomb"


def test_npz_honest_archive_still_reads(tmp_path):
    rec = _ecg()
    back = read_ecg(write_npz(rec, tmp_path / "ok.npz"))
    np.testing.assert_array_equal(back.signal, rec.signal)
    assert "plausibility_warnings" not in back.metadata


def test_csv_with_a_million_columns_refused_fast(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(10**6)) + "\n" + ",".join("1" for _ in range(10**6)) + "\n")
    with hang_guard(HANG_S):
        with pytest.raises(ECGReadError, match="column|first line") as err:
            read_ecg(wide, sampling_rate=500)
    assert "wide.csv" in str(err.value)
    code = (f"from anyecg_hf.io import read_ecg, ECGReadError\n"
            f"try:\n    read_ecg({str(wide)!r}, sampling_rate=500)\nexcept ECGReadError as e:\n    print('refused', e)\n")
    peak, out = _peak_rss_mb(code)
    assert out.startswith("refused") and peak < 64, f"peak memory grew by {peak:.0f} MB refusing a 10^6-column CSV"
    # a header of 20 columns, then one row of 10^6 fields: refused from the first 20 lines too
    rows = tmp_path / "rows.csv"
    rows.write_text("I,II\n" + ",".join("1" for _ in range(2000)) + "\n")
    with pytest.raises(ECGReadError, match="2000 fields"):
        read_ecg(rows, sampling_rate=500)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("name", ["f.xml", "f.hea", "f.csv", "noext"])
def test_fifo_never_opened(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with hang_guard(30):
        with pytest.raises(ECGReadError, match="FIFO"):
            read_ecg(fifo, format="csv" if name == "noext" else None)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_folder_walk_skips_fifos_and_outside_links(tmp_path):
    inside = tmp_path / "in"
    inside.mkdir()
    rec = _ecg()
    write_csv(rec, inside / "good.csv")
    os.mkfifo(inside / "pipe")  # extension-less: discovery used to open it to sniff the content
    os.mkfifo(inside / "pipe.xml")
    secret = tmp_path / "secret.csv"
    secret.write_text("time,I\n0,1\n0.002,2\n")
    os.symlink(secret, inside / "leak.csv")
    os.symlink(tmp_path, inside / "up")  # a folder link leaving the root
    os.symlink(inside / "good.csv", inside / "alias.csv")  # a link that stays inside is fine
    with hang_guard(30):
        reader = read_ecg_dir(inside, progress=False)
        got = sorted(os.path.basename(r.source) for r in reader)
    assert got == ["alias.csv", "good.csv"]
    errors = {os.path.basename(p): msg for p, _, msg in reader.errors}
    assert set(errors) == {"pipe", "pipe.xml", "leak.csv", "up"}
    assert "outside the input folder" in errors["leak.csv"] and "FIFO" in errors["pipe"]
    assert str(secret) not in " ".join(errors.values())  # the target is never named
    # a folder of links to a dataset elsewhere: asked for explicitly (folder links are still not walked)
    with hang_guard(30):
        reader = read_ecg_dir(inside, progress=False, follow_links=True)
        got = sorted(os.path.basename(r.source) for r in reader)
    assert got == ["alias.csv", "good.csv", "leak.csv"]
    assert sorted(os.path.basename(p) for p, _, _ in reader.errors) == ["pipe", "pipe.xml", "up"]


def _edf_with_duration(src, dst, text):
    data = bytearray(src.read_bytes())
    data[244:252] = text.ljust(8).encode()
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("duration", ["0", "1e-30", "-1", "nan"])
def test_edf_absurd_record_duration(tmp_path, duration):
    pytest.importorskip("edfio")
    from anyecg_hf.io import write_edf

    good = write_edf(_ecg(), tmp_path / "g.edf")
    bad = _edf_with_duration(good, tmp_path / "b.edf", duration)
    with pytest.raises(ECGReadError, match="duration"):
        read_ecg(bad)


def _wfdb_pair(assets, tmp_path, edit):
    src = assets / "data" / "cinc2021"
    lines = (src / "E07503.hea").read_text().splitlines()
    (tmp_path / "E07503.mat").write_bytes((src / "E07503.mat").read_bytes())
    (tmp_path / "E07503.hea").write_text("\n".join(edit(lines)) + "\n")
    return tmp_path / "E07503.hea"


def test_wfdb_tiny_gain_and_rate_refused(assets, tmp_path):
    def gain(lines):
        parts = lines[1].split()
        parts[2] = "1e-30/mV"
        return [lines[0], " ".join(parts)] + lines[2:]

    def rate(lines):
        parts = lines[0].split()
        parts[2] = "0.001"
        return [" ".join(parts)] + lines[1:]

    with pytest.raises(ECGReadError, match="100 V|infinite"):
        read_ecg(_wfdb_pair(assets, tmp_path, gain))
    with pytest.raises(ECGReadError, match="sampling rate 0.001 Hz is outside"):
        read_ecg(_wfdb_pair(assets, tmp_path, rate))


def test_dicom_looking_zeros_refused_without_parsing(tmp_path):
    zeros = tmp_path / "z.dcm"
    with open(zeros, "wb") as f:
        f.truncate(64 << 20)
    with hang_guard(30), pytest.raises(ECGReadError, match="DICM"):
        read_ecg(zeros)
    preamble = tmp_path / "p.dcm"
    with open(preamble, "wb") as f:
        f.write(bytes(128) + b"DICM")
        f.truncate(64 << 20)
    with hang_guard(30), pytest.raises(ECGReadError, match="WaveformSequence"):
        read_ecg(preamble)


# ------------------------------------------------------------------------------------------------------------
# the plausibility gate
# ------------------------------------------------------------------------------------------------------------


def _codes(rec):
    return [w["code"] for w in rec.metadata.get("plausibility_warnings", [])]


def test_gate_on_read_records(tmp_path):
    # a clean 10 s ECG: no warning
    clean = read_ecg(write_npz(_ecg(), tmp_path / "c.npz"))
    assert _codes(clean) == []
    # microvolts stored as millivolts: every lead spans ~1000-2600 "mV"
    uv = read_ecg(write_npz(_ecg(scale=1000.0), tmp_path / "uv.npz"))
    assert _codes(uv) == ["units_microvolts"]
    w = uv.metadata["plausibility_warnings"][0]
    spans = np.ptp(uv.signal.astype(np.float64), axis=1)
    assert w["value"] == pytest.approx(np.median(spans), rel=1e-6)
    # volts read as millivolts: every lead spans ~2-5 uV
    volts = read_ecg(write_npz(_ecg(scale=1e-3), tmp_path / "v.npz"))
    assert _codes(volts) == ["amplitude_low"]
    # one 80 mV spike in one lead: amplitude_high, not a units problem
    spike = _ecg()
    spike.signal[3, 100] = 80.0
    assert _codes(read_ecg(write_npz(spike, tmp_path / "s.npz"))) == ["amplitude_high"]
    # a 200 mV DC offset under a normal ECG: the spans are fine, the level is not
    offset = _ecg()
    offset.signal += 200.0
    warned = read_ecg(write_npz(offset, tmp_path / "o.npz")).metadata["plausibility_warnings"]
    assert [w["code"] for w in warned] == ["amplitude_high"]
    assert warned[0]["value"] == pytest.approx(float(np.abs(offset.signal).max()), rel=1e-6)
    # 0.5 s at 60 Hz: short and low-rate
    assert _codes(read_ecg(write_npz(_ecg(seconds=0.5, fs=60), tmp_path / "l.npz"))) == ["low_rate", "short"]
    # the warnings survive JSON (metadata must stay serialisable)
    json.dumps(uv.metadata)


@pytest.mark.parametrize("fs, ok", [(49.9, False), (50, True), (20000, True), (20001, False), (1e18, False)])
def test_gate_rate_bounds(tmp_path, fs, ok):
    rec = _ecg(seconds=2, fs=min(fs, 2000))
    path = tmp_path / "r.npy"
    np.save(path, rec.signal)
    if ok:
        assert read_ecg(path, sampling_rate=fs).sampling_rate == fs
    else:
        with pytest.raises(ECGReadError, match="outside the plausible ECG range"):
            read_ecg(path, sampling_rate=fs)


def test_gate_refuses_absurd_amplitudes(tmp_path):
    rec = _ecg()
    rec.signal[0, 10] = 9e18
    with pytest.raises(ECGReadError, match="raw ADC counts"):
        read_ecg(write_npz(rec, tmp_path / "a.npz"))


def test_gate_independent_numbers():
    # hand-made: lead spans 0.02 mV exactly is not "low"; 50 mV exactly is not "high"
    x = np.zeros((2, 1000))
    x[0, 0], x[1, 0] = 0.02, 50.0
    assert [w["code"] for w in assess(x, 500)] == []
    x[1, 0] = 50.001
    assert [w["code"] for w in assess(x, 500)] == ["amplitude_high"]
    assert [w["code"] for w in assess(np.full((1, 1000), np.nan), 500)] == ["no_finite_samples"]


def test_csv_huge_exponent_is_an_error_not_a_crash(tmp_path):
    """pandas 2.3's `to_numeric` segfaults on "-1e3090000023" (found by the fuzz test): the cells are converted
    by numpy, the overflow becomes -inf, and infinite samples are refused."""
    path = tmp_path / "e.csv"
    rows = "\n".join(f"{i / 500},{0.1 * (i % 7)}" for i in range(1000))
    path.write_text("time,I\n" + rows.replace("0.002,0.1", "0.002,-1e3090000023", 1) + "\n")
    with pytest.raises(ECGReadError, match="infinite"):
        read_ecg(path)


def test_unopenable_file_is_an_ecgreaderror(tmp_path, monkeypatch):
    path = tmp_path / "locked.xml"
    path.write_text("<RestingECG/>")
    real_open = open

    def deny(file, *args, **kwargs):  # root ignores chmod: refuse the open itself
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(ECGReadError, match="Permission denied") as err:
        read_ecg(path)
    assert "locked.xml" in str(err.value)
