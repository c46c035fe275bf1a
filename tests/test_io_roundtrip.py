"""Cross-format checks: a CinC record written to CSV / NPZ / NPY / EDF / MUSE XML / SCP-ECG and read back agrees
with the original to each format's quantisation; written files also agree with ecgdatakit's independent parsers;
and `read_ecg_dir` walks a folder with a corrupt file in it."""

import shutil
import warnings

import numpy as np
import pytest

from anyecg_hf.io import (
    ECGReadError,
    read_ecg,
    read_ecg_dir,
    write_csv,
    write_edf,
    write_muse_xml,
    write_npz,
    write_scp,
)


@pytest.fixture(scope="module")
def cinc(assets):
    rec = read_ecg(assets / "data" / "cinc2021" / "HR06003.hea")
    rec.metadata.update(acquisition_time="2021-03-04T05:06:07", diagnosis_statements=["Sinus rhythm", "T abnormal"],
                        patient_id="P123")
    return rec


def test_csv_and_npz_are_lossless(cinc, tmp_path):
    back = read_ecg(write_csv(cinc, tmp_path / "r.csv"))
    assert back.sampling_rate == 500.0  # inferred from the time column
    assert back.lead_names == cinc.lead_names
    np.testing.assert_array_equal(back.signal, cinc.signal)  # 9 significant digits round-trip float32
    back = read_ecg(write_npz(cinc, tmp_path / "r.npz"))
    np.testing.assert_array_equal(back.signal, cinc.signal)
    assert back.metadata["dx_codes"] == cinc.metadata["dx_codes"] and back.metadata["age"] == cinc.metadata["age"]
    np.save(tmp_path / "r.npy", cinc.signal.T * 1000)  # (samples, leads) in microvolts
    back = read_ecg(tmp_path / "r.npy", sampling_rate=500, units="uV")
    np.testing.assert_allclose(back.signal, cinc.signal, atol=1e-6)
    back = read_ecg(tmp_path / "r.npy", sampling_rate=500, units="uV", lead_names=cinc.lead_names[::-1])
    assert back.lead_names == cinc.lead_names  # standard order restored whatever the file order
    np.testing.assert_allclose(back.lead("I"), cinc.lead("V6"), atol=1e-6)


def test_csv_variants(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(2, 6) / 10
    (tmp_path / "a.csv").write_text("Lead II (uV);V1 (uV)\n" + "\n".join(f"{a * 1000};{b * 1000}" for a, b in x.T))
    rec = read_ecg(tmp_path / "a.csv", sampling_rate=100)
    assert rec.lead_names == ["II", "V1"]
    np.testing.assert_allclose(rec.signal, x, atol=1e-6)
    (tmp_path / "b.csv").write_text("\n".join(f"{a}\t{b}" for a, b in x.T))
    rec = read_ecg(tmp_path / "b.csv", sampling_rate=100, lead_names=["aVR", "c1"])
    assert rec.lead_names == ["aVR", "V1"]
    np.testing.assert_allclose(rec.signal, x, atol=1e-6)
    with pytest.raises(ECGReadError, match="lead_names="):
        read_ecg(tmp_path / "b.csv", sampling_rate=100)


def test_edf_round_trip(cinc, tmp_path):
    pytest.importorskip("edfio")
    path = write_edf(cinc, tmp_path / "r.edf")
    back = read_ecg(path)
    assert back.lead_names == cinc.lead_names and back.sampling_rate == 500.0
    assert back.metadata["acquisition_time"] == "2021-03-04T05:06:07" and back.metadata["sex"] == "F"
    # 16-bit over each lead's physical range: error <= half a step (the header stores the range in 8 characters,
    # so the step is the written range / 65535)
    import edfio

    for sig, rec_row, orig in zip(edfio.read_edf(path).signals, back.signal, cinc.signal):
        step = (sig.physical_max - sig.physical_min) / (sig.digital_max - sig.digital_min)
        err = np.abs(rec_row.astype(np.float64) - orig).max()
        assert err <= 0.5 * step + 1e-6, (sig.label, err, step)


def test_bdf_24_bit(cinc, tmp_path):
    edfio = pytest.importorskip("edfio")
    sigs = [edfio.BdfSignal(row.astype(np.float64), 500, label=name, physical_dimension="mV",
                            physical_range=(-20, 20)) for name, row in zip(cinc.lead_names, cinc.signal)]
    path = tmp_path / "r.bdf"
    edfio.Bdf(sigs, data_record_duration=1).write(path)
    back = read_ecg(path)
    assert back.metadata["format"] == "edf" and back.lead_names == cinc.lead_names
    assert np.abs(back.signal - cinc.signal).max() <= 40 / (2**24 - 1) / 2 + 1e-6  # half a 24-bit step


def test_edf_channel_selection(cinc, tmp_path):
    edfio = pytest.importorskip("edfio")
    sigs = [
        edfio.EdfSignal(cinc.lead("II").astype(np.float64) * 1000, 500, label="EKG II", physical_dimension="uV",
                        physical_range=(-5000, 5000)),
        edfio.EdfSignal(np.ones(5000), 500, label="SpO2", physical_dimension="%", physical_range=(0, 100)),
        edfio.EdfSignal(np.zeros(2500), 250, label="ECG V1", physical_dimension="mV", physical_range=(-5, 5)),
    ]
    path = tmp_path / "psg.edf"
    edfio.Edf(sigs, data_record_duration=1).write(path)
    rec = read_ecg(path)
    assert rec.lead_names == ["II"]  # V1 at another rate and the SpO2 channel are dropped and listed
    assert rec.metadata["dropped_channels"] == ["SpO2 (%)", "ECG V1 (250 Hz)"]
    # values stored in uV are converted to mV
    np.testing.assert_allclose(rec.lead("II"), cinc.lead("II"), atol=10000 / 65535 / 1000)
    # a truncated EDF is refused unless asked for; then the whole data records left are read
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])  # records of (500 + 500 + 250) x 2 bytes: 8 of 10 stay whole
    with pytest.raises(ECGReadError, match="truncated"):
        read_ecg(path)
    part = read_ecg(path, allow_truncated=True)
    np.testing.assert_array_equal(part.signal, rec.signal[:, :4000])


