"""Core package: ECGFounder parity, save/load and Auto round trips, conversion, bad input."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

import anyecg_hf
from anyecg_hf import AnyECGConfig, AnyECGForDiagnosis, AnyECGModel, LabelSpace
from anyecg_hf.modeling import masked_bce_with_logits
from anyecg_hf.testing import seeded_ecgfounder_state_dict, tiny_config

pytestmark = pytest.mark.floors  # also run with the lowest declared dependency versions (.ci/run)

TOL = 1e-4  # issue 2: max-abs parity in float32


@pytest.fixture(scope="module")
def seeded_model_1(ecgfounder_pth_1):
    return AnyECGForDiagnosis.from_ecgfounder(ecgfounder_pth_1, num_leads=1)


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("leads", ["12lead", "1lead"])
def test_parity_logits_and_features(leads, parity, seeded_model_12, seeded_model_1):
    model = seeded_model_12 if leads == "12lead" else seeded_model_1
    x = torch.from_numpy(np.load(parity / f"inputs_{leads}.npy"))
    with torch.no_grad():
        out = model(input_values=x)
    logits, feats = out.logits.numpy(), out.pooler_output.numpy()
    exp_logits, exp_feats = np.load(parity / f"logits_{leads}.npy"), np.load(parity / f"features_{leads}.npy")
    assert logits.shape == (4, 150) and feats.shape == (4, 1024)
    assert np.abs(logits - exp_logits).max() < TOL
    assert np.abs(feats - exp_feats).max() < TOL
    # the fixture's logits are far from trivial, so this comparison has teeth
    assert np.abs(exp_logits).max() > 0.1


def test_parity_stage_outputs_and_odd_length(parity, seeded_model_12):
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))[:1]
    with torch.no_grad():
        hidden = seeded_model_12.anyecg(x, output_hidden_states=True).hidden_states
    stages = np.load(parity / "stage_outputs_12lead_row0.npz")
    names = ["stem"] + [f"stage{i}" for i in range(7)]
    assert len(hidden) == len(names)
    for name, h in zip(names, hidden):
        ref = stages[name]
        assert h[0].shape == ref.shape, name
        assert np.abs(h[0].numpy() - ref).max() <= TOL * max(1.0, np.abs(ref).max()), name
    odd = torch.from_numpy(np.load(parity / "inputs_odd_length.npy"))
    with torch.no_grad():
        logits = seeded_model_12(odd).logits.numpy()
    assert np.abs(logits - np.load(parity / "logits_odd_length_12lead.npy")).max() < TOL


def test_parameter_count_matches_release(seeded_model_12):
    # The release's 30,819,014 parameters include the weights/biases of its unused BatchNorms (dropped here).
    layout = json.loads((anyecg_hf.testing.parity_dir() / "state_dict_layout.json").read_text())["12lead"]["keys"]
    bn = sum(int(np.prod(s)) for k, s, _ in layout if (".bn" in k or k.startswith("first_bn")) and k.endswith(("weight", "bias")))
    assert sum(p.numel() for p in seeded_model_12.parameters()) == 30_819_014 - bn


# ---------------------------------------------------------------------------------------------------- round trips
def test_save_pretrained_auto_round_trip_bit_exact(tmp_path, seeded_model_12, parity):
    seeded_model_12.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "anyecg" and cfg["architectures"] == ["AnyECGForDiagnosis"]
    assert [c["name"] for c in cfg["label_space"]] == LabelSpace.ecgfounder().names
    assert cfg["auto_map"]["AutoModel"] == "modeling_anyecg.AnyECGForDiagnosis"
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))
    with torch.no_grad():
        ref = seeded_model_12(x).logits
        for loaded in (AnyECGForDiagnosis.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
            assert type(loaded) is AnyECGForDiagnosis
            assert torch.equal(loaded(x).logits, ref)
    assert AutoConfig.from_pretrained(tmp_path).label_space == seeded_model_12.config.label_space


def test_label_space_with_codes_and_thresholds_survives(tmp_path):
    space = LabelSpace([
        {"id": "af", "name": "Atrial fibrillation", "code_system": "ICD-10", "code": "I48", "category": "rhythm", "threshold": 0.31},
        {"id": "hf", "name": "Heart failure", "code_system": "phecode", "code": "428", "threshold": 0.125},
        {"id": "lbbb", "name": "LBBB", "code_system": "SNOMED-CT", "code": "164909002"},
    ], name="custom")
    config = tiny_config(label_space=space, risk_label_space=space)
    model = AnyECGForDiagnosis(config).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.label_space == space and loaded.config.label_space.name == "custom"
    assert loaded.config.risk_label_space == space
    assert loaded.config.id2label == {0: "Atrial fibrillation", 1: "Heart failure", 2: "LBBB"}
    assert loaded.config.label2id["LBBB"] == 2 and loaded.config.num_labels == 3
    assert loaded.config.label_space[0].threshold == 0.31 and loaded.config.label_space[2].decision_threshold == 0.5
    x = torch.randn(3, 12, 777)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_auto_model_picks_class_from_architectures(tiny):
    assert type(AutoModel.from_config(tiny)) is AnyECGModel  # base model by default, like BertModel
    tiny.architectures = ["AnyECGForDiagnosis"]
    assert type(AutoModel.from_config(tiny)) is AnyECGForDiagnosis


def test_trust_remote_code_without_package(tmp_path):
    model = AnyECGForDiagnosis(tiny_config()).eval()
    model.save_pretrained(tmp_path / "m")
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        np.save(tmp_path / "expected.npy", model(x).logits.numpy())
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent(f"""
        import sys
        sys.modules["anyecg_hf"] = None  # hide the installed package: only the files in the folder may be used
        import numpy as np, torch
        from transformers import AutoModel
        m = AutoModel.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True)
        assert type(m).__name__ == "AnyECGForDiagnosis", type(m)
        assert "anyecg_hf" not in type(m).__module__, type(m).__module__
        with torch.no_grad():
            y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))).logits.numpy()
        assert np.array_equal(y, np.load({str(tmp_path / 'expected.npy')!r}))
        assert m.config.label_space.names == ["AF", "SB", "STACH"]
        print("REMOTE_OK")
    """)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert "REMOTE_OK" in r.stdout, r.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------- config
def test_config_defaults_are_released_ecgfounder():
    c = AnyECGConfig()
    assert (c.in_channels, c.base_filters, c.kernel_size, c.stride, c.groups_width, c.ratio) == (12, 64, 16, 2, 16, 1.0)
    assert c.filter_list == [64, 160, 160, 400, 400, 1024, 1024] and c.m_blocks_list == [2, 2, 2, 3, 3, 4, 4]
    assert c.use_se and not c.use_batch_norm and c.dropout == 0.0
    assert c.sampling_rate == 500 and c.num_samples == 5000 and c.lead_names[3] == "aVR" and len(c.lead_names) == 12
    assert c.num_labels == 150 and c.id2label[149] == LabelSpace.ecgfounder()[149].name
    assert c.problem_type == "multi_label_classification" and c.anyecg_version


def test_num_labels_never_overwrites_label_space():
    c = tiny_config()
    with pytest.raises(ValueError, match="label space of 3"):
        c.num_labels = 5
    c.num_labels = 3  # same size: accepted, nothing changes
    assert c.label_space.names == ["AF", "SB", "STACH"]
    with pytest.raises(ValueError, match="does not match"):
        AnyECGConfig(num_labels=4, label_space=LabelSpace.from_names(["a", "b"]))
    assert AnyECGConfig(num_labels=4).id2label[3] == "LABEL_3"
    c.label_space = LabelSpace.from_names(["x", "y"])
    assert c.num_labels == 2 and c.label2id == {"x": 0, "y": 1}


@pytest.mark.parametrize("kwargs, match", [
    (dict(filter_list=[16, 32], m_blocks_list=[1]), "equal length"),
    (dict(in_channels=8), "lead_names"),
    (dict(groups_width=7), "groups_width"),
    (dict(problem_type="single_label_classification"), "multi_label"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**kwargs)


# ---------------------------------------------------------------------------------------------------- label spaces
def test_label_space_csv_json_round_trip_1172_rows(tmp_path):
    rows = [{"id": f"phe_{i}", "name": f"Condition {i}", "code_system": "phecode", "code": f"{i}.{i % 10}",
             "category": ["circulatory", "endocrine", None][i % 3], "threshold": (None if i % 4 else round(0.05 + i / 2000, 6))}
            for i in range(1172)]
    space = LabelSpace(rows, name="anyecg-1172")
    for ext in ("csv", "json"):
        space.save(tmp_path / f"labels.{ext}")
        back = LabelSpace.load(tmp_path / f"labels.{ext}")
        assert back == space and len(back) == 1172
        assert back[4].threshold == space[4].threshold and back[5].threshold is None and back[2].category is None


def test_label_space_builtin_ecgfounder(assets):
    names = (assets / "data" / "ecgfounder_labels.txt").read_text().splitlines()
    space = LabelSpace.ecgfounder()
    assert space.names == names and len(space) == 150 and space.index("NORMAL ECG") == 2


@pytest.mark.parametrize("rows, match", [
    ([{"id": "a", "name": "A"}, {"id": "a", "name": "B"}], "duplicate id 'a'"),
    ([{"id": "a", "name": "A"}, {"id": "b", "name": "A"}], "duplicate name 'A'"),
    ([{"id": "a", "name": ""}], "empty condition name"),
    ([{"name": "A", "threshold": 0}], r"outside \(0, 1\)"),
    ([{"name": "A", "threshold": "high"}], "not a number"),
    ([{"name": "A", "code_system": "LOINC-ish"}], "unknown code_system"),
    ([], "no conditions"),
])
def test_label_space_validation(rows, match):
    with pytest.raises(ValueError, match=match):
        LabelSpace(rows)


def test_label_table_with_duplicates_names_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("id,name,code_system,code\nI48,AF,ICD-10,I48\nI48,Atrial flutter,ICD-10,I48\n")
    with pytest.raises(ValueError, match=r"labels\.csv.*duplicate id 'I48'"):
        LabelSpace.load(path)


# ---------------------------------------------------------------------------------------------------- loss
def test_masked_bce_matches_manual_and_masks_exactly():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.float32)
    mask = torch.tensor([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    labels_with_nan = torch.where(mask, labels, torch.full_like(labels, float("nan")))
    loss = masked_bce_with_logits(logits, labels_with_nan, mask)
    p = torch.sigmoid(logits.detach()).numpy().astype(np.float64)
    y, m = labels.numpy(), mask.numpy()
    manual = -(y * np.log(p) + (1 - y) * np.log(1 - p))[m].mean()
    assert abs(loss.item() - manual) < 1e-6
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~mask] == 0).all()
    z = torch.randn(2, 3, requires_grad=True)
    zero = masked_bce_with_logits(z, torch.full((2, 3), float("nan")), torch.zeros(2, 3, dtype=torch.bool))
    zero.backward()
    assert zero.item() == 0.0 and (z.grad == 0).all()


def test_diagnosis_loss_with_pos_weight(tiny):
    tiny.diagnosis_pos_weight = [2.0, 1.0, 0.5]
    model = AnyECGForDiagnosis(tiny).eval()
    x, y = torch.randn(2, 12, 600), torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    out = model(input_values=x, labels=y)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, y, pos_weight=torch.tensor([2.0, 1.0, 0.5]))
    assert torch.allclose(out.loss, expected, atol=1e-7)
    assert model(input_values=x, labels=y, return_dict=False)[0].item() == pytest.approx(out.loss.item())


# ---------------------------------------------------------------------------------------------------- bad input
def test_forward_rejects_bad_input(tiny):
    model = AnyECGForDiagnosis(tiny).eval()
    with pytest.raises(ValueError, match="expects 12"):
        model(torch.randn(1, 8, 500))
    with pytest.raises(ValueError, match=r"\(batch, leads, samples\)"):
        model(torch.randn(12, 500))
    with pytest.raises(ValueError, match="floating-point"):
        model(torch.zeros(1, 12, 500, dtype=torch.int64))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model(np.zeros((1, 12, 500), dtype=np.float32))


def test_model_accepts_feature_extractor_masks(tiny):
    model = AnyECGForDiagnosis(tiny).eval()
    x = torch.randn(2, 12, 800)
    with torch.no_grad():
        a = model(x).logits
        b = model(input_values=x, lead_mask=torch.ones(2, 12, dtype=torch.bool), sample_mask=torch.ones(2, 800, dtype=torch.bool)).logits
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------- conversion
def test_from_ecgfounder_accepts_bare_and_prefixed_state_dicts(tmp_path, parity):
    state = seeded_ecgfounder_state_dict("1lead")
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {"lr": torch.tensor(0.1)}, "epoch": 3}, tmp_path / "wrapped.pth")
    x = torch.from_numpy(np.load(parity / "inputs_1lead.npy"))
    expected = np.load(parity / "logits_1lead.npy")
    for name in ("bare.pth", "wrapped.pth"):
        model = AnyECGForDiagnosis.from_ecgfounder(tmp_path / name)
        assert model.config.in_channels == 1 and model.config.lead_names == ["I"]
        with torch.no_grad():
            assert np.abs(model(x).logits.numpy() - expected).max() < TOL
    backbone = AnyECGModel.from_ecgfounder(tmp_path / "bare.pth")
    with torch.no_grad():
        feats = backbone(x).pooler_output.numpy()
    assert np.abs(feats - np.load(parity / "features_1lead.npy")).max() < TOL


def test_from_ecgfounder_folder_uses_default_file_name(tmp_path, ecgfounder_pth_12):
    model = AnyECGForDiagnosis.from_ecgfounder(ecgfounder_pth_12.parent, num_leads=12)
    assert model.config.in_channels == 12 and not model.training


def test_from_ecgfounder_wrong_layout_names_keys(tmp_path):
    state = seeded_ecgfounder_state_dict("1lead")
    state["stage_list.0.block_list.0.extra_gate.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"extra\.pth.*extra_gate\.weight"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "extra.pth")
    state = seeded_ecgfounder_state_dict("1lead")
    del state["stage_list.3.block_list.1.se_fc2.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing.*stages\.3\.blocks\.1\.se\.fc2\.weight"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "missing.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"not an ECGFounder Net1D checkpoint.*first_conv\.conv\.weight"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="num_leads=12"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "extra.pth", num_leads=12)


class _Opaque:  # a pickled object that weights_only=True must refuse
    pass


def test_from_ecgfounder_refuses_pickled_objects_unless_trusted(tmp_path):
    state = seeded_ecgfounder_state_dict("1lead")
    torch.save({"state_dict": state, "args": _Opaque()}, tmp_path / "objects.pth")
    with pytest.raises(ValueError, match="trust_checkpoint=True"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "objects.pth")
    with pytest.warns(UserWarning, match="weights_only=False"):
        model = AnyECGForDiagnosis.from_ecgfounder(tmp_path / "objects.pth", trust_checkpoint=True)
    assert model.config.in_channels == 1
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "objects.pth").read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated.pth.*not a readable PyTorch checkpoint"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "truncated.pth")
    with pytest.raises(ValueError, match="does not exist"):
        AnyECGForDiagnosis.from_ecgfounder(tmp_path / "nope.pth")


def test_cli_convert_ecgfounder(tmp_path, ecgfounder_pth_12, parity):
    out = tmp_path / "converted"
    r = subprocess.run([sys.executable, "-m", "anyecg_hf.cli", "convert-ecgfounder", str(ecgfounder_pth_12), str(out), "--leads", "12"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "150 labels" in r.stdout
    model = AutoModel.from_pretrained(out)
    x = torch.from_numpy(np.load(parity / "inputs_12lead.npy"))
    with torch.no_grad():
        assert np.abs(model(x).logits.numpy() - np.load(parity / "logits_12lead.npy")).max() < TOL
    bad = subprocess.run([sys.executable, "-m", "anyecg_hf.cli", "convert-ecgfounder", str(tmp_path / "missing.pth"), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
