"""ECG paper plots, risk curves, attributions and `anyecg plot`: PNGs of the expected pixel size whose pixels
show what they should (traces in every cell, nothing where a lead is missing, an overlay only when asked), and
integrated gradients that satisfy completeness and are exact on a linear model."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import anyecg_hf  # noqa: F401
from anyecg_hf import AnyECGForDiagnosis, AnyECGForHealthProfiling, LabelSpace
from anyecg_hf.attribution import explain_record, input_x_gradient, integrated_gradients, lead_importance, resolve_condition
from anyecg_hf.io import read_ecg
from anyecg_hf.plotting import ecg_plot_size, plot_ecg
from anyecg_hf.risk_plots import NoRiskCurvesError, plot_risk_curves, risk_curves
from anyecg_hf.processing import AnyECGFeatureExtractor
from anyecg_hf.testing import tiny_config

SPACE = LabelSpace([{"id": "af", "name": "ATRIAL FIBRILLATION", "code_system": "SNOMED-CT", "code": "164889003"},
                    {"id": "sb", "name": "SINUS BRADYCARDIA"}, {"id": "x", "name": "OTHER"}])


@pytest.fixture(scope="module")
def record(assets):
    return read_ecg(assets / "data" / "cinc2021" / "HR06000.hea")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return AnyECGForDiagnosis(tiny_config(label_space=SPACE)).eval()


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _dark(px):
    return (px.max(axis=-1) < 90)


def _cell(px, row, col, dpi):
    """Pixel box of cell (row, col) of the 3x4 layout (rows of 30 mm below a 14 mm header, columns of 62.5 mm
    after a 12 mm margin)."""
    mm = dpi / 25.4
    y0, y1 = int((14 + 30 * row + 2) * mm), int((14 + 30 * (row + 1) - 2) * mm)
    x0, x1 = int((12 + 62.5 * col + 6) * mm), int((12 + 62.5 * (col + 1) - 2) * mm)
    return px[y0:y1, x0:x1]


def test_plot_ecg_size_and_traces(tmp_path, record):
    out = tmp_path / "ecg.png"
    assert plot_ecg(record, out=out, dpi=100) is None
    px = _pixels(out)
    assert (px.shape[1], px.shape[0]) == ecg_plot_size(100) == (1051, 555)  # 267 x 141 mm at 100 dpi
    for r in range(3):
        for c in range(4):
            assert _dark(_cell(px, r, c, 100)).sum() > 150, (r, c)
    # grid: pink lines every 1 mm with heavier ones every 5 mm -> spectral peaks at 1 and 0.2 cycles/mm
    mm = 100 / 25.4
    redness = (255 - px[int(15 * mm):int(130 * mm), :, 1]).mean(0)
    spectrum = np.abs(np.fft.rfft(redness - redness.mean()))
    freqs = np.fft.rfftfreq(redness.size, d=1 / mm)
    assert abs(freqs[spectrum.argmax()] - 1.0) < 0.02
    assert spectrum[np.abs(freqs - 0.2).argmin()] > 5 * np.median(spectrum)
    assert (px[..., 0] - px[..., 1]).max() > 80  # pink (R >> G), not grey
    # a missing lead leaves its cell empty (only its "missing" label), the others are unchanged
    keep = [i for i, n in enumerate(record.lead_names) if n != "V1"]
    rec2 = type(record)(record.signal[keep], record.sampling_rate, [record.lead_names[i] for i in keep], source=record.source)
    out2 = tmp_path / "ecg_no_v1.png"
    plot_ecg(rec2, out=out2, dpi=100)
    px2 = _pixels(out2)
    assert _dark(_cell(px2, 0, 2, 100)).sum() < 0.2 * _dark(_cell(px, 0, 2, 100)).sum()
    assert np.array_equal(_cell(px2, 1, 2, 100), _cell(px, 1, 2, 100))


def test_scale_is_10mm_per_mv_and_25mm_per_s(tmp_path):
    """A 1 mV square pulse of 0.4 s drawn on the rhythm strip is 10 mm tall and 10 mm wide in pixels."""
    fs, dpi = 500, 254  # 10 px per mm
    x = np.zeros((12, 5000), dtype=np.float32)
    x[:, 1000:1200] = 1.0
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    out = tmp_path / "pulse.png"
    plot_ecg(x, fs, names, filtered=False, out=out, dpi=dpi)
    px = _pixels(out)
    strip = px[int((14 + 90) * 10):int((14 + 120) * 10), int((12 + 25) * 10):int((12 + 100) * 10)]
    dark = _dark(strip)
    rows = np.nonzero(dark.any(1))[0]
    baseline = np.argmax(dark.sum(1))  # the 0 mV line is the longest dark row
    assert abs((baseline - rows.min()) - 100) <= 6  # 1 mV -> 10 mm (100 px), within the line width
    top = np.nonzero(dark[rows.min():rows.min() + 4].any(0))[0]  # the plateau at 1 mV
    assert abs((top.max() - top.min()) - 100) <= 6  # 0.4 s -> 10 mm
    assert abs(top.min() - 250) <= 6  # starts at 2.0 s = 50 mm after the trace origin (25 mm into this crop)


def test_stack_layout_for_one_lead(tmp_path, record):
    one = type(record)(record.signal[1:2], record.sampling_rate, ["II"])
    out = tmp_path / "one.png"
    plot_ecg(one, out=out, dpi=80)
    assert Image.open(out).size == ecg_plot_size(80, "stack", 1)
    with pytest.raises(ValueError, match="beyond the end"):
        plot_ecg(record, start=20)


def test_integrated_gradients_exact_on_linear_model():
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = tiny_config(label_space=SPACE)
            self.classifier = nn.Linear(12 * 50, 3)

        def forward(self, input_values, lead_mask=None, sample_mask=None, return_dict=True):
            from types import SimpleNamespace

            return SimpleNamespace(logits=self.classifier(input_values.flatten(1)))

    torch.manual_seed(0)
    m = Linear()
    x = torch.randn(2, 12, 50)
    attr, delta = integrated_gradients(m, x, "sb", steps=3)
    expected = (x * m.classifier.weight[1].view(12, 50)).detach()
    assert torch.allclose(attr, expected, atol=1e-5) and delta.abs().max() < 1e-4
    assert torch.allclose(input_x_gradient(m, x, 1), expected, atol=1e-5)
    share = lead_importance(attr)
    assert share.shape == (2, 12) and np.allclose(share.sum(1), 1)
    np.testing.assert_allclose(share[0], expected[0].abs().sum(-1) / expected[0].abs().sum(), rtol=1e-4)


def test_integrated_gradients_completeness_on_backbone(tiny_model, record):
    fe = AnyECGFeatureExtractor.from_model_config(tiny_model.config)
    x = fe(record, return_tensors="pt")["input_values"][..., :1000]  # any length runs; shorter is faster
    model = AnyECGForDiagnosis(tiny_model.config).eval()
    model.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        model.classifier.weight.mul_(200)  # a logit that moves by several units between baseline and input
        diff = float(model(x).logits[0, 0] - model(torch.zeros_like(x)).logits[0, 0])
    attr, delta = integrated_gradients(model, x, 0, steps=16, internal_batch_size=17)
    assert attr.shape == x.shape and abs(diff) > 0.3
    assert abs(float(delta[0])) < 0.02 * abs(diff)  # completeness: sum of attributions = F(x) - F(0)
    ex = explain_record(tiny_model, fe, record, steps=2)
    with torch.no_grad():
        probs = torch.sigmoid(tiny_model(fe(record, return_tensors="pt")["input_values"]).logits[0])
    assert ex["index"] == int(probs.argmax()) and ex["score"] == pytest.approx(float(probs.max()), abs=1e-6)
    assert ex["attributions"].shape == (12, 5000) and ex["lead_importance"].sum() == pytest.approx(1.0)
    assert resolve_condition(tiny_model.config, "atrial fibrillation") == 0
    assert resolve_condition(tiny_model.config, "164889003") == 0
    with pytest.raises(ValueError, match="Did you mean.*ATRIAL FIBRILLATION"):
        resolve_condition(tiny_model.config, "ATRIAL FIBRILATION")


def test_attribution_overlay_pixels(tmp_path, tiny_model, record):
    fe = AnyECGFeatureExtractor.from_model_config(tiny_model.config)
    ex = explain_record(tiny_model, fe, record, "sb", method="ixg")
    out = tmp_path / "attr.png"
    plot_ecg(record, attributions=ex, out=out, dpi=100)
    px = _pixels(out)
    plain = _pixels(plot_ecg(record, out=tmp_path / "plain.png", dpi=100) or tmp_path / "plain.png")
    assert px.shape == plain.shape

    changed = np.abs(px - plain).max(-1) > 60  # the traces are identical, so this is the overlay
    assert changed.sum() > 2000
    reddish = px[changed][:, 0] - px[changed][:, 1]
    assert (reddish > 60).sum() > 500
    # sign and place: + on lead I (red in its cell), - on V4 (blue in its cell), nothing elsewhere
    names = list(tiny_model.config.lead_names)
    a = np.zeros((12, 5000), dtype=np.float32)
    a[names.index("I"), 250:1000] = 1.0
    a[names.index("V4"), 4000:4500] = -1.0  # 8-9 s: inside the V4 column (7.5-10 s)
    synthetic = {"attributions": a, "lead_names": names, "sampling_rate": 500.0, "label": "SB", "method": "test",
                 "lead_importance": np.abs(a).sum(1) / np.abs(a).sum()}
    px = _pixels(plot_ecg(record, attributions=synthetic, out=tmp_path / "syn.png", dpi=100) or tmp_path / "syn.png")
    diff = px - plain
    blue = (diff[..., 2] - diff[..., 0]) > 60
    red = (diff[..., 0] - diff[..., 2]) > 30
    for r in range(3):
        for c in range(4):
            cell_red, cell_blue = _cell(red, r, c, 100).sum(), _cell(blue, r, c, 100).sum()
            want_red, want_blue = (r, c) == (0, 0), (r, c) == (0, 3)
            assert (cell_red > 500 if want_red else cell_red < 20), (r, c, cell_red)
            assert (cell_blue > 500 if want_blue else cell_blue < 20), (r, c, cell_blue)


def test_risk_curves_and_no_risk_head_message(tmp_path, record):
    torch.manual_seed(1)
    risk_space = LabelSpace.from_names(["Heart failure", "Incident AF", "Stroke"])
    cfg = tiny_config(label_space=SPACE, risk_label_space=risk_space, risk_head_type="discrete")
    model = AnyECGForHealthProfiling(cfg).eval()
    fe = AnyECGFeatureExtractor.from_model_config(cfg)
    curves = risk_curves(model, fe, record, times=[0.0, 1.0, 5.0, 10.0])
    with torch.no_grad():
        ref = model(**fe(record, return_tensors="pt")).cumulative_incidence[0].numpy()
    np.testing.assert_allclose(curves["incidence"][:, 1:], ref, atol=1e-6)
    assert np.all(curves["incidence"][:, 0] == 0)
    out = tmp_path / "risk.png"
    plot_risk_curves(risk_curves(model, fe, record), top_k=2, dpi=50, out=out)
    assert Image.open(out).size == (400, 250)
    diag_only = {"record": "x", "diagnoses": [{"label": "AF", "score": 0.9}], "risks": [], "warnings": []}
    with pytest.raises(NoRiskCurvesError, match="no risk head"):
        plot_risk_curves(diag_only)
    with pytest.raises(NoRiskCurvesError, match="no risk head"):
        risk_curves(AnyECGForDiagnosis(tiny_config()), fe, record)
    unfitted = {"risks": [{"label": "HF", "risk_score": 0.3, "horizons": {1: None, 5: None}}]}
    with pytest.raises(NoRiskCurvesError, match="baseline hazard"):
        plot_risk_curves(unfitted)


def test_plot_cli(tmp_path, assets, tiny_model, capsys):
    from anyecg_hf.cli import main

    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    src = str(assets / "data" / "cinc2021" / "JS20000.hea")
    out = tmp_path / "ecg.png"
    assert main(["plot", src, "--model", str(folder), "--out", str(out), "--condition", "sinus bradycardia",
                 "--steps", "4", "--dpi", "60", "--risk-curves"]) == 0
    captured = capsys.readouterr()
    assert Image.open(out).size == ecg_plot_size(60)
    assert "for SINUS BRADYCARDIA" in captured.out and "no risk head" in captured.err
    assert not (tmp_path / "ecg_risk.png").exists()
    assert main(["plot", src, "--no-model", "--out", str(tmp_path / "plain.svg")]) == 0
    assert (tmp_path / "plain.svg").read_text().lstrip().startswith("<?xml")
    bad = tmp_path / "bad.hea"
    bad.write_text("garbage\n")
    assert main(["plot", str(bad), "--no-model", "--out", str(tmp_path / "x.png")]) == 1
    assert main(["plot", src, "--model", str(folder), "--out", str(out), "--condition", "no such thing", "--steps", "2"]) == 2
    assert "not in the model's diagnosis label space" in capsys.readouterr().err
