"""Signal-quality flags on real CinC 2021 records."""

import numpy as np
import pytest
import wfdb

from anyecg_hf import AnyECGFeatureExtractor
from anyecg_hf.processing import signal_quality

CLEAN = ["HR06000", "HR06001", "JS20000", "E07500", "E07501"]


def _load(shared, rec):
    x, meta = wfdb.rdsamp(str(shared / "data" / "cinc2021" / rec))
    return x.T, meta["fs"], meta["sig_name"]


@pytest.mark.parametrize("rec", CLEAN)
def test_clean_records_have_no_flags(shared, rec):
    x, fs, names = _load(shared, rec)
    assert signal_quality(x, fs, names, record_id=rec) == []


def test_zeroed_lead_in_real_record_is_flagged(shared):
    x, fs, names = _load(shared, "JS20004")  # this CinC record ships with a zeroed lead
    flat = [i for i in range(12) if np.ptp(x[i]) == 0]
    flags = signal_quality(x, fs, names, record_id="JS20004")
    assert [(f.kind, f.lead) for f in flags] == [("flat", names[i]) for i in flat]
    assert "JS20004: lead" in str(flags[0])


def test_swapped_i_avr_and_arm_reversal_flagged(shared):
    x, fs, names = _load(shared, "HR06001")
    swapped = x[[3, 1, 2, 0] + list(range(4, 12))]  # channels I and aVR exchanged, labels kept
    kinds = {f.kind for f in signal_quality(swapped, fs, names)}
    assert "limb_leads_inconsistent" in kinds
    # left/right arm reversal: I -> -I, II <-> III, aVR <-> aVL, aVF unchanged (a consistent but reversed set)
    rev = x.copy()
    rev[0], rev[1], rev[2], rev[3], rev[4] = -x[0], x[2], x[1], x[4], x[3]
    flags = signal_quality(rev, fs, names)
    assert [f.kind for f in flags] == ["limb_lead_reversal"]


def test_nan_saturation_and_noise_flags(shared, rng):
    x, fs, names = _load(shared, "E07500")
    y = x.copy()
    y[6] = np.nan
    y[7, :200] = np.nan
    y[8] = np.clip(y[8], np.percentile(y[8], 5), np.percentile(y[8], 95))
    y[9] = y[9] + rng.standard_normal(y.shape[1]) * 2.0 * y[9].std()
    got = {(f.kind, f.lead) for f in signal_quality(y, fs, names)}
    assert got == {("nan_filled", "V1"), ("nan_gaps", "V2"), ("saturated", "V3"), ("noisy", "V4")}


def test_feature_extractor_check_quality_parses_like_call(shared):
    x, fs, names = _load(shared, "JS20004")
    fe = AnyECGFeatureExtractor()
    flags = fe.check_quality([x * 1000, x], sampling_rate=fs, lead_names=names, units="uV", record_ids=["a", "b"])
    assert [(f.kind, f.lead) for f in flags[0]] == [("flat", "V2"), ("flat", "V4"), ("flat", "V6")]
    # b: the mV data declared as uV is 1000x too small: every lead under 10 uV peak-to-peak is flat
    assert {f.kind for f in flags[1]} == {"flat"} and len(flags[1]) > 3


def _reference_flags(x, fs, names):
    """The checks written plainly per lead with scipy (the first implementation), as (kind, lead, value)."""
    from scipy import signal as sps

    out, band = [], {}
    sos_band = sps.butter(4, [0.67, min(40.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    sos_low = sps.butter(4, min(40.0, 0.45 * fs), "lowpass", fs=fs, output="sos")
    for name, lead in zip(names, x):
        finite = np.isfinite(lead)
        nan_frac = 1.0 - finite.mean()
        if nan_frac >= 0.5:
            out.append(("nan_filled", name, nan_frac))
            continue
        if nan_frac > 0:
            out.append(("nan_gaps", name, nan_frac))
        v = np.where(finite, lead, 0.0)
        ptp = float(np.ptp(v[finite]))
        if ptp < 0.01:
            out.append(("flat", name, ptp))
            continue
        rails = (v == v[finite].max()) | (v == v[finite].min())
        if rails[finite].mean() >= 0.02:
            out.append(("saturated", name, rails[finite].mean()))
        band[name] = sps.sosfiltfilt(sos_band, v)
        hf = v - sps.sosfiltfilt(sos_low, v)
        ratio = np.sqrt(np.mean(hf**2)) / (np.sqrt(np.mean(band[name] ** 2)) + 1e-12)
        if ratio >= 1.0:
            out.append(("noisy", name, ratio))
    i, ii = band["I"], band["II"]
    res = {n: np.linalg.norm(band[n] - d) / (np.linalg.norm(band[n]) + 1e-12)
           for n, d in {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}.items() if n in band}
    worst = max(res, key=res.get)
    if res[worst] > 0.2:
        out.append(("limb_leads_inconsistent", worst, res[worst]))
    return out


def test_vectorised_checks_equal_plain_per_lead_scipy(shared, rng):
    """Every CinC record, plus a damaged copy of each (NaN lead, NaN gap, clipping, noise, swapped I/aVR): the same
    flags, in the same order, with the same measured values as per-lead scipy `sosfiltfilt`."""
    folder = shared / "data" / "cinc2021"
    n_flags = 0
    for path in sorted(folder.glob("*.hea")):
        x, fs, names = _load(shared, path.stem)
        y = x[[3, 1, 2, 0] + list(range(4, 12))].copy()
        k = rng.integers(4, 12, size=4)
        y[k[0], : rng.integers(100, 4000)] = np.nan
        y[k[1]] = np.clip(y[k[1]], *np.percentile(y[k[1]], [3, 97]))
        y[k[2]] += rng.standard_normal(y.shape[1]) * 3 * y[k[2]].std()
        for sig in (x, y):
            ref = _reference_flags(sig, fs, names)
            got = [(f.kind, f.lead, f.value) for f in signal_quality(sig, fs, names) if f.kind != "limb_lead_reversal"]
            assert [g[:2] for g in got] == [r[:2] for r in ref], path.stem
            np.testing.assert_allclose([g[2] for g in got], [r[2] for r in ref], rtol=1e-9, atol=1e-12)
            n_flags += len(ref)
    assert n_flags > 100  # the damaged copies do raise flags
