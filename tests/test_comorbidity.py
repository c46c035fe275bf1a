"""Comorbidity analysis against independent computations (pandas crosstab, scipy odds ratio, sklearn MCC)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from scipy.stats.contingency import odds_ratio
from sklearn.metrics import matthews_corrcoef

from anyecg_hf.evaluation.comorbidity import comorbidity_analysis, pair_statistics
from anyecg_hf.modeling import LabelSpace


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(0)
    n = 600
    latent = rng.normal(size=n)
    # A and B share a cause (positively associated), C is independent, D avoids A; E is rare
    labels = np.stack([
        latent + rng.normal(size=n) > 0.8,
        latent + rng.normal(size=n) > 1.0,
        rng.uniform(size=n) < 0.3,
        -latent + rng.normal(size=n) > 1.2,
        rng.uniform(size=n) < 0.004,
    ], axis=1).astype(float)
    probs = np.clip(0.75 * labels + 0.25 * rng.uniform(size=labels.shape), 0, 1)
    probs[rng.uniform(size=labels.shape) < 0.05] = 0.6  # some false positives
    labels[rng.uniform(size=labels.shape) < 0.03] = np.nan  # unknown labels
    return probs, labels, ["A", "B", "C", "D", "E"]


def _table(a, b):
    tab = pd.crosstab(pd.Series(a, name="a"), pd.Series(b, name="b")).reindex(index=[1, 0], columns=[1, 0], fill_value=0)
    return tab.to_numpy()


def test_pair_table_matches_independent_statistics(cohort):
    probs, labels, names = cohort
    res = comorbidity_analysis(probs, labels, names=names)
    table = res.pair_table()
    assert len(table) == 10
    zero_cells = []
    for _, row in table.iterrows():
        i, j = names.index(row["condition_a"]), names.index(row["condition_b"])
        known = np.isfinite(labels[:, i]) & np.isfinite(labels[:, j])
        assert row["n"] == known.sum() and res.known_pairs[i, j] == known.sum()
        for source, values in (("observed", labels), ("predicted", (probs >= 0.5).astype(float))):
            a, b = values[known, i].astype(int), values[known, j].astype(int)
            tab = _table(a, b)
            assert [row[f"{source}_{k}"] for k in ("n_both", "n_a_only", "n_b_only", "n_neither")] == tab.ravel().tolist()
            if (tab == 0).any():  # Haldane-Anscombe: +0.5 to every cell, then Woolf by hand
                zero_cells.append((i, j, source))
                c = tab + 0.5
                est = c[0, 0] * c[1, 1] / (c[0, 1] * c[1, 0])
                half = 1.959963984540054 * np.sqrt((1 / c).sum())
                lo, hi = est * np.exp(-half), est * np.exp(half)
            else:  # scipy's sample odds ratio with its (Woolf) interval
                ref = odds_ratio(tab, kind="sample")
                est, (lo, hi) = ref.statistic, ref.confidence_interval(0.95)
            np.testing.assert_allclose(row[f"{source}_odds_ratio"], est, rtol=1e-10)
            np.testing.assert_allclose([row[f"{source}_or_ci_low"], row[f"{source}_or_ci_high"]], [lo, hi], rtol=1e-8)
            if a.min() != a.max() and b.min() != b.max():
                np.testing.assert_allclose(row[f"{source}_phi"], matthews_corrcoef(a, b), rtol=1e-10, atol=1e-12)
                chi2, p, *_ = chi2_contingency(_table(a, b), correction=False)
                np.testing.assert_allclose(row[f"{source}_p_value"], p, rtol=1e-8, atol=1e-300)
                lo, hi = np.tanh(np.arctanh(row[f"{source}_phi"]) + np.array([-1, 1]) * 1.959963984540054 / np.sqrt(known.sum() - 3))
                np.testing.assert_allclose([row[f"{source}_phi_ci_low"], row[f"{source}_phi_ci_high"]], [lo, hi], rtol=1e-8)
        pk = probs[known]
        np.testing.assert_allclose(row["expected_both"], (pk[:, i] * pk[:, j]).sum(), rtol=1e-10)
    assert zero_cells  # the rare condition E gives tables with an empty cell
    # BH q-values over the observed pairs
    p = table["observed_p_value"].to_numpy()
    ok = np.isfinite(p)
    order = np.argsort(p[ok])
    m = ok.sum()
    q_ref = np.minimum.accumulate((p[ok][order] * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(table["observed_q_value"].to_numpy()[ok][order], np.minimum(q_ref, 1), rtol=1e-10)


def test_strongest_pairs_and_matrices(cohort):
    probs, labels, names = cohort
    res = comorbidity_analysis(probs, labels, names=names)
    top = res.strongest_pairs(3, by="phi", source="observed", min_count=5)
    assert (top.iloc[0]["condition_a"], top.iloc[0]["condition_b"]) == ("A", "B") and top.iloc[0]["observed_phi"] > 0.2
    assert top["observed_phi"].abs().is_monotonic_decreasing
    assert (top["observed_n_both"] >= 5).all()
    neg = res.strongest_pairs(10, by="log_odds_ratio", min_count=1)
    assert (neg.loc[(neg.condition_a == "A") & (neg.condition_b == "D"), "observed_phi"] < 0).all()
    assert res.strongest_pairs(10, positive_only=True, min_count=1)["observed_phi"].gt(0).all()
    known = np.isfinite(labels)
    y = np.where(known, labels, 0)
    np.testing.assert_array_equal(res.observed, y.T @ y)
    np.testing.assert_array_equal(np.diag(res.predicted), ((probs >= 0.5) & known).sum(0))
    frame = res.cooccurrence_frame("observed")
    assert list(frame.index) == names and frame.loc["A", "B"] == res.observed[0, 1]


def test_thresholds_from_label_space_and_no_labels(cohort):
    probs, labels, names = cohort
    space = LabelSpace([{"name": n, "threshold": 0.7 if n == "A" else None} for n in names])
    res = comorbidity_analysis(probs, labels, names=space)
    assert res.thresholds.tolist() == [0.7, 0.5, 0.5, 0.5, 0.5]
    known = np.isfinite(labels[:, 0])
    assert res.predicted[0, 0] == ((probs[:, 0] >= 0.7) & known).sum()
    pred_only = comorbidity_analysis(probs, names=names)
    assert pred_only.observed is None and pred_only.known_pairs[0, 1] == len(probs)
    assert "observed_phi" not in pred_only.pair_table()
    with pytest.raises(ValueError, match="no observed co-occurrences"):
        pred_only.strongest_pairs(source="observed")


def test_haldane_correction_options():
    # a table with a zero cell
    out = pair_statistics([0], [10], [5], [85])
    np.testing.assert_allclose(out["odds_ratio"], 0.5 * 85.5 / (10.5 * 5.5))
    np.testing.assert_allclose(out["or_ci_high"], out["odds_ratio"] * np.exp(1.959963984540054 * np.sqrt(1 / 0.5 + 1 / 10.5 + 1 / 5.5 + 1 / 85.5)))
    raw = pair_statistics([0], [10], [5], [85], correction=None)
    assert raw["odds_ratio"][0] == 0 and raw["or_ci_low"][0] == 0
    always = pair_statistics([3], [10], [5], [85], correction="always")
    np.testing.assert_allclose(always["odds_ratio"], 3.5 * 85.5 / (10.5 * 5.5))
    untouched = pair_statistics([3], [10], [5], [85])
    np.testing.assert_allclose(untouched["odds_ratio"], 3 * 85 / 50)
    assert np.isnan(pair_statistics([0], [0], [5], [85])["phi"][0])  # a margin is empty


def test_exports(cohort, tmp_path):
    probs, labels, names = cohort
    res = comorbidity_analysis(probs, labels, names=names)
    paths = res.save(tmp_path, n=4, min_count=1)
    pairs = pd.read_csv(paths["pairs"])
    assert len(pairs) == 4 and {"condition_a", "observed_odds_ratio", "predicted_phi", "observed_q_value"} <= set(pairs)
    pd.testing.assert_frame_equal(pairs, res.strongest_pairs(4, min_count=1), check_dtype=False)
    png = open(paths["network"], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    obs = pd.read_csv(paths["cooccurrence_observed"], index_col=0)
    np.testing.assert_array_equal(obs.to_numpy(), res.observed)


def test_input_validation(cohort):
    probs, labels, names = cohort
    with pytest.raises(ValueError, match="finite probabilities"):
        comorbidity_analysis(probs * 2, labels)
    with pytest.raises(ValueError, match="labels have shape"):
        comorbidity_analysis(probs, labels[:, :3])
    with pytest.raises(ValueError, match="unique strings"):
        comorbidity_analysis(probs, labels, names=["A"] * 5)
    bad = labels.copy()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="0/1"):
        comorbidity_analysis(probs, bad)
