"""Survival losses and estimators for the AnyECG future-risk heads.

Conventions (shared by every function here):

* time is in **years** (float): `event_times`, horizons and bin edges;
* one column per condition of `config.risk_label_space`: `event_times[i, c]` is the time from the ECG to the onset of
  condition `c` when `events[i, c] = 1`, else to the end of follow-up for that condition (censoring);
* `mask[i, c] = 1` keeps person `i` in condition `c`'s risk set. Prevalent cases (condition already present at the
  ECG) and unknown follow-up must be masked. Entries with a non-finite time or a non-finite event flag are masked
  automatically. Masked entries are *removed* by boolean indexing before any arithmetic (never multiplied by zero), so
  a NaN placeholder can leak neither into the loss nor into its gradient;
* hazards are cause-specific: `cumulative_incidence = 1 - S(t | x)` treats death from other causes as censoring; it
  is not a competing-risks cumulative incidence function.

The Cox loss uses `torchsurv.loss.cox.neg_partial_log_likelihood` (Efron ties); the discrete-time logistic-hazard
NLL and the Breslow estimator are short enough to write here.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


__all__ = [
    "breslow_cumulative_hazard",
    "breslow_baseline",
    "baseline_time_grid",
    "cox_cumulative_incidence",
    "cox_partial_likelihood_loss",
    "discrete_time_cumulative_incidence",
    "discrete_time_log_survival",
    "discrete_time_nll",
    "interpolate_on_grid",
    "prepare_survival_targets",
]


def prepare_survival_targets(
    scores: torch.Tensor,
    event_times,
    events,
    mask=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and broadcast survival targets against per-condition scores.

    Args:
        scores (`torch.Tensor` of shape `(batch, n_risk)` or `(batch, n_risk, ...)`): model output; only its first two
            dimensions are used.
        event_times (array-like of shape `(batch, n_risk)` or `(batch,)`): event or censoring time in years. A
            `(batch,)` vector is shared by every condition.
        events (array-like of shape `(batch, n_risk)` or `(batch,)`): 1 = event observed, 0 = censored.
        mask (array-like of shape `(batch, n_risk)`, *optional*): 1 = person at risk for that condition with known
            follow-up (the `at_risk_mask`). Defaults to all ones.

    Returns:
        `(times, events, mask)`: float64 times, bool events, bool mask, all `(batch, n_risk)` on `scores.device`. Times
        and events of masked entries are replaced by 0 so that later arithmetic never sees a NaN.

    Raises:
        ValueError: wrong shapes, or a negative time for a person who is at risk.
    """
    batch, n_risk = scores.shape[0], scores.shape[1]
    device = scores.device

    def as_matrix(name, value, dtype):
        t = torch.as_tensor(value, device=device).to(dtype)
        if t.dim() == 1 and t.shape[0] == batch:
            t = t[:, None].expand(batch, n_risk)
        if tuple(t.shape) != (batch, n_risk):
            raise ValueError(
                f"{name} has shape {tuple(torch.as_tensor(value).shape)}; expected ({batch}, {n_risk}) "
                f"(batch, risk conditions) or ({batch},)."
            )
        return t

    times = as_matrix("event_times", event_times, torch.float64)
    ev = as_matrix("events", events, torch.float64)
    keep = torch.isfinite(times) & torch.isfinite(ev)
    if mask is not None:
        keep = keep & (as_matrix("at_risk_mask", mask, torch.float64).nan_to_num(0.0) != 0)
    bad_time = keep & (times < 0)
    bad_event = keep & (ev != 0) & (ev != 1)
    if bool((bad_time | bad_event).any()):  # one device sync for both checks
        if bool(bad_time.any()):
            raise ValueError("event_times must be >= 0 years for people at risk (mask those with unknown follow-up).")
        raise ValueError("events must be 0 (censored) or 1 (event) where at risk.")
    times = torch.where(keep, times, torch.zeros((), dtype=times.dtype, device=device))
    return times, keep & (ev == 1), keep


def _empty_zero(x: torch.Tensor) -> torch.Tensor:
    """An exact 0 that stays attached to the graph with an all-zero gradient, without touching any entry of `x`
    (so a NaN in `x` cannot leak): the sum of an empty selection."""
    return x.reshape(-1)[:0].sum()


