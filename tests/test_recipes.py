"""Fine-tuning recipes end to end on the 50 CinC records with a tiny backbone on CPU: overfitting, saved folders that
AutoModel and the pipeline load, exact resume, a two-process (gloo) run matching one process, and `anyecg evaluate`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from anyecg_hf.data import build_ecg_dataset, save_ecg_dataset

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
TINY = {"base_filters": 8, "filter_list": [16, 32], "m_blocks_list": [1, 2], "groups_width": 8, "sampling_rate": 125,
        "num_samples": 500}
STACH = "427084000"


def _recipe(name: str):
    """Import a recipe script as a module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"finetune_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    _reset_accelerate()
    yield
    _reset_accelerate()
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dataset(assets, tmp_path_factory):
    """CinC records + a label table of their # Dx codes, a synthetic tachycardia onset (risk) and age (regression)."""
    folder = assets / "data" / "cinc2021"
    rows = []
    for hea in sorted(folder.glob("*.hea")):
        lines = hea.read_text().splitlines()
        dx = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# Dx:")][0]
        h = zlib.crc32(hea.stem.encode())
        has = STACH in dx.split(",")
        age = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# Age:")][0]
        rows.append({"record_id": hea.stem, "codes": dx, "age": age, "time_STach": round(0.5 + (h % 90) / 10 * (0.3 if has else 1.0), 2),
                     "event_STach": int(has or h % 7 == 0)})
    tmp = tmp_path_factory.mktemp("recipe_data")
    table = pd.DataFrame(rows)
    table.to_csv(tmp / "labels.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_ecg_dataset(folder, tmp / "labels.csv", regression_columns=["age"], cache_dir=tmp / "cache",
                               split={"train": 0.6, "validation": 0.2, "test": 0.2}, seed=0)
    save_ecg_dataset(ds, tmp / "ds")
    return tmp / "ds"


def _config(dataset, out, **training):
    t = {"output_dir": str(out), "batch_size": 10, "max_steps": 6, "learning_rate": 3e-3, "warmup_ratio": 0.0,
         "eval_every": 0, "save_every": 0, "log_every": 1, "log_with": "none", "progress_bar": False, "seed": 1}
    t.update(training)
    return {
        "model": {"init": "config", "config": dict(TINY)},
        "data": {"dataset": str(dataset), "feature_extractor": {"backend": "scipy"}},
        "training": t,
        "evaluation": {"n_bootstrap": 0},
    }


def _run(name, cfg):
    recipe = _recipe(name)
    from anyecg_hf import training as common

    path = Path(cfg["training"]["output_dir"]).parent / f"{Path(cfg['training']['output_dir']).name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = recipe.run(common.load_config(path))
    _reset_accelerate()
    return result


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.fixture(scope="module")
def diagnosis_run(dataset, tmp_path_factory):
    """An overfit run: high learning rate, the training split seen again and again."""
    _recipe("diagnosis")
    out = tmp_path_factory.mktemp("diag") / "run"
    cfg = _config(dataset, out, max_steps=24, eval_every=12, save_every=12, class_weighting="sqrt", strategy="llrd",
                  learning_rate=1e-2, lr_scheduler="constant",
                  layer_decay=0.9, final_model="last")
    cfg["augmentation"] = {"amplitude_scale": [0.9, 1.1]}
    return _run("diagnosis", cfg), out


