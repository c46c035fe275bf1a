"""evaluate_risk: C-indices, time-dependent AUROC, Brier/IBS against lifelines and scikit-survival, bootstrap
replicates on the same resamples, calibration and Kaplan-Meier curves, undefined conditions and bad input."""

import numpy as np
import pytest

from anyecg_hf.evaluation import evaluate_risk
from anyecg_hf.evaluation.bootstrap import BootstrapSampler
from anyecg_hf.evaluation.survival import (
    _bootstrap_vectorised,
    _Cohort,
    brier_scores,
    harrell_c,
    time_dependent_auc,
    uno_c,
)

lifelines_utils = pytest.importorskip("lifelines.utils")
sksurv_metrics = pytest.importorskip("sksurv.metrics")
from sksurv.util import Surv  # noqa: E402

HORIZONS = np.array([1.0, 3.0, 6.0])


def cohort(seed, n=300, decimals=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_event = rng.exponential(6.0 * np.exp(-x))
    t_cens = rng.uniform(0.5, 10.0, n)
    events = t_event <= t_cens
    times = np.round(np.minimum(t_event, t_cens), decimals) + 0.1  # rounding: tied times
    risk = np.round(x + 0.7 * rng.normal(size=n), decimals)  # tied risks
    surv = np.exp(-np.outer(np.exp(risk) / 6.0, HORIZONS))
    return times, events, risk, surv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harrell_c_equals_lifelines_with_negated_risk(seed):
    times, events, risk, _ = cohort(seed, n=150 + 50 * seed, decimals=0)
    expected = lifelines_utils.concordance_index(times, -risk, events)
    assert harrell_c(times, events, risk) == pytest.approx(expected, abs=1e-12)
    rep = evaluate_risk(times, events, risk, horizons=HORIZONS, n_bootstrap=0)
    assert rep.table.loc[0, "harrell_c"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("train", [False, True])
def test_uno_auc_brier_ibs_equal_sksurv(train):
    times, events, risk, surv = cohort(3)
    y = Surv.from_arrays(events, times)
    if train:
        tr, te = slice(0, 180), slice(180, None)
        y_train, kw = y[tr], dict(train_times=times[tr], train_events=events[tr])
    else:
        tr = te = slice(None)
        y_train, kw = y, {}
    t, e, r, s = times[te], events[te], risk[te], surv[te]
    y_test = y[te]
    assert uno_c(t, e, r, 5.0, **kw) == pytest.approx(
        sksurv_metrics.concordance_index_ipcw(y_train, y_test, r, tau=5.0, tied_tol=0)[0], abs=1e-6)
    np.testing.assert_allclose(time_dependent_auc(t, e, 1 - s, HORIZONS, **kw),
                               sksurv_metrics.cumulative_dynamic_auc(y_train, y_test, 1 - s, HORIZONS, tied_tol=0)[0],
                               atol=1e-6)
    np.testing.assert_allclose(time_dependent_auc(t, e, r, HORIZONS, **kw),
                               sksurv_metrics.cumulative_dynamic_auc(y_train, y_test, r, HORIZONS, tied_tol=0)[0],
                               atol=1e-6)
    bs, ibs = brier_scores(t, e, s, HORIZONS, **kw)
    np.testing.assert_allclose(bs, sksurv_metrics.brier_score(y_train, y_test, s, HORIZONS)[1], atol=1e-6)
    assert ibs == pytest.approx(sksurv_metrics.integrated_brier_score(y_train, y_test, s, HORIZONS), abs=1e-6)
    # and through the report, with the training cohort's censoring
    tr_kw = {} if not train else dict(train_times=times[tr], train_events=events[tr])
    rep = evaluate_risk(t, e, r, 1 - s, horizons=HORIZONS, tau=5.0, n_bootstrap=0, **tr_kw)
    row = rep.table.iloc[0]
    assert row["uno_c"] == pytest.approx(uno_c(t, e, r, 5.0, **kw), abs=1e-12)
    assert row["brier_3y"] == pytest.approx(bs[1], abs=1e-12) and row["ibs"] == pytest.approx(ibs, abs=1e-12)
    assert rep.settings["ipcw_source"] == ("training cohort" if train else "evaluation cohort")


def test_bootstrap_replicates_equal_libraries_on_the_same_resamples():
    times, events, risk, surv = cohort(4, n=200)
    c = _Cohort(times, events, HORIZONS, tau=5.0)
    boot = _bootstrap_vectorised(c, risk, 1 - surv, 15, seed=9, groups=None)
    sampler = BootstrapSampler(200, 15, seed=9)
    y = Surv.from_arrays(events, times)
    for b in range(15):
        i = sampler.indices(b)
        assert boot["harrell_c"][b] == pytest.approx(lifelines_utils.concordance_index(times[i], -risk[i], events[i]),
                                                     abs=1e-12)
        # censoring weights fixed at the full cohort = scikit-survival with survival_train = full cohort
        assert boot["uno_c"][b] == pytest.approx(
            sksurv_metrics.concordance_index_ipcw(y, y[i], risk[i], tau=5.0, tied_tol=0)[0], abs=1e-6)
        np.testing.assert_allclose(
            boot["auc"][b], sksurv_metrics.cumulative_dynamic_auc(y, y[i], 1 - surv[i], HORIZONS, tied_tol=0)[0],
            atol=1e-6)
        np.testing.assert_allclose(boot["brier"][b], sksurv_metrics.brier_score(y, y[i], surv[i], HORIZONS)[1],
                                   atol=1e-6)
        assert boot["ibs"][b] == pytest.approx(sksurv_metrics.integrated_brier_score(y, y[i], surv[i], HORIZONS),
                                               abs=1e-6)


def test_report_intervals_undefined_conditions_and_masks():
    times, events, risk, surv = cohort(5, n=240)
    rng = np.random.default_rng(5)
    mask = np.ones((240, 3), bool)
    mask[:, 1] = rng.random(240) < 0.7  # at-risk subset for condition 1
    T = np.c_[times, times, times]
    E = np.c_[events, events, np.zeros(240)]  # condition 2: no events
    R = np.c_[risk, risk, risk]
    inc = np.stack([1 - surv] * 3, axis=1)
    rep = evaluate_risk(T, E, R, inc, horizons=HORIZONS, label_space=["MI", "HF", "Stroke"], at_risk_mask=mask,
                        n_bootstrap=200, seed=0)
    t = rep.table
    m = mask[:, 1]
    assert t.loc[1, "harrell_c"] == pytest.approx(lifelines_utils.concordance_index(times[m], -risk[m], events[m]))
    assert t.loc[1, "n"] == m.sum()
    assert list(t["defined"]) == [True, True, False] and t.loc[2, "undefined_reason"] == "no events"
    assert t.loc[2, ["harrell_c", "uno_c", "auc_1y", "brier_1y", "ibs"]].isna().all()
    for col in ("harrell_c", "uno_c", "auc_3y", "brier_3y", "ibs"):
        assert t.loc[0, f"{col}_ci_low"] < t.loc[0, col] < t.loc[0, f"{col}_ci_high"], col
    assert "undefined (no events)" in rep.to_markdown()
    assert rep.summary["n_defined"] == 2


def test_horizon_beyond_follow_up_is_undefined():
    times, events, risk, surv = cohort(6, n=120)
    times = np.minimum(times, 7.0)
    h = np.array([1.0, 3.0, 20.0])
    rep = evaluate_risk(times, events, risk, np.c_[1 - surv[:, :2], np.full(120, 0.9)], horizons=h, n_bootstrap=20)
    row = rep.table.iloc[0]
    assert np.isfinite(row["auc_3y"]) and np.isnan(row["auc_20y"]) and np.isnan(row["brier_20y"])
    assert row["tau"] == pytest.approx(times.max())  # tau (20 y) clipped to the follow-up


def test_recompute_and_vectorised_harrell_intervals_agree():
    times, events, risk, _ = cohort(7, n=80)
    kw = dict(horizons=HORIZONS, n_bootstrap=12, seed=3)
    fast = evaluate_risk(times, events, risk, **kw).table.iloc[0]
    slow = evaluate_risk(times, events, risk, ci_method="recompute", **kw).table.iloc[0]
    # Harrell's C does not use censoring weights: identical resamples give identical intervals
    assert fast["harrell_c_ci_low"] == pytest.approx(slow["harrell_c_ci_low"], abs=1e-12)
    assert fast["harrell_c_ci_high"] == pytest.approx(slow["harrell_c_ci_high"], abs=1e-12)


def test_calibration_and_km_match_lifelines():
    from lifelines import KaplanMeierFitter

    times, events, risk, surv = cohort(8, n=300)
    inc = 1 - surv
    rep = evaluate_risk(times, events, risk, inc, horizons=HORIZONS, n_bootstrap=0, n_calibration_groups=5)
    cal = rep.calibration[rep.calibration["horizon"] == 3.0].reset_index(drop=True)
    order = np.argsort(inc[:, 1], kind="stable")
    for g, idx in enumerate(np.array_split(order, 5)):
        km = KaplanMeierFitter().fit(times[idx], events[idx])
        assert cal.loc[g, "observed"] == pytest.approx(1 - km.predict(3.0), abs=1e-6)
        assert cal.loc[g, "mean_predicted"] == pytest.approx(inc[idx, 1].mean())
    km_all = KaplanMeierFitter().fit(times, events)
    assert rep.table.loc[0, "observed_3y"] == pytest.approx(1 - km_all.predict(3.0), abs=1e-6)
    assert rep.table.loc[0, "oe_ratio_3y"] == pytest.approx((1 - km_all.predict(3.0)) / inc[:, 1].mean(), abs=1e-6)
    # Kaplan-Meier curve of the highest predicted-risk quartile
    q4 = np.array_split(np.argsort(risk, kind="stable"), 4)[3]
    curve = rep.km[(rep.km["quartile"] == 4)]
    ref = KaplanMeierFitter().fit(times[q4], events[q4])
    for tt, ci in zip(curve["time"].iloc[1:20], curve["cumulative_incidence"].iloc[1:20]):
        assert ci == pytest.approx(1 - ref.predict(tt), abs=1e-6)


def test_bad_survival_input():
    times, events, risk, surv = cohort(9, n=50)
    bad = times.copy()
    bad[4] = 0.0
    with pytest.raises(ValueError, match="<= 0"):
        evaluate_risk(bad, events, risk, n_bootstrap=0)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_risk(times, events, np.where(np.arange(50) == 3, np.nan, risk), n_bootstrap=0)
    with pytest.raises(ValueError, match="rows"):
        evaluate_risk(times[:40], events, risk, n_bootstrap=0)
    with pytest.raises(ValueError, match="0/1"):
        evaluate_risk(times, events * 2.0, risk, n_bootstrap=0)
    with pytest.raises(ValueError, match="horizons"):
        evaluate_risk(times, events, risk, horizons=[5, 1], n_bootstrap=0)
    with pytest.raises(ValueError, match="cumulative_incidence"):
        evaluate_risk(times, events, risk, np.full((50, 3), 1.5), horizons=HORIZONS, n_bootstrap=0)
    with pytest.raises(ValueError, match="both train_times and train_events"):
        evaluate_risk(times, events, risk, train_times=times, n_bootstrap=0)


def test_risk_report_exports(tmp_path):
    times, events, risk, surv = cohort(10, n=200)
    rep = evaluate_risk(times, events, risk, 1 - surv, horizons=HORIZONS, n_bootstrap=50)
    for name, fn in (("c.png", rep.plot), ("km.png", rep.plot_km), ("cal.png", rep.plot_calibration)):
        path = fn(tmp_path / name)
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
    assert rep.to_csv(tmp_path / "t.csv").exists() and rep.to_csv(tmp_path / "km.csv", which="km").exists()
    assert "Harrell C [CI]" in rep.to_markdown()
