"""Operating thresholds chosen on a validation split (or marked optimistic when chosen on the evaluated data), and
no confidence interval for conditions with fewer than 10 positives."""

import numpy as np
import pytest

from anyecg_hf.evaluation import evaluate_diagnosis, model_card_section, thresholds_on
from anyecg_hf.modeling import LabelSpace


def _youden_brute_force(y, p):
    """The highest threshold t maximising sensitivity + specificity - 1 of `p >= t` (scikit-learn's tie order)."""
    best, best_t = -np.inf, None
    for t in sorted(set(p.tolist()), reverse=True):
        pred = p >= t
        j = pred[y == 1].mean() + (~pred[y == 0]).mean() - 1
        if j > best + 1e-12:
            best, best_t = j, t
    return best_t


def _data(rng, n, prev):
    y = (rng.random((n, len(prev))) < prev).astype(float)
    p = np.round(1 / (1 + np.exp(-(rng.normal(size=y.shape) + 1.5 * y - 1.0))), 3)
    return y, p


def test_conditions_with_few_positives_get_no_ci():
    rng = np.random.default_rng(1)
    y, p = _data(rng, 300, [0.2, 0.01])
    y[:, 1] = 0
    y[:4, 1] = 1  # 4 positives
    space = LabelSpace.from_names(["common", "rare"])
    rep = evaluate_diagnosis(y, p, space, n_bootstrap=100, seed=0)
    t = rep.table
    assert t.loc[0, "n_pos"] >= 10 and t.loc[1, "n_pos"] == 4
    assert t.loc[0, "auroc_ci_low"] < t.loc[0, "auroc"] < t.loc[0, "auroc_ci_high"] and t.loc[0, "ci_note"] == ""
    assert t.loc[1, ["auroc_ci_low", "auroc_ci_high", "auprc_ci_low", "auprc_ci_high"]].isna().all()
    assert t.loc[1, "ci_note"] == "n too small" and np.isfinite(t.loc[1, "auroc"])
    md = rep.to_markdown()
    assert f"{t.loc[1, 'auroc']:.3f} (n too small)" in md and f"[{t.loc[0, 'auroc_ci_low']:.3f}," in md
    assert "fewer than 10 positives (n too small)" in rep.summary_markdown()
    assert evaluate_diagnosis(y, p, space, n_bootstrap=100, seed=0, min_ci_positives=3).table["ci_note"].eq("").all()


def test_thresholds_chosen_on_validation_are_used_and_reported():
    rng = np.random.default_rng(2)
    prev = [0.3, 0.2, 0.25]
    yv, pv = _data(rng, 200, prev)
    yt, pt = _data(rng, 150, prev)
    yv[:, 2] = 0  # no positive in the validation split: that threshold is chosen on the test data, marked
    thr = thresholds_on(yv, pv)
    for k in range(2):
        assert thr[k] == _youden_brute_force(yv[:, k], pv[:, k])
    assert np.isnan(thr[2])
    space = LabelSpace.from_names(["a", "b", "c"])
    rep = evaluate_diagnosis(yt, pt, space, n_bootstrap=0, threshold_method=thr, threshold_split="validation")
    t = rep.table
    for k in range(2):
        pred = pt[:, k] >= thr[k]
        assert t.loc[k, "threshold"] == thr[k] and t.loc[k, "threshold_source"] == "validation"
        assert t.loc[k, "sensitivity"] == pytest.approx(pred[yt[:, k] == 1].mean(), abs=1e-12)
        assert t.loc[k, "specificity"] == pytest.approx((~pred[yt[:, k] == 0]).mean(), abs=1e-12)
    assert t.loc[2, "threshold"] == _youden_brute_force(yt[:, 2], pt[:, 2])
    assert t.loc[2, "threshold_source"] == "evaluated data (optimistic)"
    assert rep.settings["threshold_split"] == "validation (2 conditions); evaluated data (optimistic) (1 conditions)"
    card = model_card_section(rep)
    assert "Operating thresholds: youden, chosen on validation (2 conditions)" in card and "optimistic" in card

    only_val = evaluate_diagnosis(yt[:, :2], pt[:, :2], LabelSpace.from_names(["a", "b"]), n_bootstrap=0,
                                  threshold_method=thr[:2], threshold_split="validation")
    card = model_card_section(only_val)
    assert "Operating thresholds: youden, chosen on the validation split" in card and "optimistic" not in card


def test_thresholds_chosen_on_the_evaluated_data_are_marked_optimistic():
    rng = np.random.default_rng(3)
    y, p = _data(rng, 120, [0.3])
    rep = evaluate_diagnosis(y, p, LabelSpace.from_names(["a"]), n_bootstrap=0)
    assert rep.table.loc[0, "threshold"] == _youden_brute_force(y[:, 0], p[:, 0])
    assert rep.table.loc[0, "threshold_source"] == "evaluated data (optimistic)"
    assert "Thresholds: youden, chosen on the evaluated data (optimistic)" in rep.summary_markdown()
    assert "chosen on the evaluated data (optimistic)" in model_card_section(rep)
