"""evaluate_diagnosis: point estimates against scikit-learn, thresholds against brute force, calibration,
subgroups, undefined labels, degenerate inputs and the report exports."""

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from anyecg_hf.evaluation import age_bands, evaluate_diagnosis, expected_calibration_error, select_threshold
from anyecg_hf.modeling import LabelSpace


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 400
    prev = np.array([0.05, 0.3, 0.5, 0.0, 1.0])
    y = (rng.random((n, 5)) < prev).astype(float)
    prob = 1 / (1 + np.exp(-(rng.normal(size=(n, 5)) + 2.0 * y - 1.5)))
    prob = np.round(prob, 2)  # ties
    mask = rng.random((n, 5)) < 0.9
    space = LabelSpace([dict(id=f"c{i}", name=f"Condition {i}", code_system="ICD-10", code=f"I{i}0",
                             threshold=0.3 if i == 1 else None) for i in range(5)])
    return y, prob, mask, space


@pytest.fixture(scope="module")
def report(data):
    y, prob, mask, space = data
    return evaluate_diagnosis(y, prob, space, label_mask=mask, n_bootstrap=200, seed=0)


def test_point_estimates_equal_sklearn_per_label(data, report):
    y, prob, mask, _ = data
    t = report.table
    for k in range(3):
        m = mask[:, k]
        assert t.loc[k, "auroc"] == pytest.approx(roc_auc_score(y[m, k], prob[m, k]), abs=1e-12)
        assert t.loc[k, "auprc"] == pytest.approx(average_precision_score(y[m, k], prob[m, k]), abs=1e-12)
        assert t.loc[k, "n_pos"] == int(y[m, k].sum()) and t.loc[k, "n_neg"] == int(m.sum() - y[m, k].sum())
        assert t.loc[k, "auroc_ci_low"] < t.loc[k, "auroc"] < t.loc[k, "auroc_ci_high"]
        assert t.loc[k, "auprc_ci_low"] < t.loc[k, "auprc"] < t.loc[k, "auprc_ci_high"]
    s = report.summary
    assert s["macro_auroc"] == pytest.approx(t.loc[:2, "auroc"].mean())
    yy = np.concatenate([y[mask[:, k], k] for k in range(5)])
    pp = np.concatenate([prob[mask[:, k], k] for k in range(5)])
    assert s["micro_auroc"] == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
    assert s["n_auroc_gt_0.7"] == int((t["auroc"] > 0.7).sum())
    assert s["macro_auroc_ci_low"] < s["macro_auroc"] < s["macro_auroc_ci_high"]


def test_labels_without_both_classes_are_undefined_not_half(report):
    t = report.table
    assert list(t["defined"]) == [True, True, True, False, False]
    assert list(t.loc[3:, "undefined_reason"]) == ["no positives", "no negatives"]
    for col in ("auroc", "auroc_ci_low", "auprc", "threshold", "sensitivity"):
        assert t.loc[3:, col].isna().all()
    assert report.summary["n_defined"] == 3 and report.summary["n_undefined"] == 2
    md = report.to_markdown()
    assert "undefined (no positives)" in md and "undefined (no negatives)" in md and "0.500" not in md


def _brute_force(y, p, score_fn):
    best, best_t = -np.inf, None
    for thr in np.unique(p)[::-1]:
        pred = p >= thr
        val = score_fn(y, pred)
        if val > best + 1e-12:
            best, best_t = val, thr
    return best_t


def test_thresholds_match_brute_force(data):
    y, prob, mask, _ = data
    m = mask[:, 1]
    yy, pp = y[m, 1], prob[m, 1]

    def youden(a, pred):
        return pred[a == 1].mean() - pred[a == 0].mean()

    def f1(a, pred):
        tp = np.sum(pred & (a == 1))
        return 2 * tp / (2 * tp + np.sum(pred & (a == 0)) + np.sum(~pred & (a == 1)))

    assert select_threshold(yy, pp, "youden") == _brute_force(yy, pp, youden)
    assert select_threshold(yy, pp, "balanced_accuracy") == select_threshold(yy, pp, "youden")
    assert select_threshold(yy, pp, "f1") == _brute_force(yy, pp, f1)
    thr = select_threshold(yy, pp, "sensitivity", 0.9)
    sens = lambda t: np.mean(pp[yy == 1] >= t)  # noqa: E731
    assert sens(thr) >= 0.9 and all(sens(u) < 0.9 for u in np.unique(pp) if u > thr)
    thr = select_threshold(yy, pp, "specificity", 0.8)
    spec = lambda t: np.mean(pp[yy == 0] < t)  # noqa: E731
    assert spec(thr) >= 0.8 and all(spec(u) < 0.8 for u in np.unique(pp) if u < thr)


