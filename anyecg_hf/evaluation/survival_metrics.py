"""Survival metrics on one condition's cohort, computed by torchsurv (C-indices, time-dependent AUC, Brier scores with
IPCW weights) and the Kaplan-Meier curves, calibration tables and risk-quartile curves of the risk report."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from scipy.integrate import trapezoid  # numpy.trapezoid is numpy >= 2; the declared floor is 1.24



class _TimeScale:
    """Order-preserving map of times onto small exact integers (odd ranks on the grid of all given values)."""

    def __init__(self, *arrays):
        values = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays if a is not None])
        self.grid = np.unique(values[np.isfinite(values)])
        if len(self.grid) >= 2**23:
            raise ValueError("More than 8 million distinct times: round them (e.g. to days) first.")

    def __call__(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        i = np.searchsorted(self.grid, t, side="left")
        hit = (i < len(self.grid)) & (self.grid[np.minimum(i, len(self.grid) - 1)] == t)
        return (2 * i + hit).astype(np.float64)

    def to_time(self, rank) -> np.ndarray:
        rank = np.asarray(rank, dtype=np.float64)
        return self.grid[np.clip(((rank - 1) // 2).astype(np.int64), 0, len(self.grid) - 1)]


def _t(x, dtype=torch.float64):
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _ipcw(cens_events, cens_times_rank, at_rank) -> np.ndarray:
    """1 / G(t) from the Kaplan-Meier censoring distribution of (cens_events, cens_times); 0 where G(t) = 0."""
    from torchsurv.stats.ipcw import get_ipcw

    w = _quiet(get_ipcw, _t(cens_events, torch.bool), _t(cens_times_rank), _t(np.atleast_1d(at_rank)))
    return w.double().numpy()


class _Cohort:
    """One condition's follow-up on the exact rank scale, with its censoring weights.

    Args:
        times, events (arrays `(n,)`): evaluation cohort.
        horizons (sequence of `float`): years.
        tau (`float`, *optional*): Uno's truncation time.
        train_times, train_events (arrays, *optional*): cohort whose censoring distribution gives the IPCW.
    """

    def __init__(self, times, events, horizons=(), tau=None, train_times=None, train_events=None):
        self.t = np.asarray(times, dtype=np.float64).reshape(-1)
        self.e = np.asarray(events).astype(bool).reshape(-1)
        self.horizons = np.asarray(horizons, dtype=np.float64).reshape(-1)
        self.tau = None if tau is None else float(tau)
        extra = [self.horizons] + ([] if tau is None else [[tau]])
        self.scale = _TimeScale(self.t, train_times, *extra)
        self.tr, self.hr = self.scale(self.t), self.scale(self.horizons)
        self.tau_r = None if tau is None else float(self.scale([tau])[0])
        if train_times is None:
            cens_e, cens_t = self.e, self.tr
        else:
            cens_e, cens_t = np.asarray(train_events).astype(bool).reshape(-1), self.scale(train_times)
        self.has_ipcw = bool(cens_e.any())  # torchsurv's Kaplan-Meier needs at least one event
        H = len(self.horizons)
        self.w_t = _ipcw(cens_e, cens_t, self.tr) if self.has_ipcw else np.zeros(len(self.t))
        self.w_h = _ipcw(cens_e, cens_t, self.hr) if self.has_ipcw and H else np.zeros(H)

    def auc_usable(self) -> np.ndarray:
        """Horizons with a case (event at or before), a control (time after) and a positive censoring survival."""
        return np.array([bool((self.e & (self.t <= h)).any() and (self.t > h).any() and w > 0)
                         for h, w in zip(self.horizons, self.w_h)], dtype=bool)

    def brier_usable(self) -> np.ndarray:
        return np.array([bool((self.t > h).any() and w > 0) for h, w in zip(self.horizons, self.w_h)], dtype=bool)

    def uno_usable(self) -> bool:
        used = self.e & (self.t < self.tau)
        return bool(self.has_ipcw and used.any() and np.all(self.w_t[used] > 0))

    # -------------------------------------------------------------- point estimates (torchsurv)
    def harrell(self, risk) -> float:
        from torchsurv.metrics.cindex import ConcordanceIndex

        if not self.e.any():
            return np.nan
        try:
            return float(_quiet(ConcordanceIndex(tied_tol=0.0), _t(risk), _t(self.e, torch.bool), _t(self.tr)))
        except ValueError:  # no comparable pair
            return np.nan

    def uno(self, risk) -> float:
        from torchsurv.metrics.cindex import ConcordanceIndex

        if not self.uno_usable():
            return np.nan
        try:
            c = float(_quiet(ConcordanceIndex(tied_tol=0.0), _t(risk), _t(self.e, torch.bool), _t(self.tr),
                             weight=_t(self.w_t), tmax=torch.tensor(self.tau_r, dtype=torch.float64)))
        except ValueError:
            return np.nan
        return c if np.isfinite(c) else np.nan

    def auc(self, marker) -> np.ndarray:
        from torchsurv.metrics.auc import Auc

        out = np.full(len(self.horizons), np.nan)
        ok = self.auc_usable()
        if not ok.any():
            return out
        marker = np.asarray(marker, dtype=np.float64)
        est = marker if marker.ndim == 1 else marker[:, ok]
        val = _quiet(Auc(tied_tol=0.0), _t(est), _t(self.e, torch.bool), _t(self.tr), auc_type="cumulative",
                     weight=_t(self.w_t), new_time=_t(self.hr[ok]), weight_new_time=_t(self.w_h[ok]))
        out[ok] = val.double().numpy()
        return out

    def brier(self, survival):
        from torchsurv.metrics.brier_score import BrierScore

        H = len(self.horizons)
        out = np.full(H, np.nan)
        ok = self.brier_usable()
        if not ok.any() or not self.e.any():
            return out, np.nan
        survival = np.asarray(survival, dtype=np.float64).reshape(len(self.t), H)
        val = _quiet(BrierScore(), _t(survival[:, ok]), _t(self.e, torch.bool), _t(self.tr), new_time=_t(self.hr[ok]),
                     weight=_t(self.w_t), weight_new_time=_t(self.w_h[ok]))
        out[ok] = val.double().numpy()
        return out, self.integrate(out)

    def integrate(self, brier) -> float:
        """Trapezoidal integral of the Brier scores over the usable horizons divided by their range."""
        ok = np.isfinite(brier)
        if ok.sum() < 2:
            return np.nan
        h = self.horizons[ok]
        return float(trapezoid(brier[ok], h) / (h[-1] - h[0]))

    # -------------------------------------------------------------- per-person terms for the bootstrap
    def brier_terms(self, survival) -> np.ndarray:
        """Each person's IPCW Brier loss at each horizon, `(n, H)`: the Brier score is its mean."""
        S = np.asarray(survival, dtype=np.float64).reshape(len(self.t), len(self.horizons))
        case = self.e[:, None] & (self.t[:, None] <= self.horizons[None, :])
        alive = self.t[:, None] > self.horizons[None, :]
        return case * S**2 * self.w_t[:, None] + alive * (1.0 - S) ** 2 * self.w_h[None, :]


