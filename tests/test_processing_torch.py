"""Preprocessing as torch operations (`processing/torch_preprocessing.py`), on CPU tensors: the parity fixture to
1e-4, the numpy/numba extractor, and scipy's `sosfiltfilt` / `medfilt` / `resample_poly` step by step."""

import numpy as np
import pytest
import torch
import wfdb
from scipy import signal as sps

from anyecg_hf import AnyECGFeatureExtractor
from anyecg_hf.processing import filters
from anyecg_hf.processing.torch_preprocessing import (
    TorchPreprocessor,
    torch_filtfilt,
    torch_resample,
    torch_running_median,
)

PARITY_RECORDS = ["HR06000", "JS20000", "E07500"]


@pytest.fixture(scope="module")
def cinc(assets):
    return np.stack([wfdb.rdsamp(str(assets / "data" / "cinc2021" / r))[0].T for r in PARITY_RECORDS])


@pytest.mark.parametrize("dtype, bound", [(torch.float64, 2e-5), (torch.float32, 5e-5)])
def test_reproduces_the_parity_fixture(cinc, parity, dtype, bound):
    expected = np.load(parity / "preprocessed_expected.npy")
    out = TorchPreprocessor(AnyECGFeatureExtractor(), "cpu", dtype)(torch.from_numpy(cinc), 500)
    values, sample_mask = out["input_values"], out["sample_mask"]
    assert values.shape == (3, 12, 5000) and values.dtype == torch.float32 and bool(sample_mask.all())
    err = np.abs(values.numpy() - expected).max()
    assert err < 1e-4 and err < bound, err


def test_one_lead_fixture(cinc, parity):
    expected = np.load(parity / "preprocessed_expected_1lead.npy")
    values = TorchPreprocessor(AnyECGFeatureExtractor(lead_names=["I"]))(torch.from_numpy(cinc[:1, :1]), 500)["input_values"]
    assert np.abs(values.numpy() - expected).max() < 1e-4


def test_equals_the_cpu_extractor(cinc):
    """Same float64 chain as the numba path: they agree to float32 output rounding."""
    fe = AnyECGFeatureExtractor()
    cpu = fe(list(cinc), sampling_rate=500)["input_values"]
    values = TorchPreprocessor(fe)(cinc, 500)["input_values"]
    assert np.abs(values.numpy() - cpu).max() < 1e-6


@pytest.mark.parametrize("fs", [250, 257, 1000, 499.7])
def test_resampled_records_equal_the_cpu_extractor(cinc, fs):
    """A record at another rate: polyphase resampling on the raw signal, then the recipe (the CPU path resamples
    an input span; both equal the full resampling up to the FIR's negligible edge effects)."""
    up, down = filters.rational_ratio(500, fs)
    raw = sps.resample_poly(cinc[:2], up, down, axis=-1) + 0.3  # a record recorded at `fs`, with a DC offset
    fe = AnyECGFeatureExtractor()
    cpu = fe(list(raw), sampling_rate=fs)
    out = TorchPreprocessor(fe)(torch.from_numpy(raw), fs)
    values = out["input_values"]
    assert np.array_equal(out["sample_mask"].numpy(), cpu["sample_mask"])
    assert np.abs(values.numpy() - cpu["input_values"]).max() < 1e-5


@pytest.mark.parametrize("fs, start, stop", [(250, 0, None), (257, 0, None), (1000, 0, None), (360, 37, 1900),
                                             (499.7, 0, None)])
def test_resample_matches_scipy_resample_poly(fs, start, stop):
    rng = np.random.default_rng(3)
    n = int(fs * 4)
    x = rng.standard_normal((2, 3, n)) + np.linspace(-1.0, 4.0, n)  # a trend: the "line" padding matters
    up, down = filters.rational_ratio(fs, 500)
    ref = sps.resample_poly(x, up, down, axis=-1, padtype="line")[..., start:stop]
    got = torch_resample(torch.from_numpy(x), fs, 500, start, stop).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-10


def test_filtfilt_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3000)) + 2.0
    for sos, padlen in (filters.bandpass_sos(0.67, 40.0, 4, 500.0), filters.notch_filter_sos(60.0, 30.0, 500.0)):
        ref = sps.sosfiltfilt(sos, x, padtype="odd", padlen=padlen)
        assert np.abs(torch_filtfilt(torch.from_numpy(x), sos, padlen).numpy() - ref).max() < 1e-10
    # and the reference's (b, a) form, which the fixture used, to its round-off
    b, a = sps.butter(4, [0.67, 40], "bandpass", fs=500)
    sos, padlen = filters.bandpass_sos(0.67, 40.0, 4, 500.0)
    assert np.abs(torch_filtfilt(torch.from_numpy(x), sos, padlen).numpy() - sps.filtfilt(b, a, x)).max() < 1e-5
    with pytest.raises(ValueError, match="too short"):
        torch_filtfilt(torch.zeros(2, 27, dtype=torch.float64), sos, padlen)


def test_running_median_equals_medfilt_with_ties_and_chunks():
    rng = np.random.default_rng(2)
    x = rng.integers(-3, 4, size=(5, 700)).astype(np.float64)  # many ties
    ref = np.stack([sps.medfilt(r, 201) for r in x])
    assert np.array_equal(torch_running_median(torch.from_numpy(x), 201).numpy(), ref)
    small = torch_running_median(torch.from_numpy(x), 201, max_chunk_bytes=1)  # one row per chunk
    assert np.array_equal(small.numpy(), ref)
    assert np.array_equal(torch_running_median(torch.from_numpy(x), 5).numpy(), np.stack([sps.medfilt(r, 5) for r in x]))
    with pytest.raises(ValueError, match="odd"):
        torch_running_median(torch.from_numpy(x), 4)


