"""PTB-XL benchmark mode: the six tasks of Strodthoff et al. (2020) on a synthetic ptbxl_database.csv."""

import pandas as pd
import pytest

from anyecg_hf.data.ptbxl import BENCHMARK_TASKS, ptbxl_benchmark_table, ptbxl_label_table

# PTB-XL 1.0.1 scp_statements.csv, the columns the benchmark reads (facts of the dataset, CC BY 4.0)
SCP_STATEMENTS = """\
,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass
NDT,non-diagnostic T abnormalities,1,1,,STTC,STTC
NST_,non-specific ST changes,1,1,,STTC,NST_
DIG,digitalis-effect,1,1,,STTC,STTC
LNGQT,long QT-interval,1,1,,STTC,STTC
NORM,normal ECG,1,,,NORM,NORM
IMI,inferior myocardial infarction,1,,,MI,IMI
ASMI,anteroseptal myocardial infarction,1,,,MI,AMI
LVH,left ventricular hypertrophy,1,,,HYP,LVH
LAFB,left anterior fascicular block,1,,,CD,LAFB/LPFB
ISC_,non-specific ischemic,1,,,STTC,ISC_
IRBBB,incomplete right bundle branch block,1,,,CD,IRBBB
1AVB,first degree AV block,1,,,CD,_AVB
IVCD,non-specific intraventricular conduction disturbance (block),1,,,CD,IVCD
ISCAL,ischemic in anterolateral leads,1,,,STTC,ISCA
CRBBB,complete right bundle branch block,1,,,CD,CRBBB
CLBBB,complete left bundle branch block,1,,,CD,CLBBB
ILMI,inferolateral myocardial infarction,1,,,MI,IMI
LAO/LAE,left atrial overload/enlargement,1,,,HYP,LAO/LAE
AMI,anterior myocardial infarction,1,,,MI,AMI
ALMI,anterolateral myocardial infarction,1,,,MI,AMI
ISCIN,ischemic in inferior leads,1,,,STTC,ISCI
INJAS,subendocardial injury in anteroseptal leads,1,,,MI,AMI
LMI,lateral myocardial infarction,1,,,MI,LMI
ISCIL,ischemic in inferolateral leads,1,,,STTC,ISCI
LPFB,left posterior fascicular block,1,,,CD,LAFB/LPFB
ISCAS,ischemic in anteroseptal leads,1,,,STTC,ISCA
INJAL,subendocardial injury in anterolateral leads,1,,,MI,AMI
ISCLA,ischemic in lateral leads,1,,,STTC,ISCA
RVH,right ventricular hypertrophy,1,,,HYP,RVH
ANEUR,ST-T changes compatible with ventricular aneurysm,1,,,STTC,STTC
RAO/RAE,right atrial overload/enlargement,1,,,HYP,RAO/RAE
EL,electrolytic disturbance or drug (former EDIS),1,,,STTC,STTC
WPW,Wolf-Parkinson-White syndrome,1,,,CD,WPW
ILBBB,incomplete left bundle branch block,1,,,CD,ILBBB
IPLMI,inferoposterolateral myocardial infarction,1,,,MI,IMI
ISCAN,ischemic in anterior leads,1,,,STTC,ISCA
IPMI,inferoposterior myocardial infarction,1,,,MI,IMI
SEHYP,septal hypertrophy,1,,,HYP,SEHYP
INJIN,subendocardial injury in inferior leads,1,,,MI,IMI
INJLA,subendocardial injury in lateral leads,1,,,MI,AMI
PMI,posterior myocardial infarction,1,,,MI,PMI
3AVB,third degree AV block,1,,,CD,_AVB
INJIL,subendocardial injury in inferolateral leads,1,,,MI,IMI
2AVB,second degree AV block,1,,,CD,_AVB
ABQRS,abnormal QRS,,1,,,
PVC,ventricular premature complex,,1,,,
STD_,non-specific ST depression,,1,,,
VCLVH,voltage criteria (QRS) for left ventricular hypertrophy,,1,,,
QWAVE,Q waves present,,1,,,
LOWT,low amplitude T-waves,,1,,,
NT_,non-specific T-wave changes,,1,,,
PAC,atrial premature complex,,1,,,
LPR,prolonged PR interval,,1,,,
INVT,inverted T-waves,,1,,,
LVOLT,low QRS voltages in the frontal and horizontal leads,,1,,,
HVOLT,high QRS voltage,,1,,,
TAB_,T-wave abnormality,,1,,,
STE_,non-specific ST elevation,,1,,,
PRC(S),premature complex(es),,1,,,
SR,sinus rhythm,,,1,,
AFIB,atrial fibrillation,,,1,,
STACH,sinus tachycardia,,,1,,
SARRH,sinus arrhythmia,,,1,,
SBRAD,sinus bradycardia,,,1,,
PACE,normal functioning artificial pacemaker,,,1,,
SVARR,supraventricular arrhythmia,,,1,,
BIGU,"bigeminal pattern (unknown origin, SV or Ventricular)",,,1,,
AFLT,atrial flutter,,,1,,
SVTAC,supraventricular tachycardia,,,1,,
PSVT,paroxysmal supraventricular tachycardia,,,1,,
TRIGU,"trigeminal pattern (unknown origin, SV or Ventricular)",,,1,,
"""


