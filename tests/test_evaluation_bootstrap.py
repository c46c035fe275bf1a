"""The vectorised bootstrap engines against scikit-learn / lifelines / scikit-survival on the same resamples, and
the coverage of the AUROC confidence interval."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from anyecg_hf.evaluation.bootstrap import (
    BootstrapSampler,
    bootstrap_auroc_auprc,
    percentile_interval,
    weighted_auroc_auprc,
)
from anyecg_hf.evaluation.concordance import weighted_concordance


def _tied_data(rng, n=240):
    prevalences = np.array([0.03, 0.2, 0.5, 0.85])
    y = rng.random((n, 4)) < prevalences
    y[0], y[1] = True, False
    score = np.round(rng.normal(size=(n, 4)) + y, 1)  # one decimal: many ties
    score[:, 3] = np.round(score[:, 3])  # heavy ties
    mask = rng.random((n, 4)) < 0.9
    return y, score, mask


@pytest.mark.parametrize("grouped", [False, True])
def test_bootstrap_equals_sklearn_on_the_same_resamples(grouped):
    rng = np.random.default_rng(0)
    y, score, mask = _tied_data(rng)
    groups = rng.integers(0, 90, len(y)) if grouped else None
    auroc, auprc, sampler = bootstrap_auroc_auprc(y, score, label_mask=mask, n_bootstrap=40, seed=7, groups=groups)
    assert auroc.shape == auprc.shape == (40, 4)
    checked = 0
    for b in range(40):
        idx = sampler.indices(b)
        for k in range(4):
            rows = idx[mask[idx, k]]
            yy = y[rows, k]
            if yy.all() or not yy.any():
                assert np.isnan(auroc[b, k]) and np.isnan(auprc[b, k])
                continue
            assert auroc[b, k] == pytest.approx(roc_auc_score(yy, score[rows, k]), abs=1e-12)
            assert auprc[b, k] == pytest.approx(average_precision_score(yy, score[rows, k]), abs=1e-6)
            checked += 1
    assert checked > 140


def test_patient_resampling_draws_whole_patients():
    groups = np.array([5, 5, 5, 9, 2, 2])
    sampler = BootstrapSampler(6, 30, seed=1, groups=groups)
    w = sampler.weights(dtype=np.float64)
    for b in range(30):
        idx = sampler.indices(b)
        np.testing.assert_array_equal(np.bincount(idx, minlength=6), w[:, b])
        assert w[0, b] == w[1, b] == w[2, b] and w[4, b] == w[5, b]  # rows of a patient move together
        assert np.isin(groups[idx], groups).all() and (w[:, b] > 0).sum() >= 1


def test_resamples_do_not_depend_on_chunking():
    rng = np.random.default_rng(2)
    y, score, mask = _tied_data(rng, 120)
    a1, p1, _ = bootstrap_auroc_auprc(y, score, mask, n_bootstrap=25, seed=3)
    a2, p2, _ = bootstrap_auroc_auprc(y, score, mask, n_bootstrap=25, seed=3, max_weight_floats=120 * 4, n_jobs=2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)
    a3, _, _ = bootstrap_auroc_auprc(y, score, mask, n_bootstrap=25, seed=4)
    assert not np.allclose(a1, a3, equal_nan=True)


def test_weighted_auroc_equals_sklearn_sample_weight():
    rng = np.random.default_rng(3)
    y, score, mask = _tied_data(rng, 150)
    w = rng.random((5, 150)) * 3
    auroc, auprc = weighted_auroc_auprc(y, score, w, label_mask=mask)
    for b in range(5):
        for k in range(4):
            m = mask[:, k]
            assert auroc[b, k] == pytest.approx(roc_auc_score(y[m, k], score[m, k], sample_weight=w[b, m]), abs=1e-12)
            assert auprc[b, k] == pytest.approx(
                average_precision_score(y[m, k], score[m, k], sample_weight=w[b, m]), abs=1e-12
            )


def test_auroc_ci_covers_the_true_value_92_to_98_percent():
    # 300 seeded repetitions of a binormal task with known AUROC = Phi(d / sqrt 2) = 0.8
    d = np.sqrt(2) * norm.ppf(0.8)
    covered, widths = [], []
    for rep in range(300):
        rng = np.random.default_rng(1000 + rep)
        y = np.r_[np.ones(60, bool), np.zeros(90, bool)]
        score = rng.normal(size=150) + d * y
        auroc, _, _ = bootstrap_auroc_auprc(y, score, n_bootstrap=400, seed=rep, need_ap=False)
        lo, hi, _ = percentile_interval(auroc, 0.95)
        covered.append(lo[0] <= 0.8 <= hi[0])
        widths.append(hi[0] - lo[0])
    coverage = np.mean(covered)
    assert 0.92 <= coverage <= 0.98, coverage
    assert 0.1 < np.mean(widths) < 0.2  # not trivially wide


def _survival_data(rng, n):
    t = np.round(rng.exponential(3.0, n), 0) + 1.0  # integer years: many tied times
    e = rng.random(n) < 0.6
    r = np.round(rng.normal(size=n), 0)  # tied risks
    return t, e, r


def test_weighted_concordance_equals_lifelines_on_resamples():
    lifelines = pytest.importorskip("lifelines.utils")
    rng = np.random.default_rng(4)
    for n in (9, 120):
        t, e, r = _survival_data(rng, n)
        sampler = BootstrapSampler(n, 30, seed=n)
        num, den = weighted_concordance(t, e, r, sampler.weights(dtype=np.float64))
        for b in range(30):
            idx = sampler.indices(b)
            try:
                ref = lifelines.concordance_index(t[idx], -r[idx], e[idx])  # lifelines: higher = longer survival
            except ZeroDivisionError:
                assert den[b] == 0
                continue
            assert num[b] / den[b] == pytest.approx(ref, abs=1e-12)


def test_weighted_uno_concordance_equals_sksurv_with_full_cohort_censoring():
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    from anyecg_hf.evaluation.survival import _Cohort

    rng = np.random.default_rng(5)
    t, e, r = _survival_data(rng, 150)
    tau = 5.0
    cohort = _Cohort(t, e, tau=tau)
    sampler = BootstrapSampler(150, 20, seed=0)
    num, den = weighted_concordance(t, e, r, sampler.weights(dtype=np.float64), event_weight=cohort.w_t**2, tmax=tau)
    y = Surv.from_arrays(e, t)
    for b in range(20):
        idx = sampler.indices(b)
        ref = sksurv_metrics.concordance_index_ipcw(y, y[idx], r[idx], tau=tau, tied_tol=0)[0]
        assert num[b] / den[b] == pytest.approx(ref, abs=1e-6)  # torchsurv's censoring weights are float32


def test_percentile_interval_needs_enough_defined_resamples():
    samples = np.array([[0.6, np.nan], [0.7, np.nan], [0.8, 0.9], [0.9, np.nan]])
    lo, hi, n_valid = percentile_interval(samples, 0.5)
    np.testing.assert_array_equal(n_valid, [4, 1])
    assert lo[0] == pytest.approx(np.quantile([0.6, 0.7, 0.8, 0.9], 0.25))
    assert np.isnan(lo[1]) and np.isnan(hi[1])