def cox_partial_likelihood_loss(
    log_hz: torch.Tensor,
    event_times,
    events,
    mask=None,
    ties_method: str = "efron",
    implementation: str = "vectorized",
) -> torch.Tensor:
    r"""Multi-condition negative Cox partial log-likelihood (Efron ties by default).

    For condition :math:`c` let :math:`A_c = \{i : m_{ic} = 1\}` be the people kept by the mask, :math:`\xi_{1} <
    \xi_{2} < \dots` the distinct event times among them, :math:`H_k` the :math:`d_k` people with an event at
    :math:`\xi_k`, :math:`R_k = \{j \in A_c : t_j \ge \xi_k\}` the risk set and :math:`\lambda_i = e^{\eta_{ic}}`.
    Efron's partial log-likelihood is

    .. math::

        \ell_c = \sum_k \Big[\sum_{i\in H_k} \eta_{ic} - \sum_{r=0}^{d_k-1}
                 \log\Big(\sum_{j\in R_k}\lambda_j - \frac{r}{d_k}\sum_{i\in H_k}\lambda_i\Big)\Big]

    (Breslow's approximation drops the :math:`r/d_k` term). The loss is reduced as

    .. math:: L = \frac{1}{|C^+|}\sum_{c \in C^+} \frac{-\ell_c}{D_c}

    where :math:`D_c = \sum_k d_k` is condition :math:`c`'s number of events in the batch and :math:`C^+` the
    conditions with :math:`D_c \ge 1`. A condition without events (or whose every person is masked) is skipped: it
    contributes exactly zero loss and zero gradient. When no condition has an event the loss is an exact 0 that
    still has a `grad_fn` (zero gradient), so `loss.backward()` works in every batch. A condition with a single
    person (who has the event) has :math:`\ell_c = 0`.

    Two implementations give the same value (tested to 1e-6 against each other and a hand-written formula):

    * `"torchsurv"`: `torchsurv.loss.cox.neg_partial_log_likelihood(..., reduction="sum")` on each condition's
      people, selected by boolean indexing. One call per condition with events (~ms each), fine for a few
      conditions, slow for hundreds.
    * `"vectorized"` (default): all conditions at once in float64 (float32 on MPS): one sort per batch, tie groups
      by scatter-add. Masked entries are swapped out by `torch.where` before any arithmetic (their score is never
      used, so a NaN there cannot reach the loss or the gradient). About 1,000x faster at 1,172 conditions (see
      `benchmarks/bench_risk_loss.py`).

    Args:
        log_hz (`torch.Tensor` of shape `(batch, n_risk)`): log relative hazards (`risk_scores` of the Cox head).
        event_times, events, mask: see `prepare_survival_targets`.
        ties_method (`str`, *optional*, defaults to `"efron"`): `"efron"` or `"breslow"`.
        implementation (`str`, *optional*, defaults to `"vectorized"`): `"vectorized"` or `"torchsurv"`.

    Returns:
        `torch.Tensor` of shape `()` in `log_hz.dtype`.
    """
    if log_hz.dim() != 2:
        raise ValueError(f"log_hz must be (batch, n_risk), got shape {tuple(log_hz.shape)}.")
    if ties_method not in ("efron", "breslow"):
        raise ValueError(f"ties_method must be 'efron' or 'breslow', got {ties_method!r}.")
    if implementation not in ("vectorized", "torchsurv"):
        raise ValueError(f"implementation must be 'vectorized' or 'torchsurv', got {implementation!r}.")
    times, ev, keep = prepare_survival_targets(log_hz, event_times, events, mask)
    n_events = ev.sum(0)
    present = n_events > 0
    if not bool(present.any()):
        return _empty_zero(log_hz)
    if implementation == "vectorized":
        nll = _cox_nll_per_condition(log_hz, times, ev, keep, ties_method)
        return (nll[present] / n_events[present].to(nll.dtype)).mean().to(log_hz.dtype)
    per_condition = []
    for c in torch.nonzero(present).flatten().tolist():
        sel = keep[:, c]
        eta, t, e = log_hz[sel, c], times[sel, c], ev[sel, c]
        if eta.numel() == 1:  # one person, who has the event: log(lambda / lambda) = 0
            per_condition.append((eta - eta).sum())
            continue
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Ties in `time` detected")
            nll = _torchsurv_cox_nll(eta, e, t, ties_method=ties_method, reduction="sum")
        per_condition.append(nll.to(log_hz.dtype) / n_events[c].to(log_hz.dtype))
    return torch.stack(per_condition).mean()


