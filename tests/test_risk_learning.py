"""Learning check: survival heads recover a known hazard on synthetic cohorts built from the real CinC signals.

Each synthetic person is a random 1-s crop (lead II, 500 Hz) of one of the 50 CinC 2021 records, scaled by a random
gain in [e^-0.7, e^0.7]. The known signal feature is the log RMS amplitude of the crop, standardised: x. Event times
follow a Weibull proportional-hazards model h(t | x) = 0.05 * 1.5 * t^0.5 * exp(x) (years), censored by a uniform
time in [0, 25] years (~30 % censored). Training people come from records 0-34, held-out people from records 35-49.
Harrell's C of the trained model on the held-out people must be within 0.05 of the C of the true linear predictor x.
"""

import numpy as np
import pytest
import torch
import wfdb
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from anyecg_hf import AnyECGForRiskPrediction, LabelSpace
from anyecg_hf.testing import tiny_config

CROP = 500
WEIBULL_SCALE, WEIBULL_SHAPE, CENSOR_MAX = 0.05, 1.5, 25.0


def _people(signals, records, n, rng):
    x = np.empty((n, 1, CROP), np.float32)
    feature = np.empty(n)
    for i in range(n):
        sig = signals[records[rng.integers(len(records))]]
        start = rng.integers(0, len(sig) - CROP)
        crop = sig[start:start + CROP] * np.float32(np.exp(rng.uniform(-0.7, 0.7)))
        x[i, 0] = crop
        feature[i] = np.log(np.sqrt(np.mean((crop - crop.mean()) ** 2)) + 1e-3)
    return x, feature


def _weibull_times(eta, rng):
    t_event = (-np.log(rng.uniform(size=eta.size)) / (WEIBULL_SCALE * np.exp(eta))) ** (1 / WEIBULL_SHAPE)
    t_censor = rng.uniform(0, CENSOR_MAX, size=eta.size)
    return np.minimum(t_event, t_censor), (t_event <= t_censor).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic_cohort(assets):
    headers = sorted((assets / "data" / "cinc2021").glob("*.hea"))
    assert len(headers) == 50
    signals = []
    for h in headers:
        sig, fields = wfdb.rdsamp(str(h.with_suffix("")), channels=[1])
        assert fields["fs"] == 500 and fields["sig_name"][0] == "II"
        signals.append(np.nan_to_num(sig[:, 0].astype(np.float32)))
    rng = np.random.default_rng(0)
    x_tr, f_tr = _people(signals, list(range(35)), 500, rng)
    x_te, f_te = _people(signals, list(range(35, 50)), 400, rng)
    mu, sd = f_tr.mean(), f_tr.std()
    eta_tr, eta_te = (f_tr - mu) / sd, (f_te - mu) / sd
    t_tr, e_tr = _weibull_times(eta_tr, rng)
    t_te, e_te = _weibull_times(eta_te, rng)
    return dict(x_tr=x_tr, t_tr=t_tr, e_tr=e_tr, x_te=x_te, t_te=t_te, e_te=e_te, eta_te=eta_te)


@pytest.fixture
def one_thread():
    # 2 threads on 2 shared cores spin against each other; 1 is faster and deterministic
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(head_type, data, epochs, lr):
    torch.manual_seed(0)
    cfg = tiny_config(in_channels=1, lead_names=["II"], risk_label_space=LabelSpace.from_names(["synthetic"]),
                      risk_head_type=head_type, risk_time_bins=[0, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 25])
    model = AnyECGForRiskPrediction(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, t, e = torch.from_numpy(data["x_tr"]), torch.from_numpy(data["t_tr"]).float(), torch.from_numpy(data["e_tr"])
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for b in range(0, len(x), 250):
            idx = order[b:b + 250]
            loss = model(x[idx], event_times=t[idx], events=e[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def test_cohort_design(synthetic_cohort):
    d = synthetic_cohort
    censored = 1 - np.concatenate([d["e_tr"], d["e_te"]]).mean()
    assert 0.2 < censored < 0.4 and len(d["t_tr"]) + len(d["t_te"]) >= 500


@pytest.mark.parametrize("head_type,epochs,lr", [("cox", 9, 3e-3), ("discrete", 9, 1e-2)])
def test_trained_c_index_close_to_true_hazard(synthetic_cohort, one_thread, head_type, epochs, lr):
    d = synthetic_cohort
    model = _train(head_type, d, epochs, lr)
    with torch.no_grad():
        out = model(torch.from_numpy(d["x_te"]))
    c_true = concordance_index(d["t_te"], -d["eta_te"], d["e_te"])  # lifelines: higher = longer survival
    c_model = concordance_index(d["t_te"], -out.risk_scores[:, 0].numpy(), d["e_te"])
    print(f"{head_type}: held-out Harrell C {c_model:.3f} vs true-hazard C {c_true:.3f}")
    assert c_true > 0.65
    assert abs(c_model - c_true) <= 0.05, (c_model, c_true)

    if head_type == "cox":
        with torch.no_grad():
            train_scores = model(torch.from_numpy(d["x_tr"])).risk_scores
        model.fit_baseline_hazard(d["t_tr"], d["e_tr"], train_scores)
        with torch.no_grad():
            out = model(torch.from_numpy(d["x_tr"]))
    inc = out.cumulative_incidence
    assert (inc >= 0).all() and (inc <= 1).all() and (inc.diff(dim=-1) >= 0).all()
    if head_type == "cox":
        # Breslow baseline + relative hazards reproduce the cohort's Kaplan-Meier incidence on average
        km = KaplanMeierFitter().fit(d["t_tr"], d["e_tr"])
        for h, horizon in enumerate(model.config.risk_horizons):
            assert abs(inc[:, 0, h].mean().item() - (1 - km.predict(horizon))) < 0.05, horizon
