"""Numba kernels behind `filters.py` (imported only when numba is available).

All kernels are serial and release the GIL (`nogil=True`): `filters` runs them on chunks of rows from a small
thread pool, so a core that the OS takes away (a shared machine) only slows its own chunks, not a barrier of a
static parallel loop. Float32 and float64 rows both work (the dtype of the arrays decides).

* `filtfilt_rows`: scipy's `filtfilt` semantics (odd extension of `padlen` samples, steady-state initial conditions
  scaled by the first sample, forward pass, backward pass) for a cascade of second-order sections. Rows are filtered
  together in tiles of `_TILE` rows stored time-major, so the inner loop runs over contiguous rows and is SIMD
  vectorised, while a per-row recursion (what `scipy.signal.lfilter` does) is latency bound.
* `median_keys` + (numpy's SIMD sort) + `median_sweep`: exact zero-padded running median from ranks (see
  `filters.running_median`): the window is a bitset over ranks, the median a pointer into it that moves by a few set
  bits per step.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

_TILE = 16
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)


@nb.njit(nogil=True, cache=True, inline="always")
def _sos_pass(buf, sos, z, m, reverse):
    """In-place DF-II-transposed cascade over a (T, _TILE) time-major tile (first `m` columns); `z` is the state."""
    n_t = buf.shape[0]
    for tt in range(n_t):
        t = n_t - 1 - tt if reverse else tt
        for s in range(sos.shape[0]):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            for r in range(m):
                xv = buf[t, r]
                y = b0 * xv + z[s, 0, r]
                z[s, 0, r] = b1 * xv - a1 * y + z[s, 1, r]
                z[s, 1, r] = b2 * xv - a2 * y
                buf[t, r] = y


@nb.njit(nogil=True, cache=True)
def filtfilt_rows(x, out, sos, zi, bounds, padlens):
    """Zero-phase filtering of every row of `x` (R, N) into `out` (may be `x`) by a chain of filtfilt stages.

    Stage `i` is the cascade `sos[bounds[i]:bounds[i+1]]` with initial-state factors `zi[...]` (`sosfilt_zi` of that
    cascade) and odd extension `padlens[i]`; each stage is a full `filtfilt` of the previous stage's output, as
    separate calls would be, but on one tile in cache. `sos`/`zi` must have the dtype of `x`.
    """
    n_rows, n = x.shape
    n_stages = padlens.shape[0]
    pmax = 0
    for i in range(n_stages):
        pmax = max(pmax, padlens[i])
    buf = np.empty((n + 2 * pmax, _TILE), x.dtype)
    z = np.empty((max(1, sos.shape[0]), 2, _TILE), x.dtype)
    for r0 in range(0, n_rows, _TILE):
        m = min(n_rows, r0 + _TILE) - r0
        for r in range(m):
            for t in range(n):
                buf[pmax + t, r] = x[r0 + r, t]
        for i in range(n_stages):
            p = padlens[i]
            s0 = bounds[i]
            s1 = bounds[i + 1]
            lo = pmax - p
            hi = pmax + n + p  # the stage runs over buf[lo:hi]
            for t in range(p):  # odd extension, as scipy.signal.filtfilt(padtype="odd")
                for r in range(m):
                    buf[lo + t, r] = 2.0 * buf[pmax, r] - buf[pmax + p - t, r]
                    buf[pmax + n + t, r] = 2.0 * buf[pmax + n - 1, r] - buf[pmax + n - 2 - t, r]
            sec = sos[s0:s1]
            zs = z[: s1 - s0]
            for s in range(s1 - s0):
                for q in range(2):
                    for r in range(m):
                        zs[s, q, r] = zi[s0 + s, q] * buf[lo, r]
            _sos_pass(buf[lo:hi], sec, zs, m, False)
            for s in range(s1 - s0):
                for q in range(2):
                    for r in range(m):
                        zs[s, q, r] = zi[s0 + s, q] * buf[hi - 1, r]
            _sos_pass(buf[lo:hi], sec, zs, m, True)
        for r in range(m):
            for t in range(n):
                out[r0 + r, t] = buf[pmax + t, r]


@nb.njit(nogil=True, cache=True, inline="always")
def _next_set(bits, m):
    """Smallest set bit strictly above `m` (a set bit above always exists: the window is never empty above)."""
    w = (m + 1) >> 6
    b = (m + 1) & 63
    word = bits[w] & (_ALL << np.uint64(b))
    while word == 0:
        w += 1
        word = bits[w]
    return (w << 6) + int(trailing_zeros(word))


@nb.njit(nogil=True, cache=True, inline="always")
def _prev_set(bits, m):
    """Largest set bit strictly below `m`."""
    w = m >> 6
    b = m & 63
    word = bits[w] & ((_ONE << np.uint64(b)) - _ONE)
    while word == 0:
        w -= 1
        word = bits[w]
    return (w << 6) + 63 - int(leading_zeros(word))


@nb.njit(nogil=True, cache=True, inline="always")
def _is_set(bits, q):
    return (bits[q >> 6] >> np.uint64(q & 63)) & _ONE


@nb.njit(nogil=True, cache=True)
def median_keys(x, h, index_bits, padded, keys):
    """Zero-pad every row of `x` by `h` on both sides into `padded` (float64) and write its sort keys into `keys`.

    Key = the float's bits mapped so that unsigned order is float order, with the lowest `index_bits` bits replaced
    by the position: all keys are distinct and one sort ranks every position. Values that differ only in those low
    bits form a "group" ordered by position; `median_sweep` resolves such groups exactly.
    """
    n_rows, n = x.shape
    m = n + 2 * h
    sign = _ONE << np.uint64(63)
    low = (_ONE << np.uint64(index_bits)) - _ONE
    bits = padded.view(np.uint64)
    for r in range(n_rows):
        for i in range(h):
            padded[r, i] = 0.0
            padded[r, m - 1 - i] = 0.0
        for i in range(n):
            padded[r, h + i] = x[r, i] + 0.0  # -0.0 -> +0.0 (equal values must get equal keys)
        for i in range(m):
            u = bits[r, i]
            u = ~u if u & sign else u | sign
            keys[r, i] = (u & ~low) | np.uint64(i)


@nb.njit(nogil=True, cache=True)
def _group_median(keys, vals, bits, m, c, h, index_bits, low):
    """Exact median when the rank-`m` element shares its truncated key with other elements (see `median_keys`):
    the window elements below the group are counted exactly, the group's members are sorted by true value."""
    g = keys[m] >> np.uint64(index_bits)
    n_pos = keys.shape[0]
    g0 = m
    while g0 > 0 and keys[g0 - 1] >> np.uint64(index_bits) == g:
        g0 -= 1
    g1 = m
    while g1 + 1 < n_pos and keys[g1 + 1] >> np.uint64(index_bits) == g:
        g1 += 1
    inside = 0
    for q in range(g0, m):
        inside += _is_set(bits, q)
    tmp = np.empty(g1 - g0 + 1)
    n_tmp = 0
    for q in range(g0, g1 + 1):
        if _is_set(bits, q):
            tmp[n_tmp] = vals[np.int64(keys[q] & low)]
            n_tmp += 1
    tmp = np.sort(tmp[:n_tmp])
    return tmp[h - (c - inside)]