@pytest.mark.floors
def test_diagnosis_recipe_overfits_and_saves_a_loadable_model(diagnosis_run, dataset, assets):
    from transformers import AutoModel, pipeline

    from anyecg_hf.modeling import AnyECGForDiagnosis

    result, out = diagnosis_run
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.75 * np.mean(losses[:4]), losses
    assert [e["step"] for e in result["evals"]] == [12, 24] and result["best_step"] in (12, 24)
    assert result["final_split"] == "test" and np.isfinite(result["final_metrics"]["eval_loss"])
    final = out / "final"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "label_space.csv", "README.md",
                 "training_config.yaml"):
        assert (final / name).exists(), name
    assert yaml.safe_load((final / "training_config.yaml").read_text())["augmentation"] == {"amplitude_scale": [0.9, 1.1]}
    card = (final / "README.md").read_text()
    assert "amplitude_scale" in card and "not a medical device" in card.lower() and STACH in card
    # the card names the dataset by its folder name and carries the base weights' licence; no path of this machine
    assert str(dataset) not in card and str(out) not in card and str(dataset.parent) not in card
    assert f"Dataset: `{dataset.name}`" in card and "license: mit" in card
    assert (final / "evaluation" / "diagnosis" / "table.csv").exists()
    model = AutoModel.from_pretrained(final)
    assert type(model).__name__ == AnyECGForDiagnosis.__name__
    assert model.config.label_space.ids[0] == STACH  # most frequent code first, from the dataset
    assert len(model.config.diagnosis_pos_weight) == model.config.num_labels
    # the last checkpoint's weights are the final model's (final_model="last")
    ckpt = _weights(out / "checkpoints" / "step_24")
    final_w = _weights(final)
    assert all(torch.equal(ckpt[k], final_w[k]) for k in final_w)
    pipe = pipeline("ecg-classification", model=str(final))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = pipe(str(assets / "data" / "cinc2021" / "HR06000.hea"), top_k=3)
    assert len(preds) == 3 and all(0.0 <= p["score"] <= 1.0 for p in preds)
    assert preds[0]["label"] in model.config.label_space.names


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(dataset, tmp_path):
    _recipe("diagnosis")
    extra = dict(max_steps=6, save_every=2, gradient_accumulation_steps=2, batch_size=8, final_model="last", keep_checkpoints=10)
    aug = {"random_crop": True, "gaussian_noise": 0.05, "lead_dropout": 0.1}
    full = _config(dataset, tmp_path / "full", **extra)
    full["augmentation"] = aug
    _run("diagnosis", full)
    part = _config(dataset, tmp_path / "part", stop_after_steps=3, **extra)
    part["augmentation"] = aug
    stopped = _run("diagnosis", part)
    assert stopped["status"] == "stopped" and stopped["step"] == 3
    assert (tmp_path / "part" / "checkpoints" / "step_3").is_dir() and not (tmp_path / "part" / "final").exists()
    part["training"]["stop_after_steps"] = None
    part["training"]["resume_from_checkpoint"] = "latest"
    resumed = _run("diagnosis", part)
    assert resumed["status"] == "done" and resumed["step"] == 6
    a, b = _weights(tmp_path / "full" / "final"), _weights(tmp_path / "part" / "final")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff <= 1e-6, diff
    # and the run really trained and resumed mid-epoch (30 records, batch 8 x 2 accumulation)
    init = _weights(tmp_path / "part" / "checkpoints" / "step_3")
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-3


@pytest.mark.floors
def test_risk_recipe_fits_the_baseline_hazard(dataset, tmp_path):
    from transformers import AutoModel

    result = _run("risk", _config(dataset, tmp_path / "risk", max_steps=4, eval_every=4))
    assert result["best_metric"] == "mean_harrell_c" and "mean_harrell_c" in result["final_metrics"]
    model = AutoModel.from_pretrained(tmp_path / "risk" / "final")
    assert type(model).__name__ == "AnyECGForRiskPrediction" and model.baseline_hazard_fitted
    assert model.config.risk_label_space.ids == ["STach"]
    out = model(torch.randn(2, 12, 500))
    assert out.cumulative_incidence.shape == (2, 1, 3)
    ci = out.cumulative_incidence[0, 0]
    assert torch.all((ci >= 0) & (ci <= 1)) and torch.all(ci[1:] >= ci[:-1])  # increasing over the horizons


def test_profiling_recipe_trains_all_heads(dataset, tmp_path):
    from transformers import AutoModel

    result = _run("profiling", _config(dataset, tmp_path / "prof", max_steps=4, eval_every=2))
    metrics = result["final_metrics"]
    for key in ("eval_loss", "macro_auroc", "mean_harrell_c", "regression_mae"):
        assert key in metrics, key
    model = AutoModel.from_pretrained(tmp_path / "prof" / "final")
    assert type(model).__name__ == "AnyECGForHealthProfiling"
    assert model.config.regression_names == ["age"] and 30 < model.config.regression_target_mean[0] < 90
    table = pd.read_csv(tmp_path / "prof" / "final" / "evaluation" / "regression.csv")
    assert table["name"].tolist() == ["age"] and np.isclose(table["mae"][0], metrics["regression_mae"])


