"""`anyecg evaluate --label-map`, `anyecg build-dataset --labels-from statements` and `anyecg benchmark ptbxl`
end to end on the seeded 150-label ECGFounder model."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anyecg_hf.cli import main
from anyecg_hf.labels import crosswalk

CINC = Path(__file__).parent / "assets" / "data" / "cinc2021"


@pytest.fixture(scope="module")
def ecgfounder_folder(seeded_model_12, tmp_path_factory):
    from anyecg_hf.processing import AnyECGFeatureExtractor

    folder = tmp_path_factory.mktemp("model") / "ecgfounder"
    seeded_model_12.save_pretrained(folder)
    AnyECGFeatureExtractor.from_model_config(seeded_model_12.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def cinc_scored(tmp_path_factory):
    from datasets import DatasetDict

    from anyecg_hf.data import build_cinc, save_ecg_dataset

    out = tmp_path_factory.mktemp("cinc") / "scored"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_cinc(CINC, "scored", cache_dir=str(out.parent / "cache"))
        save_ecg_dataset(DatasetDict({"test": ds}), out)
    return out


def _evaluate(model, dataset, out, *extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["evaluate", "--model", str(model), "--dataset", str(dataset), "--split", "test", "--out", str(out),
                     "--n-bootstrap", "0", "--subgroups", "none", *extra])


def test_evaluate_through_snomed_crosswalk(ecgfounder_folder, cinc_scored, tmp_path):
    from sklearn.metrics import roc_auc_score

    from anyecg_hf.data import get_label_space, load_ecg_dataset

    report = tmp_path / "report"
    assert _evaluate(ecgfounder_folder, cinc_scored, report, "--label-map", "snomed") == 0
    table = pd.read_csv(report / "diagnosis" / "table.csv", keep_default_na=False, na_values=[""])
    assert len(table) == 26  # one row per dataset condition
    matched = table[table["model_id"].fillna("") != ""]
    assert len(matched) >= 18
    rows = table.set_index("code")
    assert rows.loc[426627000, "tier"] == "broader"
    assert set(rows.loc[426627000, "model_id"].split(" | ")) == {"SINUS BRADYCARDIA", "MARKED SINUS BRADYCARDIA",
                                                                 "JUNCTIONAL BRADYCARDIA"}
    assert rows.loc[365413008, "undefined_reason"] == "no model label matched"
    # independent check: AUROC of the max over the mapped labels' probabilities (predictions.parquet)
    preds = pd.read_parquet(report / "predictions.parquet")
    test = load_ecg_dataset(cinc_scored, split="test")
    space = get_label_space(test)
    y = np.asarray(test["labels"])
    xw = crosswalk("ecgfounder", "snomed")
    checked = 0
    for j, c in enumerate(space):
        labels = set(xw[(xw["code"] == c.code) & xw["tier"].isin(["exact", "broader", "composite"])]["label"])
        if not labels or not 0 < y[:, j].sum() < len(y):
            continue
        from anyecg_hf.modeling.label_space import LabelSpace

        ids = [x.id for x in LabelSpace.ecgfounder() if x.name in labels]
        p = preds[[f"prob_{i}" for i in ids]].max(axis=1)
        assert rows.loc[int(c.code), "auroc"] == pytest.approx(roc_auc_score(y[:, j], p), abs=1e-6), c.code
        checked += 1
    assert checked >= 8
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["label_matching"]["label_map"] == "ecgfounder->snomed"
    assert np.isfinite(metrics["cinc2021_challenge_score"]) and metrics["cinc2021_challenge_score"] <= 1.0
    assert "crosswalk" in (report / "model_card_section.md").read_text()


def test_evaluate_mean_aggregation_differs(ecgfounder_folder, cinc_scored, tmp_path):
    assert _evaluate(ecgfounder_folder, cinc_scored, tmp_path / "mean", "--label-map", "snomed",
                     "--label-aggregate", "mean") == 0
    metrics = json.loads((tmp_path / "mean" / "metrics.json").read_text())
    assert metrics["label_matching"]["label_aggregate"] == "mean"


def test_build_dataset_labels_from_statements(tmp_path):
    from anyecg_hf.data import get_label_space, load_ecg_dataset
    from anyecg_hf.io import read_ecg
    from anyecg_hf.io.muse import write_muse_xml

    folder = tmp_path / "muse"
    folder.mkdir()
    statements = [["Sinus bradycardia", "Otherwise normal ECG"], ["Atrial fibrillation", "QT has lengthened"]]
    for k, f in enumerate(sorted(CINC.glob("*.hea"))[:2]):
        rec = read_ecg(f)
        rec.metadata["diagnosis_statements"] = statements[k]
        write_muse_xml(rec, folder / f"{f.stem}.xml")
    out = tmp_path / "cohort"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["build-dataset", "--records", str(folder), "--labels-from", "statements", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    ds = load_ecg_dataset(out)
    ds = ds[next(iter(ds))] if hasattr(ds, "keys") else ds
    space = get_label_space(ds)
    got = {r["record_id"]: [space[j].id for j, v in enumerate(r["labels"]) if v] for r in ds}
    assert got == {"E07500": ["SINUS BRADYCARDIA", "otherwise normal ecg"], "E07501": ["ATRIAL FIBRILLATION"]}
    listing = pd.read_csv(out / "statements.csv")
    assert list(listing["kind"]) == ["mapped", "mapped", "mapped", "serial"]
    coverage = json.loads((out / "statement_coverage.json").read_text())
    assert coverage["statements"]["serial"] == 1 and coverage["records_labelled"] == 2