@nb.njit(nogil=True, cache=True)
def median_sweep(sorted_keys, padded, k, index_bits, y, out, subtract):
    """Running median of odd width `k` from row-sorted keys: median j = median of padded[j .. j+k-1].

    Writes `out[r, j] = y[r, j] - median` when `subtract`, else the median (`out` may be `y`).

    `rank[p]` is the sorted position of padded position p (recovered from the keys' low bits). Invariant per step:
    `m` is a set rank and exactly `c = k // 2` set ranks lie below it, so the value at rank `m` is the median.
    Removing / adding one rank changes `c` by at most one, and `m` moves to the neighbouring set bit.
    """
    n_rows, n_pos = sorted_keys.shape
    n_out = n_pos - k + 1
    h = k // 2
    ib = np.uint64(index_bits)
    low = (_ONE << ib) - _ONE
    n_words = (n_pos + 63) // 64 + 1
    rank = np.empty(n_pos, np.int32)
    plain = np.empty(n_pos, np.bool_)  # rank q's group holds a single distinct value: no exact fix-up needed
    bits = np.empty(n_words, np.uint64)
    for r in range(n_rows):
        keys = sorted_keys[r]
        vals = padded[r]
        for i in range(n_pos):
            rank[np.int64(keys[i] & low)] = i
        i = 0
        while i < n_pos:
            g = keys[i] >> ib
            v0 = vals[np.int64(keys[i] & low)]
            same = True
            j = i + 1
            while j < n_pos and keys[j] >> ib == g:
                if vals[np.int64(keys[j] & low)] != v0:
                    same = False
                j += 1
            for q in range(i, j):
                plain[q] = same
            i = j
        bits[:] = 0
        for i in range(k):
            q = rank[i]
            bits[q >> 6] |= _ONE << np.uint64(q & 63)
        m = _next_set(bits, -1)
        for _ in range(h):
            m = _next_set(bits, m)
        c = h
        for j in range(n_out):
            if j > 0:
                ro = np.int64(rank[j - 1])
                ri = np.int64(rank[j + k - 1])
                bits[ro >> 6] &= ~(_ONE << np.uint64(ro & 63))
                bits[ri >> 6] |= _ONE << np.uint64(ri & 63)
                if ri < m:
                    c += 1
                if ro < m:
                    c -= 1
                elif ro == m:
                    m = _next_set(bits, m)
                while c > h:
                    m = _prev_set(bits, m)
                    c -= 1
                while c < h:
                    m = _next_set(bits, m)
                    c += 1
            if plain[m]:
                med = vals[np.int64(keys[m] & low)]
            else:
                med = _group_median(keys, vals, bits, m, c, h, index_bits, low)
            if subtract:
                out[r, j] = y[r, j] - med
            else:
                out[r, j] = med