def harrell_c(times, events, risk) -> float:
    """Harrell's C-index (torchsurv, exact risk ties); `NaN` without a comparable pair."""
    return _Cohort(times, events).harrell(risk)


def uno_c(times, events, risk, tau: float, train_times=None, train_events=None) -> float:
    """Uno's C-index truncated at `tau` years (torchsurv with IPCW weights :math:`\\hat G(T_i)^{-2}`).

    The censoring distribution comes from `train_times` / `train_events` when given, else from the evaluation
    data. `NaN` when undefined (no event before tau, or a censoring survival of 0 at an event time before tau).
    """
    return _Cohort(times, events, tau=tau, train_times=train_times, train_events=train_events).uno(risk)


def time_dependent_auc(times, events, marker, horizons, train_times=None, train_events=None) -> np.ndarray:
    """Cumulative/dynamic AUROC with IPCW at each horizon (torchsurv `Auc`); `NaN` for unusable horizons.

    Args:
        times, events (arrays `(n,)`): follow-up in years and event indicators.
        marker (array `(n,)` or `(n, H)`): risk score, or predicted cumulative incidence at each horizon.
        horizons (sequence of `float`): years.
        train_times, train_events (arrays, *optional*): cohort whose censoring distribution gives the IPCW.
    """
    return _Cohort(times, events, horizons, train_times=train_times, train_events=train_events).auc(marker)


