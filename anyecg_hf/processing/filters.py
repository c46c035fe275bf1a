"""Vectorised ECG filters: zero-phase IIR filtering, the exact zero-padded running median, (resampling and the plain
per-lead reference recipe, the parity / speed baseline, are in `resampling.py` and `reference.py`, importable here).

Every function takes a 2-D array of rows `(R, N)` (any number of leads of any number of ECGs stacked) and works on
all rows at once: there is no Python loop per lead. With numba installed the kernels in `_kernels.py` run (parallel
over rows); without it scipy's vectorised `sosfiltfilt` and a per-row `ndimage.median_filter` give the same numbers,
more slowly.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from scipy import ndimage, signal

from .reference import reference_preprocess  # noqa: F401 (importable here as before)
from .resampling import rational_ratio, resample, resample_span  # noqa: F401 (importable here as before)

try:  # numba is a dependency; the fallback keeps the package usable where it cannot be installed
    if os.environ.get("ANYECG_DISABLE_NUMBA"):
        raise ImportError("disabled by ANYECG_DISABLE_NUMBA")
    from . import _kernels
except ImportError:  # pragma: no cover - exercised with ANYECG_DISABLE_NUMBA=1
    _kernels = None

HAVE_NUMBA = _kernels is not None
BACKENDS = ("auto", "numba", "scipy")


def _use_numba(backend: str) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and not HAVE_NUMBA:
        raise ValueError("backend='numba' requested but numba is not importable; `pip install numba`.")
    return HAVE_NUMBA and backend != "scipy"


# --------------------------------------------------------------------------------------------- filter design
@lru_cache(maxsize=64)
def _design(kind: str, a: float, b: float | None, order: int, fs: float) -> tuple[np.ndarray, int]:
    if kind == "notch":
        num, den = signal.iirnotch(a, b, fs)
        sos = signal.tf2sos(num, den)
    else:
        wn = [a, b] if kind == "bandpass" else a
        num, den = signal.butter(order, wn, kind, fs=fs)
        sos = signal.butter(order, wn, kind, fs=fs, output="sos")
    # scipy.signal.filtfilt's default padlen for the (b, a) form, which the reference recipe uses
    padlen = 3 * max(len(num), len(den))
    sos.setflags(write=False)
    return sos, padlen


def notch_filter_sos(freq: float, q: float, fs: float) -> tuple[np.ndarray, int]:
    """Second-order IIR notch (`scipy.signal.iirnotch(freq, q, fs)`) as one SOS row, and filtfilt's padlen (9).

    The -3 dB bandwidth is `freq / q` (1.67 Hz for 50 Hz, Q 30).
    """
    if not 0 < freq < fs / 2:
        raise ValueError(f"notch frequency {freq} Hz must lie in (0, fs/2 = {fs / 2}) Hz")
    sos, padlen = _design("notch", float(freq), float(q), 2, float(fs))
    return sos.copy(), padlen


def bandpass_sos(low: float | None, high: float | None, order: int, fs: float) -> tuple[np.ndarray, int] | None:
    """Butterworth band-pass `[low, high]` Hz of `order` (a band-pass of order n has 2n poles), or a high-pass /
    low-pass when one edge is `None`; `None` when both are. Returns the SOS and filtfilt's (b, a) padlen."""
    if low is None and high is None:
        return None
    if high is not None and not 0 < high < fs / 2:
        raise ValueError(f"band-pass high edge {high} Hz must lie in (0, fs/2 = {fs / 2}) Hz")
    if low is not None and not 0 < low < (high if high is not None else fs / 2):
        raise ValueError(f"band-pass low edge {low} Hz must be positive and below the high edge")
    if low is None:
        sos, padlen = _design("lowpass", float(high), None, int(order), float(fs))
    elif high is None:
        sos, padlen = _design("highpass", float(low), None, int(order), float(fs))
    else:
        sos, padlen = _design("bandpass", float(low), float(high), int(order), float(fs))
    return sos.copy(), padlen