def _write(root, records):
    root.mkdir(parents=True, exist_ok=True)
    (root / "scp_statements.csv").write_text(SCP_STATEMENTS)
    rows = [{"ecg_id": i + 1, "patient_id": 1000 + i, "age": 50, "sex": i % 2, "scp_codes": repr(codes),
             "strat_fold": i % 10 + 1, "filename_lr": f"records100/{i + 1:05d}_lr",
             "filename_hr": f"records500/{i + 1:05d}_hr"} for i, codes in enumerate(records)]
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return pd.read_csv(root / "scp_statements.csv", index_col=0)


def _expected(statements, records, task):
    """Which records the benchmark keeps and its labels, written out from the flags (not from the module)."""
    diag = statements[statements["diagnostic"] == 1]
    keep, labels = [], set()
    for i, codes in enumerate(records):
        if task == "all":
            got = set(codes)
        elif task == "diagnostic":
            got = {c for c in codes if c in diag.index}
        elif task == "subdiagnostic":
            got = {diag.loc[c, "diagnostic_subclass"] for c in codes if c in diag.index}
        elif task == "superdiagnostic":
            got = {diag.loc[c, "diagnostic_class"] for c in codes if c in diag.index}
        else:
            got = {c for c in codes if statements.loc[c, task] == 1}
        if got:
            keep.append(str(i + 1))
            labels |= got
    return keep, labels


def test_benchmark_tasks_drop_unlabelled_records_and_count_labels(tmp_path):
    singles = [{code: 100.0} for code in pd.read_csv(__import__("io").StringIO(SCP_STATEMENTS), index_col=0).index]
    extra = [{}, {"SR": 0.0}, {"NORM": 100.0, "SR": 0.0}, {"PVC": 100.0, "SR": 0.0}, {"ABQRS": 0.0},
             {"IMI": 15.0, "ILMI": 35.0, "AFIB": 0.0}, {"NDT": 100.0}]
    records = singles + extra
    statements = _write(tmp_path / "ptbxl", records)
    counts = {}
    for task in BENCHMARK_TASKS:
        table, space = ptbxl_benchmark_table(tmp_path / "ptbxl", task)
        keep, labels = _expected(statements, records, task)
        assert list(table["record_id"]) == keep, task
        assert set(space.ids) == labels and space.name == f"ptbxl-{task}"
        assert (table["codes"] != "").all()
        counts[task] = len(space)
    assert counts == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19,
                      "rhythm": 12}
    # the records the diagnostic tasks drop: no diagnostic statement (rhythm / form only, or none)
    n = len(singles)
    diag, _ = ptbxl_benchmark_table(tmp_path / "ptbxl", "diagnostic")
    dropped = {str(i + 1) for i in range(len(records))} - set(diag["record_id"])
    assert {str(n + k + 1) for k in (0, 1, 3, 4)} <= dropped and str(n + 3) in set(diag["record_id"])
    # likelihood 0 counts, as in the benchmark
    form, _ = ptbxl_benchmark_table(tmp_path / "ptbxl", "form")
    assert form.set_index("record_id").loc[str(n + 5), "codes"] == "ABQRS"
    sup, _ = ptbxl_benchmark_table(tmp_path / "ptbxl", "superdiagnostic")
    assert sup.set_index("record_id").loc[str(n + 6), "codes"] == "MI"


def test_ordinary_builder_keeps_unlabelled_records_unless_asked(tmp_path):
    _write(tmp_path / "ptbxl", [{"SR": 0.0}, {"NORM": 100.0}])
    table, _ = ptbxl_label_table(tmp_path / "ptbxl", level="superdiagnostic")
    assert list(table["codes"]) == ["", "NORM"]
    table, _ = ptbxl_label_table(tmp_path / "ptbxl", level="superdiagnostic", drop_unlabelled=True)
    assert list(table["record_id"]) == ["2"]
    with pytest.raises(ValueError, match="benchmark task"):
        ptbxl_benchmark_table(tmp_path / "ptbxl", "superclass")