def test_masked_lead_and_short_record_match_the_cpu_extractor(cinc):
    """A missing lead is zero and out of the z-score; a 6 s record is filtered on its 3000 samples and zero-padded."""
    fe = AnyECGFeatureExtractor()
    short = cinc[:2, :, :3000].copy()
    mask = np.ones((2, 12), dtype=bool)
    mask[1, 4] = False
    names = list(fe.lead_names)
    cpu = fe([short[0], np.delete(short[1], 4, axis=0)], sampling_rate=500,
             lead_names=[names, names[:4] + names[5:]])
    out = TorchPreprocessor(fe)(torch.from_numpy(short), 500, lead_mask=torch.from_numpy(mask))
    values = out["input_values"]
    assert np.array_equal(out["lead_mask"].numpy(), mask) and np.array_equal(cpu["lead_mask"], mask)
    assert np.array_equal(out["sample_mask"].numpy(), cpu["sample_mask"])
    assert np.abs(values.numpy() - cpu["input_values"]).max() < 1e-6
    assert not values[1, 4].any() and not values[:, :, 3000:].any()


@pytest.mark.parametrize("normalization", ["per_lead", "none"])
def test_other_normalisations_match(cinc, normalization):
    fe = AnyECGFeatureExtractor(normalization=normalization, notch_freq=60.0)
    cpu = fe(list(cinc[:2]), sampling_rate=500)["input_values"]
    values = TorchPreprocessor(fe)(torch.from_numpy(cinc[:2]), 500)["input_values"]
    scale = max(1.0, np.abs(cpu).max())
    assert np.abs(values.numpy() - cpu).max() < 1e-6 * scale


def test_rejects_wrong_shapes(cinc):
    tp = TorchPreprocessor(AnyECGFeatureExtractor())
    with pytest.raises(ValueError, match="12 leads"):
        tp(torch.from_numpy(cinc[:, :3]), 500)
    with pytest.raises(ValueError, match=r"\(batch, leads, samples\)"):
        tp(torch.from_numpy(cinc[0]), 500)


@pytest.mark.parametrize("windowing", ["first", "center"])
def test_long_record_window_is_the_full_resampling_windowed(cinc, windowing):
    """A 14 s record at 1000 Hz: the first / centre 10 s window of `resample_poly` of the WHOLE record, then the
    recipe. (The CPU extractor resamples a span with a margin; at a record's first sample scipy's `line` padding
    then sees the span's last sample instead of the record's, which moves its "first" window by ~2e-4.)"""
    raw = sps.resample_poly(np.concatenate([cinc[:1], cinc[:1, :, :2000]], axis=-1), 2, 1, axis=-1)
    fe = AnyECGFeatureExtractor(windowing=windowing)
    full = sps.resample_poly(raw, 1, 2, axis=-1, padtype="line")
    start = 0 if windowing == "first" else (full.shape[-1] - 5000) // 2
    expected = fe(list(full[..., start:start + 5000]), sampling_rate=500)["input_values"]
    values = TorchPreprocessor(fe)(torch.from_numpy(raw), 1000)["input_values"]
    assert np.abs(values.numpy() - expected).max() < 1e-6
    assert np.abs(values.numpy() - fe(list(raw), sampling_rate=1000)["input_values"]).max() < 1e-3


def test_sliding_windows_match_the_cpu_extractor(cinc):
    """A 23 s record at 500 Hz in sliding windows (stride 4000, the last aligned to the end): the same windows,
    lead masks and window -> record index as the CPU extractor."""
    long = np.concatenate([cinc[:2], cinc[:2], cinc[:2, :, :1500]], axis=-1)
    fe = AnyECGFeatureExtractor(windowing="sliding", window_stride=4000)
    cpu = fe(list(long), sampling_rate=500, return_window_index=True)
    out = TorchPreprocessor(fe)(torch.from_numpy(long), 500)
    assert out["input_values"].shape == cpu["input_values"].shape == (2 * 3, 12, 5000)
    assert np.array_equal(out["window_to_record"].numpy(), cpu["window_to_record"])
    assert np.abs(out["input_values"].numpy() - cpu["input_values"]).max() < 1e-6


def test_raw_inputs_of_mixed_records_match_the_cpu_extractor(cinc):
    """Records of different rates, lengths and lead sets in one batch: `raw_inputs` on the CPU (what a GPU job's
    readers do) + `preprocess_raw_inputs` equal the CPU extractor window for window, in record order."""
    from anyecg_hf.processing.torch_preprocessing import preprocess_raw_inputs

    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    at_250 = sps.resample_poly(cinc[1], 1, 2, axis=-1)
    long = np.concatenate([cinc[2], cinc[2, :, :3000]], axis=-1)  # 16 s: two sliding windows
    signals = [cinc[0], at_250, long, cinc[0][[1, 0, 6]]]
    rates = [500, 250, 500, 500]
    lead_names = [names, names, names, ["II", "I", "V1"]]
    fe = AnyECGFeatureExtractor()
    cpu = fe(signals, sampling_rate=rates, lead_names=lead_names, return_window_index=True)
    raw = fe.raw_inputs(signals, sampling_rate=rates, lead_names=lead_names)
    assert [r["fs"] for r in raw] == rates and raw[3]["lead_mask"].sum() == 3
    out = preprocess_raw_inputs(raw, TorchPreprocessor(fe))
    assert np.array_equal(out["window_to_record"].numpy(), cpu["window_to_record"])
    assert np.array_equal(out["lead_mask"].numpy(), cpu["lead_mask"])
    assert np.abs(out["input_values"].numpy() - cpu["input_values"]).max() < 1e-5
