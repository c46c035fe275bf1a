"""Numba kernels behind `filters.py` (imported only when numba is available).

Two kernels, both parallel over rows (`numba.prange`, threads = `NUMBA_NUM_THREADS`):

* `sos_filtfilt`: scipy's `filtfilt` semantics (odd extension of `padlen` samples, steady-state initial conditions
  scaled by the first sample, forward pass, backward pass) for a cascade of second-order sections. Rows are filtered
  together in tiles of `_TILE` rows stored time-major, so the inner loop runs over contiguous rows and is SIMD
  vectorised, while a per-row recursion (what `scipy.signal.lfilter` does) is latency bound.
* `median_sweep`: exact running median from global ranks (see `filters.running_median`): the window is a
  bitset over ranks, the median a pointer into it that moves by a few set bits per step.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

_TILE = 16
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)


@nb.njit(cache=True, inline="always")
def _sos_pass(buf, sos, z, reverse):
    """In-place DF-II-transposed cascade over a (T, m) time-major tile; `z` (n_sections, 2, m) is the state."""
    n_t, m = buf.shape
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


@nb.njit(parallel=True, cache=True)
def sos_filtfilt(x, sos, zi, padlen):
    """Zero-phase filtering of every row of `x` (R, N) float64; `zi` = `scipy.signal.sosfilt_zi(sos)`."""
    n_rows, n = x.shape
    n_sec = sos.shape[0]
    n_ext = n + 2 * padlen
    out = np.empty_like(x)
    n_tiles = (n_rows + _TILE - 1) // _TILE
    for tile in nb.prange(n_tiles):
        r0 = tile * _TILE
        m = min(n_rows, r0 + _TILE) - r0
        buf = np.empty((n_ext, m))
        for r in range(m):
            row = x[r0 + r]
            for t in range(padlen):  # odd extension, as scipy.signal.filtfilt(padtype="odd")
                buf[t, r] = 2.0 * row[0] - row[padlen - t]
                buf[n + padlen + t, r] = 2.0 * row[n - 1] - row[n - 2 - t]
            for t in range(n):
                buf[padlen + t, r] = row[t]
        z = np.empty((n_sec, 2, m))
        for s in range(n_sec):
            for q in range(2):
                for r in range(m):
                    z[s, q, r] = zi[s, q] * buf[0, r]
        _sos_pass(buf, sos, z, False)
        for s in range(n_sec):
            for q in range(2):
                for r in range(m):
                    z[s, q, r] = zi[s, q] * buf[n_ext - 1, r]
        _sos_pass(buf, sos, z, True)
        for r in range(m):
            for t in range(n):
                out[r0 + r, t] = buf[padlen + t, r]
    return out


@nb.njit(cache=True, inline="always")
def _next_set(bits, m):
    """Smallest set bit strictly above `m` (a set bit above always exists: the window is never empty above)."""
    w = (m + 1) >> 6
    b = (m + 1) & 63
    word = bits[w] & (_ALL << np.uint64(b))
    while word == 0:
        w += 1
        word = bits[w]
    return (w << 6) + int(trailing_zeros(word))


@nb.njit(cache=True, inline="always")
def _prev_set(bits, m):
    """Largest set bit strictly below `m`."""
    w = m >> 6
    b = m & 63
    word = bits[w] & ((_ONE << np.uint64(b)) - _ONE)
    while word == 0:
        w -= 1
        word = bits[w]
    return (w << 6) + 63 - int(leading_zeros(word))


@nb.njit(parallel=True, cache=True)
def order_keys(x, h, index_bits):
    """Zero-pad every row by `h` on both sides and build its sort keys (see `filters._order_keys`)."""
    n_rows, n = x.shape
    m = n + 2 * h
    padded = np.zeros((n_rows, m))
    keys = np.empty((n_rows, m), np.uint64)
    sign = _ONE << np.uint64(63)
    low = (_ONE << np.uint64(index_bits)) - _ONE
    for r in nb.prange(n_rows):
        for i in range(n):
            padded[r, h + i] = x[r, i] + 0.0  # -0.0 -> +0.0
    bits = padded.view(np.uint64)
    for r in nb.prange(n_rows):
        for i in range(m):
            u = bits[r, i]
            u = ~u if u & sign else u | sign
            keys[r, i] = (u & ~low) | np.uint64(i)
    return padded, keys


@nb.njit(parallel=True, cache=True)
def median_sweep(sorted_keys, padded, n_out, k, index_bits):
    """Running median of odd width `k` from row-sorted keys: output j is the median of padded[j .. j+k-1].

    `rank[p]` is the sorted position of padded position p (recovered from the keys' low bits). Invariant per step:
    `m` is a set rank and exactly `c = k // 2` set ranks lie below it, so the value at rank `m` is the median.
    Removing / adding one rank changes `c` by at most one, and `m` moves to the neighbouring set bit.
    """
    n_rows, n_pos = sorted_keys.shape
    h = k // 2
    low = (_ONE << np.uint64(index_bits)) - _ONE
    out = np.empty((n_rows, n_out))
    n_words = (n_pos + 63) // 64 + 1
    for r in nb.prange(n_rows):
        keys = sorted_keys[r]
        vals = padded[r]
        rank = np.empty(n_pos, np.int32)
        for i in range(n_pos):
            rank[np.int64(keys[i] & low)] = i
        bits = np.zeros(n_words, np.uint64)
        for i in range(k):
            q = rank[i]
            bits[q >> 6] |= _ONE << np.uint64(q & 63)
        m = _next_set(bits, -1)
        for _ in range(h):
            m = _next_set(bits, m)
        c = h
        out[r, 0] = vals[np.int64(keys[m] & low)]
        for j in range(1, n_out):
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
            out[r, j] = vals[np.int64(keys[m] & low)]
    return out