def test_reference_rows_and_table():
    from anyecg_hf.evaluation.ptbxl_benchmark import PUBLISHED_MACRO_AUROC, benchmark_table, format_benchmark_table

    assert PUBLISHED_MACRO_AUROC["xresnet1d101"] == (0.925, 0.937, 0.929, 0.928, 0.896, 0.957)
    table = benchmark_table({"superdiagnostic": {"macro_auroc": 0.9, "n_scored": 4, "n_labels": 5}}, "m")
    assert len(table) == 1 + len(PUBLISHED_MACRO_AUROC) and table.loc[0, "superdiagnostic_labels"] == "4/5"
    text = format_benchmark_table(table)
    assert "| m | - | - | - | 0.900 (4/5) | - | - |" in text
    assert "| xresnet1d101 | 0.925 | 0.937 | 0.929 | 0.928 | 0.896 | 0.957 |" in text


def _ptbxl_with_records(root, codes):
    """A PTB-XL folder whose 500 Hz WFDB records are CinC test records; every record in fold 10."""
    from pathlib import Path

    import numpy as np
    import wfdb

    from anyecg_hf.io import read_ecg

    heas = sorted((Path(__file__).parent / "assets" / "data" / "cinc2021").glob("*.hea"))[: len(codes)]
    _write(root, codes)
    db = pd.read_csv(root / "ptbxl_database.csv")
    db["strat_fold"] = 10
    for hea, name in zip(heas, db["filename_hr"]):
        rec = read_ecg(hea)
        folder = root / Path(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp(Path(name).name, fs=500, units=["mV"] * 12, sig_name=rec.lead_names,
                    p_signal=np.asarray(rec.signal.T, np.float64), fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(folder))
    db.to_csv(root / "ptbxl_database.csv", index=False)


def test_benchmark_command_zero_shot(seeded_model_12, tmp_path):
    import warnings

    from anyecg_hf.cli import main
    from anyecg_hf.processing import AnyECGFeatureExtractor

    model = tmp_path / "model"
    seeded_model_12.save_pretrained(model)
    AnyECGFeatureExtractor.from_model_config(seeded_model_12.config).save_pretrained(model)
    codes = [{"NORM": 100.0, "SR": 0.0}, {"IMI": 80.0, "SR": 0.0}, {"NDT": 100.0, "STACH": 0.0},
             {"LVH": 50.0, "SR": 0.0}, {"AFIB": 100.0}, {"NORM": 100.0, "SR": 0.0}, {"CRBBB": 100.0, "SR": 0.0},
             {"PVC": 100.0, "SBRAD": 0.0}]
    _ptbxl_with_records(tmp_path / "ptbxl", codes)
    out = tmp_path / "bench"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["benchmark", "ptbxl", "--data", str(tmp_path / "ptbxl"), "--model", str(model), "--out", str(out),
                     "--tasks", "superdiagnostic,rhythm"])
    assert code == 0
    table = pd.read_csv(out / "benchmark.csv")
    ours = table.iloc[0]
    assert ours["source"] == "this run" and ours["superdiagnostic_labels"] == "5/5"  # NORM, MI, STTC, HYP, CD occur
    assert ours["rhythm_labels"] == "4/4"  # SR, STACH, AFIB, SBRAD
    per_task = pd.read_csv(out / "superdiagnostic" / "diagnosis" / "table.csv")
    assert ours["superdiagnostic"] == pytest.approx(per_task["auroc"].dropna().mean())
    assert "xresnet1d101" in (out / "benchmark.md").read_text()
    assert table.loc[table["model"] == "xresnet1d101", "rhythm"].item() == 0.957


def test_benchmark_prepare_only_writes_task_datasets(tmp_path, capsys):
    import warnings

    from anyecg_hf.cli import main
    from anyecg_hf.data import get_label_space, load_ecg_dataset

    _ptbxl_with_records(tmp_path / "ptbxl", [{"NORM": 100.0, "SR": 0.0}, {"PVC": 100.0}, {"AFIB": 100.0}])
    out = tmp_path / "bench"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["benchmark", "ptbxl", "--data", str(tmp_path / "ptbxl"), "--out", str(out), "--prepare-only",
                     "--tasks", "rhythm,form"])
    assert code == 0
    rhythm = load_ecg_dataset(out / "datasets" / "rhythm")
    assert list(rhythm) == ["test"] and sorted(rhythm["test"]["record_id"]) == ["1", "3"]  # PVC-only record dropped
    assert get_label_space(rhythm["test"]).ids == ["SR", "AFIB"]
    form = load_ecg_dataset(out / "datasets" / "form")
    assert form["test"]["record_id"] == ["2"]
    printed = capsys.readouterr().out
    assert "recipes/finetune_diagnosis.py" in printed and f"--model rhythm={out / 'runs' / 'rhythm' / 'final'}" in printed
    assert main(["benchmark", "ptbxl", "--data", str(tmp_path / "ptbxl"), "--out", str(out), "--tasks", "bogus"]) == 2
    assert "unknown task(s) ['bogus']" in capsys.readouterr().err
    assert main(["benchmark", "ptbxl", "--data", str(tmp_path / "ptbxl"), "--out", str(out)]) == 2  # no --model
    assert "no --model for task(s)" in capsys.readouterr().err