def _cox_nll_per_condition(log_hz, times, events, keep, ties_method: str) -> torch.Tensor:
    """Negative partial log-likelihood summed over events, per condition: `(n_risk,)` (see
    `cox_partial_likelihood_loss`). `events` must already be False where `keep` is False."""
    work = torch.float32 if log_hz.device.type == "mps" else torch.float64
    # conditions on the first axis, people contiguous on the last: sorting and scatter run along contiguous rows
    keep, events = keep.t().contiguous(), events.t().contiguous()
    zero = torch.zeros((), dtype=work, device=log_hz.device)
    eta = torch.where(keep, log_hz.t().to(work), zero)  # masked scores are replaced, never used
    shift = torch.where(keep, eta, torch.full_like(eta, -math.inf)).amax(1, keepdim=True).detach()
    shift = torch.where(torch.isfinite(shift), shift, zero)
    w = torch.where(keep, torch.exp(eta - shift), zero)  # lambda / exp(shift); 0 for masked people
    t = torch.where(keep, times.t().to(work), torch.full_like(eta, math.inf))  # masked people sort last
    t_sorted, order = torch.sort(t, dim=1, stable=True)
    w_s, eta_s, e_s = w.gather(1, order), eta.gather(1, order), events.gather(1, order)
    e_f = e_s.to(work)
    # tie groups of equal times, numbered 0.. along each condition's sorted people
    new_group = torch.ones_like(e_s)
    new_group[:, 1:] = t_sorted[:, 1:] != t_sorted[:, :-1]
    gid = new_group.long().cumsum(1) - 1
    group_sum = lambda v: torch.zeros_like(w_s).scatter_add(1, gid, v)  # noqa: E731
    risk_sum = group_sum(w_s).flip(1).cumsum(1).flip(1)  # sum of w over groups >= g (risk set R_g)
    d = group_sum(e_f)  # events per group
    tied_sum = group_sum(torch.where(e_s, w_s, zero))  # sum of w over the group's events
    if ties_method == "efron":
        events_before = (d.cumsum(1) - d).gather(1, gid)
        rank = e_f.cumsum(1) - 1 - events_before  # r = 0..d-1 within a group's events
        frac = rank / d.gather(1, gid).clamp_min(1)
    else:
        frac = torch.zeros_like(e_f)
    denom = torch.where(e_s, risk_sum.gather(1, gid) - frac * tied_sum.gather(1, gid), torch.ones_like(e_f))
    contrib = torch.where(e_s, (eta_s - shift) - torch.log(denom), zero)
    return -contrib.sum(1)


def _as_edges(time_bins, device, dtype=torch.float64) -> torch.Tensor:
    edges = torch.as_tensor(time_bins, dtype=dtype, device=device)
    if edges.dim() != 1 or edges.numel() < 2 or bool((edges[1:] <= edges[:-1]).any()) or float(edges[0]) != 0.0:
        raise ValueError(f"time_bins must be strictly increasing edges starting at 0 (years), got {edges.tolist()}.")
    return edges


def discrete_time_nll(
    hazard_logits: torch.Tensor,
    event_times,
    events,
    mask=None,
    time_bins=None,
) -> torch.Tensor:
    r"""Negative log-likelihood of the discrete-time logistic-hazard model, multi-condition, with censoring.

    Intervals are :math:`I_j = (e_{j-1}, e_j]`, :math:`j = 1..J` for edges :math:`0 = e_0 < \dots < e_J` (years); the
    hazard of condition :math:`c` in interval :math:`j` is :math:`h_{icj} = \sigma(z_{icj})`. For a person kept by the
    mask with time :math:`t` and event flag :math:`\delta`:

    * event (:math:`\delta = 1`, :math:`t \in I_\kappa`; :math:`t = 0` counts in :math:`I_1`):
      :math:`-\ell = -\log h_\kappa - \sum_{j<\kappa}\log(1-h_j)`;
    * censored (:math:`\delta = 0`): survived every interval that ended by :math:`t`:
      :math:`-\ell = -\sum_{j: e_j \le t}\log(1-h_j)`;
    * an event after :math:`e_J` counts as censored at :math:`e_J`.

    Reduction: mean over the people kept in each condition, then mean over conditions with at least one person
    kept. Masked people are removed by boolean indexing; an all-masked condition contributes exactly zero loss and
    zero gradient, and an all-masked batch gives an exact 0 that still has a `grad_fn`.

    Args:
        hazard_logits (`torch.Tensor` of shape `(batch, n_risk, J)`): logits :math:`z` of the per-interval hazards.
        event_times, events, mask: see `prepare_survival_targets`.
        time_bins (sequence of `J + 1` floats): the edges :math:`e_0 = 0, \dots, e_J` in years.
    """
    if hazard_logits.dim() != 3:
        raise ValueError(f"hazard_logits must be (batch, n_risk, n_bins), got shape {tuple(hazard_logits.shape)}.")
    edges = _as_edges(time_bins, hazard_logits.device)
    n_bins = hazard_logits.shape[-1]
    if edges.numel() != n_bins + 1:
        raise ValueError(f"{edges.numel()} time-bin edges for {n_bins} hazard bins (need n_bins + 1).")
    times, ev, keep = prepare_survival_targets(hazard_logits, event_times, events, mask)
    if not bool(keep.any()):
        return _empty_zero(hazard_logits)
    cond_index = torch.nonzero(keep)[:, 1]
    z = hazard_logits[keep]  # (n_kept, J): masked people are gone before any arithmetic
    t, e = times[keep], ev[keep]
    right = edges[1:].contiguous()
    kappa = torch.searchsorted(right, t.contiguous(), right=False)  # interval holding t (J = after the last edge)
    n_survived_censored = torch.searchsorted(right, t.contiguous(), right=True)  # intervals with e_j <= t
    is_event = e & (kappa < n_bins)
    n_survived = torch.where(is_event, kappa, n_survived_censored)
    j = torch.arange(n_bins, device=z.device)
    survived = (j[None, :] < n_survived[:, None]).to(z.dtype)
    hit = (is_event[:, None] & (j[None, :] == kappa[:, None])).to(z.dtype)
    per_person = -(survived * F.logsigmoid(-z) + hit * F.logsigmoid(z)).sum(-1)
    n_risk = hazard_logits.shape[1]
    sums = per_person.new_zeros(n_risk).index_add(0, cond_index, per_person)
    counts = torch.bincount(cond_index, minlength=n_risk)
    present = counts > 0
    return (sums[present] / counts[present].to(sums.dtype)).mean()


