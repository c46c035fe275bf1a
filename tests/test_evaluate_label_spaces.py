"""`anyecg evaluate` with a model whose label space is not the dataset's: the 150 ECGFounder statements against the
26 SNOMED-CT classes of the CinC Challenge. Matched conditions are scored, unmatched ones listed, no loss is computed
over mismatched columns."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from test_evaluation_thresholds import _youden_brute_force

from anyecg_hf.evaluation.label_matching import DEFAULT_MATCHERS, match_label_spaces
from anyecg_hf.modeling import LabelSpace
from anyecg_hf.modeling.label_space import Condition

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

TINY = dict(base_filters=8, filter_list=[16, 32], m_blocks_list=[1, 2], groups_width=8, sampling_rate=125,
            num_samples=500)


def test_matching_prefers_id_then_code_then_name_one_to_one():
    model = LabelSpace([Condition("AF", "atrial fibrillation"),
                        Condition("x1", "Sinus Rhythm", "SNOMED-CT", "426783006"),
                        Condition("x2", "SINUS RHYTHM"),
                        Condition("x3", "LEFT AXIS DEVIATION"),
                        Condition("x4", "only in the model")])
    data = LabelSpace([Condition("NSR", "sinus rhythm", "SNOMED-CT", "426783006"),
                       Condition("LAD", "left  axis deviation", "SNOMED-CT", "39732003"),
                       Condition("AF", "AFib", "SNOMED-CT", "164889003"),
                       Condition("IAVB", "1st degree av block", "SNOMED-CT", "270492004")])
    m = match_label_spaces(model, data)
    # dataset order; NSR goes to x1 (code) and not to x2 (name), since code is tried first and pairs are one to one
    assert m.pairs == [(0, 1, "code"), (1, 3, "name"), (2, 0, "id")]
    assert m.unmatched_dataset == [3] and m.unmatched_model == [2, 4]
    assert m.model_to_data().tolist() == [2, 0, -1, 1, -1]
    assert not m.is_identity and match_label_spaces(model, model).is_identity
    assert "IAVB (1st degree av block)" in m.summary() and "3 of the dataset's 4" in m.summary()
    frame = m.to_frame()
    assert len(frame) == 4 + 2 and (frame["matched_by"] == "unmatched").sum() == 3
    # a further matcher (e.g. a crosswalk) is appended and only pairs what is still free
    extra = list(DEFAULT_MATCHERS) + [("crosswalk", lambda ms, ds: [(3, 2), (0, 4)])]
    m2 = match_label_spaces(model, data, extra)
    assert m2.pairs[-1] == (3, 2, "crosswalk") and m2.unmatched_model == [4]
    with pytest.raises(ValueError, match="outside the label spaces"):
        match_label_spaces(model, data, [("bad", lambda ms, ds: [(9, 0)])])


@pytest.fixture(scope="module")
def cinc_scored(assets, tmp_path_factory):
    from anyecg_hf.data import save_ecg_dataset
    from anyecg_hf.data.cinc import build_cinc

    tmp = tmp_path_factory.mktemp("cinc_scored")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_cinc(assets / "data" / "cinc2021", "scored", split={"validation": 0.4, "test": 0.6}, seed=0,
                        cache_dir=tmp / "cache")
    save_ecg_dataset(ds, tmp / "ds")
    return tmp / "ds"


@pytest.fixture(scope="module")
def ecgfounder_space_model(tmp_path_factory):
    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.modeling import AnyECGConfig

    torch.manual_seed(0)
    model = AnyECGForDiagnosis(AnyECGConfig(label_space=LabelSpace.ecgfounder(), **TINY)).eval()
    out = tmp_path_factory.mktemp("m150") / "model"
    model.save_pretrained(out)
    return out


def _evaluate(model, dataset, split, out, n_bootstrap) -> int:
    from anyecg_hf.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(["evaluate", "--model", str(model), "--dataset", str(dataset), "--split", split, "--out", str(out),
                     "--n-bootstrap", str(n_bootstrap), "--subgroups", "none"])


def test_evaluate_150_label_model_on_cinc_codes(cinc_scored, ecgfounder_space_model, tmp_path, capsys):
    from anyecg_hf.data import get_label_space, load_ecg_dataset

    report = tmp_path / "report"
    assert _evaluate(ecgfounder_space_model, cinc_scored, "test", report, 20) == 0
    printed = capsys.readouterr().out
    test = load_ecg_dataset(cinc_scored, split="test")
    data_space, model_space = get_label_space(test), LabelSpace.ecgfounder()
    assert len(data_space) == 26 and len(model_space) == 150
    # independent expectation: the CinC names that are ECGFounder statements, ignoring case
    founder = {n.casefold(): n for n in model_space.names}
    expected = {c.id: founder[c.name.casefold()] for c in data_space if c.name.casefold() in founder}
    assert {"AF", "NSR", "LAD", "RBBB", "STach", "SB"} <= set(expected)
    matching = pd.read_csv(report / "label_matching.csv", keep_default_na=False)
    matched = matching[matching["matched_by"] != "unmatched"]
    assert dict(zip(matched["dataset_id"], matched["model_id"])) == expected
    unmatched = sorted(set(data_space.ids) - set(expected))
    assert sorted(matching.loc[(matching["matched_by"] == "unmatched") & (matching["dataset_id"] != ""),
                               "dataset_id"]) == unmatched
    assert (matching["model_id"] != "").sum() == 150
    for cid in unmatched:  # listed on the terminal and in the report
        assert cid in printed
        assert cid in (report / "report.md").read_text()
    metrics = json.loads((report / "metrics.json").read_text())
    assert "eval_loss" not in metrics  # no loss over mismatched label columns
    assert sorted(metrics["label_matching"]["unmatched_dataset"]) == unmatched
    # the scored conditions are exactly the matched ones, with AUROC from the model's matched output column
    table = pd.read_csv(report / "diagnosis" / "table.csv")
    assert table["id"].tolist() == [c.id for c in data_space if c.id in expected]
    preds = pd.read_parquet(report / "predictions.parquet")
    assert preds["record_id"].tolist() == test["record_id"]
    y = np.asarray(test["labels"])
    aucs = []
    for _, row in table.iterrows():
        j = data_space.index(row["id"])
        assert row["model_id"] == expected[row["id"]] and row["matched_by"] == "name"
        if 0 < y[:, j].sum() < len(y):
            auc = roc_auc_score(y[:, j], preds[f"prob_{expected[row['id']]}"])
            assert row["auroc"] == pytest.approx(auc, abs=1e-9)
            aucs.append(auc)
        else:
            assert not row["defined"]
    assert aucs and metrics["macro_auroc"] == pytest.approx(np.mean(aucs), abs=1e-9)

    # thresholds: Youden's J on the validation split, recomputed here by brute force from that split's predictions
    assert "thresholds: Youden's J on the validation split" in printed
    val_report = tmp_path / "val_report"
    assert _evaluate(ecgfounder_space_model, cinc_scored, "validation", val_report, 0) == 0
    assert "chosen on the validation split itself (optimistic" in capsys.readouterr().out
    assert "optimistic" in (val_report / "model_card_section.md").read_text()
    val = load_ecg_dataset(cinc_scored, split="validation")
    yv = np.asarray(val["labels"])
    pv = pd.read_parquet(val_report / "predictions.parquet")
    checked = 0
    for _, row in table.iterrows():
        j = data_space.index(row["id"])
        if 0 < yv[:, j].sum() < len(yv):
            assert row["threshold_source"] == "validation"
            assert row["threshold"] == _youden_brute_force(yv[:, j], pv[f"prob_{expected[row['id']]}"].to_numpy())
            checked += 1
        elif row["defined"]:
            assert row["threshold_source"] == "evaluated data (optimistic)"
    assert checked
    assert "Operating thresholds: youden, chosen on" in (report / "model_card_section.md").read_text()
    assert (table.loc[table["defined"] & (table["n_pos"] < 10), "ci_note"] == "n too small").all()


def test_collect_predictions_never_computes_a_loss_over_other_label_columns():
    from anyecg_hf import AnyECGForDiagnosis
    from anyecg_hf.evaluation.predictions import collect_predictions
    from anyecg_hf.modeling import AnyECGConfig

    torch.manual_seed(0)
    model = AnyECGForDiagnosis(AnyECGConfig(label_space=LabelSpace.ecgfounder(), **TINY))
    batch = {"input_values": torch.randn(4, 12, 500), "labels": torch.zeros(4, 26)}
    preds = collect_predictions(model, [batch], compute_loss=True)
    assert "loss" not in preds and preds["diagnosis_probs"].shape == (4, 150) and preds["labels"].shape == (4, 26)
    batch = {"input_values": torch.randn(4, 12, 500), "labels": torch.zeros(4, 150)}
    assert np.isfinite(collect_predictions(model, [batch], compute_loss=True)["loss"])


def test_evaluate_precision_is_applied_and_recorded(cinc_scored, ecgfounder_space_model, tmp_path, capsys):
    """`--precision bf16`: predictions from bf16 autocast (close to, not equal to, fp32), and `metrics.json` and the
    model-card section say which precision produced them."""
    from anyecg_hf.cli import main

    probs, metrics = {}, {}
    for precision in ("fp32", "bf16"):
        report = tmp_path / precision
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(["evaluate", "--model", str(ecgfounder_space_model), "--dataset", str(cinc_scored),
                         "--split", "test", "--out", str(report), "--n-bootstrap", "0", "--subgroups", "none",
                         "--precision", precision])
        assert code == 0
        frame = pd.read_parquet(report / "predictions.parquet")
        probs[precision] = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy(dtype=float)
        metrics[precision] = json.loads((report / "metrics.json").read_text())
        assert f"**Precision.** Predictions computed in {precision}" in (report / "model_card_section.md").read_text()
    capsys.readouterr()
    assert metrics["fp32"]["precision"] == "fp32" and metrics["bf16"]["precision"] == "bf16"
    diff = np.abs(probs["bf16"] - probs["fp32"]).max()
    assert 0 < diff < 0.02
