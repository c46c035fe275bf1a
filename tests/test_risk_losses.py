"""Survival losses and estimators against independent computations."""

import math

import numpy as np
import pytest
import torch

from anyecg_hf.modeling.breslow import (
    baseline_time_grid,
    breslow_baseline,
    breslow_cumulative_hazard,
    cox_cumulative_incidence,
)
from anyecg_hf.modeling.survival import (
    cox_partial_likelihood_loss,
    discrete_time_cumulative_incidence,
    discrete_time_nll,
    interpolate_on_grid,
)


def efron_neg_log_likelihood(eta, t, e):
    """Hand-written Efron negative partial log-likelihood (sum over event times), float64 loops."""
    eta, t, e = (np.asarray(v, dtype=np.float64) for v in (eta, t, e))
    ll = 0.0
    for tk in np.unique(t[e == 1]):
        dead = (t == tk) & (e == 1)
        at_risk = t >= tk
        d = int(dead.sum())
        s_risk, s_dead = np.exp(eta[at_risk]).sum(), np.exp(eta[dead]).sum()
        ll += eta[dead].sum() - sum(math.log(s_risk - r / d * s_dead) for r in range(d))
    return -ll


# 10 people, 3 conditions; ties among events and between an event and a censoring time.
TIMES = np.array([
    [1.0, 2.0, 0.5], [2.0, 2.0, 1.5], [2.0, 3.0, 1.5], [3.0, 3.0, 2.0], [3.0, 1.0, 2.5],
    [4.0, 4.0, 3.0], [4.0, 4.0, 3.5], [5.0, 5.0, 4.0], [5.0, 2.0, 4.5], [6.0, 6.0, 5.0],
])
EVENTS = np.array([
    [1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0],
    [1, 1, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0],
], dtype=float)
MASK = np.ones_like(TIMES)
MASK[[0, 7], 1] = 0  # two prevalent cases of condition 1 are not at risk
MASK[:, 2] = 1  # condition 2: at risk but no event -> contributes nothing


def reference_loss(eta, times, events, mask):
    """Mean over events within each condition, then mean over conditions with >= 1 event."""
    per_condition = []
    for c in range(eta.shape[1]):
        keep = mask[:, c] > 0
        n_events = events[keep, c].sum()
        if n_events == 0:
            continue
        per_condition.append(efron_neg_log_likelihood(eta[keep, c], times[keep, c], events[keep, c]) / n_events)
    return float(np.mean(per_condition))


@pytest.mark.parametrize("implementation", ["vectorized", "torchsurv"])
def test_cox_loss_equals_hand_written_efron(implementation):
    rng = np.random.default_rng(1)
    eta = rng.normal(0, 0.8, size=TIMES.shape)
    args = (torch.tensor(eta), torch.tensor(TIMES), torch.tensor(EVENTS), torch.tensor(MASK))
    loss = cox_partial_likelihood_loss(*args, implementation=implementation)
    expected = reference_loss(eta, TIMES, EVENTS, MASK)
    assert abs(loss.item() - expected) < 1e-6, (loss.item(), expected)
    # float32 scores as a model gives them
    loss32 = cox_partial_likelihood_loss(args[0].float(), *args[1:], implementation=implementation)
    assert loss32.dtype == torch.float32 and abs(loss32.item() - reference_loss(eta.astype(np.float32), TIMES, EVENTS, MASK)) < 1e-6
    # the ties really are handled by Efron (Breslow's approximation gives a different value)
    breslow = cox_partial_likelihood_loss(*args, ties_method="breslow", implementation=implementation)
    assert abs(breslow.item() - expected) > 1e-3


def test_cox_vectorized_equals_torchsurv_values_and_gradients():
    rng = np.random.default_rng(8)
    b, k = 60, 7
    times = np.round(rng.exponential(4.0, size=(b, k)), 0)  # heavy ties, including events tied with censorings
    events = (rng.uniform(size=(b, k)) < 0.5).astype(float)
    mask = (rng.uniform(size=(b, k)) < 0.8).astype(float)
    mask[:, 5] = 0  # all masked
    mask[:, 6] = 0
    mask[3, 6], events[3, 6] = 1, 1  # a single person, with the event
    times[rng.uniform(size=(b, k)) < 0.05] = np.nan  # unknown follow-up
    eta_np = rng.normal(0, 2, size=(b, k))
    grads, values = [], []
    for implementation in ("vectorized", "torchsurv"):
        eta = torch.tensor(eta_np, dtype=torch.float32, requires_grad=True)
        loss = cox_partial_likelihood_loss(eta, times, events, mask, implementation=implementation)
        loss.backward()
        values.append(loss.item())
        grads.append(eta.grad.clone())
    assert abs(values[0] - values[1]) < 1e-6
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert torch.equal(grads[0][:, 5], torch.zeros(b)) and torch.equal(grads[0][:, 6], torch.zeros(b))
    keep = (mask > 0) & np.isfinite(times)
    assert abs(values[0] - reference_loss(eta_np.astype(np.float32), np.nan_to_num(times), events, keep)) < 1e-6


