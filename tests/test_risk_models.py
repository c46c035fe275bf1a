"""AnyECGForRiskPrediction / AnyECGForHealthProfiling: outputs, losses, baseline fitting, round trips, ECGFounder init."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anyecg_hf import AnyECGForDiagnosis, AnyECGForHealthProfiling, AnyECGForRiskPrediction, LabelSpace
from anyecg_hf.modeling.breslow import breslow_cumulative_hazard
from anyecg_hf.modeling.survival import cox_partial_likelihood_loss, discrete_time_nll
from anyecg_hf.testing import tiny_config

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

RISK = LabelSpace.from_names(["heart failure", "atrial fibrillation"], name="risk-2")


def profiling_config(**kw):
    kw.setdefault("risk_label_space", RISK)
    return tiny_config(**kw)


def cohort(n=24, n_risk=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, 512, generator=g)
    t = torch.rand(n, n_risk, generator=g) * 12
    e = (torch.rand(n, n_risk, generator=g) < 0.6).float()
    r = (torch.rand(n, n_risk, generator=g) < 0.9).float()
    return x, t, e, r


def test_health_profiling_outputs_and_weighted_loss():
    torch.manual_seed(0)
    cfg = profiling_config(regression_names=["age", "lvef"], regression_target_mean=[60, 55], regression_target_std=[15, 10],
                           diagnosis_loss_weight=0.5, risk_loss_weight=2.0, regression_loss_weight=0.25)
    model = AnyECGForHealthProfiling(cfg).eval()
    x, t, e, r = cohort()
    y = (torch.rand(24, 3) < 0.3).float()
    m = torch.ones(24, 3)
    m[0, 1] = 0
    reg = torch.stack([torch.rand(24) * 40 + 40, torch.rand(24) * 30 + 40], dim=1)
    reg[3, 1] = float("nan")  # unknown LVEF
    out = model(x, labels=y, label_mask=m, event_times=t, events=e, at_risk_mask=r, regression_targets=reg)
    assert out.diagnosis_logits.shape == (24, 3) and out.logits is out.diagnosis_logits
    assert out.risk_scores.shape == (24, 2) and out.pooler_output.shape == (24, 32)
    assert out.cumulative_incidence is None  # Cox baseline not fitted yet
    assert out.regression_outputs.shape == (24, 2)

    z = model.regression_head(out.pooler_output)
    torch.testing.assert_close(out.regression_outputs, torch.tensor([60.0, 55.0]) + torch.tensor([15.0, 10.0]) * z)
    bce = F.binary_cross_entropy_with_logits(out.logits, y, reduction="none")[m.bool()].mean()
    cox = cox_partial_likelihood_loss(out.risk_scores, t, e, r)
    known = torch.isfinite(reg)
    mse = ((z - (reg - torch.tensor([60.0, 55.0])) / torch.tensor([15.0, 10.0]))[known] ** 2).mean()
    torch.testing.assert_close(out.loss, 0.5 * bce + 2.0 * cox + 0.25 * mse)

    # each part alone; no targets -> no loss
    torch.testing.assert_close(model(x, labels=y, label_mask=m).loss, 0.5 * bce)
    torch.testing.assert_close(model(x, event_times=t, events=e, at_risk_mask=r).loss, 2.0 * cox)
    assert model(x).loss is None
    tup = model(x, labels=y, return_dict=False)
    torch.testing.assert_close(tup[0], 0.5 * bce)
    with pytest.raises(ValueError, match="both event_times"):
        model(x, event_times=t)


def test_fit_baseline_hazard_and_absolute_risk():
    torch.manual_seed(1)
    model = AnyECGForRiskPrediction(profiling_config()).eval()
    x, t, e, r = cohort(40)
    with torch.no_grad():
        out = model(x)
    assert out.cumulative_incidence is None and not model.baseline_hazard_fitted
    assert torch.equal(out.logits, out.risk_scores)

    report = model.fit_baseline_hazard(t, e, out.risk_scores, r)
    assert model.baseline_hazard_fitted
    assert report["n_events"] == [int((e * r)[:, c].sum()) for c in range(2)]
    with torch.no_grad():
        ci = model(x).cumulative_incidence
    assert ci.shape == (40, 2, 3) and (ci >= 0).all() and (ci <= 1).all() and (ci.diff(dim=-1) >= 0).all()
    # horizons lie on the stored grid, so the result is exact against a direct Breslow estimate
    s = out.risk_scores.double().numpy()
    for c in range(2):
        keep = r[:, c].bool().numpy()
        h0 = breslow_cumulative_hazard(s[keep, c], t[keep, c].numpy(), e[keep, c].numpy(), [1.0, 5.0, 10.0])
        expected = 1 - np.exp(-h0[None, :] * np.exp(s[:, c:c + 1]))
        np.testing.assert_allclose(ci[:, c].numpy(), expected, rtol=2e-5, atol=1e-7)

    # the same through a dataloader of dict batches
    other = AnyECGForRiskPrediction(profiling_config()).eval()
    other.load_state_dict({k: v for k, v in model.state_dict().items() if "baseline" not in k}, strict=False)
    assert not other.baseline_hazard_fitted
    batches = [{"input_values": x[i:i + 16], "event_times": t[i:i + 16], "events": e[i:i + 16], "at_risk_mask": r[i:i + 16]}
               for i in range(0, 40, 16)]
    other.fit_baseline_hazard(dataloader=batches)
    for name in ("baseline_hazard_times", "baseline_cumulative_hazard", "baseline_hazard_fitted"):
        torch.testing.assert_close(getattr(other.risk_head, name), getattr(model.risk_head, name), rtol=1e-6, atol=1e-9)
    curve = model.cumulative_incidence_at(out, [0.0, 2.5, 7.0])
    assert curve.shape == (40, 2, 3) and torch.equal(curve[..., 0], torch.zeros(40, 2))

    # a condition with nobody at risk: NaN, with a warning
    r2 = r.clone()
    r2[:, 1] = 0
    with pytest.warns(UserWarning, match="No one at risk"):
        model.fit_baseline_hazard(t, e, out.risk_scores, r2)
    with torch.no_grad():
        ci2 = model(x).cumulative_incidence
    assert torch.isnan(ci2[:, 1]).all() and torch.isfinite(ci2[:, 0]).all()


def test_discrete_head_scores_and_incidence():
    torch.manual_seed(2)
    cfg = profiling_config(risk_head_type="discrete", risk_time_bins=[1, 2, 5, 10], risk_horizons=[1, 5, 8])
    assert cfg.risk_time_bins == [0.0, 1.0, 2.0, 5.0, 10.0]
    model = AnyECGForRiskPrediction(cfg).eval()
    x, t, e, r = cohort()
    out = model(x, event_times=t, events=e, at_risk_mask=r)
    assert out.hazard_logits.shape == (24, 2, 4)
    torch.testing.assert_close(out.loss, discrete_time_nll(out.hazard_logits, t, e, r, cfg.risk_time_bins))
    ci = out.cumulative_incidence
    assert ci.shape == (24, 2, 3) and (ci.diff(dim=-1) >= 0).all() and (ci >= 0).all() and (ci <= 1).all()
    # risk score = log cumulative hazard at the last horizon; fresh head = ~1 %/year
    torch.testing.assert_close(out.risk_scores, torch.log(-torch.log1p(-ci[..., -1])), rtol=1e-4, atol=1e-5)
    assert abs(ci[..., 1].mean().item() - (1 - np.exp(-0.05))) < 0.01
    assert model.baseline_hazard_fitted
    with pytest.raises(ValueError, match="Cox head only"):
        model.fit_baseline_hazard(t, e, out.risk_scores)
    with pytest.raises(ValueError, match="beyond the last risk_time_bins"):
        AnyECGForRiskPrediction(profiling_config(risk_head_type="discrete", risk_time_bins=[0, 1, 2]))


def _assert_same_model(a, b, x):
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    assert b.config.label_space == a.config.label_space and b.config.risk_label_space == a.config.risk_label_space
    assert b.config.risk_label_space.name == a.config.risk_label_space.name
    assert b.config.risk_horizons == a.config.risk_horizons and b.config.risk_head_type == a.config.risk_head_type
    with torch.no_grad():
        oa, ob = a.eval()(x), b.eval()(x)
    for key in oa.keys():
        if isinstance(oa[key], torch.Tensor):
            assert torch.equal(oa[key], ob[key]), key


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A fitted Cox profiling model and a discrete risk model, saved."""
    torch.manual_seed(3)
    x, t, e, r = cohort(30)
    cox = AnyECGForHealthProfiling(profiling_config(risk_horizons=[0.5, 2.0, 7.5], regression_names=["age"])).eval()
    with torch.no_grad():
        scores = cox(x).risk_scores
    cox.fit_baseline_hazard(t, e, scores, r)
    disc = AnyECGForRiskPrediction(profiling_config(risk_head_type="discrete")).eval()
    with torch.no_grad():
        disc.risk_head.bias.add_(torch.randn_like(disc.risk_head.bias))
    paths = {}
    for name, model in (("cox", cox), ("discrete", disc)):
        paths[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(paths[name])
    return {"cox": cox, "discrete": disc}, paths, x


def test_save_load_auto_round_trip_bit_exact(saved_models):
    from transformers import AutoConfig, AutoModel

    models, paths, x = saved_models
    for name, cls in (("cox", AnyECGForHealthProfiling), ("discrete", AnyECGForRiskPrediction)):
        cfg = json.loads((paths[name] / "config.json").read_text())
        assert cfg["architectures"] == [cls.__name__] and cfg["risk_label_space"][0]["name"] == "heart failure"
        assert cfg["auto_map"]["AutoModel"].endswith(cls.__name__)
        _assert_same_model(models[name], cls.from_pretrained(paths[name]), x)
        auto = AutoModel.from_pretrained(paths[name])
        assert type(auto) is cls
        _assert_same_model(models[name], auto, x)
        assert AutoConfig.from_pretrained(paths[name]).risk_time_bins == models[name].config.risk_time_bins
    assert models["cox"].baseline_hazard_fitted and AnyECGForHealthProfiling.from_pretrained(paths["cox"]).baseline_hazard_fitted


def test_trust_remote_code_round_trip(saved_models, tmp_path):
    models, paths, x = saved_models
    torch.save(x, tmp_path / "x.pt")
    expected = {}
    for name, model in models.items():
        with torch.no_grad():
            out = model(x)
        expected[name] = (out.risk_scores, out.cumulative_incidence)
    torch.save(expected, tmp_path / "expected.pt")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["anyecg_hf"] = None  # only the files saved beside the weights may be used
        import torch
        from transformers import AutoModel
        x = torch.load({str(tmp_path / 'x.pt')!r})
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        for name, path in {{"cox": {str(paths['cox'])!r}, "discrete": {str(paths['discrete'])!r}}}.items():
            model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                out = model(x)
            assert torch.equal(out.risk_scores, expected[name][0]), name
            assert torch.equal(out.cumulative_incidence, expected[name][1]), name
            print(name, type(model).__name__, model.config.risk_label_space.ids, model.config.risk_horizons)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cox AnyECGForHealthProfiling ['heart failure', 'atrial fibrillation'] [0.5, 2.0, 7.5]" in res.stdout
    assert "discrete AnyECGForRiskPrediction" in res.stdout


def test_diagnosis_checkpoint_initialises_profiling_model(tmp_path):
    torch.manual_seed(4)
    diag = AnyECGForDiagnosis(tiny_config()).eval()
    diag.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        cfg = json.load(f)
    cfg["risk_label_space"] = RISK.to_list()  # same backbone/classifier, now with a risk label space
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    prof = AnyECGForHealthProfiling.from_pretrained(tmp_path).eval()
    assert torch.equal(prof.classifier.weight, diag.classifier.weight)
    assert torch.equal(prof.anyecg.stem.conv.weight, diag.anyecg.stem.conv.weight)
    assert not prof.baseline_hazard_fitted and not prof.risk_head.baseline_cumulative_hazard.any()
    assert prof.risk_head.linear.weight.abs().max() > 0  # initialised, not left empty
    x = torch.randn(2, 12, 512)
    with torch.no_grad():
        torch.testing.assert_close(prof(x).logits, diag(x).logits)


def test_model_without_risk_head():
    model = AnyECGForHealthProfiling(tiny_config()).eval()
    assert model.risk_head is None and not model.has_risk_head and not model.baseline_hazard_fitted
    out = model(torch.randn(2, 12, 512), labels=torch.ones(2, 3))
    assert out.risk_scores is None and out.cumulative_incidence is None and out.loss is not None
    with pytest.raises(ValueError, match="no risk head"):
        model(torch.randn(2, 12, 512), event_times=torch.ones(2), events=torch.ones(2))
    with pytest.raises(ValueError, match="needs config.risk_label_space"):
        AnyECGForRiskPrediction(tiny_config())


def test_from_ecgfounder_copies_matching_diagnosis_rows(ecgfounder_pth_12, seeded_model_12):
    names = ["ATRIAL FIBRILLATION", "my new label", "sinus bradycardia"]  # exact, none, case-insensitive
    model = AnyECGForHealthProfiling.from_ecgfounder(
        ecgfounder_pth_12, label_space=LabelSpace.from_names(names), risk_label_space=RISK, regression_names=["age"],
    )
    assert model.config.architectures == ["AnyECGForHealthProfiling"] and model._ecgfounder_rows_matched == 2
    src = seeded_model_12.classifier
    source_names = seeded_model_12.config.label_space.names
    af, sb = source_names.index("ATRIAL FIBRILLATION"), source_names.index("SINUS BRADYCARDIA")
    assert torch.equal(model.classifier.weight[0], src.weight[af]) and torch.equal(model.classifier.bias[0], src.bias[af])
    assert torch.equal(model.classifier.weight[2], src.weight[sb])
    assert not any(torch.equal(model.classifier.weight[1], w) for w in src.weight)
    for k, v in seeded_model_12.anyecg.state_dict().items():
        assert torch.equal(model.anyecg.state_dict()[k], v), k
    assert model.risk_head.linear.weight.std() < 0.05 and not model.baseline_hazard_fitted


def test_recalibrate_thresholds_and_baseline():
    torch.manual_seed(5)
    model = AnyECGForHealthProfiling(profiling_config()).eval()
    x, t, e, r = cohort(40)
    g = torch.Generator().manual_seed(6)
    labels = (torch.rand(40, 3, generator=g) < 0.4).float()
    labels[:, 2] = 0  # no positives locally: keeps its threshold
    batches = [{"input_values": x[i:i + 20], "event_times": t[i:i + 20], "events": e[i:i + 20],
                "at_risk_mask": r[i:i + 20], "labels": labels[i:i + 20]} for i in (0, 20)]
    report = model.recalibrate(batches)
    assert model.baseline_hazard_fitted and report["baseline"]["n_events"] == [int((e * r)[:, c].sum()) for c in range(2)]
    with torch.no_grad():
        probs = torch.sigmoid(model(x).logits).numpy()
    for c in range(2):
        y, p = labels[:, c].numpy() > 0, probs[:, c]
        # brute-force Youden over every candidate threshold ("predict positive if p >= thr")
        best = max(np.unique(p), key=lambda thr: ((p >= thr) & y).sum() / y.sum() - ((p >= thr) & ~y).sum() / (~y).sum())
        assert model.config.label_space[c].threshold == pytest.approx(float(best), abs=1e-7)
    assert set(report["thresholds"]) == {"AF", "SB"} and model.config.label_space[2].threshold is None
    assert model.config.id2label == {0: "AF", 1: "SB", 2: "STACH"}


def test_works_with_hf_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(7)
    model = AnyECGForHealthProfiling(profiling_config(regression_names=["age"], regression_target_mean=[55], regression_target_std=[15]))
    g = torch.Generator().manual_seed(0)
    rows = [{"input_values": torch.randn(12, 512, generator=g), "labels": (torch.rand(3, generator=g) > 0.5).float(),
             "label_mask": torch.ones(3), "event_times": torch.rand(2, generator=g) * 10,
             "events": (torch.rand(2, generator=g) > 0.5).float(), "at_risk_mask": torch.ones(2),
             "regression_targets": torch.rand(1, generator=g) * 50 + 30} for _ in range(16)]
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=8, per_device_eval_batch_size=8, max_steps=2,
                             report_to=[], remove_unused_columns=False, save_strategy="no", use_cpu=True,
                             label_names=["labels", "label_mask", "event_times", "events", "at_risk_mask", "regression_targets"])
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    assert np.isfinite(trainer.train().training_loss)
    pred = trainer.predict(rows)
    logits, diagnosis_logits, risk_scores, regression, pooled = pred.predictions  # cumulative_incidence is None
    assert logits.shape == (16, 3) and risk_scores.shape == (16, 2) and regression.shape == (16, 1)
    model.eval()
    batches = [{k: torch.stack([r[k] for r in rows[i:i + 8]]) for k in rows[0]} for i in (0, 8)]
    with torch.no_grad():
        losses = [model(**b).loss.item() for b in batches]
        scores = model(batches[0]["input_values"]).risk_scores.numpy()
    assert trainer.evaluate()["eval_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    np.testing.assert_allclose(risk_scores[:8], scores, rtol=1e-5, atol=1e-6)
