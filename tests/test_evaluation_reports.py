"""`evaluate` metric modules, the Trainer helper, the report folder and the model card."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from anyecg_hf.evaluation import (
    evaluate_diagnosis,
    evaluate_risk,
    metric_path,
    run_evaluation,
    run_evaluation_from_npz,
    trainer_compute_metrics,
    write_model_card,
    write_report,
)
from anyecg_hf.evaluation.model_card import RESEARCH_USE_STATEMENT, SECTION_END, SECTION_START


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random((n, 3)) < [0.1, 0.3, 0.5]).astype(float)
    logits = rng.normal(size=(n, 3)) + 2 * y - 1
    times = rng.exponential(4.0, (n, 2)) + 0.05
    events = (rng.random((n, 2)) < 0.5).astype(float)
    risk = rng.normal(size=(n, 2)) - 0.3 * np.log(times)
    inc = 1 - np.exp(-np.exp(risk)[:, :, None] * np.array([1.0, 3.0, 6.0]) / 5)
    return dict(y=y, logits=logits, prob=1 / (1 + np.exp(-logits)), times=times, events=events, risk=risk, inc=inc)


def test_multilabel_auroc_metric_module(arrays):
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(metric_path("multilabel_auroc"))
    y, logits = arrays["y"].copy(), arrays["logits"]
    y[:20, 0] = -100  # missing labels
    for i in range(0, 300, 100):  # batches accumulate like in an evaluation loop
        metric.add_batch(predictions=logits[i : i + 100], references=y[i : i + 100])
    out = metric.compute(n_bootstrap=100, seed=0)
    for k in range(3):
        m = y[:, k] >= 0
        assert out["auroc"][k] == pytest.approx(roc_auc_score(y[m, k], logits[m, k]), abs=1e-12)
    assert out["macro_auroc"] == pytest.approx(np.mean(out["auroc"]))
    assert out["macro_auroc_ci_low"] < out["macro_auroc"] < out["macro_auroc_ci_high"]
    assert out["n_defined"] == 3


def test_concordance_metric_module(arrays):
    evaluate = pytest.importorskip("evaluate")
    lifelines_utils = pytest.importorskip("lifelines.utils")
    metric = evaluate.load(metric_path("concordance_index"))
    t, e, r = arrays["times"][:, 0], arrays["events"][:, 0].astype(int), arrays["risk"][:, 0]
    out = metric.compute(predictions=r, references=t, events=e, tau=5.0, n_bootstrap=50)
    assert out["harrell_c"] == pytest.approx(lifelines_utils.concordance_index(t, -r, e), abs=1e-12)
    assert out["harrell_c_ci_low"] < out["harrell_c"] < out["harrell_c_ci_high"]
    assert 0 < out["uno_c"] < 1 and out["n_events"] == int(e.sum())


def test_trainer_compute_metrics(arrays):
    from transformers import EvalPrediction

    fn = trainer_compute_metrics(per_label=True, label_names=["AF", "SB", "STACH"])
    out = fn(EvalPrediction(predictions=(arrays["logits"], np.zeros(1)), label_ids=arrays["y"]))
    assert out["auroc/SB"] == pytest.approx(roc_auc_score(arrays["y"][:, 1], arrays["logits"][:, 1]))
    assert all(isinstance(v, float) for v in out.values())


def test_write_report_folder(arrays, tmp_path):
    diag, risk, paths = run_evaluation(
        tmp_path / "report", y_true=arrays["y"], y_prob=arrays["prob"], label_space=["AF", "SB", "STACH"],
        times=arrays["times"], events=arrays["events"], risk_scores=arrays["risk"],
        cumulative_incidence=arrays["inc"], horizons=[1.0, 3.0, 6.0], risk_label_space=["MI", "HF"],
        n_bootstrap=50, subgroups={"sex": np.where(np.arange(300) % 2, "F", "M")},
    )
    for key in ("diagnosis_table", "diagnosis_forest_plot", "diagnosis_calibration_plot", "diagnosis_subgroups",
                "risk_table", "risk_km_plot", "risk_forest_plot", "risk_calibration_plot", "model_card_section",
                "index"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    assert paths["risk_km_plot"].read_bytes()[:4] == b"\x89PNG"
    section = paths["model_card_section"].read_text()
    assert section.startswith(SECTION_START) and SECTION_END in section and "Harrell" in section
    np.savez(tmp_path / "pred.npz", y_true=arrays["y"], y_prob=arrays["prob"])
    d2, r2, _ = run_evaluation_from_npz(tmp_path / "pred.npz", tmp_path / "r2", n_bootstrap=0)
    assert r2 is None and d2.table["auroc"].tolist() == pytest.approx(diag.table["auroc"].tolist())
    with pytest.raises(ValueError, match="diagnosis_report, a risk_report"):
        write_report(tmp_path / "empty")


def test_model_card_written_and_updated(arrays, tmp_path, tiny):
    from huggingface_hub import ModelCard

    folder = tmp_path / "model"
    tiny.save_pretrained(folder)
    diag = evaluate_diagnosis(arrays["y"], arrays["prob"], tiny.label_space, n_bootstrap=50)
    risk = evaluate_risk(arrays["times"], arrays["events"], arrays["risk"], horizons=[1.0, 3.0], n_bootstrap=20)
    defined = risk.table[risk.table["defined"]]
    assert risk.top(1)["harrell_c"].iloc[0] == defined["harrell_c"].max()  # each report ranks by its own metric
    assert risk.bottom(1)["harrell_c"].iloc[0] == defined["harrell_c"].min()
    path = write_model_card(folder, [diag, risk], dataset_name="synthetic test cohort", top_n=2)
    card = ModelCard.load(path)
    assert "ecg" in card.data.tags and card.data.license == "mit"  # ECGFounder's weights are MIT
    assert card.data.eval_results[0].metric_value == pytest.approx(round(diag.summary["macro_auroc"], 4))
    text = path.read_text()
    assert RESEARCH_USE_STATEMENT in text and "not a medical device" in text
    assert "## Intended use" in text and "## Training data" in text and "To be completed" in text
    assert "### Diagnosis: 3 conditions" in text and "STACH" in text
    assert "Best 2 conditions by AUROC" in text and "Worst 1 conditions by AUROC" not in text
    best = diag.top(1)["name"].iloc[0]
    assert f"| {best} |" in text
    # re-evaluation replaces only the marked section; hand-written text survives
    path.write_text(text.replace("## Limitations", "## My notes\n\nKeep me.\n\n## Limitations"))
    diag2 = evaluate_diagnosis(arrays["y"], arrays["prob"][:, [1, 0, 2]], tiny.label_space, n_bootstrap=0)
    write_model_card(folder, diag2)
    updated = path.read_text()
    assert "Keep me." in updated and updated.count(SECTION_START) == 1
    assert "Future risk" not in updated  # the new section has only the diagnosis report
    assert f"{diag2.summary['macro_auroc']:.3f}" in updated


def test_model_card_model_index_names_no_local_path(arrays, tmp_path, tiny):
    from huggingface_hub import ModelCard

    from anyecg_hf.evaluation.model_card import dataset_reference

    folder = tmp_path / "model"
    tiny.save_pretrained(folder)
    cohort = tmp_path / "work" / "cinc_ds"
    cohort.mkdir(parents=True)
    diag = evaluate_diagnosis(arrays["y"], arrays["prob"], tiny.label_space, n_bootstrap=0)
    path = write_model_card(folder, diag, dataset_name=f"{cohort} [test]")
    card = ModelCard.load(path)
    header = path.read_text().split("---")[1]
    assert str(tmp_path) not in header and "[test]" not in header
    result = card.data.eval_results[0]
    assert (result.dataset_name, result.dataset_type, result.dataset_split) == ("cinc_ds", "cinc_ds", "test")
    assert str(tmp_path) not in path.read_text() and "Evaluated on **cinc_ds** (test split)." in path.read_text()
    assert dataset_reference("org/ptbxl [validation]") == ("org/ptbxl", "validation")  # a Hub id is kept
    assert dataset_reference("./data/ds") == ("ds", None)