def test_cox_loss_matches_lifelines_efron_log_likelihood():
    from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

    rng = np.random.default_rng(2)
    x = rng.normal(size=TIMES.shape[0])
    beta = 0.7
    t, e = TIMES[:, 0], EVENTS[:, 0]
    order = np.argsort(t, kind="stable")
    # lifelines' Efron log-likelihood at a fixed coefficient (inputs sorted by time, as it requires)
    import pandas as pd

    _, _, loglik = SemiParametricPHFitter()._get_efron_values_single(
        pd.DataFrame({"x": x[order]}), pd.Series(t[order]), pd.Series(e[order].astype(bool)),
        pd.Series(np.ones_like(t)), None, np.array([beta]),
    )
    loss = cox_partial_likelihood_loss(torch.tensor(beta * x)[:, None], torch.tensor(t), torch.tensor(e))
    assert abs(loss.item() - (-loglik / e.sum())) < 1e-6


def test_cox_all_masked_condition_gives_zero_loss_and_gradient():
    rng = np.random.default_rng(3)
    eta = torch.tensor(rng.normal(size=(10, 4)), requires_grad=True)
    times = np.concatenate([TIMES, np.full((10, 1), np.nan)], axis=1)  # NaN placeholders in the masked column
    events = np.concatenate([EVENTS, np.ones((10, 1))], axis=1)
    mask = np.concatenate([MASK, np.zeros((10, 1))], axis=1)
    with torch.no_grad():
        eta[:, 3] = float("nan")  # even NaN scores must not leak
    loss = cox_partial_likelihood_loss(eta, times, events, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert abs(loss.item() - reference_loss(eta.detach().numpy()[:, :3], TIMES, EVENTS, MASK)) < 1e-6
    assert torch.equal(eta.grad[:, 3], torch.zeros(10, dtype=eta.dtype))
    assert torch.isfinite(eta.grad).all() and eta.grad[:, :2].abs().sum() > 0

    # every condition masked: an exact 0 that still back-propagates (zero gradient)
    eta2 = torch.randn(5, 2, requires_grad=True)
    zero = cox_partial_likelihood_loss(eta2, torch.ones(5, 2), torch.ones(5, 2), torch.zeros(5, 2))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(eta2.grad, torch.zeros(5, 2))


def test_cox_loss_single_person_and_validation():
    eta = torch.tensor([[0.3], [1.0]], requires_grad=True)
    loss = cox_partial_likelihood_loss(eta, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), torch.tensor([[1.0], [0.0]]))
    assert loss.item() == 0.0  # log(lambda / lambda)
    with pytest.raises(ValueError, match="event_times must be >= 0"):
        cox_partial_likelihood_loss(eta, torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="expected \\(2, 1\\)"):
        cox_partial_likelihood_loss(eta, torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="events must be 0"):
        cox_partial_likelihood_loss(eta, torch.ones(2), torch.tensor([2.0, 0.0]))


def test_discrete_nll_three_people_by_hand():
    # bins (0,1], (1,2], (2,3]; one condition; hazards h = sigmoid(z)
    z = torch.tensor([[[0.0, 1.0, -1.0]], [[-2.0, 0.5, 0.0]], [[1.0, -1.0, 2.0]]], requires_grad=True)
    times = torch.tensor([1.5, 2.0, 0.7])
    events = torch.tensor([1.0, 0.0, 0.0])
    h = torch.sigmoid(z.detach())[:, 0]
    # person 0: event in (1,2]   -> -log(1-h00) - log(h01)
    # person 1: censored at 2.0  -> survived (0,1] and (1,2]: -log(1-h10) - log(1-h11)
    # person 2: censored at 0.7  -> no interval completed: 0
    by_hand = (-math.log(1 - h[0, 0]) - math.log(h[0, 1]) - math.log(1 - h[1, 0]) - math.log(1 - h[1, 1]) + 0.0) / 3
    loss = discrete_time_nll(z, times, events, None, [0.0, 1.0, 2.0, 3.0])
    assert abs(loss.item() - by_hand) < 1e-6
    loss.backward()
    assert torch.equal(z.grad[2], torch.zeros(1, 3))  # censored before completing a bin: no information
    # event at t = 0 counts in the first bin; an event after the last edge is censored at it
    l0 = discrete_time_nll(z[:1], torch.tensor([0.0]), torch.tensor([1.0]), None, [0.0, 1.0, 2.0, 3.0])
    assert abs(l0.item() + math.log(h[0, 0])) < 1e-6
    late = discrete_time_nll(z[:1], torch.tensor([7.0]), torch.tensor([1.0]), None, [0.0, 1.0, 2.0, 3.0])
    assert abs(late.item() + sum(math.log(1 - h[0, j]) for j in range(3))) < 1e-6


