"""Phecode summary of an evaluation: counts above AUROC cut-offs with bootstrap CIs, per-category tables, forest
plots, top/bottom, comorbidity; checked against scikit-learn / lifelines / numpy on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from anyecg_hf.evaluation import evaluate_diagnosis, evaluate_risk
from anyecg_hf.evaluation.phecode_summary import is_phecode_space, write_phecode_summary
from anyecg_hf.modeling import Condition, LabelSpace

CATS = ["circulatory system", "circulatory system", "endocrine/metabolic", "endocrine/metabolic", "neoplasms", "neoplasms"]


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    k = len(CATS)
    space = LabelSpace([Condition(id=f"{400 + i}", name=f"cond {i}", code_system="phecode", code=f"{400 + i}",
                                  category=CATS[i]) for i in range(k)])
    y = (rng.random((n, k)) < 0.3).astype(float)
    signal = np.array([3.0, 1.5, 0.8, 0.4, 0.1, 2.0])  # a spread of AUROCs across the cut-offs
    p = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(size=(n, k)))))
    times = rng.exponential(5, (n, k))
    risk = -np.log(times) * signal + rng.normal(size=(n, k))
    events = (rng.random((n, k)) < 0.7).astype(float)
    return space, y, p, times, events, risk


def test_phecode_summary_counts_categories_and_files(tmp_path):
    space, y, p, times, events, risk = _data()
    assert is_phecode_space(space) and not is_phecode_space(LabelSpace.from_names(["a", "b"]))
    diag = evaluate_diagnosis(y, p, space, n_bootstrap=200, seed=0)
    rsk = evaluate_risk(times, events, risk, horizons=(1.0,), label_space=space, n_bootstrap=20, seed=0)
    paths = write_phecode_summary(tmp_path, diag, rsk, label_space=space, probs=p, labels=y)

    auroc = np.array([roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])])
    th = pd.read_csv(paths["thresholds"])
    d = th[th.metric == "auroc"].set_index("cutoff")
    for c in (0.7, 0.8, 0.9):
        assert d.loc[c, "n_above"] == int(np.sum(auroc > c))
        # CI of the count: percentiles of the count over the report's own replicates
        counts = np.sum(diag.bootstrap_auroc > c, axis=1)
        assert d.loc[c, "n_above_ci_low"] == pytest.approx(np.quantile(counts, 0.025))
        assert d.loc[c, "n_above_ci_high"] == pytest.approx(np.quantile(counts, 0.975))
        assert d.loc[c, "n_above_ci_low"] <= d.loc[c, "n_above"] <= d.loc[c, "n_above_ci_high"]

    cats = pd.read_csv(paths["categories"])
    dc = cats[cats["head"] == "diagnosis"].set_index("category")
    for cat in set(CATS):
        cols = [j for j, c in enumerate(CATS) if c == cat]
        assert dc.loc[cat, "auroc"] == pytest.approx(auroc[cols].mean())
        assert dc.loc[cat, "auroc_median"] == pytest.approx(np.median(auroc[cols]))
        boot_mean = diag.bootstrap_auroc[:, cols].mean(axis=1)
        assert dc.loc[cat, "auroc_ci_low"] == pytest.approx(np.quantile(boot_mean, 0.025))
        assert dc.loc[cat, "n_auroc_gt_0.7"] == int(np.sum(auroc[cols] > 0.7))
    rc = cats[cats["head"] == "risk"].set_index("category")
    assert rc.loc["neoplasms", "harrell_c"] == pytest.approx(rsk.table["harrell_c"].to_numpy()[4:6].mean())

    tb = pd.read_csv(paths["top_bottom"], dtype={"id": str})
    top = tb[(tb["head"] == "diagnosis") & (tb["rank"] == "top")]
    assert top["id"].iloc[0] == str(400 + int(np.argmax(auroc)))
    for name in ("forest_category_auroc", "forest_category_cindex"):
        assert paths[name].read_bytes()[:4] == b"\x89PNG"
    assert (paths["comorbidity"] / "comorbidity_pairs.csv").exists()
    assert "AUROC" in paths["markdown"].read_text() or "auroc" in paths["markdown"].read_text()
