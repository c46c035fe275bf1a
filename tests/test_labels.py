"""Crosswalks (package data), dataset-to-model matching and labels from machine statements."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anyecg_hf.data.cinc import CINC2021_EQUIVALENT_CODES, CINC2021_SCORED, SNOMED_NAMES
from anyecg_hf.labels import (
    CINC_SCORED_UNMAPPABLE,
    IMPLIED_TIERS,
    TIERS,
    aggregate_probabilities,
    crosswalk,
    label_statements,
    load_crosswalk,
    match_conditions,
    normalize_statement,
    resolve_crosswalk,
    statement_coverage,
)
from anyecg_hf.modeling.label_space import Condition, LabelSpace

ASSETS = Path(__file__).parent / "assets" / "data"
LABELS = (ASSETS / "ecgfounder_labels.txt").read_text().splitlines()

# PTB-XL's 71 SCP statements (scp_statements.csv of PTB-XL 1.0.1)
PTBXL_STATEMENTS = set(
    "NDT NST_ DIG LNGQT NORM IMI ASMI LVH LAFB ISC_ IRBBB 1AVB IVCD ISCAL CRBBB CLBBB ILMI LAO/LAE AMI ALMI ISCIN INJAS "
    "LMI ISCIL LPFB ISCAS INJAL ISCLA RVH ANEUR RAO/RAE EL WPW ILBBB IPLMI ISCAN IPMI SEHYP INJIN INJLA PMI 3AVB INJIL "
    "2AVB ABQRS PVC STD_ VCLVH QWAVE LOWT NT_ PAC LPR INVT LVOLT HVOLT TAB_ STE_ PRC(S) SR AFIB STACH SARRH SBRAD PACE "
    "SVARR BIGU AFLT SVTAC PSVT TRIGU".split()
)


def _verhoeff_ok(code: str) -> bool:
    """SNOMED CT identifiers end with a Verhoeff check digit."""
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4]]
    for _ in range(6):
        p.append([p[-1][p[1][i]] for i in range(10)])
    c = 0
    for i, ch in enumerate(reversed(code)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def test_verhoeff_helper_has_teeth():
    assert _verhoeff_ok("426783006") and not _verhoeff_ok("426783007")


@pytest.mark.parametrize("target", ["snomed", "ptbxl"])
def test_every_row_names_a_label_and_a_wellformed_code(target):
    table = crosswalk("ecgfounder", target)
    assert list(table.columns[:6]) == ["label", "code_system", "code", "name", "tier", "source"]
    assert set(table["label"]) <= set(LABELS)
    assert set(table["label"]) == set(LABELS)  # every label is accounted for (a target or an explicit none)
    assert set(table["tier"]) <= set(TIERS)
    assert table["source"].str.len().min() > 0
    coded = table[table["tier"] != "none"]
    none = table[table["tier"] == "none"]
    assert (none["code"] == "").all() and (none["note"].str.len() > 0).all()
    assert not coded.duplicated(["label", "code"]).any()
    if target == "snomed":
        assert (coded["code_system"] == "SNOMED-CT").all()
        for code in coded["code"]:
            assert re.fullmatch(r"[1-9]\d{5,17}", code) and _verhoeff_ok(code), code
            assert code[-3:-1] in ("00", "10")  # partition: a concept id (core or extension)
        for code, name in coded[["code", "name"]].itertuples(index=False):
            if code in SNOMED_NAMES:
                assert name.casefold().replace(" ", "") == SNOMED_NAMES[code][1].casefold().replace(" ", ""), code
    else:
        assert set(coded["code"]) <= PTBXL_STATEMENTS


def test_snomed_exact_matches_and_scored_classes():
    table = crosswalk("ecgfounder", "snomed")
    exact = table[table["tier"] == "exact"]
    assert len(exact) >= 40
    implied = table[table["tier"].isin(IMPLIED_TIERS)]
    by_code = implied.groupby("code")["label"].apply(set)
    for code in CINC2021_SCORED:
        codes = {code} | {a for a, b in CINC2021_EQUIVALENT_CODES.items() if b == code}
        mapped = any(c in by_code.index for c in codes)
        assert mapped != (code in CINC_SCORED_UNMAPPABLE), code  # mapped, or listed with a reason, never both
    assert len(CINC_SCORED_UNMAPPABLE) == 3 and all(len(r) > 20 for r in CINC_SCORED_UNMAPPABLE.values())
    # spot checks of the curation
    assert by_code["270492004"] == {"WITH 1ST DEGREE AV BLOCK", "WITH PROLONGED AV CONDUCTION"}
    assert by_code["426627000"] == {"SINUS BRADYCARDIA", "MARKED SINUS BRADYCARDIA", "JUNCTIONAL BRADYCARDIA"}
    serial = table[table["label"].isin(["T WAVE INVERSION NOW EVIDENT IN", "QT HAS LENGTHENED"])]
    assert (serial["tier"] == "none").all() and serial["note"].str.contains("serial").all()


def test_ptbxl_classes_derived_from_statements():
    sup = crosswalk("ecgfounder", "ptbxl-superdiagnostic")
    assert set(sup["code"]) <= {"NORM", "MI", "STTC", "CD", "HYP"}
    rows = {(r.label, r.code): r.tier for r in sup.itertuples()}
    assert rows[("NORMAL ECG", "NORM")] == "exact"
    assert rows[("INFERIOR INFARCT", "MI")] == "broader"
    assert rows[("RBBB AND LEFT ANTERIOR FASCICULAR BLOCK", "CD")] == "composite"
    assert ("SINUS RHYTHM", "NORM") not in rows  # SR is a rhythm statement, not diagnostic
    sub = crosswalk("ecgfounder", "ptbxl-subdiagnostic")
    assert dict(((r.label, r.code), r.tier) for r in sub.itertuples())[("ANTEROSEPTAL INFARCT", "AMI")] == "broader"
    both = resolve_crosswalk("ptbxl")
    assert {"MI", "IMI", "NORM"} <= set(both["code"])


def test_packaged_tables_are_checksummed(monkeypatch):
    import importlib

    cw = importlib.import_module("anyecg_hf.labels.crosswalk")  # the module (the package exports the function)
    cw.read_packaged_table.cache_clear()
    entry = cw.manifest()["files"]["ecgfounder_to_ptbxl.csv"]
    monkeypatch.setitem(entry, "sha256", "0" * 64)
    with pytest.raises(ValueError, match="checksum"):
        cw.read_packaged_table("ecgfounder_to_ptbxl.csv")
    cw.read_packaged_table.cache_clear()


def test_user_crosswalk_validation(tmp_path):
    good = tmp_path / "map.csv"
    good.write_text("label,code,tier\nSINUS BRADYCARDIA,SB,exact\nMARKED SINUS BRADYCARDIA,SB,\n")
    table = load_crosswalk(good)
    assert list(table["tier"]) == ["exact", "exact"]
    bad = tmp_path / "bad.csv"
    bad.write_text("label,code,tier\nSINUS BRADYCARDIA,SB,similar\n")
    with pytest.raises(ValueError, match=r"line 2: tier 'similar'"):
        load_crosswalk(bad)


def _space(rows):
    return LabelSpace([Condition(**r) for r in rows])


def test_match_conditions_and_aggregate():
    model = LabelSpace.from_names(["SINUS BRADYCARDIA", "MARKED SINUS BRADYCARDIA", "ATRIAL FIBRILLATION", "Foo"])
    data = _space([
        {"id": "SB", "name": "sinus bradycardia", "code_system": "SNOMED-CT", "code": "426177001"},
        {"id": "Brady", "name": "bradycardia", "code_system": "SNOMED-CT", "code": "426627000"},
        {"id": "PRWP", "name": "poor R wave progression", "code_system": "SNOMED-CT", "code": "365413008"},
        {"id": "foo", "name": "FOO"},
    ])
    matched, unmatched = match_conditions(model, data, crosswalk("ecgfounder", "snomed"))
    got = {m.id: (m.model_labels, m.tier, m.how) for m in matched}
    # the data condition's own name matches (case-insensitive), and the crosswalk adds the labels that imply it
    assert got["SB"] == (("SINUS BRADYCARDIA", "MARKED SINUS BRADYCARDIA"), "exact", "name+crosswalk")
    assert got["Brady"] == (("SINUS BRADYCARDIA", "MARKED SINUS BRADYCARDIA"), "broader", "crosswalk")
    assert got["foo"] == (("Foo",), "exact", "name")
    assert match_conditions(model, data)[0][0].tier == ""  # no crosswalk: no tier
    assert [m.id for m in unmatched] == ["PRWP"]
    probs = np.array([[0.2, 0.7, 0.1, 0.0], [0.6, 0.1, 0.3, 1.0]])
    brady = [m for m in matched if m.id == "Brady"]
    assert aggregate_probabilities(probs, brady, "max")[:, 0].tolist() == [0.7, 0.6]
    assert aggregate_probabilities(probs, brady, "mean")[:, 0].tolist() == pytest.approx([0.45, 0.35])
    with pytest.raises(ValueError, match="label aggregation"):
        aggregate_probabilities(probs, brady, "median")
    # narrower rows only when asked
    model2 = LabelSpace.from_names(["PREMATURE ECTOPIC COMPLEXES"])
    pac = _space([{"id": "PAC", "name": "premature atrial contraction", "code_system": "SNOMED-CT", "code": "284470004"}])
    assert match_conditions(model2, pac, crosswalk("ecgfounder", "snomed"))[0] == []
    assert match_conditions(model2, pac, crosswalk("ecgfounder", "snomed"), tiers=("exact", "narrower"))[0][0].tier == "narrower"


def test_statement_normalisation():
    assert normalize_statement("  *** Sinus  rhythm with 1st degree A-V block. ") == "SINUS RHYTHM WITH 1ST DEGREE AV BLOCK"
    assert normalize_statement("Nonspecific ST & T wave abnormality,") == "NONSPECIFIC ST AND T WAVE ABNORMALITY"


def test_ge_statements_give_exactly_their_labels():
    r = label_statements(["Sinus bradycardia", "Otherwise normal ECG"])
    assert r.labels == ["SINUS BRADYCARDIA", "otherwise normal ecg"]
    assert [m.kind for m in r.statements] == ["mapped", "mapped"]


@pytest.mark.parametrize("text, labels", [
    ("Sinus rhythm with 1st degree A-V block", ["SINUS RHYTHM", "WITH 1ST DEGREE AV BLOCK"]),
    ("ATRIAL FIBRILLATION WITH RAPID VENTRICULAR RESPONSE", ["ATRIAL FIBRILLATION", "WITH RAPID VENTRICULAR RESPONSE"]),
    ("Septal infarct , age undetermined", ["SEPTAL INFARCT"]),
    ("Sinus rhythm with occasional premature ventricular complexes", ["SINUS RHYTHM", "PREMATURE VENTRICULAR COMPLEXES"]),
    ("1st degree AV block", ["WITH 1ST DEGREE AV BLOCK"]),
    ("with sinus arrhythmia.", ["WITH SINUS ARRHYTHMIA"]),
    ("Low QRS voltages", ["LOW VOLTAGE QRS"]),
    ("Possible Left atrial enlargement", ["LEFT ATRIAL ENLARGEMENT"]),
    ("Left ventricular hypertrophy with repolarization abnormality",
     ["LEFT VENTRICULAR HYPERTROPHY", "WITH REPOLARIZATION ABNORMALITY"]),
])
def test_statement_variants(text, labels):
    assert label_statements([text]).labels == labels


def test_serial_administrative_and_unmapped_statements():
    r = label_statements(["Sinus rhythm", "T wave inversion now evident in Lateral leads", "QT has lengthened",
                          "When compared with ECG of 01-JAN-2020", "Confirmed by Smith (123) on 1/1/2020",
                          "Zebra pattern"])
    assert r.labels == ["SINUS RHYTHM"]
    assert [m.kind for m in r.statements] == ["mapped", "serial", "serial", "serial", "administrative", "unmapped"]
    assert r.unmapped == ["Zebra pattern"] and len(r.serial) == 3
    kept = label_statements(["QT has lengthened"], include_serial=True)
    assert kept.labels == ["QT HAS LENGTHENED"] and kept.statements[0].kind == "serial"
    cov = statement_coverage([r, label_statements(["Sinus bradycardia"]), label_statements([])])
    assert cov["records"] == 3 and cov["records_labelled"] == 2
    assert cov["statements"] == {"mapped": 2, "serial": 3, "administrative": 1, "unmapped": 1}
    assert cov["mapped_fraction"] == pytest.approx(2 / 3)
    assert cov["top_unmapped"] == [("ZEBRA PATTERN", 1)]


def test_statements_to_snomed():
    r = label_statements(["Sinus bradycardia", "Right bundle branch block", "Otherwise normal ECG"], target="snomed")
    assert set(r.labels) == {"426177001", "426627000", "59118001", "713427006", "6374002"}


def test_statements_from_a_muse_file(tmp_path):
    from anyecg_hf.io import ECGRecord, read_ecg
    from anyecg_hf.io.muse import write_muse_xml

    t = np.arange(5000) / 500.0
    sig = np.stack([0.1 * np.sin(2 * np.pi * (k + 1) * t) for k in range(12)]).astype(np.float32)
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    rec = ECGRecord(signal=sig, sampling_rate=500, lead_names=names,
                    metadata={"diagnosis_statements": ["Sinus bradycardia", "Otherwise normal ECG"]})
    path = write_muse_xml(rec, tmp_path / "ge.xml")
    back = read_ecg(path)
    assert label_statements(back.metadata["diagnosis_statements"]).labels == ["SINUS BRADYCARDIA", "otherwise normal ecg"]


def test_every_label_maps_to_itself():
    for label in LABELS:
        r = label_statements([label], include_serial=True)
        assert r.labels == [label], label
    assert isinstance(crosswalk("ecgfounder", "snomed"), pd.DataFrame)


def _muse_folder(tmp_path, statements):
    from anyecg_hf.io import read_ecg
    from anyecg_hf.io.muse import write_muse_xml

    out = tmp_path / "muse"
    out.mkdir()
    for k, f in enumerate(sorted((ASSETS / "cinc2021").glob("*.hea"))[: len(statements)]):
        rec = read_ecg(f)
        rec.metadata.update(diagnosis_statements=statements[k], patient_id=f"P{k}")
        write_muse_xml(rec, out / f"{f.stem}.xml")
    return out


def test_statement_label_table_and_dataset(tmp_path):
    from anyecg_hf.data import build_ecg_dataset
    from anyecg_hf.data.statements import statement_label_table

    folder = _muse_folder(tmp_path, [["Sinus bradycardia", "Otherwise normal ECG"],
                                     ["Sinus rhythm with 1st degree A-V block", "QT has lengthened", "Zebra"], []])
    table, space, listing, cov = statement_label_table(folder)
    assert len(space) == 150 and list(table["record_id"]) == ["E07500", "E07501", "E07502"]
    wide = table.set_index("record_id")
    positives = {rid: sorted(c.id for c in space if wide.loc[rid, c.id] == 1) for rid in wide.index}
    assert positives == {"E07500": ["SINUS BRADYCARDIA", "otherwise normal ecg"],
                         "E07501": ["SINUS RHYTHM", "WITH 1ST DEGREE AV BLOCK"], "E07502": []}
    assert list(listing["kind"]) == ["mapped", "mapped", "mapped", "serial", "unmapped"]
    assert cov["records_without_statements"] == 1 and cov["statements"]["unmapped"] == 1
    ds = build_ecg_dataset(folder, table, space, scan=False)
    y = np.array(ds["labels"])
    assert [space[j].id for j in np.flatnonzero(y[0])] == ["SINUS BRADYCARDIA", "otherwise normal ecg"]
    assert list(ds["patient_id"]) == ["P0", "P1", "P2"]
    snomed_table, snomed_space, _, _ = statement_label_table(folder, target="snomed")
    row = snomed_table.set_index("record_id").loc["E07501"]
    assert sorted(c.id for c in snomed_space if row[c.id] == 1) == ["164947007", "270492004", "426783006"]


def test_statements_from_philips_and_dicom_files():
    from anyecg_hf.io import read_ecg

    formats = ASSETS / "formats"
    r = label_statements(read_ecg(formats / "philips_sierra_1_03.xml").metadata["diagnosis_statements"])
    # Philips appends criteria in parentheses ("Sinus bradycardia (rate< 50)") and frames alerts (">>> Acute MI <<<")
    assert r.labels == ["SINUS BRADYCARDIA", "NONSPECIFIC INTRAVENTRICULAR CONDUCTION DELAY", "INFERIOR INFARCT",
                        "ACUTE", "ACUTE MI"]
    r = label_statements(read_ecg(formats / "philips_sierra_1_04_01.xml").metadata["diagnosis_statements"])
    assert r.labels == ["SINUS RHYTHM"] and r.unmapped == [
        "Abnormal R-wave progression, early transition (QRS area>0 in V2)"]
    r = label_statements(read_ecg(formats / "dicom_waveform_ecg.dcm").metadata["diagnosis_statements"])
    assert r.labels == [] and r.unmapped == ["RITMO SINUSALE", "ECG NORMALE"]  # Italian: reported, not guessed


def test_common_cinc_codes_all_match_the_150_labels():
    from anyecg_hf.data.cinc import snomed_label_space

    codes = ["270492004", "59118001", "713427006", "164909002", "733534002", "426177001", "427084000", "164889003"]
    data = snomed_label_space(codes)  # as build_cinc names a folder's codes
    matched, unmatched = match_conditions(LabelSpace.ecgfounder(), data, resolve_crosswalk("snomed"))
    assert unmatched == [] and [m.code for m in matched] == codes
    labels = {m.code: m.model_labels for m in matched}
    assert labels["270492004"] == ("WITH 1ST DEGREE AV BLOCK", "WITH PROLONGED AV CONDUCTION")
    assert labels["733534002"] == ("LEFT BUNDLE BRANCH BLOCK",)
    assert "ATRIAL FIBRILLATION" in labels["164889003"] and "SINUS TACHYCARDIA" in labels["427084000"]


def test_crosswalk_accepts_12sl_variants_of_model_labels():
    model = LabelSpace.from_names(["Sinus bradycardia.", "1st degree AV block", "Low QRS voltages"])
    data = _space([{"id": "Brady", "name": "bradycardia", "code_system": "SNOMED-CT", "code": "426627000"},
                   {"id": "IAVB", "name": "1st degree av block", "code_system": "SNOMED-CT", "code": "270492004"},
                   {"id": "LQRSV", "name": "low qrs voltages", "code_system": "SNOMED-CT", "code": "251146004"}])
    matched, unmatched = match_conditions(model, data, crosswalk("ecgfounder", "snomed"))
    assert unmatched == []
    assert [m.model_labels for m in matched] == [("Sinus bradycardia.",), ("1st degree AV block",),
                                                 ("Low QRS voltages",)]
    assert [m.how for m in matched] == ["crosswalk", "name", "name"]  # the last two have the data's names