@nb.njit(nogil=True, cache=True)
def row_stats(x, n_bad, lo, hi):
    """Per row of `x` (R, N): the count of non-finite values and the min / max of the finite ones, in one pass
    (the lead checks of the feature extractor; numpy needs three passes and a temporary)."""
    for r in range(x.shape[0]):
        bad = 0
        mn = np.inf
        mx = -np.inf
        for t in range(x.shape[1]):
            v = x[r, t]
            ok = abs(v) < np.inf  # False for NaN and +-inf
            bad += 0 if ok else 1
            mn = min(mn, v) if ok else mn
            mx = max(mx, v) if ok else mx
        n_bad[r] = bad
        lo[r] = mn
        hi[r] = mx


@nb.njit(nogil=True, cache=True, fastmath={"reassoc"})  # reassociation lets the sums vectorise
def row_moments(x, sums, sums_sq):
    """Per row: sum and sum of squares (float64 accumulators), for the z-score."""
    for r in range(x.shape[0]):
        s = 0.0
        q = 0.0
        for t in range(x.shape[1]):
            v = x[r, t]
            s += v
            q += v * v
        sums[r] = s
        sums_sq[r] = q


@nb.njit(nogil=True, cache=True)
def scale_rows_into(x, mean, inv, out, dest):
    """`out[dest[r], :N] = float32((x[r] - mean[r]) * inv[r])`: the z-score written straight into the batch."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        m = mean[r]
        s = inv[r]
        d = dest[r]
        for t in range(n):
            out[d, t] = (x[r, t] - m) * s


@nb.njit(nogil=True, cache=True)
def rail_counts(x, lo, hi, counts):
    """Per row: how many samples equal the row's finite min `lo[r]` or max `hi[r]` (clipping check)."""
    for r in range(x.shape[0]):
        c = 0
        a = lo[r]
        b = hi[r]
        for t in range(x.shape[1]):
            v = x[r, t]
            c += 1 if (v == a or v == b) else 0
        counts[r] = c


@nb.njit(nogil=True, cache=True, fastmath={"reassoc"})
def diff_sumsq(a, b, out):
    """Per row: sum of `(a - b) ** 2`."""
    for r in range(a.shape[0]):
        q = 0.0
        for t in range(a.shape[1]):
            d = a[r, t] - b[r, t]
            q += d * d
        out[r] = q
