"""Weighted (bootstrap) concordance: the comparable and concordant pair counts of Harrell's / Uno's C for many resampling
weight vectors at once, by sorting once and summing pair weights group by group."""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp

from .bootstrap import _CELL_BUDGET, _cumsum0


def weighted_concordance(times, events, risk, weights_t, event_weight=None, tmax=None):
    r"""Harrell's (or, with IPCW `event_weight`, Uno's) concordance under each column of a weight matrix.

    With row weights :math:`w_{bj}` (bootstrap multiplicities) and event weights :math:`a_i` (1 for Harrell,
    :math:`\hat G(T_i)^{-2} I(T_i < \tau)` for Uno),

    .. math::

        C_b = \frac{\sum_{i,j} a_i \delta_i w_{bi} w_{bj} \,\mathrm{comp}(i, j)\, H(r_i - r_j)}
                   {\sum_{i,j} a_i \delta_i w_{bi} w_{bj} \,\mathrm{comp}(i, j)},

    where :math:`\mathrm{comp}(i, j)` holds when :math:`T_j > T_i`, or :math:`T_j = T_i` and :math:`j` is censored
    (the convention of lifelines, scikit-survival and torchsurv), and :math:`H` counts risk ties as one half. This
    equals the C-index of resample :math:`b` (duplicated rows are tied events or censored, hence never compared).

    Rows are sorted by (time, events first, risk); every pair with :math:`i` before :math:`j` in that order is
    counted by a divide-and-conquer over positions: at each of the :math:`\lceil \log_2 n \rceil` levels one sparse
    product sums the weights of the right halves by risk cell, as in the AUROC bootstrap. Pairs of tied events
    (same time) were counted once in that order and are removed in closed form: within a tie they are sorted by risk,
    so they contributed one half exactly when the risks are equal. Cost :math:`O(n B \log n)`.

    Args:
        times (array `(n,)`), events (array `(n,)`), risk (array `(n,)`): higher risk = earlier event expected.
        weights_t (array `(n, B)`): row weights per resample.
        event_weight (array `(n,)`, *optional*): :math:`a_i` for events (e.g. squared IPCW); 1 when `None`.
        tmax (`float`, *optional*): only events with :math:`T_i <` `tmax` count as the earlier member of a pair.

    Returns:
        `(numerator, denominator)`, arrays of shape `(B,)`; the C-index is their ratio (undefined where the
        denominator is 0).
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    events = np.asarray(events).astype(bool).reshape(-1)
    risk = np.asarray(risk, dtype=np.float64).reshape(-1)
    weights_t = np.asarray(weights_t, dtype=np.float64)
    n = len(times)
    if weights_t.ndim == 1:
        weights_t = weights_t[:, None]
    if events.shape != (n,) or risk.shape != (n,) or weights_t.shape[0] != n:
        raise ValueError("times, events, risk and the rows of weights_t must have the same length.")
    B = weights_t.shape[1]
    a = events.astype(np.float64)
    if event_weight is not None:
        a = a * np.asarray(event_weight, dtype=np.float64).reshape(-1)
    if tmax is not None:
        a = a * (times < tmax)
    order = np.lexsort((risk, ~events, times))
    times, events, risk, a = times[order], events[order], risk[order], a[order]
    W = weights_t[order]
    num = np.zeros(B)
    den = np.zeros(B)
    ev = np.flatnonzero(a > 0)
    if len(ev) == 0:
        return num, den
    # denominator: every later row is comparable
    after = W.sum(axis=0)[None, :] - _cumsum0(W)
    den += np.einsum("i,ib,ib->b", a[ev], W[ev], after[ev])
    # tied events: within (time) counted as comparable once; within (time, risk) counted with H = 1/2
    a_ev = a[ev]
    den -= 0.5 * _weighted_group_pairs(np.column_stack([times[ev]]), a_ev, W[ev])
    num -= 0.25 * _weighted_group_pairs(np.column_stack([times[ev], risk[ev]]), a_ev, W[ev])
    # numerator: divide and conquer over positions
    rho = np.unique(risk, return_inverse=True)[1].reshape(-1).astype(np.int64)
    span = int(rho.max()) + 2
    pos = np.arange(n)
    s = 1
    while s < n:
        parent = pos // (2 * s)
        side = (pos // s) & 1
        left = np.flatnonzero((side == 0) & (a > 0))
        if len(left):
            active = np.zeros(parent[-1] + 1, dtype=bool)
            active[parent[left]] = True
            right = np.flatnonzero((side == 1) & active[parent])
            if len(right):
                num += _cross_level(parent, rho, span, left, right, a, W)
        s *= 2
    return num, den


def _weighted_group_pairs(keys, a, W):
    """sum over groups of rows sharing `keys` of a_g [(sum w)^2 - sum w^2] (a is constant within a group)."""
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    g = int(inv.max()) + 1
    if g == len(inv):
        return np.zeros(W.shape[1])
    design = sp.csr_matrix((np.ones(len(inv)), (inv, np.arange(len(inv)))), shape=(g, len(inv)))
    sums = design @ W
    squares = design @ (W * W)
    a_g = np.zeros(g)
    a_g[inv] = a
    return a_g @ (sums * sums - squares)


def _cross_level(parent, rho, span, left, right, a, W):
    """sum over left events i and right rows j of the same parent block of a_i w_i w_j H(r_i - r_j)."""
    left_keys = parent[left] * span + rho[left]
    sentinel = np.unique(parent[left]) * span + (span - 1)  # above every risk of its block
    keys = np.unique(np.concatenate([left_keys, sentinel]))
    m = len(keys)
    right_keys = parent[right] * span + rho[right]
    idx = np.searchsorted(keys, right_keys, side="left")
    eq = keys[idx] == right_keys
    q = np.searchsorted(keys, left_keys)
    rows = np.concatenate([2 * idx + eq, 2 * m + q])
    cols = np.concatenate([right, left])
    data = np.concatenate([np.ones(len(right)), a[left]])
    design = sp.csr_matrix((data, (rows, cols)), shape=(3 * m, len(a)))
    B = W.shape[1]
    step = max(1, min(B, _CELL_BUDGET // (3 * m)))
    block_start = np.searchsorted(keys // span, keys // span, side="left")  # first key of the same block
    out = np.empty(B)
    for b0 in range(0, B, step):
        R = design @ W[:, b0 : b0 + step]
        A, P = R[: 2 * m], R[2 * m :]
        C = _cumsum0(A)
        C0 = np.vstack([np.zeros((1, A.shape[1])), C])  # C0[k] = sum of cells < k
        below = C0[2 * np.arange(m) + 1] - C0[2 * block_start]  # cells from the block start up to 2q
        out[b0 : b0 + step] = np.einsum("qb,qb->b", P, below + 0.5 * A[1::2])
    return out
