"""Signal-quality flags on real CinC 2021 records."""

import numpy as np
import pytest
import wfdb

from anyecg_hf import AnyECGFeatureExtractor
from anyecg_hf.processing import signal_quality
from anyecg_hf.testing import reference_quality_flags

CLEAN = ["HR06000", "HR06001", "JS20000", "E07500", "E07501"]


def _load(assets, rec):
    x, meta = wfdb.rdsamp(str(assets / "data" / "cinc2021" / rec))
    return x.T, meta["fs"], meta["sig_name"]


@pytest.mark.parametrize("rec", CLEAN)
def test_clean_records_have_no_flags(assets, rec):
    x, fs, names = _load(assets, rec)
    assert signal_quality(x, fs, names, record_id=rec) == []


def test_zeroed_lead_in_real_record_is_flagged(assets):
    x, fs, names = _load(assets, "JS20004")  # this CinC record ships with a zeroed lead
    flat = [i for i in range(12) if np.ptp(x[i]) == 0]
    flags = signal_quality(x, fs, names, record_id="JS20004")
    assert [(f.kind, f.lead) for f in flags] == [("flat", names[i]) for i in flat]
    assert "JS20004: lead" in str(flags[0])


def test_swapped_i_avr_and_arm_reversal_flagged(assets):
    x, fs, names = _load(assets, "HR06001")
    swapped = x[[3, 1, 2, 0] + list(range(4, 12))]  # channels I and aVR exchanged, labels kept
    kinds = {f.kind for f in signal_quality(swapped, fs, names)}
    assert "limb_leads_inconsistent" in kinds
    # left/right arm reversal: I -> -I, II <-> III, aVR <-> aVL, aVF unchanged (a consistent but reversed set)
    rev = x.copy()
    rev[0], rev[1], rev[2], rev[3], rev[4] = -x[0], x[2], x[1], x[4], x[3]
    flags = signal_quality(rev, fs, names)
    assert [f.kind for f in flags] == ["limb_lead_reversal"]


def test_nan_saturation_and_noise_flags(assets, rng):
    x, fs, names = _load(assets, "E07500")
    y = x.copy()
    y[6] = np.nan
    y[7, :200] = np.nan
    y[8] = np.clip(y[8], np.percentile(y[8], 5), np.percentile(y[8], 95))
    y[9] = y[9] + rng.standard_normal(y.shape[1]) * 2.0 * y[9].std()
    got = {(f.kind, f.lead) for f in signal_quality(y, fs, names)}
    assert got == {("nan_filled", "V1"), ("nan_gaps", "V2"), ("saturated", "V3"), ("noisy", "V4")}


def test_feature_extractor_check_quality_parses_like_call(assets):
    x, fs, names = _load(assets, "JS20004")
    fe = AnyECGFeatureExtractor()
    flags = fe.check_quality([x * 1000, x], sampling_rate=fs, lead_names=names, units="uV", record_ids=["a", "b"])
    assert [(f.kind, f.lead) for f in flags[0]] == [("flat", "V2"), ("flat", "V4"), ("flat", "V6")]
    # b: the mV data declared as uV is 1000x too small: every lead under 10 uV peak-to-peak is flat, and the
    # record-level plausibility flag says why
    assert {f.kind for f in flags[1]} == {"flat", "amplitude_low"} and len(flags[1]) > 3
    assert [f.kind for f in flags[1]][0] == "amplitude_low"