def test_discrete_nll_masks_and_reduction():
    rng = np.random.default_rng(4)
    z = torch.tensor(rng.normal(size=(4, 3, 2)), requires_grad=True)
    times = torch.tensor([[0.5, 1.5, float("nan")], [1.5, 0.2, float("nan")], [2.5, 2.5, float("nan")], [1.0, 1.0, float("nan")]])
    events = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    loss = discrete_time_nll(z, times, events, mask, [0.0, 1.0, 2.0])
    loss.backward()
    assert torch.equal(z.grad[:, 2], torch.zeros(4, 2, dtype=z.dtype))  # NaN times = unknown follow-up
    assert torch.equal(z.grad[1, 1], torch.zeros(2, dtype=z.dtype)) and torch.equal(z.grad[3, 0], torch.zeros(2, dtype=z.dtype))
    # per condition mean over kept people, then mean over conditions with someone kept
    per = []
    for c in range(2):
        vals = []
        for i in range(4):
            if mask[i, c] == 0:
                continue
            zz = z.detach()[i, c]
            ls, lh = torch.nn.functional.logsigmoid(-zz), torch.nn.functional.logsigmoid(zz)
            t, e = float(times[i, c]), float(events[i, c])
            if e == 1 and t <= 2.0:
                k = 0 if t <= 1.0 else 1
                vals.append(-(ls[:k].sum() + lh[k]))
            else:
                vals.append(-ls[: int((np.array([1.0, 2.0]) <= t).sum())].sum())
        per.append(torch.stack(vals).mean())
    assert abs(loss.item() - float(torch.stack(per).mean())) < 1e-10
    zero = discrete_time_nll(z, times, events, torch.zeros(4, 3), [0.0, 1.0, 2.0])
    assert zero.item() == 0.0 and zero.requires_grad


def test_breslow_against_torchsurv_and_loop():
    from torchsurv.loss.cox import baseline_survival_function

    rng = np.random.default_rng(5)
    eta = rng.normal(size=40)
    t = np.round(rng.exponential(3.0, size=40), 1)  # rounding makes ties
    e = rng.uniform(size=40) < 0.7
    grid = np.linspace(0, 12, 61)
    ours = breslow_cumulative_hazard(eta, t, e, grid)
    loop = np.array([sum((t[e] == xi).sum() / np.exp(eta[t >= xi]).sum() for xi in np.unique(t[e]) if xi <= g) for g in grid])
    np.testing.assert_allclose(ours, loop, rtol=1e-12, atol=1e-15)
    ts = baseline_survival_function(torch.tensor(eta, dtype=torch.float32), torch.tensor(e), torch.tensor(t, dtype=torch.float32))
    h_ts = -np.log(ts["baseline_survival"].double().numpy())
    assert len(ts["time"]) == len(np.unique(t))  # evaluate at the float64 times (torchsurv's are float32)
    np.testing.assert_allclose(breslow_cumulative_hazard(eta, t, e, np.unique(t)), h_ts, rtol=2e-4)
    assert np.all(np.diff(ours) >= 0)


def test_breslow_baseline_per_condition_and_grid():
    grid = baseline_time_grid([1, 5, 10], 20)
    assert len(grid) == 20 and {1.0, 5.0, 10.0} <= set(grid) and grid[0] == 0 and grid[-1] == 10
    rng = np.random.default_rng(6)
    scores = rng.normal(size=(10, 3))
    cum, fitted, n_events = breslow_baseline(scores, TIMES, EVENTS, MASK * np.array([1, 1, 0]), grid)
    assert fitted.tolist() == [True, True, False] and n_events.tolist() == [7, 5, 0]
    keep = MASK[:, 1] > 0
    np.testing.assert_array_equal(cum[1], breslow_cumulative_hazard(scores[keep, 1], TIMES[keep, 1], EVENTS[keep, 1], grid))
    assert not cum[2].any()


def test_cumulative_incidence_monotone_and_bounded():
    torch.manual_seed(0)
    z = torch.randn(8, 5, 6) * 3
    edges = [0.0, 0.5, 1.0, 2.0, 5.0, 7.5, 10.0]
    horizons = torch.linspace(0, 10, 41)
    f = discrete_time_cumulative_incidence(z, edges, horizons)
    assert f.shape == (8, 5, 41) and (f >= 0).all() and (f <= 1).all()
    assert (f.diff(dim=-1) >= 0).all() and torch.equal(f[..., 0], torch.zeros(8, 5))
    # exact at the edges: 1 - prod(1 - h)
    f_edges = discrete_time_cumulative_incidence(z, edges, edges[1:])
    expected = 1 - torch.cumprod(1 - torch.sigmoid(z), dim=-1)
    torch.testing.assert_close(f_edges, expected, rtol=1e-5, atol=1e-6)
    assert torch.isnan(discrete_time_cumulative_incidence(z, edges, [11.0])).all()

    grid = torch.tensor(baseline_time_grid([1, 5, 10], 30))
    base = torch.tensor(np.cumsum(np.random.default_rng(7).uniform(0, 0.1, size=(5, 30)), axis=1))
    scores = torch.randn(8, 5) * 4
    g = cox_cumulative_incidence(scores, grid, base, horizons)
    assert (g >= 0).all() and (g <= 1).all() and (g.diff(dim=-1) >= 0).all()
    # exact at a grid point
    h5 = interpolate_on_grid(grid, base, torch.tensor([5.0]))[:, 0]
    torch.testing.assert_close(g[..., 20], (1 - torch.exp(-h5[None] * torch.exp(scores.double()))).float())