def test_two_processes_match_one(dataset, tmp_path):
    """Two CPU processes (torchrun, gloo DDP, split batches) give one process's losses, weights and metrics.

    accelerate 1.x's `accelerate launch --cpu --num_processes 2` starts one process unless an MPI hostfile is given,
    so multi-CPU runs use torchrun, which Accelerate picks up from the environment."""
    _recipe("diagnosis")
    cfgs = {}
    for name in ("one", "two"):
        cfg = _config(dataset, tmp_path / name, max_steps=3, eval_every=3, final_model="last")
        cfg["evaluation"]["n_bootstrap"] = 0
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cfgs[name] = path
    one = _run("diagnosis", yaml.safe_load(cfgs["one"].read_text()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(RECIPES / "finetune_diagnosis.py"), "--config", str(cfgs["two"])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    assert two["step"] == one["step"] == 3 and two["num_processes"] == 2 and one["num_processes"] == 1
    assert one["local_batch_size"] == 10 and two["local_batch_size"] == 5  # each process saw half of every batch
    for a, b in zip(one["history"], two["history"]):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a, b)
    for key, value in one["final_metrics"].items():
        assert abs(value - two["final_metrics"][key]) < 1e-4, key
    wa, wb = _weights(tmp_path / "one" / "final"), _weights(tmp_path / "two" / "final")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4


@pytest.mark.floors
def test_evaluate_cli_writes_the_report(diagnosis_run, dataset, tmp_path):
    from sklearn.metrics import roc_auc_score

    from anyecg_hf.cli import main
    from anyecg_hf.data import get_label_space, load_ecg_dataset

    _, out = diagnosis_run
    report = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["evaluate", "--model", str(out / "final"), "--dataset", str(dataset), "--split", "test",
                     "--out", str(report), "--n-bootstrap", "20"])
    assert code == 0
    files = {p.name for p in report.iterdir()}
    assert {"metrics.json", "model_card_section.md", "predictions.parquet", "report.md", "diagnosis"} <= files
    assert (report / "diagnosis" / "forest_auroc.png").stat().st_size > 1000
    table = pd.read_csv(report / "diagnosis" / "table.csv")
    # bootstrap CIs were computed; conditions with fewer than 10 positives get none ("n too small")
    assert ((table["n_pos"] >= 10) & table["defined"]).eq(table["auroc_ci_low"].notna()).all()
    assert (table.loc[table["defined"] & (table["n_pos"] < 10), "ci_note"] == "n too small").all()
    summary = json.loads((report / "diagnosis" / "summary.json").read_text())
    assert summary["summary"]["macro_auroc_ci_low"] < summary["summary"]["macro_auroc_ci_high"]
    # the dataset has a validation split: thresholds were chosen there
    assert "youden, chosen on validation" in (report / "model_card_section.md").read_text()
    metrics = json.loads((report / "metrics.json").read_text())
    preds = pd.read_parquet(report / "predictions.parquet")
    test = load_ecg_dataset(dataset, split="test")
    assert preds["record_id"].tolist() == test["record_id"]
    space = get_label_space(test)
    y = np.asarray(test["labels"])
    aucs = []
    for j, c in enumerate(space):
        if 0 < y[:, j].sum() < len(y):
            aucs.append(roc_auc_score(y[:, j], preds[f"prob_{c.id}"]))
    assert np.isclose(metrics["macro_auroc"], np.mean(aucs), atol=1e-6)
    assert "macro" in (report / "model_card_section.md").read_text().lower()


