"""The Breslow estimator of the Cox baseline cumulative hazard, its time grid, and absolute risks from it."""

from __future__ import annotations

import math

import numpy as np
import torch

from .survival import interpolate_on_grid, prepare_survival_targets


def breslow_cumulative_hazard(risk_scores, event_times, events, times) -> np.ndarray:
    r"""Breslow estimate of the baseline cumulative hazard of a Cox model, evaluated at `times`.

    .. math:: \hat H_0(t) = \sum_{\xi_k \le t} \frac{d_k}{\sum_{j : t_j \ge \xi_k} e^{\eta_j}}

    with :math:`\xi_k` the distinct event times and :math:`d_k` the number of events at :math:`\xi_k`
    (:math:`\hat H_0` belongs to :math:`\eta = 0`). Computed in float64 with scores shifted by their maximum.

    Args:
        risk_scores (array-like of shape `(n,)`): log relative hazards :math:`\eta`.
        event_times (array-like of shape `(n,)`): years.
        events (array-like of shape `(n,)`): 1 = event, 0 = censored.
        times (array-like of shape `(g,)`): where to evaluate :math:`\hat H_0`.

    Returns:
        `np.ndarray` of shape `(g,)`, non-decreasing in `times` (zero when there is no event).
    """
    eta = np.asarray(risk_scores, dtype=np.float64).reshape(-1)
    t = np.asarray(event_times, dtype=np.float64).reshape(-1)
    e = np.asarray(events, dtype=np.float64).reshape(-1) > 0
    grid = np.asarray(times, dtype=np.float64).reshape(-1)
    if not (eta.shape == t.shape == e.shape):
        raise ValueError(f"risk_scores {eta.shape}, event_times {t.shape} and events {e.shape} must have one value per person.")
    if eta.size == 0 or not e.any():
        return np.zeros_like(grid)
    if not (np.isfinite(eta).all() and np.isfinite(t).all()):
        raise ValueError("breslow_cumulative_hazard: risk_scores and event_times must be finite.")
    shift = eta.max()
    w = np.exp(eta - shift)
    order = np.argsort(t, kind="stable")
    t_sorted, w_sorted = t[order], w[order]
    at_risk_from = np.cumsum(w_sorted[::-1])[::-1]  # sum of w over t_j >= t_sorted[i]
    xi, d = np.unique(t[e], return_counts=True)
    first = np.searchsorted(t_sorted, xi, side="left")
    increments = d / at_risk_from[first] * math.exp(-shift)
    cum = np.concatenate([[0.0], np.cumsum(increments)])
    return cum[np.searchsorted(xi, grid, side="right")]


def baseline_time_grid(horizons, size: int, max_time: float | None = None) -> np.ndarray:
    """Sorted grid of `size` points on `[0, max(max_time, horizons)]` that contains every horizon exactly."""
    horizons = np.asarray(sorted(float(h) for h in horizons), dtype=np.float64)
    end = float(max(horizons.max(initial=0.0), max_time or 0.0))
    if end <= 0:
        raise ValueError("baseline_time_grid needs a positive horizon or max_time.")
    if size < horizons.size + 2:
        raise ValueError(f"grid size {size} is too small for {horizons.size} horizons.")
    base = np.linspace(0.0, end, size - horizons.size)
    return np.sort(np.concatenate([base, horizons]))


def breslow_baseline(risk_scores, event_times, events, mask, grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-condition Breslow baseline on `grid`.

    Args:
        risk_scores, event_times, events, mask: `(n, n_risk)` arrays (or `(n,)` times/events shared by every
            condition); masked people are left out of that condition's estimate.
        grid (`(g,)`): time points (years).

    Returns:
        `(cumulative_hazard (n_risk, g), fitted (n_risk,) bool, n_events (n_risk,) int)`: a condition with nobody at
        risk is not fitted (its row is 0 and `fitted` False).
    """
    scores = torch.as_tensor(np.asarray(risk_scores, dtype=np.float64))
    if scores.dim() != 2:
        raise ValueError(f"risk_scores must be (n, n_risk), got shape {tuple(scores.shape)}.")
    times, ev, keep = prepare_survival_targets(scores, event_times, events, mask)
    scores, times, ev, keep = scores.numpy(), times.numpy(), ev.numpy(), keep.numpy()
    n_risk = scores.shape[1]
    grid = np.asarray(grid, dtype=np.float64)
    cum = np.zeros((n_risk, grid.size))
    fitted = np.zeros(n_risk, dtype=bool)
    n_events = np.zeros(n_risk, dtype=np.int64)
    for c in range(n_risk):
        sel = keep[:, c]
        if not sel.any():
            continue
        fitted[c] = True
        n_events[c] = int(ev[sel, c].sum())
        cum[c] = breslow_cumulative_hazard(scores[sel, c], times[sel, c], ev[sel, c], grid)
    return cum, fitted, n_events


def cox_cumulative_incidence(risk_scores: torch.Tensor, grid: torch.Tensor, baseline: torch.Tensor, horizons) -> torch.Tensor:
    r"""Absolute risk of a Cox model: :math:`F(t\mid x) = 1 - \exp(-\hat H_0(t)\, e^{\eta(x)})`.

    Args:
        risk_scores (`(batch, n_risk)`): :math:`\eta`.
        grid (`(g,)`), baseline (`(n_risk, g)`): the stored Breslow baseline cumulative hazard.
        horizons: years; interpolated linearly between grid points (exact at grid points), NaN beyond the grid.

    Returns:
        `(batch, n_risk, n_horizons)`, non-decreasing in time and within [0, 1].
    """
    h = torch.as_tensor(horizons, dtype=torch.float64, device=risk_scores.device)
    h0 = interpolate_on_grid(grid.to(torch.float64), baseline.to(torch.float64), h)  # (n_risk, n_h)
    eta = risk_scores.to(torch.float64)[..., None]
    log_h0 = torch.log(h0.clamp_min(0))  # -inf where H0 = 0 -> incidence exactly 0
    cum_hazard = torch.exp((log_h0[None] + eta).clamp(max=700.0))
    return (-torch.expm1(-cum_hazard)).to(risk_scores.dtype)