def test_confusion_metrics_at_the_threshold(data):
    y, prob, mask, space = data
    rep = evaluate_diagnosis(y, prob, space, label_mask=mask, n_bootstrap=0, threshold_method="label_space")
    t = rep.table
    assert list(t["threshold"]) == [0.5, 0.3, 0.5, 0.5, 0.5]
    for k in range(3):
        m = mask[:, k]
        tn, fp, fn, tp = confusion_matrix(y[m, k], prob[m, k] >= t.loc[k, "threshold"], labels=[0, 1]).ravel()
        assert t.loc[k, "sensitivity"] == pytest.approx(tp / (tp + fn))
        assert t.loc[k, "specificity"] == pytest.approx(tn / (tn + fp))
        assert t.loc[k, "ppv"] == pytest.approx(tp / (tp + fp))
        assert t.loc[k, "npv"] == pytest.approx(tn / (tn + fn))
        assert t.loc[k, "f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert t.loc[3, "specificity"] > 0 and np.isnan(t.loc[3, "sensitivity"])  # all-negative: specificity only
    assert t["auroc_ci_low"].isna().all()  # n_bootstrap=0: no intervals
    fixed = evaluate_diagnosis(y, prob, space, label_mask=mask, n_bootstrap=0, threshold_method=("sensitivity", 0.8))
    assert (fixed.table.loc[:2, "sensitivity"] >= 0.8).all()
    per = evaluate_diagnosis(y, prob, space, label_mask=mask, n_bootstrap=0, threshold_method=[0.1, 0.2, 0.3, 0.4, 0.6])
    assert list(per.table["threshold"]) == [0.1, 0.2, 0.3, 0.4, 0.6]


def test_expected_calibration_error_matches_sklearn_bins():
    rng = np.random.default_rng(1)
    p = rng.random(500)
    y = (rng.random(500) < p**1.5).astype(int)
    frac, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], p)
    counts = np.bincount(ids, minlength=10)
    counts = counts[counts > 0]
    expected = np.sum(counts / 500 * np.abs(frac - mean_pred))
    assert expected_calibration_error(y, p, 10) == pytest.approx(expected, abs=1e-12)


def test_subgroups_use_the_subset_and_overall_thresholds(data):
    y, prob, mask, space = data
    rng = np.random.default_rng(2)
    sex = rng.choice(["F", "M"], len(y)).astype(object)
    sex[:5] = None  # missing: left out
    ages = rng.uniform(20, 95, len(y))
    rep = evaluate_diagnosis(y, prob, space, label_mask=mask, n_bootstrap=50, subgroups={"sex": sex,
                             "age": age_bands(ages)})
    sub = rep.subgroups
    assert list(rep.subgroup_summary["level"]) == ["F", "M", "<40", "40-59", "60-79", ">=80"]
    rows = sub[(sub["variable"] == "sex") & (sub["level"] == "F")].reset_index(drop=True)
    sel = sex == "F"
    for k in range(3):
        m = sel & mask[:, k]
        assert rows.loc[k, "auroc"] == pytest.approx(roc_auc_score(y[m, k], prob[m, k]), abs=1e-12)
        assert rows.loc[k, "threshold"] == rep.table.loc[k, "threshold"]
    assert rep.subgroup_summary["n_samples"].iloc[:2].sum() == len(y) - 5
    assert "### Subgroups" in rep.to_markdown()


def test_patient_ids_resample_patients(data):
    y, prob, mask, space = data
    pid = np.arange(len(y)) // 4  # 4 ECGs per patient
    rep = evaluate_diagnosis(y, prob, space, label_mask=mask, patient_ids=pid, n_bootstrap=100)
    assert rep.summary["n_patients"] == 100 and rep.settings["resampling_unit"] == "patient"
    assert np.isfinite(rep.table.loc[:2, "auroc_ci_low"]).all()


def test_degenerate_inputs_raise_clear_errors(data):
    y, prob, mask, space = data
    bad = prob.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_diagnosis(y, bad, space, n_bootstrap=0)
    masked = np.ones_like(mask)
    masked[3, 1] = False
    evaluate_diagnosis(y, bad, space, label_mask=masked, n_bootstrap=0)  # a NaN outside the mask is fine
    with pytest.raises(ValueError, match="Shape mismatch"):
        evaluate_diagnosis(y[:, :4], prob, n_bootstrap=0)
    with pytest.raises(ValueError, match="label space has 5"):
        evaluate_diagnosis(y[:, :4], prob[:, :4], space, n_bootstrap=0)
    with pytest.raises(ValueError, match="probabilities"):
        evaluate_diagnosis(y, prob * 3, space, n_bootstrap=0)
    with pytest.raises(ValueError, match="0/1"):
        evaluate_diagnosis(y * 2, prob, space, n_bootstrap=0)
    with pytest.raises(ValueError, match="threshold_method"):
        evaluate_diagnosis(y, prob, space, n_bootstrap=0, threshold_method="best")
    # missing labels (-100, NaN) are excluded like a label mask
    y2 = y.copy()
    y2[~mask] = -100
    rep = evaluate_diagnosis(y2, prob, space, n_bootstrap=0)
    assert rep.table.loc[0, "auroc"] == pytest.approx(roc_auc_score(y[mask[:, 0], 0], prob[mask[:, 0], 0]))


def test_report_exports(report, tmp_path):
    csv = report.to_csv(tmp_path / "t.csv")
    back = pd.read_csv(csv)
    np.testing.assert_allclose(back["auroc"], report.table["auroc"], equal_nan=True)
    assert list(back["id"]) == list(report.table["id"])
    for name in ("forest.png", "cal.png"):
        path = (report.plot if name == "forest.png" else report.plot_calibration)(tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    js = report.to_json(tmp_path / "s.json").read_text()
    assert '"macro_auroc"' in js and "NaN" not in js
    assert len(report.top(2)) == 2 and report.top(1)["auroc"].iloc[0] == report.table["auroc"].max()
    assert report.bottom(1)["auroc"].iloc[0] == report.table["auroc"].min()
    md = report.to_markdown(max_rows=2)
    assert "3 more conditions in the CSV table" in md and "Macro AUROC" in md


def test_generic_names_without_label_space():
    rng = np.random.default_rng(3)
    y = (rng.random((50, 2)) < 0.5).astype(int)
    rep = evaluate_diagnosis(y, rng.random((50, 2)), n_bootstrap=0)
    assert list(rep.table["name"]) == ["LABEL_0", "LABEL_1"]