def discrete_time_log_survival(hazard_logits: torch.Tensor, time_bins, times) -> torch.Tensor:
    r"""Log survival :math:`\log S(t)` of the logistic-hazard model at `times`.

    :math:`\log S(e_j) = \sum_{l \le j} \log(1 - h_l)`; between edges :math:`\log S` is interpolated linearly (a
    constant hazard rate within an interval), so it is continuous and non-increasing in :math:`t`. Times after the
    last edge give NaN.

    Args:
        hazard_logits (`torch.Tensor` of shape `(batch, n_risk, J)`).
        time_bins: the `J + 1` edges (years).
        times: years to evaluate.

    Returns:
        `torch.Tensor` of shape `(batch, n_risk, len(times))`.
    """
    edges = _as_edges(time_bins, hazard_logits.device, hazard_logits.dtype)
    log_surv = F.logsigmoid(-hazard_logits).cumsum(-1)
    log_surv = torch.cat([log_surv.new_zeros(log_surv.shape[:-1] + (1,)), log_surv], dim=-1)  # at e_0 .. e_J
    t = torch.as_tensor(times, dtype=hazard_logits.dtype, device=hazard_logits.device)
    return interpolate_on_grid(edges, log_surv, t)


def discrete_time_cumulative_incidence(hazard_logits: torch.Tensor, time_bins, horizons) -> torch.Tensor:
    """Cumulative incidence :math:`F(t) = 1 - S(t)` of the logistic-hazard model at `horizons` (see
    `discrete_time_log_survival`): non-decreasing in time, within [0, 1], NaN after the last edge.

    Returns:
        `torch.Tensor` of shape `(batch, n_risk, n_horizons)`.
    """
    return -torch.expm1(discrete_time_log_survival(hazard_logits, time_bins, horizons))


def interpolate_on_grid(grid: torch.Tensor, values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of `values[..., g]` given at sorted `grid[g]` (ties allowed) at times `t`.

    Exact at grid points; NaN for `t` outside `[grid[0], grid[-1]]`. Returns shape `values.shape[:-1] + t.shape`.
    """
    grid = grid.to(values.dtype)
    t = t.to(values.dtype)
    n = grid.numel()
    hi = torch.searchsorted(grid.contiguous(), t.contiguous(), right=True).clamp(1, n - 1)
    lo = hi - 1
    g_lo, g_hi = grid[lo], grid[hi]
    width = g_hi - g_lo
    w = torch.where(width > 0, (t - g_lo) / torch.where(width > 0, width, torch.ones_like(width)), torch.ones_like(t))
    w = w.clamp(0, 1)
    out = values[..., lo] * (1 - w) + values[..., hi] * w
    outside = (t < grid[0]) | (t > grid[-1])
    return torch.where(outside, torch.full_like(out, float("nan")), out)


# ---------------------------------------------------------------------------------------------- Breslow estimator


def _torchsurv_cox_nll(*args, **kwargs):
    """`torchsurv.loss.cox.neg_partial_log_likelihood`, imported on first use (torchsurv takes ~2 s to import, which
    every `import anyecg_hf` and every CLI start would pay otherwise)."""
    from torchsurv.loss.cox import neg_partial_log_likelihood

    return neg_partial_log_likelihood(*args, **kwargs)