def test_flags_and_masks_agree(assets):
    """Volts read as millivolts (1000x too small): the leads the quality check calls `flat` are exactly the leads
    the extractor masks (issue 21: flagged flat but not masked before); microvolts read as millivolts are flagged."""
    import warnings as _w

    from anyecg_hf.processing.feature_extraction_anyecg import ECGInputError

    x, fs, names = _load(assets, "E07500")
    fe = AnyECGFeatureExtractor()
    y = x.copy()
    y[[1, 4, 7]] *= 1e-3  # three leads in volts-like scale (peak-to-peak < 10 uV)
    flagged = {f.lead for f in fe.check_quality(y, sampling_rate=fs, lead_names=names)[0] if f.kind == "flat"}
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        mask = fe(y, sampling_rate=fs, lead_names=names)["lead_mask"][0]
    masked = {lead for lead, m in zip(fe.lead_names, mask) if not m}
    spans = {n: np.ptp(y[i]) for i, n in enumerate(names)}
    assert flagged == masked == {n for n, v in spans.items() if v <= 0.01} and len(masked) == 3
    with pytest.raises(ECGInputError, match="no usable lead"):  # every lead in volts: refused, never garbage
        with _w.catch_warnings():
            _w.simplefilter("ignore")
            fe(x * 1e-3, sampling_rate=fs, lead_names=names)
    kinds = [f.kind for f in fe.check_quality(x * 1000, sampling_rate=fs, lead_names=names)[0]]
    assert kinds == ["units_microvolts"]


@pytest.mark.parametrize("fs", [1.0, 10.0, 1e5])
def test_feature_extractor_refuses_implausible_rates(assets, fs):
    from anyecg_hf.processing.feature_extraction_anyecg import ECGInputError

    x, _, names = _load(assets, "E07500")
    fe = AnyECGFeatureExtractor()
    with pytest.raises(ECGInputError, match="outside the plausible ECG range"):
        fe(x, sampling_rate=fs, lead_names=names)
    with pytest.raises(ECGInputError, match="outside the plausible ECG range"):
        fe.check_quality(x, sampling_rate=fs, lead_names=names)


def test_low_rate_short_and_missing_leads_are_flagged(assets):
    from scipy.signal import resample_poly

    x, fs, names = _load(assets, "E07500")
    fe = AnyECGFeatureExtractor()
    low = resample_poly(x, 1, 10, axis=1)  # 50 Hz
    kinds = [f.kind for f in fe.check_quality(low, sampling_rate=50, lead_names=names)[0]]
    assert "low_rate" in kinds
    two_s = fe.check_quality(x[:, :1000], sampling_rate=fs, lead_names=names)[0]
    short = [f for f in two_s if f.kind == "shorter_than_window"]
    assert len(short) == 1 and short[0].value == pytest.approx(2.0)
    three = fe.check_quality(x[:3], sampling_rate=fs, lead_names=names[:3])[0]
    missing = [f for f in three if f.kind == "missing_leads"]
    assert len(missing) == 1 and missing[0].value == 9.0


def test_vectorised_checks_equal_plain_per_lead_scipy(assets, rng):
    """Every CinC record, plus a damaged copy of each (NaN lead, NaN gap, clipping, noise, swapped I/aVR): the same
    flags, in the same order, with the same measured values as per-lead scipy `sosfiltfilt` -- exactly for the
    NaN / flat / clipping values, within 1e-3 for the values from filtered signals (the filters run in float32)."""
    folder = assets / "data" / "cinc2021"
    n_flags = 0
    for path in sorted(folder.glob("*.hea")):
        x, fs, names = _load(assets, path.stem)
        y = x[[3, 1, 2, 0] + list(range(4, 12))].copy()
        k = rng.integers(4, 12, size=4)
        y[k[0], : rng.integers(100, 4000)] = np.nan
        y[k[1]] = np.clip(y[k[1]], *np.percentile(y[k[1]], [3, 97]))
        y[k[2]] += rng.standard_normal(y.shape[1]) * 3 * y[k[2]].std()
        for sig in (x, y):
            ref = reference_quality_flags(sig, fs, names)
            got = [(f.kind, f.lead, f.value) for f in signal_quality(sig, fs, names) if f.kind != "limb_lead_reversal"]
            assert [g[:2] for g in got] == [r[:2] for r in ref], path.stem
            filtered = [g[0] in ("noisy", "limb_leads_inconsistent") for g in got]
            for g, r, f in zip(got, ref, filtered):
                np.testing.assert_allclose(g[2], r[2], rtol=1e-3 if f else 1e-9, atol=1e-12, err_msg=f"{path.stem} {g[:2]}")
            n_flags += len(ref)
    assert n_flags > 100  # the damaged copies do raise flags