@pytest.mark.floors
def test_shipped_configs_are_valid_and_bad_keys_are_rejected(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    _recipe("diagnosis")
    from anyecg_hf import training as common

    for name in ("diagnosis", "risk", "profiling", "tiny_cpu"):
        cfg = common.load_config(RECIPES / "configs" / f"{name}.yaml", ["training.max_steps=7", "data.dataset=/x"])
        assert cfg["training"]["max_steps"] == 7 and cfg["data"]["dataset"] == "/x"
    cfg = common.load_config(RECIPES / "configs" / "diagnosis.yaml", ["augmentation.random_crop=true"])
    assert cfg["augmentation"]["lead_dropout"] == 0.1 and cfg["augmentation"]["random_crop"] is True
    assert cfg["training"]["strategy"] == "llrd" and cfg["training"]["batch_size"] == 256
    for name in ("cpu", "ddp", "fsdp", "multinode"):
        acc = load_config_from_file(str(RECIPES / "configs" / f"accelerate_{name}.yaml"))
        assert acc.distributed_type is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learning_rat: 0.1\ndata: {dataset: /x}\n")
    with pytest.raises(ValueError, match="learning_rat"):
        common.load_config(bad)
    bad.write_text("augmentation: {gausian_noise: 0.1}\ndata: {dataset: /x}\n")
    with pytest.raises(ValueError, match="gausian_noise"):
        common.load_config(bad)


def test_parameter_groups_llrd_and_linear_probe():
    _recipe("diagnosis")
    from anyecg_hf import training as common

    from anyecg_hf.modeling import AnyECGForDiagnosis
    from anyecg_hf.testing import tiny_config

    model = AnyECGForDiagnosis(tiny_config())
    groups = common.parameter_groups(model, "llrd", 1.0, 0.1, layer_decay=0.5, head_lr=2.0)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["anyecg.stem.conv.weight"])] == 0.5**3  # 2 stages: stem depth 0, heads depth 3
    assert lr_of[id(named["anyecg.stages.0.blocks.0.conv1.weight"])] == 0.5**2
    assert lr_of[id(named["anyecg.stages.1.blocks.1.conv1.weight"])] == 0.5
    assert lr_of[id(named["classifier.weight"])] == 2.0
    assert wd_of[id(named["classifier.bias"])] == 0.0 and wd_of[id(named["classifier.weight"])] == 0.1
    probe = common.parameter_groups(model, "linear_probe", 1.0, 0.0)
    trained = {id(p) for g in probe for p in g["params"]}
    assert trained == {id(named["classifier.weight"]), id(named["classifier.bias"])}
    assert not named["anyecg.stem.conv.weight"].requires_grad
    w = common.positive_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 1]], float), np.ones((4, 2), bool), "balanced", 100)
    assert w == [3.0, 3.0]


@pytest.mark.floors
def test_init_from_ecgfounder_and_from_a_saved_model(ecgfounder_pth_12, diagnosis_run):
    """The backbone comes over whole; head rows are copied for conditions the source knows (by id or name)."""
    _recipe("profiling")
    from anyecg_hf import training as common

    from anyecg_hf.modeling import AnyECGForDiagnosis, LabelSpace

    task = _recipe("profiling").MODEL_CLASS
    space = LabelSpace([{"id": "AF", "name": "atrial fibrillation"}, {"id": "SB", "name": "Sinus Bradycardia"},
                        {"id": "NEW", "name": "something ECGFounder never saw"}])
    cfg = {"model": {**common.DEFAULTS["model"], "init": "ecgfounder", "name_or_path": str(ecgfounder_pth_12)}}
    model, source = common.init_model(task, cfg, {"label_space": space, "regression_names": ["age"]})
    ref = AnyECGForDiagnosis.from_ecgfounder(ecgfounder_pth_12)
    names = ref.config.label_space.names
    assert source == str(ecgfounder_pth_12) and model._anyecg_rows_copied == 2
    assert torch.equal(model.anyecg.stem.conv.weight, ref.anyecg.stem.conv.weight)
    assert torch.equal(model.classifier.weight[0], ref.classifier.weight[names.index("ATRIAL FIBRILLATION")])
    assert torch.equal(model.classifier.weight[1], ref.classifier.weight[names.index("SINUS BRADYCARDIA")])
    assert model.config.architectures == ["AnyECGForHealthProfiling"] and model.config.regression_names == ["age"]
    # from a fine-tuned folder (diagnosis head) into a profiling model with the same conditions
    _, out = diagnosis_run
    saved = AnyECGForDiagnosis.from_pretrained(out / "final")
    cfg = {"model": {**common.DEFAULTS["model"], "init": "pretrained", "name_or_path": str(out / "final")}}
    model, _ = common.init_model(task, cfg, {"label_space": saved.config.label_space})
    assert model._anyecg_rows_copied == saved.config.num_labels
    assert torch.equal(model.classifier.weight, saved.classifier.weight)
    assert model.config.filter_list == saved.config.filter_list and model.config.num_samples == 500