# --------------------------------------------------------------------------------------------- threads
_CHUNK = 16  # rows per task: one filter tile; small enough to balance two cores that other jobs also use
_POOL: ThreadPoolExecutor | None = None
_POOL_PREFIX = "anyecg-filters"


def _forget_pool() -> None:
    """A forked child (a DataLoader worker, e.g.) inherits the pool object but none of its threads: start afresh."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def num_threads() -> int:
    """Worker threads of the numba backend: `ANYECG_NUM_THREADS` if set, else the CPU count."""
    return max(1, int(os.environ.get("ANYECG_NUM_THREADS", 0) or os.cpu_count() or 1))


def _for_chunks(fn, n_rows: int) -> None:
    """Call `fn(start, stop)` on chunks of `_CHUNK` rows, in a thread pool when there is more than one chunk.

    The kernels release the GIL; dynamic hand-out of small chunks keeps both cores busy even when the OS runs other
    jobs on one of them (a static split would wait for the slowest half).
    """
    for_ranges(fn, [(a, min(n_rows, a + _CHUNK)) for a in range(0, n_rows, _CHUNK)])


def for_ranges(fn, chunks: list[tuple[int, int]]) -> None:
    """Call `fn(start, stop)` for every range of `chunks`, on the worker threads when there is more than one."""
    global _POOL
    threads = min(num_threads(), len(chunks))
    if threading.current_thread().name.startswith(_POOL_PREFIX):
        threads = 1  # already on a worker (a task that filters): run inline, never wait on our own pool
    if threads <= 1:
        for a, b in chunks:
            fn(a, b)
        return
    if _POOL is None or _POOL._max_workers < threads:
        _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=_POOL_PREFIX)
    for future in [_POOL.submit(fn, a, b) for a, b in chunks]:
        future.result()


# --------------------------------------------------------------------------------------------- zero-phase IIR
def _stage_plan(stages, dtype):
    """Arguments of `_kernels.filtfilt_rows` for a chain of `(sos, padlen)` stages: stacked sections, their
    `sosfilt_zi` factors, section bounds per stage and padlens. Cached: `sosfilt_zi` solves a linear system per
    section, which cost as much as filtering the 12 leads of a 10 s ECG."""
    key = tuple((np.asarray(sos, dtype=np.float64).tobytes(), np.shape(sos), int(p)) for sos, p in stages)
    plan = _cached_plan(key, np.dtype(dtype).str)
    return plan


@lru_cache(maxsize=64)
def _cached_plan(key, dtype):
    stages = [(np.frombuffer(raw, dtype=np.float64).reshape(shape), p) for raw, shape, p in key]
    soss = [np.asarray(sos, dtype=np.float64) for sos, _ in stages]
    sos_all = np.concatenate(soss) if soss else np.zeros((0, 6))
    zi_all = np.concatenate([signal.sosfilt_zi(s) for s in soss]) if soss else np.zeros((0, 2))
    bounds = np.cumsum([0] + [len(s) for s in soss]).astype(np.int64)
    padlens = np.array([int(p) for _, p in stages], dtype=np.int64)
    plan = (np.ascontiguousarray(sos_all, dtype=dtype), np.ascontiguousarray(zi_all, dtype=dtype), bounds, padlens)
    for a in plan:
        a.setflags(write=False)
    return plan


def zero_phase_filter(x: np.ndarray, sos: np.ndarray, padlen: int, backend: str = "auto", dtype=np.float64) -> np.ndarray:
    """`scipy.signal.filtfilt` semantics for every row of `x` (R, N), computed in `dtype` (float64; float32 halves
    the SIMD work of the numba backend and moves values by ~1e-4 of the signal: enough for the quality checks).

    .. math:: y = \\mathrm{rev}(H\\,\\mathrm{rev}(H\\,\\mathrm{oddext}(x)))

    with `oddext` the odd extension by `padlen` samples (``2 x_0 - x_{padlen..1}`` on the left) and each pass started
    from the steady state of a step of height equal to its first sample (`sosfilt_zi`). With the same padlen this
    equals `filtfilt(b, a, x)` of the reference up to the round-off of the ill-conditioned (b, a) form (~1e-6 of the
    signal for the 0.67-40 Hz band-pass at 500 Hz).

    Raises:
        ValueError: when a row has `padlen` samples or fewer (scipy's own limit).
    """
    use_numba = _use_numba(backend)
    x = np.ascontiguousarray(x, dtype=dtype if use_numba else np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (rows, samples), got shape {x.shape}")
    if x.shape[1] <= padlen:
        raise ValueError(f"signal of {x.shape[1]} samples is too short for zero-phase filtering (needs > {padlen})")
    if x.shape[0] == 0:
        return x.astype(dtype)
    if use_numba:
        out = np.empty_like(x)
        plan = _stage_plan([(sos, padlen)], x.dtype)
        _for_chunks(lambda a, b: _kernels.filtfilt_rows(x[a:b], out[a:b], *plan), x.shape[0])
        return out
    return signal.sosfiltfilt(np.array(sos), x, axis=-1, padtype="odd", padlen=padlen).astype(dtype, copy=False)


# --------------------------------------------------------------------------------------------- running median
def _order_keys(padded: np.ndarray) -> tuple[np.ndarray, int]:
    """uint64 keys whose unsigned order is the float order, low bits replaced by the position (the numpy twin of
    `_kernels.median_keys`, kept for tests and documentation).

    The position bits make all keys distinct, so one (SIMD) `np.sort` gives every rank. Values that agree in all but
    the lowest `index_bits` mantissa bits are ranked by position; the numba sweep detects such groups and orders
    them by their true values, so the median stays exact.
    """
    n = padded.shape[1]
    index_bits = max(1, int(n - 1).bit_length())
    u = padded.view(np.uint64)
    key = np.where(u >> np.uint64(63), ~u, u | np.uint64(1 << 63))
    key >>= np.uint64(index_bits)
    key <<= np.uint64(index_bits)
    key |= np.arange(n, dtype=np.uint64)
    return key, index_bits


def _median_chunk(x: np.ndarray, out: np.ndarray, kernel_size: int, subtract: bool) -> None:
    """Numba path for a chunk: keys, numpy's SIMD sort (GIL released), sweep. `out` may be `x`."""
    h = kernel_size // 2
    n_pos = x.shape[1] + 2 * h
    index_bits = max(1, int(n_pos - 1).bit_length())
    padded = np.empty((x.shape[0], n_pos))
    keys = np.empty((x.shape[0], n_pos), np.uint64)
    _kernels.median_keys(x, h, index_bits, padded, keys)
    keys.sort(axis=-1)
    _kernels.median_sweep(keys, padded, kernel_size, index_bits, x, out, subtract)


def _check_kernel(kernel_size: int) -> None:
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")


def running_median(x: np.ndarray, kernel_size: int, backend: str = "auto") -> np.ndarray:
    """Running median of odd width `kernel_size` over every row, zero-padded at both ends exactly like
    `scipy.signal.medfilt(row, kernel_size)` (output `n` is the median of `x[n-h .. n+h]`, `h = kernel_size // 2`,
    with zeros outside the row).

    Algorithm (numba backend): pad, rank all positions of each row at once with one SIMD sort of order-preserving
    uint64 keys (float bits, position in the low bits), then sweep a bitset over ranks holding the current window;
    the median pointer moves to a neighbouring set bit per step, so the sweep is O(N) after the O(N log N) sort.
    Values that tie in the truncated key are resolved by their true values, so the result is the element `medfilt`
    picks, bit for bit.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    _check_kernel(kernel_size)
    n_rows, n = x.shape
    if n_rows == 0 or kernel_size == 1:
        return x.copy()
    if not _use_numba(backend):
        out = np.empty_like(x)
        for r in range(n_rows):  # scipy's 1-D rank filter is fast; its N-D path is not (fallback only)
            out[r] = ndimage.median_filter(x[r], size=kernel_size, mode="constant", cval=0.0)
        return out
    out = np.empty_like(x)
    _for_chunks(lambda a, b: _median_chunk(x[a:b], out[a:b], kernel_size, False), n_rows)
    return out


# --------------------------------------------------------------------------------------------- fused chain
def filter_chain(
    x,
    stages: list[tuple[np.ndarray, int]],
    kernel_size: int | None,
    backend: str = "auto",
    dtype=np.float64,
    moments: bool = False,
):
    """`zero_phase_filter` with each `(sos, padlen)` of `stages` in turn, then subtract
    `running_median(., kernel_size)` (skipped when `None`): the whole chain per chunk of rows while it is in cache.

    `x` is a 2-D array `(R, N)` or a sequence of `R` 1-D rows of equal length (views into records, e.g.): rows are
    then gathered chunk by chunk by the worker threads, so the batch is never copied in one serial pass.
    With `moments=True` also returns per-row `(sum, sum of squares)` of the output, computed per chunk while it is
    in cache (for the z-score).

    `dtype=np.float64` gives exactly the numbers of the separate functions. `dtype=np.float32` filters in float32
    (2x the SIMD width, half the memory traffic) and ranks float32 values: faster, with float32 round-off (see
    `docs/processing.md` for the measured tolerance); the scipy backend ignores it (always float64).
    """
    rows = x if isinstance(x, np.ndarray) and x.ndim == 2 else None
    n_rows = len(x)
    n = (rows.shape[1] if rows is not None else (len(x[0]) if n_rows else 0))
    for _, padlen in stages:
        if n <= padlen:
            raise ValueError(f"signal of {n} samples is too short for zero-phase filtering (needs > {padlen})")
    if kernel_size is not None:
        _check_kernel(kernel_size)
    if not _use_numba(backend):
        y = np.asarray(rows if rows is not None else np.stack(x) if n_rows else np.zeros((0, n)), dtype=np.float64)
        for sos, padlen in stages:
            y = zero_phase_filter(y, sos, padlen, backend)
        y = y - running_median(y, kernel_size, backend) if kernel_size is not None else y
        return (y, (y.sum(axis=1), np.einsum("rt,rt->r", y, y))) if moments else y
    dtype = np.dtype(dtype)
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=dtype)
    out = np.empty((n_rows, n), dtype)
    sums, sums_sq = np.empty(n_rows), np.empty(n_rows)
    plan = _stage_plan(stages, dtype)

    def run(a: int, b: int) -> None:
        if rows is None:
            for r in range(a, b):
                out[r] = x[r]
        _filter_tile(rows[a:b] if rows is not None else out[a:b], out[a:b], plan, kernel_size)
        if moments:
            _kernels.row_moments(out[a:b], sums[a:b], sums_sq[a:b])

    if n_rows:
        _for_chunks(run, n_rows)
    return (out, (sums, sums_sq)) if moments else out


def filter_chunk(rows: list, out: np.ndarray, stages: list[tuple[np.ndarray, int]], kernel_size: int | None) -> None:
    """`filter_chain` of the 1-D `rows` into `out` (len(rows), N) float64, on the calling thread, 16 rows at a time
    (numba backend): for callers that hand out their own chunks (`for_ranges`) and finish each while in cache."""
    plan = _stage_plan(stages, np.float64)
    for a in range(0, len(rows), _CHUNK):
        b = min(len(rows), a + _CHUNK)
        for r in range(a, b):
            out[r] = rows[r]
        _filter_tile(out[a:b], out[a:b], plan, kernel_size)


def _filter_tile(src: np.ndarray, out: np.ndarray, plan, kernel_size: int | None) -> None:
    """Numba path for up to `_CHUNK` rows: the filtfilt stages of `plan` from `src` into `out` (may be `src`), then
    subtract the running median in place."""
    _kernels.filtfilt_rows(src, out, *plan)
    if kernel_size is not None and kernel_size > 1:
        _median_chunk(out, out, kernel_size, True)


def row_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of `x` (R, N): number of non-finite values, min and max of the finite values (+inf / -inf for a row
    without any), in one pass."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (rows, samples), got shape {x.shape}")
    if HAVE_NUMBA:
        n_bad, lo, hi = np.empty(len(x), np.int64), np.empty(len(x)), np.empty(len(x))
        _kernels.row_stats(x, n_bad, lo, hi)
        return n_bad, lo, hi
    finite = np.isfinite(x)
    return ((~finite).sum(axis=1), np.where(finite, x, np.inf).min(axis=1, initial=np.inf),
            np.where(finite, x, -np.inf).max(axis=1, initial=-np.inf))


def rail_counts(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row of `x`: the number of samples equal to `lo[r]` or `hi[r]` (its min / max: clipping), one pass."""
    x = np.asarray(x, dtype=np.float64)
    if not HAVE_NUMBA:
        return ((x == lo[:, None]) | (x == hi[:, None])).sum(axis=1)
    counts = np.empty(len(x), np.int64)
    _kernels.rail_counts(x, np.ascontiguousarray(lo, dtype=np.float64), np.ascontiguousarray(hi, dtype=np.float64), counts)
    return counts


def diff_sumsq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: `sum((a - b) ** 2)` without the temporaries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not HAVE_NUMBA:
        d = a - b
        return np.einsum("ij,ij->i", d, d)
    out = np.empty(len(a))
    _kernels.diff_sumsq(a, b, out)
    return out


def scale_rows_into(x: np.ndarray, mean: np.ndarray, inv: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
    """`out[dest[r], :N] = (x[r] - mean[r]) * inv[r]` for every row (cast to `out`'s dtype), in parallel chunks."""
    if not len(x):
        return
    if not HAVE_NUMBA or out.dtype != np.float32 or x.dtype != np.float64:
        out[dest, : x.shape[1]] = (x - mean[:, None]) * inv[:, None]
        return
    mean, inv, dest = (np.ascontiguousarray(v, dtype=t) for v, t in ((mean, np.float64), (inv, np.float64), (dest, np.int64)))
    _for_chunks(lambda a, b: _kernels.scale_rows_into(x[a:b], mean[a:b], inv[a:b], out, dest[a:b]), len(x))


def warm_up() -> None:
    """Load (or compile) the numba kernels for float64 rows, C- and Fortran-ordered, now: numba's first load sets up
    its typing context (~0.4 s once per process), which would otherwise land in the first batch. Long-running jobs
    call this in a thread while the model loads. Never raises (a failure only means the first batch pays)."""
    if not HAVE_NUMBA:
        return
    try:
        x = np.random.default_rng(0).standard_normal((12, 1000))
        for rows in (x, np.asfortranarray(x), np.asfortranarray(x.astype(np.float32)).astype(np.float64)):
            row_stats(rows)
        stages = [notch_filter_sos(50.0, 30.0, 500.0), bandpass_sos(0.67, 40.0, 4, 500.0)]
        out, (sums, sums_sq) = filter_chain(list(x), stages, 201, moments=True)
        scale_rows_into(out, sums / x.shape[1], np.ones(len(x)), np.zeros((12, 1000), np.float32), np.arange(12))
        zero_phase_filter(x, *stages[1])
        zero_phase_filter(x, *stages[1], dtype=np.float32)  # the quality checks
    except Exception:  # noqa: BLE001 -- an optimisation only
        pass