def brier_scores(times, events, survival, horizons, train_times=None, train_events=None):
    """IPCW Brier score at each horizon (torchsurv `BrierScore`) and the integrated Brier score.

    Args:
        survival (array `(n, H)`): predicted :math:`S(h_j \\mid x_i)`, i.e. 1 - cumulative incidence.

    Returns:
        `(brier (H,), ibs)`: `NaN` for unusable horizons; the IBS integrates over the usable horizons (`NaN` with
        fewer than two).
    """
    return _Cohort(times, events, horizons, train_times=train_times, train_events=train_events).brier(survival)


def _km_at(times, events, horizon) -> float:
    """Kaplan-Meier survival at `horizon` (torchsurv); 1.0 when there is no event (torchsurv refuses that case)."""
    from torchsurv.stats.kaplan_meier import KaplanMeierEstimator

    events = np.asarray(events).astype(bool)
    if not events.any():
        return 1.0
    scale = _TimeScale(times, [horizon])
    km = KaplanMeierEstimator()
    _quiet(km, _t(events, torch.bool), _t(scale(times)))
    return float(km.predict(_t(scale([horizon]))).double().numpy()[0])


def _km_curve(times, events):
    """(time in years, survival, number at risk) of the Kaplan-Meier estimate (torchsurv), starting at (0, 1)."""
    from torchsurv.stats.kaplan_meier import KaplanMeierEstimator

    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events).astype(bool)
    sorted_t = np.sort(times)
    if not events.any():
        grid = np.unique(times)
        surv = np.ones(len(grid))
    else:
        scale = _TimeScale(times)
        km = KaplanMeierEstimator()
        _quiet(km, _t(events, torch.bool), _t(scale(times)))
        grid = scale.to_time(km.time.double().numpy())
        surv = km.km_est.double().numpy()
    at_risk = len(times) - np.searchsorted(sorted_t, grid, side="left")
    return np.concatenate([[0.0], grid]), np.concatenate([[1.0], surv]), np.concatenate([[len(times)], at_risk])


def _calibration(t, e, pred, horizon, n_groups):
    """Predicted vs Kaplan-Meier observed cumulative incidence per equal-size predicted-risk group."""
    n_groups = max(1, min(n_groups, len(t)))
    order = np.argsort(pred, kind="stable")
    rows = []
    for g, idx in enumerate(np.array_split(order, n_groups)):
        obs = 1.0 - _km_at(t[idx], e[idx], horizon)
        rows.append(dict(group=g + 1, n=len(idx), n_events=int(e[idx].sum()), mean_predicted=float(pred[idx].mean()),
                         observed=obs, followed_to_horizon=bool((t[idx] >= horizon).any())))
    cal = pd.DataFrame(rows)
    observed = 1.0 - _km_at(t, e, horizon)
    predicted = float(pred.mean())
    summ = dict(
        observed=observed,
        predicted=predicted,
        oe_ratio=observed / predicted if predicted > 0 else np.nan,
        calibration_error=float(np.sum(cal["n"] * np.abs(cal["mean_predicted"] - cal["observed"])) / cal["n"].sum()),
    )
    return cal, summ


def _km_by_quartile(t, e, r, cid, n_groups: int = 4):
    order = np.argsort(r, kind="stable")
    frames = []
    for q, idx in enumerate(np.array_split(order, min(n_groups, len(t)))):
        if len(idx) == 0:
            continue
        time, surv, at_risk = _km_curve(t[idx], e[idx])
        frames.append(pd.DataFrame(dict(id=cid, quartile=q + 1, time=time, cumulative_incidence=1.0 - surv,
                                        n_at_risk=at_risk)))
    return pd.concat(frames, ignore_index=True)
