"""Kernels of anyecg_hf.processing.filters against scipy's per-row functions (the reference's building blocks)."""

import numpy as np
import pytest
from scipy import signal as sps

from anyecg_hf.processing import filters

BACKENDS = ["numba", "scipy"] if filters.HAVE_NUMBA else ["scipy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_running_median_equals_medfilt_bit_for_bit(backend, rng):
    x = rng.standard_normal((7, 1500))
    x[1] = np.round(x[1] * 4) / 4  # many ties
    x[2, :300] = -0.0  # signed zeros next to the zero padding
    x[3] = 0.0
    x[4] *= 1e-300  # subnormal-range values keep their order
    for k in (3, 201):
        expected = np.stack([sps.medfilt(row, k) for row in x])
        np.testing.assert_array_equal(filters.running_median(x, k, backend), expected)
    short = rng.standard_normal((2, 150))  # shorter than the kernel: mostly zero padding
    with pytest.warns(UserWarning):
        expected = np.stack([sps.medfilt(row, 201) for row in short])
    np.testing.assert_array_equal(filters.running_median(short, 201, backend), expected)


def test_order_keys_sort_like_floats(rng):
    x = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-5, 5, 500), [0.0, -1e-310, 1e-310]])
    key, _ = filters._order_keys(x[None])
    np.testing.assert_array_equal(np.sort(x), x[np.argsort(key[0])])


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_phase_filter_equals_filtfilt(backend, rng):
    x = np.cumsum(rng.standard_normal((37, 2000)), axis=1)  # random walk: strong low-frequency content
    sos, padlen = filters.bandpass_sos(0.67, 40.0, 4, 500)
    b, a = sps.butter(4, [0.67, 40.0], "bandpass", fs=500)
    ref = np.stack([sps.filtfilt(b, a, row) for row in x])
    out = filters.zero_phase_filter(x, sos, padlen, backend)
    assert padlen == 27
    # (b, a) form of an 8-pole band-pass is ill-conditioned: agreement is to its round-off
    assert np.abs(out - ref).max() < 1e-5 * np.abs(ref).max()
    np.testing.assert_allclose(out, sps.sosfiltfilt(sos, x, padlen=padlen), rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    sos_n, padlen_n = filters.notch_filter_sos(60.0, 30.0, 500)
    b, a = sps.iirnotch(60.0, 30.0, 500)
    ref = np.stack([sps.filtfilt(b, a, row) for row in x])
    np.testing.assert_allclose(filters.zero_phase_filter(x, sos_n, padlen_n, backend), ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="too short"):
        filters.zero_phase_filter(x[:, :20], sos, padlen, backend)
    single = filters.zero_phase_filter(x, sos, padlen, backend, dtype=np.float32)  # the quality checks' precision
    assert single.dtype == np.float32 and np.abs(single - out).max() < 1e-3 * np.abs(out).max()
    assert (backend == "scipy") == bool(np.array_equal(single, out.astype(np.float32)))  # numba filters in float32


def test_rational_ratio():
    assert filters.rational_ratio(257, 500) == (500, 257)
    assert filters.rational_ratio(1000, 500) == (1, 2)
    assert filters.rational_ratio(360, 500) == (25, 18)
    up, down = filters.rational_ratio(499.7, 500)
    assert abs(up / down - 500 / 499.7) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_running_median_near_ties_and_chunks_bit_exact(backend, rng):
    """Values equal in all but the lowest mantissa bits share a truncated sort key (see `_kernels.median_keys`);
    the sweep must still pick medfilt's element bit for bit. 40 rows exercise several thread-pool chunks."""
    base = rng.choice([0.5, -1.25, 3.0], size=(40, 1200))
    ulps = rng.integers(-3000, 3000, size=base.shape)  # < 2**13 ulps: inside one truncated-key group
    x = base.view(np.int64) + ulps
    x = x.view(np.float64)
    x[::3] += rng.standard_normal((14, 1200))  # ordinary rows between the near-tie ones
    expected = np.stack([sps.medfilt(row, 201) for row in x])
    out = filters.running_median(x, 201, backend)
    np.testing.assert_array_equal(out.view(np.int64), (expected + 0.0).view(np.int64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_filter_chain_equals_separate_scipy_steps(backend, rng):
    """Notch + band-pass + median subtraction fused per chunk = scipy's sosfiltfilt, sosfiltfilt, medfilt."""
    x = np.cumsum(rng.standard_normal((37, 3000)), axis=1) + 0.3 * np.sin(2 * np.pi * 50 * np.arange(3000) / 500)
    notch = filters.notch_filter_sos(50.0, 30.0, 500)
    band = filters.bandpass_sos(0.67, 40.0, 4, 500)
    y = sps.sosfiltfilt(notch[0], x, padlen=notch[1])
    y = sps.sosfiltfilt(band[0], y, padlen=band[1])
    expected = y - np.stack([sps.medfilt(row, 201) for row in y])
    out = filters.filter_chain(x, [notch, band], 201, backend)
    assert np.abs(out - expected).max() < 1e-6 * np.abs(expected).max()
    only_filters = filters.filter_chain(x, [notch, band], None, backend)
    assert np.abs(only_filters - y).max() < 1e-9 * np.abs(y).max()
    np.testing.assert_array_equal(filters.filter_chain(x, [], None, backend), x)  # no stage: a copy
    with pytest.raises(ValueError, match="too short"):
        filters.filter_chain(x[:, :20], [notch, band], 201, backend)


@pytest.mark.skipif(not filters.HAVE_NUMBA, reason="numba not installed")
def test_filter_chain_float32_close_to_float64(rng):
    x = np.cumsum(rng.standard_normal((20, 5000)), axis=1)
    stages = [filters.notch_filter_sos(50.0, 30.0, 500), filters.bandpass_sos(0.67, 40.0, 4, 500)]
    exact = filters.filter_chain(x, stages, 201)
    single = filters.filter_chain(x, stages, 201, dtype=np.float32)
    assert single.dtype == np.float32
    err = np.abs(single - exact).max() / exact.std()
    assert 0 < err < 2e-2, err  # float32 recursion round-off near the 0.67 Hz poles, not a bug


def test_numba_disabled_fallback_in_subprocess():
    """ANYECG_DISABLE_NUMBA=1 imports without the kernels and still gives medfilt / filtfilt numbers."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np; from scipy import signal as s; from anyecg_hf.processing import filters as f\n"
        "assert not f.HAVE_NUMBA\n"
        "x = np.random.default_rng(0).standard_normal((3, 800))\n"
        "assert np.array_equal(f.running_median(x, 51), np.stack([s.medfilt(r, 51) for r in x]))\n"
        "st = [f.notch_filter_sos(50, 30, 500)]\n"
        "b, a = s.iirnotch(50, 30, 500)\n"
        "ref = np.stack([s.filtfilt(b, a, r) for r in x])\n"
        "assert np.abs(f.filter_chain(x, st, None) - ref).max() < 1e-9\n"
        "print('ok')\n"
    )
    env = {**os.environ, "ANYECG_DISABLE_NUMBA": "1"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@pytest.mark.skipif(not filters.HAVE_NUMBA, reason="the thread pool belongs to the numba backend")
def test_thread_pool_survives_fork(rng, monkeypatch):
    """A DataLoader worker forked after the parent used the pool must not wait on the parent's (absent) threads."""
    import multiprocessing as mp

    monkeypatch.setenv("ANYECG_NUM_THREADS", "2")
    x = rng.standard_normal((64, 1000))
    stages = [filters.notch_filter_sos(50, 30, 500)]
    expected = filters.filter_chain(x, stages, 51)  # 4 chunks: the pool is created in this process
    assert filters._POOL is not None
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(filters.filter_chain, (x, stages, 51)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_filter_chain_takes_rows_and_returns_moments(rng):
    """A list of row views gives the array's numbers; moments are the output's row sums and sums of squares."""
    x = rng.standard_normal((40, 1200))
    stages = [filters.notch_filter_sos(50, 30, 500), filters.bandpass_sos(0.67, 40, 4, 500)]
    expected = filters.filter_chain(x, stages, 101)
    out, (sums, sums_sq) = filters.filter_chain(list(x), stages, 101, moments=True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(sums, expected.sum(axis=1), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(sums_sq, (expected**2).sum(axis=1), rtol=1e-10)
    n_bad, lo, hi = filters.row_stats(np.where(x > 2.5, np.nan, x))
    finite = x <= 2.5
    np.testing.assert_array_equal(n_bad, (~finite).sum(axis=1))
    np.testing.assert_array_equal(lo, np.where(finite, x, np.inf).min(axis=1))
    np.testing.assert_array_equal(hi, np.where(finite, x, -np.inf).max(axis=1))


@pytest.mark.skipif(not filters.HAVE_NUMBA, reason="the thread pool belongs to the numba backend")
def test_pool_tasks_that_filter_run_inline(rng, monkeypatch):
    """A task on the pool (one record's quality checks, e.g.) that filters many rows must not wait on the pool."""
    import threading

    monkeypatch.setenv("ANYECG_NUM_THREADS", "2")
    x = rng.standard_normal((40, 800))  # 3 chunks: would be handed to the pool from a pool thread
    stages = [filters.notch_filter_sos(50, 30, 500)]
    expected = filters.filter_chain(x, stages, 51)
    got = [None] * 4

    def task(a, b):
        for i in range(a, b):
            got[i] = filters.filter_chain(x, stages, 51)

    runner = threading.Thread(target=filters.for_ranges, args=(task, [(i, i + 1) for i in range(4)]), daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "deadlock: a pool task waited on the pool"
    for g in got:
        np.testing.assert_array_equal(g, expected)
