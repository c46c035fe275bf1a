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


def test_rational_ratio():
    assert filters.rational_ratio(257, 500) == (500, 257)
    assert filters.rational_ratio(1000, 500) == (1, 2)
    assert filters.rational_ratio(360, 500) == (25, 18)
    up, down = filters.rational_ratio(499.7, 500)
    assert abs(up / down - 500 / 499.7) < 1e-6
