"""GE CardioSoft XML (`<CardiologyXML>`, UK Biobank field 20205): files written from CinC records read back to the
source signal, and the statements, measurements and demographics; hand-written files for the layout's variants;
bad files raise `ECGReadError` naming the file."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from anyecg_hf.io import ECGReadError, ECGRecord, detect_format, read_ecg, write_cardiosoft_xml
from anyecg_hf.leads import STANDARD_12_LEADS

UKB_MEASUREMENTS = {"heart_rate": 54, "rr_ms": 1110, "p_ms": 108, "pr_ms": 168, "qrs_ms": 94, "qt_ms": 432,
                    "qtc_ms": 409, "p_axis": 63, "qrs_axis": 46, "t_axis": 35}
SUMMARY = ["Arrhythmia results of the full-disclosure ECG", "QRS Complexes: 9, 0 Ventricular extrasystoles"]


@pytest.fixture(scope="module")
def cinc(assets):
    rec = read_ecg(assets / "data" / "cinc2021" / "HR06003.hea")
    rec.metadata.update(acquisition_time="2015-06-01T12:39:11", patient_id="6025392",
                        diagnosis_statements=["Sinus bradycardia", "Otherwise normal ECG"],
                        measurements=dict(UKB_MEASUREMENTS))
    return rec


@pytest.fixture(scope="module")
def ukb_file(cinc, tmp_path_factory):
    median = ECGRecord(cinc.signal[:, 1000:1600], 500, cinc.lead_names)
    path = tmp_path_factory.mktemp("ukb") / "6025392_20205_2_0.xml"
    return write_cardiosoft_xml(cinc, path, units_per_bit=5.0, median=median, arrhythmia_summary=SUMMARY,
                                line_width=40)


def test_uk_biobank_style_file(cinc, ukb_file):
    assert detect_format(ukb_file) == "cardiosoft"
    rec = read_ecg(ukb_file)
    assert rec.lead_names == list(STANDARD_12_LEADS) and rec.sampling_rate == 500.0 and rec.units == "mV"
    assert rec.signal.shape == (12, 5000) and rec.signal.dtype == np.float32
    # 5 uV per LSB: every sample within half a step of the source
    assert np.abs(rec.signal - cinc.signal).max() <= 0.0025 + 1e-6
    m = rec.metadata
    assert m["format"] == "cardiosoft" and m["waveform"] == "rhythm"
    assert m["diagnosis_statements"] == ["Sinus bradycardia", "Otherwise normal ECG"]
    assert m["arrhythmia_summary"] == SUMMARY  # the full-disclosure summary is not a statement
    assert m["measurements"] == UKB_MEASUREMENTS
    assert all(type(v) is int for v in m["measurements"].values())
    assert (m["age"], m["sex"], m["patient_id"]) == (cinc.metadata["age"], "F", "6025392")
    assert m["acquisition_time"] == "2015-06-01T12:39:11"
    assert m["filters"] == {"highpass": 0.04, "lowpass": 150.0, "notch": 50.0}
    assert "derived_leads" not in m  # all 12 leads stored


def test_values_equal_the_integers_in_the_file(ukb_file):
    """Independent decode with the standard library: integer x Resolution (uV) / 1000."""
    root = ET.parse(ukb_file).getroot()
    strip = root.find("StripData")
    res = float(strip.find("Resolution").text)
    rec = read_ecg(ukb_file)
    for el in strip.findall("WaveformData"):
        counts = np.array([int(t) for t in el.text.replace("\n", "").replace("\t", "").split(",")])
        np.testing.assert_allclose(rec.lead(el.get("lead")), counts * res / 1000.0, rtol=0, atol=1e-6)


def test_median_beats(cinc, ukb_file):
    med = read_ecg(ukb_file, waveform="median")
    assert med.signal.shape == (12, 600) and med.sampling_rate == 500.0 and med.metadata["waveform"] == "median"
    assert np.abs(med.signal - cinc.signal[:, 1000:1600]).max() <= 0.0025 + 1e-6


def test_lossless_at_one_microvolt(cinc, tmp_path):
    # CinC stores 1 uV counts: at 1 uV/LSB the file holds the record exactly
    rec = read_ecg(write_cardiosoft_xml(cinc, tmp_path / "r.xml", units_per_bit=1.0))
    np.testing.assert_allclose(rec.signal, cinc.signal, rtol=0, atol=1e-6)
    with pytest.raises(ECGReadError, match=r"r\.xml \(cardiosoft\): no <MedianSamples> for the 'median' waveform"):
        read_ecg(tmp_path / "r.xml", waveform="median")


def test_full_disclosure_when_there_is_no_strip(cinc, tmp_path):
    """Files without <StripData> (exercise exports) give their <FullDisclosure> block, leads interleaved sample by
    sample; with both, the 10 s strip is read."""
    only = read_ecg(write_cardiosoft_xml(cinc, tmp_path / "fd.xml", units_per_bit=1.0, strip=False,
                                         full_disclosure=True))
    np.testing.assert_allclose(only.signal, cinc.signal, rtol=0, atol=1e-6)
    assert only.lead_names == list(STANDARD_12_LEADS) and only.metadata["waveform_source"] == "FullDisclosure"
    short = ECGRecord(cinc.signal[:, :2500], 500, cinc.lead_names)
    both = write_cardiosoft_xml(short, tmp_path / "both.xml", units_per_bit=1.0, full_disclosure=True)
    rec = read_ecg(both)
    assert rec.num_samples == 2500 and "waveform_source" not in rec.metadata
    text = both.read_text(encoding="latin-1")
    assert text.count("<FullDisclosureData>") == 1
    bad = tmp_path / "bad_fd.xml"
    bad.write_text(text.replace("<StripData>", "<Strip>").replace("</StripData>", "</Strip>")
                   .replace("<FullDisclosureData>", "<FullDisclosureData>7,"), encoding="latin-1")
    with pytest.raises(ECGReadError, match=r"30001 values do not divide into the 12 leads"):
        read_ecg(bad)


def _file(tmp_path, body, name="c.xml", strip=None):
    strip = strip if strip is not None else (
        '<StripData><SampleRate units="Hz">250</SampleRate><ChannelSampleCountTotal>4</ChannelSampleCountTotal>'
        '<Resolution units="uVperLsb">10</Resolution>'
        + "".join(f'<WaveformData lead="{n}">\n\t{i},{-i},\n\t{2 * i},0</WaveformData>'
                  for i, n in enumerate(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], start=1))
        + "</StripData>")
    path = tmp_path / name
    path.write_text(f'<?xml version="1.0" encoding="ISO8859-1"?>\n<CardiologyXML>{body}{strip}</CardiologyXML>',
                    encoding="latin-1")
    return path


def test_hand_written_variants(tmp_path):
    body = ("<ObservationDateTime><Hour>9</Hour><Minute>5</Minute><Second>0</Second><Day>2</Day><Month>3</Month>"
            "<Year>2020</Year></ObservationDateTime>"
            "<PatientInfo><PID>X1</PID><BirthDateTime><Day>3</Day><Month>3</Month><Year>1950</Year></BirthDateTime>"
            "<Gender>Male</Gender></PatientInfo>"
            "<Interpretation><Diagnosis></Diagnosis><Conclusion><ConclusionText>Atrial  fibrillation"
            "</ConclusionText><ConclusionText>---</ConclusionText><ConclusionText>QRS Complexes: 12</ConclusionText>"
            "</Conclusion></Interpretation>"
            '<RestingECGMeasurements><VentricularRate units="BPM">88</VentricularRate>'
            '<QRSDuration units="sec">0.096</QRSDuration><QTCInterval units="ms">29999</QTCInterval>'
            '<PQInterval units="ms"></PQInterval><RAxis units="degrees">-30</RAxis></RestingECGMeasurements>')
    rec = read_ecg(_file(tmp_path, body))
    m = rec.metadata
    assert rec.sampling_rate == 250.0 and rec.signal.shape == (12, 4)
    np.testing.assert_allclose(rec.lead("II"), [0.02, -0.02, 0.04, 0.0], atol=1e-7)  # 2,-2,4,0 x 10 uV
    # only I, II, V1-V6 stored: the limb leads are derived (Einthoven / Goldberger)
    assert m["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(rec.lead("III"), rec.lead("II") - rec.lead("I"), atol=1e-7)
    assert m["age"] == 69 and m["sex"] == "M" and m["acquisition_time"] == "2020-03-02T09:05:00"
    # Diagnosis empty -> Conclusion lines; whitespace runs collapsed; summary kept apart
    assert m["diagnosis_statements"] == ["Atrial fibrillation"] and m["arrhythmia_summary"] == ["QRS Complexes: 12"]
    # seconds converted, the 29999 sentinel and the empty PQ dropped
    assert m["measurements"] == {"heart_rate": 88, "qrs_ms": 96, "qrs_axis": -30}
    assert type(m["measurements"]["qrs_ms"]) is int


@pytest.mark.parametrize("strip, message", [
    ('<StripData><SampleRate>500</SampleRate><WaveformData lead="I">1,2</WaveformData></StripData>',
     "missing or invalid <Resolution>"),
    ('<StripData><SampleRate>abc</SampleRate><Resolution>5</Resolution></StripData>', "invalid <SampleRate> 'abc'"),
    ('<StripData><SampleRate>500</SampleRate><Resolution units="furlongs">5</Resolution>'
     '<WaveformData lead="I">1</WaveformData></StripData>', "unknown <Resolution units='furlongs'>"),
    ('<StripData><SampleRate>500</SampleRate><Resolution>5</Resolution>'
     '<WaveformData lead="I">1,2,x3</WaveformData></StripData>', "lead I: <WaveformData> holds 'x3'"),
    ('<StripData><SampleRate>500</SampleRate><Resolution>5</Resolution>'
     '<WaveformData lead="I">1,2</WaveformData><WaveformData lead="II">1</WaveformData></StripData>',
     r"leads have different lengths \[1, 2\]"),
    ('<StripData><SampleRate>500</SampleRate><Resolution>5</Resolution><ChannelSampleCountTotal>3'
     '</ChannelSampleCountTotal><WaveformData lead="I">1,2</WaveformData></StripData>',
     "lead I: 2 samples, <ChannelSampleCountTotal> says 3"),
    ('<StripData><SampleRate>500</SampleRate><Resolution>5</Resolution></StripData>', "<StripData> has no"),
    ('<StripData><SampleRate>500</SampleRate><Resolution>5</Resolution><WaveformData>1</WaveformData></StripData>',
     "has no lead= attribute"),
    ("", "no <StripData> for the 'rhythm' waveform"),
])
def test_bad_files_name_the_file(tmp_path, strip, message):
    path = _file(tmp_path, "", name="bad_cs.xml", strip=strip)
    with pytest.raises(ECGReadError, match=message) as info:
        read_ecg(path)
    assert str(info.value).startswith(f"{path} (cardiosoft): ")


def test_xml_safety_and_limits(cinc, tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE CardiologyXML [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                    "<CardiologyXML><PatientInfo><PID>&b;</PID></PatientInfo></CardiologyXML>")
    with pytest.raises(ECGReadError, match="refused for safety"):
        read_ecg(bomb)
    path = write_cardiosoft_xml(cinc, tmp_path / "big.xml")
    with pytest.raises(ECGReadError, match="above the 1000-byte limit"):
        read_ecg(path, max_bytes=1000)
    with pytest.raises(ECGReadError, match="above the 100-sample limit"):
        read_ecg(path, max_samples=100)