def test_muse_round_trip_and_derived_leads(cinc, tmp_path):
    cinc = type(cinc)(cinc.signal, 500, cinc.lead_names, metadata=dict(cinc.metadata, measurements={
        "heart_rate": 72, "pr_ms": 156, "qrs_ms": 88, "qt_ms": 380, "qtc_ms": 416, "qrs_axis": -12}))
    path = write_muse_xml(cinc, tmp_path / "r.xml", units_per_bit=4.88)
    assert "<!DOCTYPE RestingECG" in path.read_text(encoding="latin-1")
    back = read_ecg(path)
    assert back.metadata["format"] == "muse"
    assert back.lead_names == cinc.lead_names
    assert back.metadata["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    half_step = 4.88e-3 / 2
    stored = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    for name in stored:
        assert np.abs(back.lead(name) - cinc.lead(name)).max() <= half_step + 1e-6
    lead_i, lead_ii = back.lead("I").astype(np.float64), back.lead("II").astype(np.float64)
    np.testing.assert_allclose(back.lead("III"), lead_ii - lead_i, atol=1e-6)
    np.testing.assert_allclose(back.lead("aVR"), -(lead_i + lead_ii) / 2, atol=1e-6)
    np.testing.assert_allclose(back.lead("aVL"), lead_i - lead_ii / 2, atol=1e-6)
    np.testing.assert_allclose(back.lead("aVF"), lead_ii - lead_i / 2, atol=1e-6)
    # against the leads the device stored: derived from quantised I, II -> within 1.5 steps (+ device rounding)
    for name in ("III", "aVR", "aVL", "aVF"):
        assert np.abs(back.lead(name) - cinc.lead(name)).max() <= 3 * half_step + 0.002
    m = back.metadata
    assert (m["age"], m["sex"], m["acquisition_time"]) == (cinc.metadata["age"], "F", "2021-03-04T05:06:07")
    assert m["diagnosis_statements"] == ["Sinus rhythm", "T abnormal"]
    assert m["measurements"] == {"heart_rate": 72, "pr_ms": 156, "qrs_ms": 88, "qt_ms": 380, "qtc_ms": 416,
                                 "qrs_axis": -12}
    # all 12 stored: nothing derived
    full = read_ecg(write_muse_xml(cinc, tmp_path / "f.xml", stored_leads=cinc.lead_names))
    assert "derived_leads" not in full.metadata
    assert np.abs(full.signal - cinc.signal).max() <= half_step + 1e-6


def test_muse_first_sample_baseline(cinc, tmp_path):
    """Samples stored offset by <FirstSampleBaseline> counts read back as the source; a zero baseline changes
    nothing; subtract_baseline=False shows the stored offset."""
    plain_file = write_muse_xml(cinc, tmp_path / "zero.xml", units_per_bit=5.0)
    offset_file = write_muse_xml(cinc, tmp_path / "offset.xml", units_per_bit=5.0, baseline_counts=2000)
    assert "<FirstSampleBaseline>2000</FirstSampleBaseline>" in offset_file.read_text(encoding="latin-1")
    zero, offset = read_ecg(plain_file), read_ecg(offset_file)
    np.testing.assert_array_equal(offset.signal, zero.signal)
    stored = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    for name in stored:  # half a 5 uV step from the source
        assert np.abs(offset.lead(name) - cinc.lead(name)).max() <= 0.0025 + 1e-6
    # derived from the baseline-free I and II (an offset left in would put 5-10 mV into III, aVR, aVL, aVF)
    np.testing.assert_allclose(offset.lead("aVR"), -(offset.lead("I") + offset.lead("II")) / 2, atol=1e-6)
    assert offset.metadata["first_sample_baseline"] == {n: 2000 for n in stored}
    assert "first_sample_baseline" not in zero.metadata
    kept = read_ecg(offset_file, subtract_baseline=False, derive_leads=False)
    np.testing.assert_allclose(kept.lead("V1") - zero.lead("V1"), 2000 * 0.005, atol=1e-5)  # 10 mV stored offset


def test_muse_file_agrees_with_ecgdatakit(cinc, tmp_path):
    edk = pytest.importorskip("ecgdatakit")
    median = type(cinc)(cinc.signal[:, :600], 500, cinc.lead_names)
    path = write_muse_xml(cinc, tmp_path / "r.xml", median=median)
    ours = read_ecg(path)
    theirs = edk.FileParser.parse(path)
    assert theirs.file_format.name == "GE MUSE XML"
    for lead in theirs.leads:  # ecgdatakit returns the 8 stored leads
        np.testing.assert_allclose(ours.lead(lead.label), np.asarray(lead.samples), atol=1e-6)
    assert theirs.patient.age == ours.metadata["age"]
    med = read_ecg(path, waveform="median")
    assert med.signal.shape == (12, 600) and med.metadata["waveform"] == "median"
    with pytest.raises(ValueError, match="waveform must be 'rhythm' or 'median'"):
        read_ecg(path, waveform="nothing")


@pytest.mark.parametrize("options", [{}, {"huffman": True, "difference": 2}, {"huffman": True, "difference": 1},
                                     {"avm_nv": 5000, "difference": 1}])
def test_scp_round_trip(cinc, tmp_path, options):
    pytest.importorskip("ecgdatakit")
    path = write_scp(cinc, tmp_path / "r.scp", **options)
    back = read_ecg(path)
    assert back.metadata["format"] == "scp" and back.lead_names == cinc.lead_names
    avm_mv = options.get("avm_nv", 1000) * 1e-6
    # CinC stores whole microvolts: exact at 1 uV per count, else within half a count
    assert np.abs(back.signal - cinc.signal).max() <= avm_mv / 2 + 1e-6
    if avm_mv == 1e-3:
        np.testing.assert_array_equal(np.round(back.signal * 1000), np.round(cinc.signal * 1000))
    m = back.metadata
    assert (m["age"], m["sex"], m["patient_id"]) == (cinc.metadata["age"], "F", "P123")
    assert m["acquisition_time"] == "2021-03-04T05:06:07"
    assert m["diagnosis_statements"] == ["Sinus rhythm", "T abnormal"]


def test_scp_crc_is_checked(cinc, tmp_path):
    pytest.importorskip("ecgdatakit")
    path = write_scp(cinc, tmp_path / "r.scp")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit in the rhythm data
    path.write_bytes(bytes(data))
    with pytest.raises(ECGReadError, match="CRC mismatch"):
        read_ecg(path)
    rec = read_ecg(path, check_crc=False)
    assert any("CRC" in w for w in rec.metadata["reader_warnings"])


def test_read_ecg_dir_reports_bad_files(assets, tmp_path):
    src = assets / "data"
    for name in ("E07500", "HR06001"):
        for ext in (".hea", ".mat"):
            shutil.copy(src / "cinc2021" / f"{name}{ext}", tmp_path / f"{name}{ext}")
    (tmp_path / "sub").mkdir()
    shutil.copy(src / "formats" / "hl7_aecg_subject1.xml", tmp_path / "sub" / "aecg.xml")
    (tmp_path / "sub" / "broken.xml").write_text("<RestingECG><Waveform>")  # corrupt
    shutil.copy(src / "cinc2021" / "JS20000.hea", tmp_path / "orphan.hea")  # its .mat is missing
    (tmp_path / "README.md").write_text("not an ECG")
    (tmp_path / ".hidden").mkdir()
    shutil.copy(src / "cinc2021" / "E07501.hea", tmp_path / ".hidden" / "E07501.hea")

    reader = read_ecg_dir(tmp_path, progress=False)
    assert len(reader) == 5
    with pytest.warns(UserWarning, match=r"2 entries could not be read \(5 files tried\)"):
        records = list(reader)
    assert [r.record_id for r in records] == ["E07500", "HR06001", "aecg"]  # each WFDB record once
    assert sorted((p.split("/")[-1], cls) for p, cls, _ in reader.errors) == [
        ("broken.xml", "ECGReadError"), ("orphan.hea", "ECGReadError")]
    assert any("JS20000.mat is missing" in msg for _, _, msg in reader.errors)
    assert [p.split("/")[-1] for p in reader.skipped] == ["README.md"]

    only_xml = read_ecg_dir(tmp_path, formats=["hl7"], progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.record_id for r in only_xml] == ["aecg"]
    flat = read_ecg_dir(tmp_path, recursive=False, progress=False)
    with pytest.warns(UserWarning, match=r"1 entry could not be read \(3 files tried\)"):
        assert [r.record_id for r in flat] == ["E07500", "HR06001"]
    # lazy: the first record comes before the walk has read the rest
    lazy = read_ecg_dir(tmp_path, progress=False)
    first = next(lazy)
    assert first.record_id == "E07500" and lazy.n_read == 1 and lazy.errors == []
